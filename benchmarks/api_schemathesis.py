"""Schemathesis against a live `pwb serve`, every check on: the spec must say what the server enforces.

    python benchmarks/api_schemathesis.py                  # synthetic workspace with a trained GAT (~1 min)
    python benchmarks/api_schemathesis.py --max-examples 200

Starts the server on loopback (``--max-side 64 --max-steps 2`` so the fuzzer's valid generation jobs are
drawn for real in seconds; ``--max-queue 100000`` so a fuzzer's burst is not refused), creates a key, and
runs ``st run <spec> --checks all`` with it and the repository's ``schemathesis.toml`` (which counts 413,
the body-size refusal, as a rejection of invalid data). Prints Schemathesis' summary; writes the counts it reports
(cases, failures by kind) and the exit code to ``benchmarks/results/api_schemathesis.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402
from api_faults import Server  # noqa: E402
from api_load import ROOT, pwb, synthetic_workspace  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "api_schemathesis.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-examples", type=int, default=100, help="Cases per operation and phase.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pwb-st-"))
    db = synthetic_workspace(tmp, "gat")
    token = json.loads(pwb("keys", "create", "st", "--rate", "100000000", "--db", str(db), "--json"))["token"]
    server = Server(db, tmp / "server.log", "--max-side", "64", "--max-steps", "2", "--max-queue", "100000")
    st = Path(sys.executable).parent / "st"
    t = time.perf_counter()
    try:
        p = subprocess.run(
            [
                str(st),
                "--config-file",
                str(ROOT / "schemathesis.toml"),
                "run",
                server.base + "/openapi.json",
                "--checks",
                "all",
                "-H",
                f"Authorization: Bearer {token}",
                "--max-examples",
                str(args.max_examples),
                "--seed",
                str(args.seed),
                "--workers",
                "1",
            ],
            capture_output=True,
            text=True,
        )
    finally:
        server.stop()
    seconds = time.perf_counter() - t
    out = p.stdout + p.stderr
    summary = out[out.rfind("SUMMARY") :] if "SUMMARY" in out else out[-4000:]
    details = out[out.find("FAILURES") : out.rfind("SUMMARY")] if "FAILURES" in out else ""
    print((details + summary).strip())
    cases = re.search(r"Test cases:\s*\n?\s*(\d+) generated", out)
    failures = dict(re.findall(r"❌\s+([^:\n]+?):\s+(\d+)", summary))
    logged = [x for x in server.logged() if x.get("event") == "request"]
    write_result(
        args.out,
        "api_schemathesis",
        [],
        exit_code=p.returncode,
        seconds=round(seconds, 1),
        cases=int(cases.group(1)) if cases else None,
        failures=failures,
        server_500s_logged=sum(1 for x in logged if x["status"] >= 500 and x["status"] != 503),
        command=f"st --config-file schemathesis.toml run <spec> --checks all --max-examples {args.max_examples} "
        f"--seed {args.seed}",
        summary=summary.strip()[-3000:],
        failure_details=details.strip()[-6000:],
    )
    sys.exit(p.returncode)


if __name__ == "__main__":
    main()
