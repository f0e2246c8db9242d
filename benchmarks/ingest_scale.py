"""Ingest speed and memory: ``pwb data import table`` (read, checked and shaped by DuckDB in a staging database,
then copied into the workspace in bulk) against the importer it replaced and against DuckDB's own ``read_csv`` of
the same file (the floor), all in one run; then a large Parquet log through the same command.

The importer it replaced is run as it was shipped: ``pwb data import table`` of the code at ``--before`` (a git
ref, checked out in a temporary worktree; default ``49faea0``, the last commit before the DuckDB ingest), which
built a Python object per row and kept an index on the interactions. The record reader of today's code
(``engine="records"``, the fallback that words errors; no index any more) is measured beside it.

A ratings log of ``--rows`` rows (``user_id,item_id,rating,timestamp``; about 50 rows a user, 5,000 items,
seeded) is written once as CSV; a Parquet log of ``--parquet-rows`` rows (50 a user, 20,000 items, seeded, made by
DuckDB) likewise. Each way of loading runs in its own process, so peak memory is that process's high-water mark
(``ru_maxrss``), not this script's; seconds are the whole load (the command's imports included for ``pwb``).

Usage::

    python benchmarks/ingest_scale.py                                   # 1M-row CSV, 50M-row Parquet
    python benchmarks/ingest_scale.py --rows 100000 --parquet-rows 0    # a smoke run

Prints a table and writes ``benchmarks/results/ingest_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Run in a child process: the seconds and peak RSS of one way of loading the file, as JSON on stdout.
_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
how, log, db = sys.argv[2], sys.argv[3], sys.argv[4]
import apps
assert apps.__file__.startswith(sys.argv[1]), f"imported {apps.__file__}, not the code under {sys.argv[1]}"
t = time.perf_counter()
if how == "duckdb":
    import duckdb
    con = duckdb.connect(db)
    con.execute("CREATE TABLE interactions AS SELECT * FROM read_csv(?, header = true)", [log])
    n = con.execute("SELECT count(*) FROM interactions").fetchone()[0]
    con.close()
elif how == "records":
    from persona.data.table import ColumnMapping, load_table
    from workbench.store.datasets import write_dataset
    from workbench.store.workspace import Workspace
    with Workspace(db) as ws:
        n = write_dataset(ws, load_table(log, ColumnMapping(value="rating", timestamp="timestamp"), engine="records"))["interactions"]
else:
    from click.testing import CliRunner
    from apps.cli import cli
    res = CliRunner().invoke(cli, ["data", "import", "table", log, "--value-col", "rating",
                                   "--timestamp-col", "timestamp", "--db", db, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    n = json.loads(res.stdout)["interactions"]
seconds = time.perf_counter() - t
print(json.dumps({"rows": n, "seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_log(path: Path, rows: int, seed: int = 0) -> None:
    """A seeded ratings CSV: ``rows`` rows, about 50 a user, 5,000 items."""
    import numpy as np

    rng = np.random.default_rng(seed)
    users = rng.integers(0, max(1, rows // 50), rows)
    items = rng.zipf(1.3, rows) % 5000
    ratings = rng.integers(1, 6, rows)
    stamps = 1_600_000_000 + rng.integers(0, 10**8, rows)
    with open(path, "w") as f:
        f.write("user_id,item_id,rating,timestamp\n")
        for start in range(0, rows, 100_000):
            s = slice(start, start + 100_000)
            f.writelines(f"u{u},i{i},{r},{t}\n" for u, i, r, t in zip(users[s], items[s], ratings[s], stamps[s]))


def write_parquet_log(path: Path, rows: int, per_user: int = 50, items: int = 20_000, seed: int = 0) -> None:
    """A seeded Parquet ratings log made by DuckDB: ``rows`` rows, ``per_user`` a user, ``items`` items."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SELECT setseed({(seed % 1000) / 1000})")
    users = max(1, rows // per_user)
    con.execute(
        f"COPY (SELECT 'u' || (hash(i, {seed}) % {users}) AS user_id, 'i' || (hash(i, {seed + 1}) % {items}) AS item_id, "
        f"CAST(1 + hash(i, {seed + 2}) % 5 AS DOUBLE) AS rating, 1600000000 + hash(i, {seed + 3}) % 100000000 AS timestamp "
        f"FROM range({rows}) t(i)) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)"
    )
    con.close()


def run_child(how: str, log: Path, db: Path, code: Path = ROOT) -> dict:
    for f in (db, Path(f"{db}.wal")):
        f.unlink(missing_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(code), how, str(log), str(db)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"{how} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="Rows of the CSV log.")
    ap.add_argument("--parquet-rows", type=int, default=50_000_000, help="Rows of the Parquet log (0: none).")
    ap.add_argument("--workdir", default=None, help="Where the logs and workspaces go [default: a temp folder].")
    ap.add_argument("--before", default="49faea0", help="Git ref of the importer to compare against ('' for none).")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ingest_scale.json"))
    args = ap.parse_args(argv)

    from benchmarks._results import write_result

    work = Path(args.workdir or tempfile.mkdtemp(prefix="pwb-ingest-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    csv = work / f"ratings-{args.rows}.csv"
    t = time.perf_counter()
    if not csv.exists():
        write_log(csv, args.rows)
    print(f"log: {csv} ({csv.stat().st_size / 2**20:.0f} MiB, written in {time.perf_counter() - t:.1f} s)")
    runs = [("duckdb", csv, "duckdb read_csv (floor)", ROOT)]
    if args.before:
        before = work / f"before-{args.before}"
        if not before.exists():
            subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], cwd=ROOT, check=True)
        runs.append(("pwb", csv, f"pwb import at {args.before} (before)", before))
    runs += [("records", csv, "record reader (engine=records)", ROOT), ("pwb", csv, "pwb data import table", ROOT)]
    if args.parquet_rows:
        pq = work / f"ratings-{args.parquet_rows}.parquet"
        t = time.perf_counter()
        if not pq.exists():
            write_parquet_log(pq, args.parquet_rows)
        print(f"log: {pq} ({pq.stat().st_size / 2**20:.0f} MiB, written in {time.perf_counter() - t:.1f} s)")
        runs.append(("pwb", pq, "pwb data import table", ROOT))
    rows = []
    for how, log, label, code in runs:
        r = run_child(how, log, work / f"{how}.duckdb", code)
        rows.append(
            {
                "loader": label,
                "file": log.suffix.lstrip("."),
                "file_mib": round(log.stat().st_size / 2**20, 1),
                **{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()},
            }
        )
        (work / f"{how}.duckdb").unlink(missing_ok=True)
    if args.before:
        subprocess.run(["git", "worktree", "remove", "--force", str(work / f"before-{args.before}")], cwd=ROOT)
    floor = rows[0]["seconds"]
    base = rows[1]["seconds"] if args.before else None
    for r in rows:
        r["x_floor_time"] = round(r["seconds"] / floor, 2)
        if base and r["file"] == "csv" and r is not rows[1]:
            r["speedup_vs_before"] = round(base / r["seconds"], 1)
    print(f"{'loader':<34}{'file':>8}{'rows':>11}{'seconds':>10}{'x floor':>9}{'x faster':>10}{'peak MiB':>10}")
    for r in rows:
        faster = f"{r['speedup_vs_before']:.1f}" if "speedup_vs_before" in r else "-"
        print(
            f"{r['loader']:<34}{r['file']:>8}{r['rows']:>11}{r['seconds']:>10.2f}{r['x_floor_time']:>9.1f}"
            f"{faster:>10}{r['peak_rss_mib']:>10.0f}"
        )
    write_result(
        args.out,
        "ingest_scale",
        rows,
        log_rows=args.rows,
        parquet_rows=args.parquet_rows,
        cpus=os.cpu_count(),
        before=args.before or None,
        note="x faster: the importer at --before's seconds over this loader's, same CSV, same run",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
