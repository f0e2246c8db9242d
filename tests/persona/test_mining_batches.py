"""Mining with a graph encoder in batches (``persona.inference``), on every executor, against one user at a time.

The cards a job stores must be exactly those ``GatPersonaEncoder.encode`` gives for the same checkpoint (the
path before batches), whatever the batch size, and exactly the same again on a worker pool and on a local Ray
cluster with two workers; a job killed part-way reuses the Parquet parts it wrote.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from persona.data.splits import SplitParams, make_split
from persona.data.synthetic import generate_community
from persona.mining import load_context, mine_personas
from workbench.scrub import scrub_card
from workbench.store import Workspace
from workbench.store.datasets import write_dataset
from workbench.store.personas import load_personas


def card_key(c):
    return (
        c.summary,
        c.traits,
        [(e.item_id, e.weight, e.snippet) for e in c.evidence],
        [round(float(v), 5) for v in c.embedding],
        c.demographics,
        c.model_version,
    )


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    """A small community with a split; ``gat`` and ``sage`` mined locally (2 training epochs), batches of 50."""
    root = tmp_path_factory.mktemp("mined")
    with Workspace(root / "w.duckdb") as ws:
        write_dataset(ws, generate_community(300, 120, seed=6, interactions_per_user=20))
        split = make_split(ws, "synthetic-s6", SplitParams(seed=0, heldout_frac=0.2, coldstart_frac=0.05))["split"]
        outs = {
            enc: mine_personas(ws, split, enc, encoder_kwargs={"epochs": 2}, batch_size=50) for enc in ("gat", "sage")
        }
        ws.con.execute("CHECKPOINT")
    return root, split, outs


@pytest.mark.parametrize("encoder", ["gat", "sage"])
def test_batched_cards_are_the_one_at_a_time_cards(mined, encoder):
    from persona.models import ENCODERS

    root, split, outs = mined
    with Workspace(root / "w.duckdb", read_only=True) as ws:
        stored = load_personas(ws, split, f"{encoder}[epochs=2]")
        ctx = load_context(ws, split)
    enc = ENCODERS.get(encoder)(epochs=2, checkpoint=outs[encoder]["checkpoint"]).fit(ctx)
    users = sorted(ctx.visible)
    assert outs[encoder]["mined"] == len(users) == len(stored) == 300
    one_at_a_time = {c.user_id: scrub_card(c) for c in enc.encode(users)}
    assert {u: card_key(c) for u, c in stored.items()} == {u: card_key(c) for u, c in one_at_a_time.items()}


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_other_executors_store_exactly_the_local_cards(mined, tmp_path, executor):
    """The acceptance check of issue 19: a local Ray cluster with 2 workers (and a 2-process pool) gives exactly
    the cards the in-process job gave, for the same checkpoint."""
    if executor == "ray":
        pytest.importorskip("ray")
    root, split, outs = mined
    shutil.copy(root / "w.duckdb", tmp_path / "w.duckdb")
    shutil.copytree(root / "models", tmp_path / "models")
    with Workspace(tmp_path / "w.duckdb") as ws:
        local = load_personas(ws, split, "gat[epochs=2]")
        ckpt = str(tmp_path / "models" / Path(outs["gat"]["checkpoint"]).name)  # the model the local job trained
        out = mine_personas(
            ws,
            split,
            "gat",
            encoder_kwargs={"epochs": 2, "checkpoint": ckpt},
            force=True,
            batch_size=40,
            executor=executor,
            workers=2,
        )
        other = load_personas(ws, split, "gat[epochs=2]")
    assert out["executor"] == executor and out["mined"] == 300
    assert "reused the checkpoint" in out["training"]  # the same model, not a retrained one
    assert {u: card_key(c) for u, c in other.items()} == {u: card_key(c) for u, c in local.items()}


def test_a_killed_job_reuses_its_parts(mined, tmp_path, monkeypatch):
    import persona.inference as inference

    root, split, _ = mined
    shutil.copy(root / "w.duckdb", tmp_path / "w.duckdb")
    shutil.copytree(root / "models", tmp_path / "models")
    real, calls, killed = inference.infer_cards, [], []

    def dies_on_the_third(cm, batch):
        calls.append(batch.index)
        if len(calls) == 3 and not killed:
            killed.append(batch.index)
            raise KeyboardInterrupt("killed")
        return real(cm, batch)

    with Workspace(tmp_path / "w.duckdb") as ws:
        before = {u: card_key(c) for u, c in load_personas(ws, split, "gat[epochs=2]").items()}
        monkeypatch.setattr(inference, "infer_cards", dies_on_the_third)
        with pytest.raises(KeyboardInterrupt):
            mine_personas(ws, split, "gat", encoder_kwargs={"epochs": 2}, force=True, batch_size=50)
        assert len(list((tmp_path / "models").glob("*.cards-*/personas-*.parquet"))) == 2  # two parts left
        calls.clear()
        out = mine_personas(ws, split, "gat", encoder_kwargs={"epochs": 2}, force=True, batch_size=50)
        assert sorted(calls) == [2, 3, 4, 5]  # 300 users in 6 batches: the first two came from the parts
        assert out["mined"] == 300
        assert {u: card_key(c) for u, c in load_personas(ws, split, "gat[epochs=2]").items()} == before
    assert not list((tmp_path / "models").glob("*.cards-*"))  # the parts go once stored


def test_already_mined_users_are_skipped(mined, tmp_path):
    root, split, _ = mined
    shutil.copy(root / "w.duckdb", tmp_path / "w.duckdb")
    shutil.copytree(root / "models", tmp_path / "models")
    with Workspace(tmp_path / "w.duckdb") as ws:
        out = mine_personas(ws, split, "gat", encoder_kwargs={"epochs": 2})
    assert (out["mined"], out["already_stored"]) == (0, 300)


def test_cards_with_the_users_own_words_are_the_one_at_a_time_cards(tmp_path):
    """Interactions with texts (a user's words on an item go into snippets, keyphrases and the population's
    vocabulary), missing values and times, several kinds: batches of 7 give the one-at-a-time cards."""
    import numpy as np

    from persona.data.table import ColumnMapping, load_table
    from persona.models.gat import GatPersonaEncoder

    rng = np.random.default_rng(5)
    words = ["", "", "", "slow burn noir", "great cast", "lovely colours", "too long"]
    lines = ["user_id,item_id,rating,ts,kind,note,title,genres,age"]
    genres = {f"i{i}": "|".join(rng.choice(["drama", "noir", "comedy", "space"], 2, replace=False)) for i in range(50)}
    for u in range(70):
        age = rng.choice(["", "23", "37"])
        for i in rng.choice(50, size=int(rng.integers(12, 22)), replace=False):
            rating = "" if rng.random() < 0.15 else str(rng.integers(1, 6))
            ts = "" if rng.random() < 0.1 else str(1_600_000_000 + int(rng.integers(0, 10**6)))
            lines.append(
                f"u{u:02d},i{i},{rating},{ts},{rng.choice(['rating', 'tag'])},{rng.choice(words)},"
                f"Film {i},{genres[f'i{i}']},{age}"
            )
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    m = ColumnMapping(
        value="rating",
        timestamp="ts",
        kind="kind",
        text="note",
        item_title="title",
        item_tags="genres",
        user_attributes=["age"],
    )
    with Workspace(tmp_path / "w.duckdb") as ws:
        write_dataset(ws, load_table(tmp_path / "log.csv", m, like_threshold=4, dislike_threshold=2))
        split = make_split(ws, "log", SplitParams(seed=1, heldout_frac=0.2, coldstart_frac=0.1))["split"]
        out = mine_personas(ws, split, "gat", encoder_kwargs={"epochs": 2}, batch_size=7)
        stored = load_personas(ws, split, "gat[epochs=2]")
        ctx = load_context(ws, split)
    enc = GatPersonaEncoder(epochs=2, checkpoint=out["checkpoint"]).fit(ctx)
    one_at_a_time = {c.user_id: scrub_card(c) for c in enc.encode(sorted(ctx.visible))}
    assert any("their words" in e.snippet for c in stored.values() for e in c.evidence)
    assert {u: card_key(c) for u, c in stored.items()} == {u: card_key(c) for u, c in one_at_a_time.items()}


def test_training_on_a_sample_of_users_serves_them_all(tmp_path):
    from persona.mining import checkpoint_path

    with Workspace(tmp_path / "w.duckdb") as ws:
        write_dataset(ws, generate_community(200, 80, seed=14, interactions_per_user=15))
        split = make_split(ws, "synthetic-s14", SplitParams(seed=0))["split"]
        out = mine_personas(ws, split, "gat", encoder_kwargs={"max_steps": 5, "train_users": 50})
        whole = checkpoint_path(ws, split, "gat", {"max_steps": 5})
    assert out["mined"] == 200 and out["encoder"] == "gat[max_steps=5,train_users=50]"
    assert out["checkpoint"] != str(whole)
