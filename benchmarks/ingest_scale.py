"""Ingest speed and memory: ``pwb data import table`` on a ratings CSV against DuckDB's own ``read_csv`` of the
same file into a table (the floor a DuckDB-native importer can reach; issue 19's baseline).

A ratings log of ``--rows`` rows (``user_id,item_id,rating,timestamp``; about 50 rows a user, 5,000 items,
seeded) is written once, then each way of loading it runs in its own process, so peak memory is that
process's high-water mark (``ru_maxrss``), not this script's. The workbench import is the whole command
(read, validate, the dataset's rows into the workspace); the DuckDB row is ``CREATE TABLE AS SELECT *
FROM read_csv(...)`` into a fresh file.

Usage::

    python benchmarks/ingest_scale.py                  # 1,000,000 rows
    python benchmarks/ingest_scale.py --rows 100000    # a smoke run

Prints a table and writes ``benchmarks/results/ingest_scale.json``.
"""

from __future__ import annotations

import argparse
import json
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
how, csv, db = sys.argv[2], sys.argv[3], sys.argv[4]
t = time.perf_counter()
if how == "duckdb":
    import duckdb
    con = duckdb.connect(db)
    con.execute("CREATE TABLE interactions AS SELECT * FROM read_csv(?, header = true)", [csv])
    n = con.execute("SELECT count(*) FROM interactions").fetchone()[0]
    con.close()
else:
    from click.testing import CliRunner
    from apps.cli import cli
    res = CliRunner().invoke(cli, ["data", "import", "table", csv, "--value-col", "rating",
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


def run_child(how: str, csv: Path, db: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT), how, str(csv), str(db)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"{how} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workdir", default=None, help="Where the CSV and workspaces go [default: a temp folder].")
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
    rows = []
    for how, label in (("duckdb", "duckdb read_csv (baseline)"), ("pwb", "pwb data import table")):
        db = work / f"{how}.duckdb"
        db.unlink(missing_ok=True)
        r = run_child(how, csv, db)
        rows.append({"loader": label, **{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}})
    base = rows[0]["seconds"]
    for r in rows:
        r["x_baseline_time"] = round(r["seconds"] / base, 2)
    print(f"{'loader':<30}{'rows':>10}{'seconds':>10}{'x baseline':>12}{'peak MiB':>10}")
    for r in rows:
        print(
            f"{r['loader']:<30}{r['rows']:>10}{r['seconds']:>10.2f}{r['x_baseline_time']:>12.1f}{r['peak_rss_mib']:>10.0f}"
        )
    write_result(args.out, "ingest_scale", rows, log_rows=args.rows, log_mib=round(csv.stat().st_size / 2**20, 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
