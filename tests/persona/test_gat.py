"""PersonaGAT on tiny graphs: shapes, attention, determinism, evidence, link quality on planted data."""

import numpy as np
import pytest
import torch

from evalbench.store import Workspace
from evalbench.store.datasets import write_dataset
from persona.data.splits import SplitParams, hidden_targets, make_split
from persona.data.synthetic import TAGS, generate_community
from persona.graph import build_graph
from persona.linkeval import evaluate_links, make_scorer
from persona.mining import load_context
from persona.models.gat import GatPersonaEncoder, split_edge_masks, train_gat


@pytest.fixture(scope="module")
def ctx():
    ws = Workspace(":memory:")
    write_dataset(ws, generate_community(120, 80, n_personas=4, seed=1))
    split = make_split(ws, "synthetic-s1", SplitParams(seed=0, heldout_frac=0.2, coldstart_frac=0.0))["split"]
    c = load_context(ws, split)
    c.targets = {u: t for u, t in hidden_targets(ws, split).items()}
    yield c
    ws.close()


def tag_features(c):
    """Item features without a text model: one-hot tags (keeps these tests independent of MiniLM)."""
    items = sorted(c.items)
    return np.array([[1.0 if t in c.items[i].tags else 0.0 for t in TAGS] for i in items], dtype=np.float32)


@pytest.fixture(scope="module")
def graph(ctx):
    return build_graph(ctx, item_emb=tag_features(ctx))


def test_shapes_and_attention_is_a_distribution_per_user(graph):
    model, report = train_gat(graph, epochs=3, hidden=16, heads=2)
    model.eval()
    liked, disliked = split_edge_masks(graph)
    with torch.no_grad():
        hu, hi, alpha = model(graph.x_user, graph.x_item, graph.edge_index, graph.edge_attr, liked, disliked)
    assert hu.shape == (len(graph.user_ids), 16) and hi.shape == (len(graph.item_ids), 16)
    assert alpha.shape == (graph.edge_index.shape[1],)
    assert float(alpha.min()) >= 0 and float(alpha.max()) <= 1
    sums = torch.zeros(len(graph.user_ids)).index_add_(0, graph.edge_index[0], alpha)
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-5, rtol=0)
    assert report.epochs == 3 and np.isfinite(report.final_loss)
    assert "PersonaGAT(" in repr(model)


def test_same_seed_same_model(graph):
    outs = []
    for _ in range(2):
        model, _ = train_gat(graph, epochs=2, hidden=8, heads=2, seed=7)
        outs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(outs[0], outs[1])
    other, _ = train_gat(graph, epochs=2, hidden=8, heads=2, seed=8)
    assert not torch.equal(outs[0], torch.cat([p.detach().flatten() for p in other.parameters()]))


def test_inputs_hold_no_hidden_items(ctx, graph):
    pairs = {(graph.user_ids[u], graph.item_ids[i]) for u, i in graph.edge_index.T.tolist()}
    for u, t in ctx.targets.items():
        for i in t.get("liked", []) + t.get("disliked", []):
            assert (u, i) not in pairs


def test_encoder_cards_rank_evidence_by_attention(ctx, monkeypatch):
    import persona.graph as g

    monkeypatch.setattr(g, "item_features", lambda c, text_encoder="minilm": tag_features(c))
    enc = GatPersonaEncoder(epochs=5, hidden=16, heads=2).fit(ctx)
    card = enc.encode(["u3"])[0]
    weights = [e.weight for e in card.evidence]
    assert weights == sorted(weights, reverse=True) and all(0 <= w <= 1 for w in weights)
    assert card.model_version == "gat-1" and len(card.embedding) == 16
    assert card.traits and all(t["name"] in TAGS for t in card.traits)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        GatPersonaEncoder(epochs=0)


def test_link_scores_beat_chance_on_planted_personas(ctx, monkeypatch):
    import persona.graph as g

    monkeypatch.setattr(g, "item_features", lambda c, text_encoder="minilm": tag_features(c))
    scorers = [make_scorer("gat", epochs=40, hidden=16, heads=2).fit(ctx), make_scorer("tfidf").fit(ctx)]
    res = evaluate_links(ctx, ctx.targets, scorers, n_negatives=9)
    for name in ("gat", "tfidf"):
        auc, lo, hi = res[name]["auc"]
        assert lo <= auc <= hi and auc > 0.6, (name, auc)
    with pytest.raises(KeyError, match="unknown link scorer"):
        make_scorer("lightgcn")


def test_hetero_view_keeps_every_edge_typed(graph):
    data = graph.to_hetero()
    fwd = [et for et in data.edge_types if et[0] == "user"]
    assert [et[1] for et in fwd] == graph.kinds
    assert sum(data[et].edge_index.shape[1] for et in fwd) == graph.edge_index.shape[1]
    assert data["user"].x.shape[0] == len(graph.user_ids) and data["item"].x.shape[0] == len(graph.item_ids)
