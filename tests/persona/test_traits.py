"""Distinctive traits (weighted log-odds, Monroe et al. 2008), open cues (keyphrases, titles), the recency prior."""

import math

import numpy as np
import pytest

from persona.evidence import build_card
from persona.models.base import PersonaContext
from persona.traits import interest_traits, keyphrases, log_odds_z, population_of, recency_prior
from workbench.records import Interaction, Item, User


def monroe_by_hand(y_u, y_p, a0):
    """Monroe, Colaresi and Quinn (2008), eq. 16-22, written out with numpy: delta_w and its z-score."""
    words = sorted(y_u)
    yu = np.array([y_u[w] for w in words], float)
    yp = np.array([y_p.get(w, 0.0) for w in words], float)
    n_u, n_p = yu.sum(), sum(y_p.values())
    alpha = a0 * np.maximum(yp, 1.0) / n_p
    delta = np.log((yu + alpha) / (n_u + a0 - yu - alpha)) - np.log((yp + alpha) / (n_p + a0 - yp - alpha))
    return dict(zip(words, delta / np.sqrt(1 / (yu + alpha) + 1 / (yp + alpha))))


def test_log_odds_match_the_formula_written_out():
    rng = np.random.default_rng(0)
    tags = [f"t{i}" for i in range(12)]
    pop = {t: float(rng.integers(5, 500)) for t in tags}
    user = {t: float(rng.integers(0, 9)) for t in tags[:8]}
    got, want = log_odds_z(user, pop, 10.0), monroe_by_hand(user, pop, 10.0)
    assert set(got) == set(want) and all(math.isclose(got[t], want[t], rel_tol=1e-12) for t in got)
    with pytest.raises(ValueError, match="prior_strength must be > 0"):
        log_odds_z(user, pop, 0)


def _context():
    """60 users who all like Drama; u0 likes Drama a lot and Noir (rare in the population) a little."""
    names = [
        a + b
        for a in ("Home", "Sea", "Road")
        for b in ("ward", "side", "light", "fall", "born", "line", "song", "bound", "stone", "field")
    ]
    items = {
        f"d{i}": Item(f"d{i}", "movie", names[i], f"A family drama, {names[i]}.", None, ("Drama",)) for i in range(30)
    }
    items |= {
        f"n{i}": Item(
            f"n{i}", "movie", f"Night {names[i]}", "A private detective in the rain.", None, ("Noir", "Drama")
        )
        for i in range(4)
    }
    items["c0"] = Item("c0", "movie", "Comedy", "Write to me@example.org for laughs.", None, ("Comedy",))
    visible = {}
    for u in range(60):
        picks = [f"d{(u + k) % 30}" for k in range(6)]
        visible[f"u{u}"] = [Interaction(f"u{u}", i, "rating", 5.0, float(k)) for k, i in enumerate(picks)]
    visible["u0"] = (
        [Interaction("u0", f"d{k}", "rating", 5.0, float(k)) for k in range(8)]
        + [Interaction("u0", f"n{k}", "rating", 5.0, float(10 + k)) for k in range(3)]
        + [Interaction("u0", "c0", "rating", 1.0, 20.0)]
    )
    users = {u: User(u) for u in visible}
    return PersonaContext(
        "s", "d", users, items, visible, {"like_threshold": 4, "dislike_threshold": 2, "demographics": []}
    )


def test_distinctive_leads_with_what_sets_the_user_apart_and_share_with_what_they_do_most():
    ctx = _context()
    ranked = [(x.item_id, 1 / 12) for x in ctx.visible["u0"]]
    dist = interest_traits(ranked, ctx, "u0", mode="distinctive")
    share = interest_traits(ranked, ctx, "u0", mode="share")
    assert [t["name"] for t in dist if t["weight"] > 0][0] == "Noir"
    assert [t["name"] for t in share if t["weight"] > 0][0] == "Drama"
    for t in dist + share:  # every trait keeps both numbers
        assert {"share", "distinctiveness"} <= set(t) and 0 <= t["share"] <= 1
    assert [t["name"] for t in dist if t["weight"] < 0] == ["Comedy"]  # disliked, and nobody else's taste either
    with pytest.raises(ValueError, match="traits must be one of distinctive, share"):
        interest_traits(ranked, ctx, "u0", mode="popular")


def test_keyphrases_are_the_users_and_never_contact_details():
    ctx = _context()
    ranked = [(x.item_id, 1 / 12) for x in ctx.visible["u0"]]
    phrases = [p for p, _ in keyphrases(ranked, ctx, "u0", k=4)]
    assert phrases and phrases[0] in ("private detective", "detective", "rain", "detective rain")
    assert not any("example" in p or "org" in p for p in phrases)
    assert "family drama" not in phrases  # everyone's items say it: no distinction
    card = build_card(ctx, "u0", ranked, None, "test")
    kinds = {t["kind"] for t in card.traits}
    assert {"interest", "keyphrase", "title"} <= kinds
    assert [t["name"] for t in card.traits if t["kind"] == "title"][0].startswith("Night ")  # the latest, most telling
    placeholders = _context()
    for it in placeholders.items.values():
        it.title = f"movie {it.item_id[1:]}"  # ids for titles: nothing worth naming
    assert not [t for t in build_card(placeholders, "u0", ranked, None, "test").traits if t["kind"] == "title"]
    assert card.summary.startswith("Drawn to Noir")
    assert population_of(ctx) is population_of(ctx)  # computed once per context


def test_recency_prior_favours_the_latest_items():
    xs = [Interaction("u", f"i{k}", "rating", 5.0, float(k)) for k in range(6)]
    flat = [(f"i{k}", 1 / 6) for k in range(6)]
    out = recency_prior(flat, xs, 2.0)
    assert [i for i, _ in out][:2] == ["i5", "i4"] and math.isclose(sum(w for _, w in out), 1.0)
    assert out[0][1] / out[2][1] == pytest.approx(2.0)  # two interactions older: half the weight
    assert recency_prior(flat, xs, None) == flat
    with pytest.raises(ValueError, match="recency_half_life must be > 0"):
        recency_prior(flat, xs, -1)
