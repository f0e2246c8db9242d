"""A split read as columns (``workbench.store.frames``) and the graph built from them, against the records.

The columns must list exactly the interactions, in the order, that ``visible_interactions`` lists as records, and
``build_graph_frame`` must give the tensors the record loop gave (``reference_graph.py``, the code before issue
19) bit for bit: a trained model then sees the same inputs whichever way the split was read.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from persona.data.splits import SplitParams, make_split
from persona.data.synthetic import generate_community
from persona.data.table import ColumnMapping, load_table
from persona.graph import build_graph, build_graph_frame, frame_of
from persona.mining import load_context
from workbench.store import Workspace
from workbench.store.datasets import write_dataset
from workbench.store.frames import attribute_values, visible_frame, visible_user_attributes


def same_frames(a, b) -> None:
    assert (a.user_ids, a.item_ids, a.kinds) == (b.user_ids, b.item_ids, b.kinds)
    for name in ("user", "item", "kind", "has_value", "has_timestamp", "text_rows"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for name in ("value", "timestamp"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    assert a.texts == b.texts


def same_graphs(a, b) -> None:
    assert (a.user_ids, a.item_ids, a.kinds, a.demo_values, a.t_range) == (
        b.user_ids,
        b.item_ids,
        b.kinds,
        b.demo_values,
        b.t_range,
    )
    for name in ("x_user", "x_item", "edge_index", "edge_attr", "edge_liked", "edge_disliked"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), name


def item_emb(n: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)


def graph_from_workspace(ws, split):
    frame = visible_frame(ws, split)
    ctx = load_context(ws, split)
    keys = ctx.meta.get("demographics", [])
    return frame, build_graph_frame(
        frame,
        ctx.items,
        ctx.meta,
        visible_user_attributes(ws, frame.dataset_id, frame.user_ids, keys),
        attribute_values(ws, frame.dataset_id, keys),
        item_emb=item_emb(len(frame.item_ids)),
        image_encoder=None,
    )


def check(ws, split) -> None:
    from reference_graph import reference_graph

    ctx = load_context(ws, split)
    frame, g = graph_from_workspace(ws, split)
    keys = ctx.meta.get("demographics", [])
    assert visible_user_attributes(ws, frame.dataset_id, frame.user_ids, keys) == attribute_values(
        ws, frame.dataset_id, keys, frame.user_ids
    )
    assert [json.loads(a) for a in visible_user_attributes(ws, frame.dataset_id, frame.user_ids).to_pylist()] == [
        ctx.users[u].attributes for u in frame.user_ids
    ]
    same_frames(frame, frame_of(ctx))
    ref = reference_graph(ctx, item_emb=item_emb(len(ctx.items)), image_encoder=None)
    same_graphs(g, ref)
    same_graphs(build_graph(ctx, item_emb=item_emb(len(ctx.items)), image_encoder=None), ref)


def test_synthetic_split_reads_and_builds_as_the_records_do(tmp_path):
    with Workspace(tmp_path / "w.duckdb") as ws:
        write_dataset(ws, generate_community(400, 150, seed=4, interactions_per_user=25))
        split = make_split(ws, "synthetic-s4", SplitParams(seed=0, heldout_frac=0.2, coldstart_frac=0.05))["split"]
        check(ws, split)


def test_a_log_with_gaps_reads_and_builds_as_the_records_do(tmp_path):
    """Missing values and times, several kinds, texts, numeric and text demographics, an unrated user."""
    rng = np.random.default_rng(1)
    lines = ["user_id,item_id,rating,ts,kind,note,age,city"]
    for u in range(60):
        age, city = rng.choice(["", "23", "37", "61"]), rng.choice(["", "Oslo", "Lima"])
        for _ in range(rng.integers(11, 20)):
            rating = "" if u == 7 or rng.random() < 0.2 else str(rng.integers(1, 6))
            ts = "" if rng.random() < 0.15 else str(1_600_000_000 + int(rng.integers(0, 10**6)))
            kind = rng.choice(["rating", "tag", "view"])
            note = rng.choice(["", "", "great cast", "too slow"])
            lines.append(f"u{u:02d},i{rng.integers(0, 40)},{rating},{ts},{kind},{note},{age},{city}")
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    m = ColumnMapping(value="rating", timestamp="ts", kind="kind", text="note", user_attributes=["age", "city"])
    with Workspace(tmp_path / "w.duckdb") as ws:
        write_dataset(ws, load_table(tmp_path / "log.csv", m, like_threshold=4, dislike_threshold=2))
        split = make_split(ws, "log", SplitParams(seed=3, heldout_frac=0.2, coldstart_frac=0.1))["split"]
        check(ws, split)


def test_movielens_split_reads_and_builds_as_the_records_do(ml100k, tmp_path):
    with Workspace(tmp_path / "ml.duckdb") as ws:
        write_dataset(ws, ml100k)
        check(ws, make_split(ws, "ml-100k", SplitParams(seed=0))["split"])


def test_attribute_values_follow_the_users_order(tmp_path):
    with Workspace(tmp_path / "w.duckdb") as ws:
        write_dataset(ws, generate_community(30, 20, seed=2))
        ids = ["u7", "u3", "nobody", "u3"]
        got = attribute_values(ws, "synthetic-s2", ["gender", "age_group"], ids)
        users = {u.user_id: u for u in generate_community(30, 20, seed=2).users}
        assert got["gender"] == [
            users["u7"].attributes["gender"],
            users["u3"].attributes["gender"],
            None,
            users["u3"].attributes["gender"],
        ]
        assert sorted(attribute_values(ws, "synthetic-s2", ["gender"])["gender"]) == sorted(
            {u.attributes["gender"] for u in users.values()}
        )


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 16, 17, 129, 300])
def test_row_block_statistics_are_numpys_per_user_ones(n):
    """The per-length blocks give np.mean / np.std of each user's values exactly (pairwise sums and all)."""
    rng = np.random.default_rng(n)
    block = rng.normal(3, 1.7, size=(5, n)) * 10.0 ** rng.integers(-3, 4, size=(5, 1))
    for row, m, s in zip(block, np.mean(block, axis=1), np.std(block, axis=1)):
        assert m == np.mean(list(row)) and s == np.std(list(row))


def test_a_users_subgraph_keeps_their_edges_and_every_item(tmp_path):
    with Workspace(tmp_path / "w.duckdb") as ws:
        write_dataset(ws, generate_community(60, 40, seed=7))
        split = make_split(ws, "synthetic-s7", SplitParams(seed=0))["split"]
        _, g = graph_from_workspace(ws, split)
    users = np.array([3, 10, 11, 40])
    sub = g.users_subgraph(users)
    assert sub.user_ids == [g.user_ids[u] for u in users] and sub.item_ids == g.item_ids
    mask = np.isin(g.edge_index[0].numpy(), users)
    assert torch.equal(sub.edge_attr, g.edge_attr[torch.from_numpy(mask)])
    assert [sub.user_ids[u] for u in sub.edge_index[0].tolist()] == [
        g.user_ids[u] for u in g.edge_index[0, torch.from_numpy(mask)].tolist()
    ]
    assert torch.equal(sub.edge_index[1], g.edge_index[1, torch.from_numpy(mask)])
    assert torch.equal(sub.x_user, g.x_user[torch.from_numpy(users)])


@pytest.mark.parametrize("n,size,chunk", [(50, 10_000, 999), (7, 100, 13), (1000, 300_000, 4096), (3, 0, 10)])
def test_the_chunked_counting_sort_is_a_stable_sort(n, size, chunk):
    from persona.models.gat import _csr

    index = torch.from_numpy(np.random.default_rng(n).integers(0, n, size))
    order, ptr = _csr(index, n, chunk=chunk)
    assert torch.equal(order, torch.argsort(index, stable=True))
    assert torch.equal(ptr[1:], torch.cumsum(torch.bincount(index, minlength=n), 0)) and int(ptr[0]) == 0
