"""Quickstart: the whole loop in Python on a synthetic community (no downloads).

Run: python examples/quickstart.py [workspace.duckdb]
"""

import sys

from evalbench.leaderboard import leaderboard
from evalbench.runner import BenchConfig, run_bench
from persona.data.splits import make_split
from persona.data.synthetic import generate_community
from persona.mining import get_persona, mine_personas
from prompting.rewriter import Rewriter, rewrite_split
from workbench.store import Workspace
from workbench.store.datasets import list_datasets, write_dataset

db = sys.argv[1] if len(sys.argv) > 1 else "quickstart.duckdb"
with Workspace(db) as ws:
    if not any(d["dataset_id"] == "synthetic-s0" for d in list_datasets(ws)):
        write_dataset(ws, generate_community(n_users=300, n_items=200, seed=0))
    split = make_split(ws, "synthetic-s0")["split"]
    mine_personas(ws, split, encoder="tfidf")

    card = get_persona(ws, "u1", split)
    print("persona of u1:", card.summary)
    print("rewrite:", Rewriter("template").rewrite(card, "a lighthouse at dusk")[0].rewritten)

    rewrite_split(ws, split, prompts="parti36")
    # the system, its shuffled control, and the two reference rows: the history ceiling and popular titles
    for cfg in (
        BenchConfig(split=split),
        BenchConfig(split=split, control="shuffled"),
        BenchConfig(split=split, reference="history"),
        BenchConfig(split=split, reference="popularity"),
    ):
        run_bench(ws, cfg)
    for row in leaderboard(ws):  # highest personal win rate first
        lo, hi = row["personal_ci"]
        print(
            f"{row['system']:<34} personal {row['personal_win_rate']:.3f} [{lo:.3f}, {hi:.3f}]  "
            f"vs generic {row['win_rate']:.3f}  ({row['metric']})"
        )
