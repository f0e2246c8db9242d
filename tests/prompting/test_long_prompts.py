"""A prompt over the length limit is skipped (its id reported) or truncated, never aborting a run."""

from __future__ import annotations

import pytest

from evalbench.runner import BenchConfig, run_bench
from persona.data.splits import make_split
from persona.data.synthetic import generate_community
from persona.mining import mine_personas
from prompting.guard import MAX_PROMPT_CHARS, fit_prompts
from prompting.rewriter import rewrite_split
from workbench.store import Workspace
from workbench.store.datasets import write_dataset
from workbench.store.rewrites import RewriteKey, load_rewrites

LONG = "a very detailed scene of a harbour at dawn " * 36  # 1,548 characters


def test_fit_prompts_skips_or_cuts_at_a_word():
    prompts = [("a", "a red bicycle"), ("b", LONG)]
    assert fit_prompts(prompts) == ([("a", "a red bicycle")], ["b"])
    kept, skipped = fit_prompts(prompts, long_prompts="truncate")
    assert not skipped and len(kept[1][1]) <= MAX_PROMPT_CHARS and LONG.startswith(kept[1][1])
    assert kept[1][1].endswith("dawn") or kept[1][1].endswith("at")  # cut between words, not inside one
    with pytest.raises(ValueError, match="long_prompts must be one of skip, truncate"):
        fit_prompts(prompts, long_prompts="drop")


def test_a_long_prompt_among_twenty_leaves_nineteen_rewrites_per_user(tmp_path):
    path = tmp_path / "twenty.txt"
    short = [
        f"a {w} in the rain"
        for w in "fox owl boat kite lamp tram bell drum rose pier fern moth vase crow hill reef barn dune cart".split()
    ]
    path.write_text("\n".join(short[:9] + [LONG] + short[9:]) + "\n")
    assert len(short) + 1 == 20
    with Workspace(tmp_path / "w.duckdb") as ws:
        write_dataset(ws, generate_community(n_users=80, n_items=80, seed=0))
        split = make_split(ws)["split"]
        mine_personas(ws, split, encoder="tfidf")
        res = rewrite_split(ws, split, encoder="tfidf", prompts=str(path))
        assert res["skipped_prompts"] == ["p-0010"] and res["rewritten"] == res["users"] > 0
        rewrites = load_rewrites(ws, RewriteKey(split, "tfidf", "template", res["model"], "twenty"))
        per_user = {}
        for u, _ in rewrites:
            per_user[u] = per_user.get(u, 0) + 1
        assert set(per_user.values()) == {19}
        bench = run_bench(ws, BenchConfig(split=split, prompts=str(path)))  # the skipped prompt is not scored
        assert bench["units"] == res["users"] * 19
