"""PersonaGAT on tiny graphs: shapes, attention, determinism, inductive cold start, checkpoints, link quality."""

import numpy as np
import pytest
import torch

from evalbench.link_prediction import evaluate_links, make_scorer
from persona.coldstart import ColdStart
from persona.data.splits import SplitParams, make_split
from persona.data.synthetic import TAGS, generate_community
from persona.graph import build_graph
from persona.mining import load_context
from persona.models.gat import GatPersonaEncoder, SagePersonaEncoder, infer, load_checkpoint, save_checkpoint, train_gat
from workbench.store import Workspace
from workbench.store.datasets import write_dataset
from workbench.store.splits import hidden_targets


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


@pytest.fixture(autouse=True)
def _tag_items(monkeypatch):
    import persona.graph as g

    monkeypatch.setattr(g, "item_features", lambda c, text_encoder="minilm": tag_features(c))


@pytest.fixture(scope="module")
def graph(ctx):
    return build_graph(ctx, item_emb=tag_features(ctx))


@pytest.fixture(scope="module")
def trained(graph):
    return train_gat(graph, epochs=3, hidden=16, heads=2, batch_size=64)


def full_forward(model, graph):
    with torch.no_grad():
        return model(
            graph.x_user,
            graph.x_item,
            torch.arange(graph.x_item.shape[0]),
            graph.edge_index,
            graph.edge_attr,
            graph.edge_liked,
            graph.edge_disliked,
            attention=True,
        )


def test_shapes_and_attention_is_a_distribution_per_user(graph, trained):
    model, report = trained
    hu, hi, bias, alpha = full_forward(model, graph)
    assert hu.shape == (len(graph.user_ids), 16) and hi.shape == (len(graph.item_ids), 16)
    assert bias.shape == (len(graph.item_ids),) and alpha.shape == (graph.edge_index.shape[1],)
    assert float(alpha.min()) >= 0 and float(alpha.max()) <= 1
    sums = torch.zeros(len(graph.user_ids)).index_add_(0, graph.edge_index[0], alpha)
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-5, rtol=0)
    assert report.steps == 3 * -(-int(graph.edge_liked.sum()) // 64) and np.isfinite(report.final_loss)
    assert "PersonaGAT(conv=gatv2" in repr(model)


def test_chunked_inference_equals_the_whole_graph_pass(graph, trained):
    model, _ = trained
    hu, hi, bias, alpha = full_forward(model, graph)
    emb = infer(model, graph, chunk_edges=50)
    torch.testing.assert_close(emb.h_user, hu, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(emb.i1, hi, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(emb.alpha, alpha, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(emb.bias, bias)


def test_same_seed_same_model(graph):
    def params(seed):
        model, _ = train_gat(graph, epochs=1, hidden=8, heads=2, batch_size=64, seed=seed)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    a, b = params(7), params(7)
    assert torch.equal(a, b)
    assert not torch.equal(a, params(8))


def test_inputs_hold_no_hidden_items(ctx, graph):
    pairs = {(graph.user_ids[u], graph.item_ids[i]) for u, i in graph.edge_index.T.tolist()}
    for u, t in ctx.targets.items():
        for i in t.get("liked", []) + t.get("disliked", []):
            assert (u, i) not in pairs


@pytest.fixture(scope="module")
def encoder(ctx, graph):
    import persona.graph as g

    orig = g.item_features
    g.item_features = lambda c, text_encoder="minilm": tag_features(c)
    try:
        return GatPersonaEncoder(epochs=4, hidden=16, heads=2, batch_size=64).fit(ctx)
    finally:
        g.item_features = orig


def test_coldstart_embedding_of_an_existing_user_equals_its_full_graph_embedding(ctx, encoder):
    cs = ColdStart(encoder)
    for u in ("u3", "u17", sorted(ctx.targets)[0]):
        h, ranked = cs.embed(ctx.visible[u], ctx.users[u].attributes)
        np.testing.assert_allclose(h, encoder.emb.h_user[encoder.graph.user_index[u]].numpy(), atol=1e-5, rtol=1e-5)
        full = encoder.attention(u)
        assert [i for i, _ in ranked] == [i for i, _ in full]
        np.testing.assert_allclose([w for _, w in ranked], [w for _, w in full], atol=1e-6)


def test_coldstart_persona_for_a_new_user_and_survey(ctx, encoder):
    from persona.coldstart import default_survey
    from workbench.records import Interaction

    cs = ColdStart(encoder)
    liked = [i for i, it in ctx.items.items() if "noir" in it.tags][:3] or sorted(ctx.items)[:3]
    card = cs.persona("new", [Interaction("new", i, "rating", 5.0) for i in liked])
    assert card.model_version == "gat-3+coldstart" and len(card.embedding) == 16
    assert {e.item_id for e in card.evidence} == set(liked) and abs(sum(e.weight for e in card.evidence) - 1) < 1e-5
    survey = default_survey(ctx)
    opt = survey.questions[0].options[0]
    card = cs.from_survey("new2", survey, {"tastes": [opt.label]})
    assert card.traits[0]["name"] == opt.label and card.traits[0].get("from") == "survey"
    with pytest.raises(ValueError, match="has no option"):
        cs.from_survey("x", survey, {"tastes": ["no-such-option"]})
    with pytest.raises(ValueError, match="unknown survey question"):
        cs.from_survey("x", survey, {"colour": ["red"]})
    with pytest.raises(ValueError, match="known item"):
        cs.embed([Interaction("x", "not-an-item", "rating", 5.0)])


def test_encoder_cards_rank_evidence_by_attention(ctx, encoder):
    card = encoder.encode(["u3"])[0]
    weights = [e.weight for e in card.evidence]
    assert weights == sorted(weights, reverse=True) and all(0 <= w <= 1 for w in weights)
    assert card.model_version == "gat-3" and len(card.embedding) == 16
    interests = [t for t in card.traits if t["kind"] == "interest"]
    assert interests and all(t["name"] in TAGS for t in interests)
    assert card.summary and "u3" not in card.summary
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        GatPersonaEncoder(epochs=0)


def test_checkpoint_round_trip(tmp_path, graph, trained):
    model, _ = trained
    save_checkpoint(model, tmp_path / "m.pt", {"item_ids": graph.item_ids})
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["item_ids"] == graph.item_ids and loaded.config == model.config
    torch.testing.assert_close(infer(loaded, graph).h_user, infer(model, graph).h_user)


def test_sage_baseline_has_no_attention_but_ranks_evidence(ctx):
    enc = SagePersonaEncoder(epochs=2, hidden=8, batch_size=64).fit(ctx)
    assert enc.emb.alpha is None
    ranked = enc.attention("u3")
    assert abs(sum(w for _, w in ranked) - 1) < 1e-5
    assert enc.encode(["u3"])[0].model_version == "sage-3"


def test_image_align_changes_training_only_when_images_exist(ctx, graph):
    import dataclasses

    rng = np.random.default_rng(0)
    img = dataclasses.replace(
        graph, x_image=torch.from_numpy(rng.normal(size=(graph.x_item.shape[0], 12)).astype(np.float32))
    )
    aligned, rep_a = train_gat(img, epochs=1, hidden=8, heads=2, batch_size=64, align_weight=0.5)
    plain, rep_p = train_gat(img, epochs=1, hidden=8, heads=2, batch_size=64, align_weight=0.0)
    assert aligned.config["image_dim"] == 12 and hasattr(aligned, "img_proj")
    assert rep_a.final_loss != rep_p.final_loss
    assert not hasattr(train_gat(graph, epochs=1, hidden=8, heads=2, batch_size=64)[0], "img_proj")


def test_link_scores_beat_chance_on_planted_personas(ctx):
    scorers = [make_scorer("gat", epochs=10, hidden=16, heads=2, batch_size=64).fit(ctx), make_scorer("tfidf").fit(ctx)]
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


def test_item_fanout_caps_inference_reads_and_coldstart_still_matches(ctx, graph, trained):
    model, _ = trained
    capped = infer(model, graph, item_fanout=1, seed=0)
    full = infer(model, graph)
    assert not torch.allclose(capped.i1, full.i1)  # items with several users now read one
    torch.testing.assert_close(capped.i0, full.i0)
    again = infer(model, graph, item_fanout=1, seed=0)
    torch.testing.assert_close(capped.h_user, again.h_user)
    enc = GatPersonaEncoder.from_parts(ctx, graph, model, capped)
    h, _ = ColdStart(enc).embed(ctx.visible["u5"], ctx.users["u5"].attributes)
    np.testing.assert_allclose(h, capped.h_user[graph.user_index["u5"]].numpy(), atol=1e-5, rtol=1e-5)


def test_link_eval_uses_rated_non_liked_items_when_nothing_is_unseen(ctx):
    class ByItem:
        name = "by-item"

        def score(self, users, items):  # prefers items by id: a deterministic, checkable scorer
            return np.array([float(i.lstrip("i")) for i in items])

    u = sorted(ctx.visible)[0]
    targets = {u: {"liked": ["i9"], "disliked": ["i1", "i2"], "neutral": ["i3"]}}
    res = evaluate_links(ctx, targets, [ByItem()], n_negatives=100)["by-item"]
    assert res["per_user"][u] == (1.0, 1.0) and res["n_users"] == 1
    targets = {u: {"liked": ["i1"], "disliked": ["i9"]}}
    assert evaluate_links(ctx, targets, [ByItem()], n_negatives=100)["by-item"]["per_user"][u] == (0.0, 0.0)


@pytest.mark.slow
def test_same_seed_same_model_on_a_graph_big_enough_for_parallel_kernels():
    """Two CPU threads add scatter results in varying order unless deterministic kernels are on."""
    ws = Workspace(":memory:")
    write_dataset(ws, generate_community(1500, 300, n_personas=4, interactions_per_user=40, seed=3))
    split = make_split(ws, "synthetic-s3", SplitParams(seed=0, heldout_frac=0.1, coldstart_frac=0.0))["split"]
    c = load_context(ws, split)
    g = build_graph(c, item_emb=tag_features(c))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a, b = (train_gat(g, epochs=1, max_steps=15, seed=1)[0] for _ in range(2))
    finally:
        torch.set_num_threads(threads)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert not torch.are_deterministic_algorithms_enabled()  # the caller's setting is restored


def test_a_time_budget_stops_training_and_max_steps_repeats_the_model(graph, capsys):
    """A budget already spent stops after one step; the note names the steps, and --max-steps with that count
    trains the identical model (the budget only decides where to stop, never what a step does)."""
    planned = 4 * (-(-int(graph.edge_liked.sum()) // 64))  # epochs x batches of the liked edges
    model, rep = train_gat(graph, epochs=4, hidden=16, heads=2, batch_size=64, time_budget=1e-9, progress=True)
    assert (rep.steps, rep.planned_steps, rep.stopped_by) == (1, planned, "time_budget")
    assert f"1 of {planned} planned steps" in rep.note() and "--max-steps 1 repeats" in rep.note()
    err = capsys.readouterr().err
    assert f"4 epochs x {planned // 4} steps of 64 liked edges, {planned} steps planned, time budget" in err
    again, rep2 = train_gat(graph, epochs=4, hidden=16, heads=2, batch_size=64, max_steps=rep.steps)
    assert (rep2.steps, rep2.planned_steps, rep2.stopped_by) == (1, 1, "max_steps")
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_the_estimate_comes_after_the_first_steps_and_a_full_run_stops_by_nothing(graph, capsys):
    from persona.models.gat import ESTIMATE_AFTER

    _, rep = train_gat(graph, epochs=2, hidden=16, heads=2, batch_size=64, time_budget=3600, progress=True)
    assert rep.stopped_by is None and rep.steps == rep.planned_steps > 1 + ESTIMATE_AFTER
    err = capsys.readouterr().err
    assert "s a step, about" in err and f"for the {rep.planned_steps} planned steps" in err
    assert f"the time budget leaves room for about {rep.planned_steps}" in err
    assert f"{rep.steps} of {rep.planned_steps} planned steps in" in err


def test_encoder_budget_options_are_checked_and_kept_with_the_checkpoint(ctx, tmp_path):
    with pytest.raises(ValueError, match="time_budget must be a positive number"):
        GatPersonaEncoder(time_budget=0)
    with pytest.raises(ValueError, match="max_steps must be a positive number"):
        GatPersonaEncoder(max_steps="many")
    enc = GatPersonaEncoder(epochs=2, hidden=16, batch_size=64, max_steps=3).fit(ctx)
    assert (enc.report.steps, enc.report.stopped_by) == (3, "max_steps")
    enc.save(tmp_path / "m.pt")
    again = GatPersonaEncoder(epochs=2, hidden=16, batch_size=64, max_steps=3, checkpoint=str(tmp_path / "m.pt")).fit(
        ctx
    )
    assert again.report == enc.report
