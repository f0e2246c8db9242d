"""Data-parallel training of the persona miner (``torch.distributed``, gloo, spawned processes).

Two processes each train on half the liked edges with their gradients averaged every step: the run is
deterministic (two runs give the same weights, bit for bit), every process ends with the same model (the
saved one is the first's), and the model learns (its held-out link AUC beats chance).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from persona.data.splits import SplitParams, make_split
from persona.data.synthetic import generate_community
from persona.graph import build_graph
from persona.mining import load_context, mine_personas
from persona.models.gat import train_distributed, train_gat
from workbench.store import Workspace
from workbench.store.datasets import write_dataset

pytestmark = pytest.mark.slow  # each run spawns two processes that import torch (about 10 s)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    with Workspace(tmp_path_factory.mktemp("ddp") / "w.duckdb") as ws:
        write_dataset(ws, generate_community(300, 120, seed=8, interactions_per_user=25))
        split = make_split(ws, "synthetic-s8", SplitParams(seed=0, heldout_frac=0.1, coldstart_frac=0.0))["split"]
        ctx = load_context(ws, split)
    emb = np.random.default_rng(0).normal(size=(len(ctx.items), 16)).astype(np.float32)
    return build_graph(ctx, item_emb=emb, image_encoder=None)


def test_two_workers_train_deterministically_and_learn(graph):
    a, report = train_gat(graph, workers=2, max_steps=12, epochs=50, batch_size=256, seed=3)
    b, _ = train_distributed(graph, workers=2, max_steps=12, epochs=50, batch_size=256, seed=3)
    assert report.workers == 2 and report.steps == 12 and report.stopped_by == "max_steps"
    assert "on 2 data-parallel workers" in report.note()
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    torch.manual_seed(3)
    from persona.models.gat import build_model

    fresh = build_model(graph, hidden=64, heads=2).state_dict()
    assert any(not torch.equal(sa[k], fresh[k]) for k in sa)  # it trained
    # it learns: a liked edge scores above a random user-item pair more often than not
    from persona.models.gat import infer

    emb = infer(a, graph)
    users, items = graph.edge_index[0, graph.edge_liked], graph.edge_index[1, graph.edge_liked]
    rng = np.random.default_rng(0)
    rand = torch.from_numpy(rng.integers(0, graph.x_item.shape[0], users.numel()))
    pos = (emb.h_user[users] * emb.i1[items]).sum(-1) + emb.bias[items]
    neg = (emb.h_user[users] * emb.i1[rand]).sum(-1) + emb.bias[rand]
    assert float((pos > neg).float().mean()) > 0.6


def test_mining_with_train_workers_keeps_its_own_checkpoint(tmp_path):
    from persona.mining import checkpoint_path

    with Workspace(tmp_path / "w.duckdb") as ws:
        write_dataset(ws, generate_community(150, 80, seed=9, interactions_per_user=20))
        split = make_split(ws, "synthetic-s9", SplitParams(seed=0))["split"]
        out = mine_personas(ws, split, "gat", encoder_kwargs={"max_steps": 4, "train_workers": 2})
        one = checkpoint_path(ws, split, "gat", {"max_steps": 4})
    assert out["encoder"] == "gat[max_steps=4,train_workers=2]" and out["mined"] == 150
    assert "on 2 data-parallel workers" in out["training"]
    assert out["checkpoint"] != str(one)  # a data-parallel model never answers for a one-process one
