"""Persona mining at scale, from a Parquet interaction log to cards in the workspace, every stage timed.

For each size (``--sizes USERSxPER_USER``, default ``1000000x50`` and ``10000000x20``):

* **log**: a planted-persona community written as Parquet (not timed as a stage): ``log.parquet`` (user_id,
  item_id, rating 1-5, timestamp), ``items.parquet`` (item_id, title, ``|``-separated tags) and
  ``users.parquet`` (user_id, group); ``--items`` items with 1-3 of 20 tags, users drawn from 8 personas that
  prefer 3 tags each, popular items more often (Pareto), ratings higher on matching items.

Then each stage runs in a fresh process of its own, as a user runs them (``pwb data import``, ``pwb data
split``, ``pwb personas mine``), with that process's peak memory:

* **import**: ``load_table`` (DuckDB staging) and ``write_dataset`` into a fresh workspace.
* **split**: ``make_split`` with ``--heldout`` / ``--coldstart`` of the users evaluated (the rest train users).
* **read split**, **graph**, **train** (``--steps`` steps of 1,024 liked edges, the budget), **item states**,
  **cards** (every user's embedding, attention, evidence, traits and template summary, in batches on
  ``--executor``), **store** (the Parquet parts into the workspace): ``pwb personas mine``'s own timings
  (:class:`persona.mining._GraphJob`).
* **peak RSS**: the largest of the three processes' (the mining process's after each of its stages too).

Beside it, in the same run: the record-based import (``engine="records"``) of the first ``--baseline-rows``
rows of the log as the baseline; a 2-worker local Ray cluster against the local executor on ``--ray-users``
users (same checkpoint: the cards must be identical; the time ratio is reported); and on that graph,
data-parallel training on 2 processes against one process (``--train-compare-steps`` steps each: seconds a
step and liked edges a second).

Usage::

    python benchmarks/persona_scale.py                              # 1M x 50 and 10M x 20 (long)
    python benchmarks/persona_scale.py --sizes 20000x50 --ray-users 5000 --baseline-rows 200000   # a smoke run

Prints a table and writes ``benchmarks/results/persona_scale.json``. A size that fails (out of memory, say) is
reported with the stage it reached and the error.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_TAGS = 20
N_PERSONAS = 8


def write_log(folder: Path, n_users: int, per_user: int, n_items: int, seed: int = 0) -> dict:
    """The planted-persona community as three Parquet files in ``folder`` (see the module docstring), written in
    chunks of users so memory stays bounded; returns their row counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    item_tags = np.zeros((n_items, N_TAGS), dtype=bool)
    for k in range(3):
        pick = rng.integers(0, N_TAGS, n_items)
        keep = rng.random(n_items) < (1.0 if k == 0 else 0.4)
        item_tags[np.arange(n_items)[keep], pick[keep]] = True
    tags = [f"tag{t:02d}" for t in range(N_TAGS)]
    pq.write_table(
        pa.table(
            {
                "item_id": [f"i{i}" for i in range(n_items)],
                "title": [f"item {i}" for i in range(n_items)],
                "tags": ["|".join(tags[t] for t in np.flatnonzero(item_tags[i])) for i in range(n_items)],
            }
        ),
        folder / "items.parquet",
    )
    persona_tags = np.stack([rng.permutation(N_TAGS)[:3] for _ in range(N_PERSONAS)])
    match = np.stack([item_tags[:, persona_tags[p]].sum(1) for p in range(N_PERSONAS)])  # (personas, items)
    pop = rng.random(n_items).clip(1e-6) ** (-1 / 1.2)
    cdf = [np.cumsum(w) / np.sum(w) for w in (pop * (1 + 4 * match[p]) for p in range(N_PERSONAS))]
    writer, rows, chunk = None, 0, 100_000
    users_writer = None
    for start in range(0, n_users, chunk):
        n = min(chunk, n_users - start)
        persona = rng.integers(0, N_PERSONAS, n)
        group = rng.integers(0, 2, n)
        deg = np.clip(rng.poisson(per_user, n), 5, 4 * per_user)
        user = np.repeat(np.arange(start, start + n), deg)
        who = np.repeat(persona, deg)
        item = np.empty(user.size, dtype=np.int64)
        for p in range(N_PERSONAS):
            m = who == p
            item[m] = np.searchsorted(cdf[p], rng.random(int(m.sum())))
        key = np.unique(user * n_items + np.minimum(item, n_items - 1))  # one interaction per user and item
        user, item = key // n_items, key % n_items
        mt = match[np.repeat(persona, np.bincount(user - start, minlength=n))[: user.size], item]
        rating = np.clip(np.round(2.5 + mt + rng.normal(size=user.size)), 1, 5)
        stamp = 1_600_000_000 + rng.integers(0, 10**8, user.size)
        table = pa.table(
            {
                "user_id": pa.array([f"u{u}" for u in user]),
                "item_id": pa.array([f"i{i}" for i in item]),
                "rating": rating.astype(np.float64),
                "timestamp": stamp.astype(np.int64),
            }
        )
        writer = writer or pq.ParquetWriter(folder / "log.parquet", table.schema)
        writer.write_table(table)
        users = pa.table({"user_id": [f"u{u}" for u in range(start, start + n)], "group": [f"g{g}" for g in group]})
        users_writer = users_writer or pq.ParquetWriter(folder / "users.parquet", users.schema)
        users_writer.write_table(users)
        rows += user.size
    writer.close()
    users_writer.close()
    return {"users": n_users, "items": n_items, "interactions": rows}


def mapping():
    from persona.data.table import ColumnMapping

    return ColumnMapping(
        value="rating", timestamp="timestamp", item_title="title", item_tags="tags", user_attributes=["group"]
    )


def import_log(ws, folder: Path) -> dict:
    """The log with its users' and items' files into ``ws`` as dataset ``log``; returns its summary."""
    from persona.data.table import load_table
    from workbench.store.datasets import write_dataset

    bundle = load_table(
        folder / "log.parquet",
        mapping(),
        users=folder / "users.parquet",
        items=folder / "items.parquet",
        name="log",
        like_threshold=4,
        dislike_threshold=2,
    )
    return write_dataset(ws, bundle)


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_stage(stage: str, folder: Path, args) -> dict:
    """One stage of one size in this (child) process, as a user runs it (one command each: ``pwb data import``,
    ``pwb data split``, ``pwb personas mine``), with its seconds and this process's peak memory."""
    import torch

    from persona.data.splits import SplitParams, make_split
    from persona.mining import mine_personas
    from workbench.store.workspace import Workspace

    torch.set_num_threads(os.cpu_count() or 1)
    db = folder / "w.duckdb"
    t = time.perf_counter()
    if stage == "import":
        for f in (db, Path(f"{db}.wal")):
            f.unlink(missing_ok=True)  # a fresh workspace (the log is kept with --keep)
        shutil.rmtree(folder / "models", ignore_errors=True)
        with Workspace(db) as ws:
            summary = import_log(ws, folder)
        return {"import_s": time.perf_counter() - t, "import_peak_gib": _peak_gib()} | {
            k: summary[k] for k in ("users", "items", "interactions")
        }
    if stage == "split":
        params = SplitParams(seed=0, heldout_frac=args.heldout, coldstart_frac=args.coldstart, negatives_per_like=3)
        with Workspace(db) as ws:
            split = make_split(ws, "log", params)
        return {
            "split_s": time.perf_counter() - t,
            "split_peak_gib": _peak_gib(),
            "heldout": split["heldout"],
            "coldstart": split["coldstart"],
        }
    with Workspace(db) as ws:
        n_users = ws.scalar("SELECT n_users FROM datasets WHERE dataset_id = 'log'")
        mined = mine_personas(
            ws,
            "log/s0",
            "gat",
            encoder_kwargs={
                "max_steps": args.steps,
                "token_budget": args.token_budget,
                "item_fanout": args.item_fanout,
                **({"train_users": args.train_users} if args.train_users and args.train_users < n_users else {}),
            },
            executor=args.executor,
            workers=args.workers,
            batch_size=args.batch_size,
        )
        example = ws.scalar("SELECT summary FROM personas LIMIT 1")
    return {
        "mine_s": time.perf_counter() - t,
        "mined": mined["mined"],
        **{f"{k.replace(' ', '_')}_s": v for k, v in mined["seconds"].items()},
        "mine_peak_gib_after": mined["peak_gib"],
        "mine_peak_gib": _peak_gib(),
        "training": mined.get("training"),
        "example_persona": example,
    }


def run_size(folder: Path, args, passthrough: list[str]) -> dict:
    """Every stage of one size, each in a fresh process; a failed stage is reported with what ran before it."""
    out: dict = {}
    for stage in ("import", "split", "mine"):
        print(f"[persona_scale]   {stage} ...", file=sys.stderr, flush=True)
        got = spawn(stage, folder, args, passthrough)
        if "error" in got:
            return {**out, "failed_stage": stage, **got}
        out.update(got)
    out["total_s"] = out["import_s"] + out["split_s"] + out["mine_s"]
    out["peak_rss_gib"] = max(out["import_peak_gib"], out["split_peak_gib"], out["mine_peak_gib"])
    return out


def run_baseline(folder: Path, rows: int) -> dict:
    """The record-based import (a Python object per row) of the log's first ``rows`` rows, and the staged one of
    the same rows, each in this (child) process in turn (records first)."""
    import duckdb

    from persona.data.table import load_table
    from workbench.store.datasets import write_dataset
    from workbench.store.workspace import Workspace

    head = folder / f"head-{rows}.parquet"
    duckdb.sql(
        f"COPY (SELECT * FROM read_parquet('{folder / 'log.parquet'}') LIMIT {rows}) TO '{head}' (FORMAT parquet)"
    )
    out = {"rows": rows}
    from persona.data.table import ColumnMapping

    log_only = ColumnMapping(value="rating", timestamp="timestamp")  # the log's own columns
    for engine in ("records", "auto"):
        db = folder / f"baseline-{engine}.duckdb"
        for f in (db, Path(f"{db}.wal")):
            f.unlink(missing_ok=True)
        t = time.perf_counter()
        with Workspace(db) as ws:
            write_dataset(ws, load_table(head, log_only, name="head", engine=engine))
        out[f"{engine}_s"] = time.perf_counter() - t
        if engine == "records":
            out["records_peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out["speedup"] = out["records_s"] / out["auto_s"]
    return out


def run_ray(folder: Path, args) -> dict:
    """Local against a 2-worker Ray cluster on the same workspace and checkpoint: seconds and identical cards."""
    from persona.data.splits import SplitParams, make_split
    from persona.mining import mine_personas
    from workbench.store.workspace import Workspace

    out: dict = {}
    with Workspace(folder / "w.duckdb") as ws:
        import_log(ws, folder)
        split = make_split(ws, "log", SplitParams(seed=0, heldout_frac=0.01, coldstart_frac=0.005))["split"]
        kw = {"max_steps": args.steps, "token_budget": args.token_budget, "item_fanout": args.item_fanout}
        first = mine_personas(ws, split, "gat", encoder_kwargs=kw, batch_size=args.batch_size)  # trains, keeps it
        cards = {}
        for executor in ("local", "ray"):
            t = time.perf_counter()
            got = mine_personas(
                ws,
                split,
                "gat",
                encoder_kwargs={**kw, "checkpoint": first["checkpoint"]},
                force=True,
                executor=executor,
                workers=2 if executor == "ray" else None,
                batch_size=args.batch_size,
            )
            out[f"{executor}_s"] = time.perf_counter() - t
            out[f"{executor}_cards_s"] = got["seconds"]["cards"]
            cards[executor] = ws.query(
                "SELECT p.user_id, p.summary, CAST(p.traits AS VARCHAR), p.embedding, list(e.item_id ORDER BY e.rank), "
                "list(e.weight ORDER BY e.rank) FROM personas p LEFT JOIN persona_evidence e USING (split_id, encoder, user_id) "
                "GROUP BY ALL ORDER BY p.user_id"
            )
        out["users"] = len(cards["local"])
        out["identical_cards"] = cards["local"] == cards["ray"]
        out["ray_over_local"] = out["ray_s"] / out["local_s"]
        # data-parallel training on the same graph: one process (all threads) against two (a thread each)
        from persona.graph import build_graph_frame
        from persona.models.gat import train_gat
        from workbench.store.datasets import dataset_meta, load_items
        from workbench.store.frames import attribute_values, visible_frame, visible_user_attributes

        frame = visible_frame(ws, split)
        meta = dataset_meta(ws, "log")
        keys = meta.get("demographics", [])
        graph = build_graph_frame(
            frame,
            load_items(ws, "log"),
            meta,
            visible_user_attributes(ws, frame.dataset_id, frame.user_ids, keys),
            attribute_values(ws, "log", keys),
        )
        for workers in (1, 2):
            _, report = train_gat(graph, max_steps=args.train_compare_steps, workers=workers, seed=0)
            out[f"train_{workers}_workers_s_per_step"] = report.seconds / report.steps
            out[f"train_{workers}_workers_targets_per_s"] = 1024 * workers * report.steps / report.seconds
        out["train_2_over_1_targets_per_s"] = (
            out["train_2_workers_targets_per_s"] / out["train_1_workers_targets_per_s"]
        )
    return out


def child(kind: str, args) -> None:
    folder = Path(args.folder)
    if kind == "baseline":
        result = run_baseline(folder, args.baseline_rows)
    elif kind == "ray":
        result = run_ray(folder, args)
    else:
        result = run_stage(kind, folder, args)
    print(json.dumps(result))


def spawn(kind: str, folder: Path, args, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--folder", str(folder), *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        return {
            "error": tail,
            "exit_code": proc.returncode,
            "seconds": time.perf_counter() - t,
            "stderr": proc.stderr[-3000:],
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000x50,10000000x20", help="USERSxPER_USER, comma-separated.")
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=300, help="Training budget in steps of 1,024 liked edges.")
    ap.add_argument("--heldout", type=float, default=0.002, help="Share of users held out by the split.")
    ap.add_argument("--coldstart", type=float, default=0.001, help="Share of cold-start users.")
    ap.add_argument("--token-budget", type=int, default=256, help="Evidence tokens a card holds.")
    ap.add_argument("--item-fanout", type=int, default=64, help="Users an item's layer reads at inference.")
    ap.add_argument(
        "--train-users", type=int, default=1_000_000, help="Train on this many users' edges when there are more."
    )
    ap.add_argument("--executor", default="process", choices=["local", "process", "ray"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--baseline-rows", type=int, default=1_000_000, help="Rows of the record-based import (0: none).")
    ap.add_argument("--ray-users", type=int, default=100_000, help="Users of the Ray-vs-local run (0: none).")
    ap.add_argument(
        "--train-compare-steps", type=int, default=60, help="Steps of the 1-vs-2-worker training comparison."
    )
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true", help="Keep the logs and workspaces.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "persona_scale.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args)
        return 0
    work = Path(args.workdir or tempfile.mkdtemp(prefix="pwb-scale-"))
    passthrough = [
        f"--steps={args.steps}",
        f"--heldout={args.heldout}",
        f"--coldstart={args.coldstart}",
        f"--token-budget={args.token_budget}",
        f"--executor={args.executor}",
        f"--workers={args.workers}",
        f"--batch-size={args.batch_size}",
        f"--item-fanout={args.item_fanout}",
        f"--train-users={args.train_users}",
    ]
    rows, extra = [], {}
    for size in args.sizes.split(","):
        n_users, per_user = (int(x) for x in size.lower().split("x"))
        folder = work / f"{n_users}x{per_user}"
        folder.mkdir(parents=True, exist_ok=True)
        print(f"[persona_scale] {n_users} users x {per_user}: writing the log ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        counts = write_log(folder, n_users, per_user, args.items, args.seed)
        print(
            f"[persona_scale]   {counts['interactions']} interactions in {time.perf_counter() - t:.0f} s; mining ...",
            file=sys.stderr,
            flush=True,
        )
        row = {"size": size, "log_interactions": counts["interactions"], **run_size(folder, args, passthrough)}
        rows.append(row)
        if args.baseline_rows and "baseline" not in extra:
            extra["baseline"] = spawn("baseline", folder, args, [f"--baseline-rows={args.baseline_rows}"])
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if args.ray_users:
        folder = work / f"ray-{args.ray_users}"
        folder.mkdir(parents=True, exist_ok=True)
        write_log(folder, args.ray_users, 50, args.items, args.seed)
        extra["ray_vs_local"] = spawn(
            "ray", folder, args, [*passthrough, f"--train-compare-steps={args.train_compare_steps}"]
        )
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    columns = [
        ("size", "size"),
        ("interactions", "interactions"),
        ("import_s", "import"),
        ("split_s", "split"),
        ("read_split_s", "read split"),
        ("graph_s", "graph"),
        ("train_s", "train"),
        ("item_states_s", "items"),
        ("cards_s", "cards"),
        ("store_s", "store"),
        ("total_s", "total s"),
        ("peak_rss_gib", "peak GiB"),
    ]
    print(" | ".join(h for _, h in columns))
    for r in rows:
        if "error" in r:
            print(f"{r['size']} | error: {r['error']}")
            continue
        print(" | ".join(f"{r.get(k):.1f}" if isinstance(r.get(k), float) else str(r.get(k)) for k, _ in columns))
    for name, value in extra.items():
        print(
            f"{name}: {json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in value.items() if k != 'stderr'})}"
        )
    from _results import write_result

    write_result(
        args.out,
        "persona_scale",
        rows,
        **extra,
        params={
            k: getattr(args, k)
            for k in (
                "items",
                "steps",
                "heldout",
                "coldstart",
                "token_budget",
                "item_fanout",
                "train_users",
                "executor",
                "workers",
                "batch_size",
                "seed",
            )
        },
        model="PersonaGAT hidden=64 heads=2, batch 1024 liked edges",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
