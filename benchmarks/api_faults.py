"""Nothing lost, nothing refused badly: one workspace shared by a server under load, bench runs and a CLI
writer; then a burst of generation jobs against the bounded queue.

    python benchmarks/api_faults.py                 # both phases (~5 min on 2 cores)
    python benchmarks/api_faults.py --shared-seconds 120 --burst 500 --burst-seconds 10

Phase 1, shared workspace (``--shared-seconds``): a real ``pwb serve`` (uvicorn subprocess) on a synthetic
workspace with a trained GAT, while, at the same time and on the same file,
  * ``pwb bench run synthetic_recovery`` runs back to back (each holds the file for its whole run),
  * ``pwb personas mine --encoder tfidf --force`` runs back to back (a CLI writer),
  * 4 HTTP clients mix cold starts (stored), persona reads, run listings and small generation jobs.
Counted: every answer's status (500s must be 0; every 503 must carry Retry-After), every CLI exit code
(failures must be 0), the server's JSON request log (every 5xx and 503 logged), and at the end whether
every persona the API acknowledged (``stored: true``) is in the workspace.

Phase 2, queue burst: a fresh server with ``--max-queue 64``; ``--burst`` POST /v1/generate from 8 clients
paced over ``--burst-seconds`` (9 small jobs of 1 x 32 px x 2 steps for each large one of 16 x 128 px x 10
steps). Counted: 202s, refusals (each must be 429/503 with Retry-After), the server's peak RSS (bounded
memory), then each accepted job's queue wait (started_at - created_at): p50/p99 for small and large jobs.
The baseline is the same small job's queue wait with the queue empty, measured first in the same run.
Writes ``benchmarks/results/api_faults.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result
from api_load import ROOT, free_port, pwb, synthetic_workspace

OUT = ROOT / "benchmarks" / "results" / "api_faults.json"
SMALL = {"height": 32, "width": 32, "steps": 2}
LARGE = {"height": 128, "width": 128, "steps": 10}


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Server:
    def __init__(self, db: Path, log: Path, *extra: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apps.cli",
                "serve",
                "--db",
                str(db),
                "--port",
                str(self.port),
                "--encoder",
                "gat",
                "--log-level",
                "info",
                *extra,
            ],
            cwd=ROOT,
            stdout=self._log,
            stderr=self._log,
        )
        t = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=1) as r:
                    if json.loads(r.read())["ready"]:
                        break
            except Exception:  # noqa: BLE001 - loading (503) or not bound yet
                pass
            if time.perf_counter() - t > 300:
                raise SystemExit("server not ready after 300 s")
            time.sleep(0.25)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()

    def logged(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


def loop_command(name: str, args: list[str], until: float, results: list[dict]) -> None:
    """Run ``pwb args`` back to back until ``until`` (monotonic); keep exit codes, seconds, a stderr tail."""
    while time.monotonic() < until:
        t = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "apps.cli", *args], cwd=ROOT, capture_output=True, text=True)
        results.append(
            {
                "command": name,
                "rc": p.returncode,
                "seconds": round(time.monotonic() - t, 2),
                "waited": "waiting for the workspace" in p.stderr,
                "error": p.stderr.strip().splitlines()[-1] if p.returncode else None,
            }
        )


async def api_mix(base: str, token: str, items: list[str], seconds: float, clients: int, seed: int) -> dict:
    import aiohttp

    rng = random.Random(seed)
    codes: dict[str, int] = {}
    no_retry_after = {"n": 0}
    acked: list[str] = []
    n = {"i": 0}
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:

        async def one():
            while time.monotonic() < deadline:
                n["i"] += 1
                r = rng.random()
                if r < 0.6:
                    uid = f"mix-{seed}-{n['i']}"
                    req = s.post(
                        base + "/v1/personas",
                        json={"user_id": uid, "interactions": [{"item_id": i} for i in rng.sample(items, 3)]},
                    )
                elif r < 0.75 and acked:
                    uid, req = None, s.get(base + f"/v1/personas/{rng.choice(acked)}")
                elif r < 0.9:
                    uid, req = None, s.get(base + "/v1/runs")
                else:
                    uid, req = (
                        None,
                        s.post(
                            base + "/v1/generate",
                            json={
                                "conditions": [{"user_id": "mix", "prompt": "a red bicycle", "seed": n["i"]}],
                                **SMALL,
                            },
                        ),
                    )
                async with req as resp:
                    body = await resp.read()
                    key = f"{req_name(resp)} {resp.status}"
                    codes[key] = codes.get(key, 0) + 1
                    if resp.status == 503 and "retry-after" not in resp.headers:
                        no_retry_after["n"] += 1
                    if uid and resp.status == 201 and json.loads(body).get("stored"):
                        acked.append(uid)
                await asyncio.sleep(0.02)

        await asyncio.gather(*(one() for _ in range(clients)))
    return {"codes": dict(sorted(codes.items())), "acknowledged": acked, "503_without_retry_after": no_retry_after["n"]}


def req_name(resp) -> str:
    path = resp.url.path
    if path.startswith("/v1/personas/"):
        path = "/v1/personas/{id}"
    return f"{resp.method} {path}"


def stored_personas(db: Path, users: list[str]) -> int:
    from workbench.store.workspace import Workspace

    with Workspace(db, wait_s=120) as ws:  # read-write: applies anything still in the journal
        return ws.scalar(
            "SELECT count(DISTINCT user_id) FROM personas WHERE encoder = 'gat-coldstart' "
            "AND list_contains(?, user_id)",
            [users],
        )


def phase_shared(db: Path, tmp: Path, token: str, items: list[str], seconds: float) -> dict:
    server = Server(db, tmp / "server-shared.log")
    until = time.monotonic() + seconds
    bench: list[dict] = []
    mine: list[dict] = []
    threads = [
        threading.Thread(
            target=loop_command,
            args=(
                "pwb bench run synthetic_recovery",
                ["bench", "run", "synthetic_recovery", "--db", str(db), "--json"],
                until,
                bench,
            ),
        ),
        threading.Thread(
            target=loop_command,
            args=(
                "pwb personas mine --force",
                ["personas", "mine", "--encoder", "tfidf", "--force", "--db", str(db)],
                until,
                mine,
            ),
        ),
    ]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    mix = asyncio.run(api_mix(server.base, token, items, seconds, clients=4, seed=1))
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    server.stop()
    logged = [
        x for x in server.logged() if x.get("event") == "request" and x.get("path") != "/readyz"
    ]  # not start-up polls
    acked = mix.pop("acknowledged")
    stored = stored_personas(db, acked)
    total = sum(mix["codes"].values())
    server_errors = sum(
        v
        for k, v in mix["codes"].items()
        if k.endswith(" 500") or k.split()[-1].startswith("5") and not k.endswith(" 503")
    )
    return {
        "seconds": round(wall, 1),
        "api_requests": total,
        "api_codes": mix["codes"],
        "api_500s": server_errors,
        "api_503s": sum(v for k, v in mix["codes"].items() if k.endswith(" 503")),
        "api_503_without_retry_after": mix["503_without_retry_after"],
        "logged_requests": len(logged),
        "logged_500s": sum(1 for x in logged if x["status"] >= 500 and x["status"] != 503),
        "logged_503": sum(1 for x in logged if x["status"] == 503),
        "acknowledged_personas": len(acked),
        "stored_personas": stored,
        "lost_personas": len(acked) - stored,
        "bench_runs": len(bench),
        "bench_failed": sum(1 for r in bench if r["rc"]),
        "cli_writes": len(mine),
        "cli_failed": sum(1 for r in mine if r["rc"]),
        "cli_waited": sum(1 for r in mine if r["waited"]),
        "cli_max_seconds": max((r["seconds"] for r in mine), default=None),
        "failures": [r for r in bench + mine if r["rc"]][:5],
    }


async def burst(base: str, token: str, n: int, seconds: float, clients: int) -> dict:
    import aiohttp

    accepted: list[tuple[str, str]] = []
    codes: dict[int, int] = {}
    bad_refusals = 0
    lat: list[float] = []
    q: asyncio.Queue = asyncio.Queue()
    for i in range(n):
        q.put_nowait(i)
    t0 = time.monotonic()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:

        async def one():
            nonlocal bad_refusals
            while not q.empty():
                i = q.get_nowait()
                await asyncio.sleep(max(0.0, t0 + i * seconds / n - time.monotonic()))  # paced
                large = i % 10 == 9
                body = (
                    {
                        "conditions": [
                            {"user_id": f"b{i}-{k}", "prompt": "a lighthouse at dusk", "seed": k} for k in range(16)
                        ],
                        **LARGE,
                    }
                    if large
                    else {"conditions": [{"user_id": f"b{i}", "prompt": "a red bicycle", "seed": i}], **SMALL}
                )
                t = time.monotonic()
                async with s.post(base + "/v1/generate", json=body) as r:
                    out = await r.json()
                    lat.append(time.monotonic() - t)
                    codes[r.status] = codes.get(r.status, 0) + 1
                    if r.status == 202:
                        accepted.append((out["job_id"], "large" if large else "small"))
                    elif r.status not in (429, 503) or "retry-after" not in r.headers:
                        bad_refusals += 1

        await asyncio.gather(*(one() for _ in range(clients)))
    return {
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "accepted": accepted,
        "refusals_not_429_503_with_retry_after": bad_refusals,
        "submit_seconds": round(time.monotonic() - t0, 2),
        "submit_p99_ms": round(float(np.percentile(np.array(lat) * 1000, 99)), 1),
    }


def job(base: str, token: str, job_id: str) -> dict:
    req = urllib.request.Request(base + f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wait_jobs(base: str, token: str, ids: list[str], timeout: float) -> dict[str, dict]:
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(ids) and time.monotonic() < deadline:
        for j in ids:
            if j not in done:
                out = job(base, token, j)
                if out["status"] in ("completed", "failed"):
                    done[j] = out
        time.sleep(0.5)
    return done


def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


def phase_queue(db: Path, tmp: Path, token: str, n: int, seconds: float) -> dict:
    server = Server(db, tmp / "server-queue.log", "--max-queue", "64")
    try:
        # baseline: the small job alone, queue empty (same server, same run)
        base_waits = []
        for i in range(5):
            req = urllib.request.Request(
                server.base + "/v1/generate",
                method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                data=json.dumps(
                    {"conditions": [{"user_id": "solo", "prompt": "a red bicycle", "seed": i}], **SMALL}
                ).encode(),
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                jid = json.loads(r.read())["job_id"]
            out = wait_jobs(server.base, token, [jid], 60)[jid]
            base_waits.append(out["started_at"] - out["created_at"])
        rss = {"before_mb": rss_mb(server.proc.pid), "peak_mb": 0.0}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                rss["peak_mb"] = max(rss["peak_mb"], rss_mb(server.proc.pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        b = asyncio.run(burst(server.base, token, n, seconds, clients=8))
        ids = [j for j, _ in b["accepted"]]
        done = wait_jobs(server.base, token, ids, timeout=600)
        stop.set()
        sampler.join()
        rss["after_mb"] = rss_mb(server.proc.pid)
        kinds = dict(b.pop("accepted"))
        waits = {"small": [], "large": []}
        finish = {"small": [], "large": []}
        for j, out in done.items():
            if out.get("started_at"):
                waits[kinds[j]].append(out["started_at"] - out["created_at"])
            if out.get("finished_at"):
                finish[kinds[j]].append(out["finished_at"] - out["created_at"])
        failed = sum(1 for out in done.values() if out["status"] == "failed")
    finally:
        server.stop()
    return {
        "requests": n,
        "seconds": seconds,
        "clients": 8,
        **b,
        "accepted": len(ids),
        "finished": len(done),
        "failed_jobs": failed,
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "baseline_small_wait_s": {"p50": pct(base_waits, 50), "max": round(max(base_waits), 3)},
        "small_wait_s": {"n": len(waits["small"]), "p50": pct(waits["small"], 50), "p99": pct(waits["small"], 99)},
        "large_wait_s": {"n": len(waits["large"]), "p50": pct(waits["large"], 50), "p99": pct(waits["large"], 99)},
        "small_done_s": {"p50": pct(finish["small"], 50), "p99": pct(finish["small"], 99)},
        "large_done_s": {"p50": pct(finish["large"], 50), "p99": pct(finish["large"], 99)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared-seconds", type=float, default=120.0)
    ap.add_argument("--burst", type=int, default=500)
    ap.add_argument("--burst-seconds", type=float, default=10.0)
    ap.add_argument("--skip-shared", action="store_true")
    ap.add_argument("--skip-queue", action="store_true")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pwb-faults-"))
    db = synthetic_workspace(tmp, "gat")
    token = json.loads(pwb("keys", "create", "faults", "--rate", "100000000", "--db", str(db), "--json"))["token"]
    from duckdb import connect

    con = connect(str(db), read_only=True)
    items = [r[0] for r in con.execute("SELECT item_id FROM items ORDER BY item_id").fetchall()]
    con.close()
    out: dict = {}
    if not args.skip_shared:
        s = out["shared"] = phase_shared(db, tmp, token, items, args.shared_seconds)
        print(
            f"shared workspace, {s['seconds']} s: {s['api_requests']} API requests, 500s {s['api_500s']}, "
            f"503s {s['api_503s']} (without Retry-After {s['api_503_without_retry_after']}; logged 503 "
            f"{s['logged_503']}, logged 500s {s['logged_500s']}); personas acknowledged {s['acknowledged_personas']}, "
            f"stored {s['stored_personas']}, lost {s['lost_personas']}; bench runs {s['bench_runs']} "
            f"(failed {s['bench_failed']}); CLI writes {s['cli_writes']} (failed {s['cli_failed']}, waited "
            f"{s['cli_waited']}, longest {s['cli_max_seconds']} s)"
        )
        print(f"  codes: {s['api_codes']}")
    if not args.skip_queue:
        q = out["queue"] = phase_queue(db, tmp, token, args.burst, args.burst_seconds)
        ratio = (
            q["small_wait_s"]["p99"] / q["baseline_small_wait_s"]["p50"]
            if q["small_wait_s"]["p99"] and q["baseline_small_wait_s"]["p50"]
            else None
        )
        q["small_p99_vs_empty_queue"] = round(ratio, 1) if ratio else None
        print(
            f"queue burst: {q['requests']} POST /v1/generate in {q['submit_seconds']} s from 8 clients: codes "
            f"{q['codes']}, bad refusals {q['refusals_not_429_503_with_retry_after']}; accepted {q['accepted']}, "
            f"finished {q['finished']} (failed {q['failed_jobs']}); server RSS {q['rss_mb']} MB"
        )
        print(
            f"  queue wait, small jobs: p50 {q['small_wait_s']['p50']} s, p99 {q['small_wait_s']['p99']} s "
            f"(empty queue p50 {q['baseline_small_wait_s']['p50']} s); large jobs: p50 {q['large_wait_s']['p50']} s, "
            f"p99 {q['large_wait_s']['p99']} s"
        )
        print(
            f"  submit to finished: small p50 {q['small_done_s']['p50']} s, p99 {q['small_done_s']['p99']} s; "
            f"large (16 conditions) p50 {q['large_done_s']['p50']} s, p99 {q['large_done_s']['p99']} s"
        )
    write_result(
        args.out,
        "api_faults",
        [],
        **out,
        note="2-core machine; the clients, bench runs and CLI writers share the cores with the server",
    )


if __name__ == "__main__":
    main()
