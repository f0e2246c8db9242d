"""``pwb personalize`` throughput: 1,000 users x 1 prompt (template rewriter, patch generator, 128 px), images per
second and the share of time per stage (personas, rewrite, draw, save and sign, records, write).

A synthetic workspace of ``--users`` users is built first (import, split, tf-idf personas; not timed), then
:func:`evalbench.flows.personalize.personalize` runs for every user; ``save_and_sign`` is the PNG encoding, C2PA
signing and file write of each image (128 px images are signed but too small for the watermark;
``benchmarks/provenance_robustness.py`` times marking per image at 256 px against generation).

Usage::

    python benchmarks/personalize_throughput.py                       # 1,000 users, 128 px
    python benchmarks/personalize_throughput.py --users 100 --size 64 # a smoke run

Prints a table and writes ``benchmarks/results/personalize_throughput.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pwb(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "apps.cli", *args], check=True, cwd=ROOT, capture_output=True, text=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (fixed for comparable figures)")
    ap.add_argument("--workdir", default=None, help="Where the workspace and output go [default: a temp folder].")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "personalize_throughput.json"))
    args = ap.parse_args(argv)

    import torch

    from benchmarks._results import write_result
    from evalbench.flows.personalize import PersonalizeConfig, personalize
    from workbench.store.splits import split_users
    from workbench.store.workspace import Workspace

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="pwb-personalize-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "bench.duckdb"
    # 1. The workspace (not timed): synthetic users, a split, tf-idf personas for every user
    t = time.perf_counter()
    if not db.exists():
        _pwb(
            "data", "import", "synthetic", "--users", str(args.users), "--items", "400", "--seed", "0", "--db", str(db)
        )
        _pwb("data", "split", "--seed", "0", "--db", str(db))
        _pwb("personas", "mine", "--db", str(db))
    prompts = work / "one.txt"
    prompts.write_text("a lighthouse at dusk\n")
    setup_s = time.perf_counter() - t
    # 2. The run: every user x 1 prompt
    with Workspace(db) as ws:
        users = split_users(ws, ws.scalar("SELECT split_id FROM splits LIMIT 1"), ("train", "heldout", "coldstart"))
        cfg = PersonalizeConfig(
            prompts=str(prompts), out=str(work / "out"), users=users, encoder="tfidf", size=args.size, images=1
        )
        t0 = time.perf_counter()
        run = personalize(ws, cfg, progress=True)
        total = time.perf_counter() - t0
    stages = dict(run["timings_s"])
    stages["other"] = max(0.0, total - sum(stages.values()))
    rows = [
        {
            "stage": k,
            "seconds": round(v, 2),
            "share": round(v / total, 4),
            "ms_per_image": round(1000 * v / run["images"], 2),
        }
        for k, v in stages.items()
    ]
    print(
        f"\n{run['images']} images ({len(users)} users x 1 prompt, {args.size} px) in {total:.1f} s: "
        f"{run['images'] / total:.2f} images/s (setup {setup_s:.0f} s, not counted)"
    )
    print(f"{'stage':<14}{'seconds':>10}{'share':>9}{'ms/image':>10}")
    for r in rows:
        print(f"{r['stage']:<14}{r['seconds']:>10.2f}{r['share']:>9.1%}{r['ms_per_image']:>10.2f}")
    write_result(
        args.out,
        "personalize_throughput",
        rows,
        users=len(users),
        prompts=1,
        size=args.size,
        images=run["images"],
        seconds=round(total, 2),
        images_per_s=round(run["images"] / total, 3),
        torch_threads=args.threads,
        generator="patch:fast",
        rewriter="template",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
