"""Evidence selection and structured persona cards.

A user's visible interactions are ranked by the encoder's learned weight (PersonaGAT: attention
averaged over heads and layers); the top ones fill a **token budget** (default 2,048: ZIPP's gains
saturate near 2K evidence tokens and hallucinations grow above 8K) with each item's title and a
snippet of its text. Every snippet, trait and summary is scrubbed of personal identifiers
(:mod:`workbench.scrub`) before the card is returned.

The card then holds known demographics only, interests ranked by what sets the user apart from the
population (:mod:`persona.traits`: weighted log-odds; ``traits="share"`` ranks by raw share instead),
style / mood cues of the top interests (``kind: "cue"``), distinctive keyphrases of the liked evidence
(``kind: "keyphrase"``) and the titles of its most telling items (``kind: "title"``), and its summary is
written by a prompting backend (:func:`verbalize_cards`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from persona.models.base import PersonaContext
from persona.verbalize import verbalize_card
from workbench.records import Evidence, PersonaCard, PersonaRequest, PersonaVerbalizer
from workbench.scrub import scrub_card, scrub_label, scrub_text

DEFAULT_TOKEN_BUDGET = 2048
#: the recency prior's half-life, in interactions (how it was chosen, and its effect on other splits and on
#: Stack Exchange: the README's "Personal signal" section)
DEFAULT_HALF_LIFE = 4.0
_TOKEN = re.compile(r"\w+|[^\w\s]")


@lru_cache(maxsize=1 << 16)
def count_tokens(text: str) -> int:
    """Approximate LLM token count: words and punctuation marks (BPE tokenisers give about the same
    or slightly more for English; pass a real tokenizer's counter to :func:`fill_budget` when exact
    budgets matter)."""
    return len(_TOKEN.findall(text))


NAME_ATTRIBUTES = ("name", "display_name", "username", "user_name", "full_name")


#: what stands between an item's text and the user's own words on it in a snippet
WORDS_MARK = " | their words: "
_YEAR = re.compile(r"\s*\((?:1[89]|2[01])\d\d\)\s*$")
_SENTENCE_END = re.compile(r"(?:(?<=[)\]?!\d\"'])|(?<=[a-z]{4}))\.(?=\s)")


def _cut(text: str, max_tokens: int, used: int = 0) -> str:
    """``text``'s words while ``used`` plus their tokens stay within ``max_tokens``, then ``...``."""
    out = []
    for w in text.split():
        used += count_tokens(w)
        if used > max_tokens:
            out.append("...")
            break
        out.append(w)
    return " ".join(out)


def _starts_with(body: str, head: str) -> bool:
    """Whether ``body`` begins with ``head`` as a whole (letter case and spacing aside): ``Heat (1995)``
    begins with ``Heat``, ``Heathers`` does not."""
    b, h = body.casefold(), head.casefold()
    return bool(h) and b.startswith(h) and (len(b) == len(h) or not b[len(h)].isalnum())


def _distinct(texts) -> list[str]:
    """The non-empty ``texts``, each once (letter case aside), first spelling kept."""
    out: dict[str, str] = {}
    for t in texts:
        if t:
            out.setdefault(t.casefold(), t)
    return list(out.values())


@lru_cache(maxsize=1 << 16)
def snippet_of(
    title: str, text: str, max_tokens: int = 64, names: tuple[str, ...] = (), words: tuple[str, ...] = ()
) -> str:
    """``"title: text"`` cut to ``max_tokens`` approximate tokens, scrubbed (``names`` too); just the text when
    it begins with the title already (``Heat (1995). Genres: ...``, not ``Heat: Heat (1995). ...``).

    ``words``, the user's own texts on the item (a tag they wrote, a review), follow after
    :data:`WORDS_MARK`, each once, joined by ``;``, in at most half the tokens (the item's text the rest).

    >>> snippet_of("Heat", "Heat (1995). Genres: Action.")
    'Heat (1995). Genres: Action.'
    >>> snippet_of("Heat", "A heist.", words=("slow burn", "Slow  burn", "de niro"))
    'Heat: A heist. | their words: slow burn; de niro'
    """
    body = " ".join(scrub_text(text or "", names).split())
    head = " ".join(scrub_text(title or "", names).split())
    said = _distinct(" ".join(scrub_text(x or "", names).split()) for x in words)
    tail = ""
    if said:
        room = max(min(count_tokens(WORDS_MARK) + count_tokens("; ".join(said)), max_tokens // 2), 1)
        tail = WORDS_MARK + _cut("; ".join(said), room, count_tokens(WORDS_MARK))
        max_tokens -= room
    if body and _starts_with(body, head):
        return _cut(body, max_tokens) + tail
    if body and body != head:
        cut = _cut(body, max_tokens, count_tokens(head) + 1)
        return (f"{head}: {cut}" if head else cut) + tail
    return (head + tail) if head else tail[3:]


def snippet_title(snippet: str) -> str:
    """The title a snippet of :func:`snippet_of` begins with: what comes before the first ``: `` (``Vertigo:
    ...``), or, where the text begins with the title, before the first sentence's full stop, less a release
    year in brackets (``Heat (1995). Genres: ...``: ``Heat``; ``Mr. Holland's Opus (1995). ...``:
    ``Mr. Holland's Opus``).

    >>> snippet_title("Vertigo: A detective. | their words: dizzy"), snippet_title("Heat (1995). Genres: Crime.")
    ('Vertigo', 'Heat')
    """
    head = snippet.split(WORDS_MARK)[0].split(": ")[0]
    end = _SENTENCE_END.search(head)
    return _YEAR.sub("", head[: end.start()] if end else head).strip()


def own_words(context: PersonaContext, user_id: str) -> dict[str, list[str]]:
    """``{item_id: [text, ...]}``: the texts of the user's visible interactions with each item (a free-text tag,
    a review, an answer), oldest first, each once; a text the item's own text holds already (a Stack Exchange
    question's body, which its asker's ``ask`` repeats) is left out. Not scrubbed (:func:`snippet_of` scrubs)."""
    out: dict[str, list[str]] = defaultdict(list)
    for x in context.visible.get(user_id, []):
        said = " ".join((x.text or "").split())
        item = context.items.get(x.item_id)
        if said and item is not None and said.casefold() not in " ".join((item.text or "").split()).casefold():
            out[x.item_id].append(said)
    return {i: _distinct(texts) for i, texts in out.items()}


def merge_ranked(ranked: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """One entry per item: an encoder ranks interaction edges, and a user may have several with one item (ask,
    comment and tag on one question; a rating and a tag on one film). Their weights are summed (the total
    stays what it was) and the items kept best first: by summed weight where ``ranked`` was ordered by weight,
    else in the order each item first appears. A list without repeats comes back as it is.

    >>> merge_ranked([("q1", 0.3), ("q2", 0.25), ("q1", 0.25), ("t", 0.2)])
    [('q1', 0.55), ('q2', 0.25), ('t', 0.2)]
    """
    total: dict[str, float] = {}
    for item_id, weight in ranked:
        total[item_id] = total.get(item_id, 0.0) + float(weight)
    if len(total) == len(ranked):
        return list(ranked)
    if all(a[1] >= b[1] for a, b in zip(ranked, ranked[1:])):
        return sorted(total.items(), key=lambda t: -t[1])  # stable: ties keep first-seen order
    return list(total.items())


def fill_budget(
    ranked: list[tuple[str, float]],
    context: PersonaContext,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    *,
    counter: Callable[[str], int] = count_tokens,
    snippet_tokens: int = 64,
    names: tuple[str, ...] = (),
    user_id: str | None = None,
) -> list[Evidence]:
    """Evidence, best first, one per item (:func:`merge_ranked`), until the next snippet would overflow
    ``token_budget`` tokens.

    ``names`` (user names known to the dataset) are scrubbed from snippets with the other identifiers. With
    ``user_id``, each snippet also holds that user's own words on the item (:func:`own_words`).
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be >= 1, got {token_budget}")
    said = own_words(context, user_id) if user_id is not None else {}
    out, used = [], 0
    for item_id, weight in merge_ranked(ranked):
        item = context.items[item_id]
        snip = snippet_of(item.title, item.text, snippet_tokens, names, tuple(said.get(item_id, ())))
        cost = counter(snip)
        if used + cost > token_budget:
            break
        used += cost
        out.append(Evidence(item_id, round(float(weight), 6), snip))
    return out


def interests(ranked: list[tuple[str, float]], context: PersonaContext, user_id: str) -> dict[str, float]:
    """Tag weights: the sum of evidence weights of the items carrying each tag, negative for dislikes."""
    from persona.traits import item_signs

    sign = item_signs(context, user_id)
    w: dict[str, float] = defaultdict(float)
    for item_id, weight in ranked:
        for tag in context.items[item_id].tags:
            w[tag] += sign.get(item_id, 1.0) * weight
    return dict(w)


def card_traits(
    context: PersonaContext,
    user_id: str,
    ranked: list[tuple[str, float]],
    *,
    traits: str = "distinctive",
    n_traits: int = 4,
    n_dislikes: int = 2,
    n_cues: int = 3,
    n_keyphrases: int = 4,
    n_titles: int = 5,
    population=None,
    names: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """A card's traits: interests (ranked by ``traits``, each with ``share`` and ``distinctiveness``), the
    visual cue of each of the top ``n_cues`` liked interests that has one (``kind: "cue"``), the
    distinctive keyphrases of the liked evidence (``kind: "keyphrase"``) and the titles of its most
    telling items (``kind: "title"``); see :mod:`persona.traits`."""
    from persona.traits import interest_traits, keyphrases, load_cues, population_of, telling_items

    pop = population or population_of(context)
    out = interest_traits(
        ranked, context, user_id, mode=traits, n_traits=n_traits, n_dislikes=n_dislikes, population=pop
    )
    likes = [t for t in out if t["weight"] > 0]
    cues = load_cues()
    for t in likes[:n_cues]:
        if t["name"].lower() in cues:
            out.append({"name": cues[t["name"].lower()], "weight": t["weight"], "kind": "cue", "from": t["name"]})
    titles, seen = [], set()
    for item_id, score in telling_items(ranked, context, user_id, k=len(ranked), population=pop):
        title = scrub_label(context.items[item_id].title, names)
        if title and title.casefold() not in seen and len(titles) < n_titles:  # two items may share a title
            seen.add(title.casefold())
            titles.append({"name": title, "weight": round(score, 4), "kind": "title", "item_id": item_id})
    named = " ".join(t["name"].lower() for t in titles)
    for phrase, score in keyphrases(
        ranked,
        context,
        user_id,
        k=n_keyphrases,
        population=pop,
        exclude=tuple(t["name"] for t in out if t["kind"] == "interest"),
    ):
        clean = scrub_text(phrase, names)
        if clean and clean == phrase and clean.lower() not in named:  # a title already says it
            out.append({"name": clean, "weight": round(score, 4), "kind": "keyphrase"})
    return out + titles


def build_card(
    context: PersonaContext,
    user_id: str,
    ranked: list[tuple[str, float]],
    embedding: list[float] | None,
    model_version: str,
    *,
    traits: str = "distinctive",
    n_traits: int = 4,
    n_dislikes: int = 2,
    n_cues: int = 3,
    n_keyphrases: int = 4,
    n_titles: int = 5,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    n_evidence: int | None = None,
    recency_half_life: float | None = DEFAULT_HALF_LIFE,
    population=None,
    backend=None,
) -> PersonaCard:
    """A structured card whose summary is written by ``backend`` (default ``template``).

    ``ranked`` is ``(item_id, weight)`` over the user's visible items, best first (the encoder's weights:
    attention for ``gat``); they are multiplied by a recency prior with ``recency_half_life``
    interactions (:func:`persona.traits.recency_prior`; ``None``: the encoder's weights alone). The card's
    evidence is everything that fits ``token_budget`` (at most ``n_evidence`` items). Traits: :func:`card_traits`.
    ``population``: the split's :class:`persona.traits.Population` (default: computed from ``context``;
    pass the training context's for a cold-start user, whose own context holds only them).
    """
    from persona.traits import recency_prior

    ranked = recency_prior(merge_ranked(ranked), context.visible.get(user_id, []), recency_half_life)
    user = context.users.get(user_id)
    names = tuple(str(user.attributes[k]) for k in NAME_ATTRIBUTES if user and user.attributes.get(k))
    tr = card_traits(
        context,
        user_id,
        ranked,
        traits=traits,
        n_traits=n_traits,
        n_dislikes=n_dislikes,
        n_cues=n_cues,
        n_keyphrases=n_keyphrases,
        n_titles=n_titles,
        population=population,
        names=names,
    )
    evidence = fill_budget(ranked, context, token_budget, names=names, user_id=user_id)
    if n_evidence is not None:
        evidence = evidence[:n_evidence]
    card = PersonaCard(user_id, "", tr, evidence, embedding, model_version, context.demographics(user_id))
    card = verbalize_cards([card], backend, item_noun=context.meta.get("item_noun", "items"))[0]
    return scrub_card(card, names)


def verbalize_cards(
    cards: list[PersonaCard], backend: PersonaVerbalizer | None = None, *, item_noun: str = "items"
) -> list[PersonaCard]:
    """Write each card's ``summary``: through ``backend`` (any :class:`~workbench.records.PersonaVerbalizer`,
    e.g. a ``prompting`` rewriter backend), or the template text of :func:`persona.verbalize.verbalize_card`."""
    if backend is None:
        texts = [verbalize_card(c, item_noun) for c in cards]
    else:
        texts = backend.verbalize_batch([PersonaRequest(c, item_noun) for c in cards])
    for card, text in zip(cards, texts):
        card.summary = scrub_text(text)
    return cards
