"""Candidate selection never sees hidden items: permuting every held-out user's hidden items (which items,
and their labels) before mining and rewriting leaves every kept candidate and its selector score unchanged."""

import numpy as np
import pytest

from persona.data.splits import SplitParams, make_split
from persona.data.synthetic import generate_community
from persona.mining import mine_personas
from prompting.params import RewriteParams
from prompting.rewriter import rewrite_split
from workbench.store import Workspace
from workbench.store.datasets import write_dataset


def _choices(path, permute: bool, encoder: str, params: dict):
    with Workspace(path) as ws:
        write_dataset(ws, generate_community(160, 120, seed=4))
        split = make_split(ws, "synthetic-s4", SplitParams(seed=0, heldout_frac=0.2))["split"]
        if permute:  # shuffle which hidden item each hidden row names, and the labels, across all held-out users
            rows = ws.query("SELECT rowid, item_id, label FROM split_items WHERE part = 'hidden' ORDER BY rowid")
            rng = np.random.default_rng(1)
            items = [r[1] for r in rows]
            labels = [r[2] for r in rows]
            rng.shuffle(items)
            rng.shuffle(labels)
            with ws.transaction() as con:
                for (rowid, _, _), item, label in zip(rows, items, labels):
                    con.execute("UPDATE split_items SET item_id = ?, label = ? WHERE rowid = ?", [item, label, rowid])
            assert ws.query("SELECT item_id, label FROM split_items WHERE part = 'hidden' ORDER BY rowid") != [
                (r[1], r[2]) for r in rows
            ]
        label = mine_personas(ws, split, encoder, encoder_kwargs=params or None)["encoder"]
        out = rewrite_split(ws, split, encoder=label, prompts="parti6", params=RewriteParams(candidates=8))
        assert out["rewritten"] == out["users"] > 0
        return ws.query("SELECT user_id, prompt_id, rewritten, selector_score FROM rewrites ORDER BY ALL")


@pytest.mark.parametrize("encoder, params", [("tfidf", {}), ("sage", {"epochs": 2})])
def test_permuting_hidden_items_leaves_every_choice_unchanged(tmp_path, encoder, params):
    a = _choices(tmp_path / "a.duckdb", False, encoder, params)
    b = _choices(tmp_path / "b.duckdb", True, encoder, params)
    assert a == b
    assert len({r[2] for r in a}) > 1 and all(r[3] is not None for r in a)
