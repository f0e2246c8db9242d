"""The tfidf baseline encoder: weights against an independent numpy computation, recovery of planted personas."""

import math

import numpy as np
import pytest

from persona.data.splits import SplitParams, make_split
from persona.data.synthetic import TAGS, generate_community
from persona.mining import get_persona, load_context, mine_personas
from persona.models import ENCODERS
from workbench.scrub import scrub_text as scrub
from workbench.store import Workspace
from workbench.store.datasets import write_dataset


@pytest.fixture(scope="module")
def mined():
    ws = Workspace(":memory:")
    write_dataset(ws, generate_community(400, 300, n_personas=5, seed=11))
    split = make_split(ws, "synthetic-s11", SplitParams(seed=0))["split"]
    mine_personas(ws, split)
    yield ws, split
    ws.close()


def test_weights_match_numpy_reference(mined):
    ws, split = mined
    ctx = load_context(ws, split)
    enc = ENCODERS.get("tfidf")().fit(ctx)
    users = sorted(ctx.visible)
    counts = np.zeros((len(users), len(enc.vocab)))
    col = {t: j for j, t in enumerate(enc.vocab)}
    for r, u in enumerate(users):
        for x in ctx.visible[u]:
            if x.value >= 4:
                for t in ctx.items[x.item_id].tags:
                    counts[r, col[t]] += 1
    tf = np.where(counts > 0, 1 + np.log(np.where(counts > 0, counts, 1)), 0)  # sublinear tf
    df = (counts > 0).sum(0)
    idf = 1 + np.log((1 + len(users)) / (1 + df))
    ref = tf * idf
    ref /= np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(enc.like_w, ref, atol=1e-12)


def test_recovers_planted_personas_far_above_chance(mined):
    ws, split = mined
    truth = {
        u: set(g["liked_tags"])
        for u, g in (
            (r[0], __import__("json").loads(r[1])) for r in ws.query("SELECT user_id, ground_truth FROM users")
        )
    }
    hits = []
    for u in list(truth)[:150]:
        card = get_persona(ws, u, split)
        top = [t["name"] for t in card.traits if t["weight"] > 0][:3]
        hits.append(len(set(top) & truth[u]) / 3)
    chance = 3 / len(TAGS)
    assert np.mean(hits) > 3 * chance, (np.mean(hits), chance)


def test_card_contents(mined):
    ws, split = mined
    card = get_persona(ws, "u1", split)
    assert card.model_version == "tfidf-2"
    assert set(card.demographics) <= {"gender", "age_group"}  # declared demographics only
    assert "persona" not in card.summary  # ground truth never leaks
    assert card.evidence and all(e.weight >= card.evidence[-1].weight for e in card.evidence)
    assert len(card.embedding) > 0 and math.isclose(float(np.linalg.norm(card.embedding)), 1.0, rel_tol=1e-4)


def test_rerun_skips_and_force_remines(mined):
    ws, split = mined
    again = mine_personas(ws, split)
    assert again["mined"] == 0 and again["already_stored"] == again["users"]
    before = ws.scalar("SELECT count(*) FROM personas")
    forced = mine_personas(ws, split, force=True)
    assert forced["mined"] == forced["users"] and ws.scalar("SELECT count(*) FROM personas") == before


def test_unknown_encoder_suggests():
    with pytest.raises(KeyError, match="did you mean 'tfidf'"):
        ENCODERS.get("tfid")


def test_scrub_removes_identifiers():
    text = scrub("Contact jane.doe@mail.com, https://jane.dev, +1 (555) 123-4567 or @janedoe; loves noir")
    assert "jane" not in text and "555" not in text and "loves noir" in text


def test_no_terms_at_all_is_a_clear_error_naming_the_fix():
    """Items with neither tags nor title words (ids as titles): a WorkbenchError saying what to give the items,
    not scikit-learn's '0 feature(s)'."""
    from dataclasses import replace

    from workbench.errors import WorkbenchError

    ws = Workspace(":memory:")
    bundle = generate_community(60, 40, n_personas=3, seed=2)
    bundle = replace(bundle, items=[replace(it, tags=(), title=f"{k}") for k, it in enumerate(bundle.items)])
    write_dataset(ws, bundle)
    split = make_split(ws, "synthetic-s2", SplitParams(seed=0))["split"]
    with pytest.raises(WorkbenchError, match="tfidf found no terms to weigh") as err:
        ENCODERS.get("tfidf")().fit(load_context(ws, split))
    assert err.value.field == "encoder" and "--item-tags-col" in str(err.value)
    ws.close()
