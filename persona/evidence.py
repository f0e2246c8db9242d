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


def count_tokens(text: str) -> int:
    """Approximate LLM token count: words and punctuation marks (BPE tokenisers give about the same
    or slightly more for English; pass a real tokenizer's counter to :func:`fill_budget` when exact
    budgets matter)."""
    return len(_TOKEN.findall(text))


NAME_ATTRIBUTES = ("name", "display_name", "username", "user_name", "full_name")


def snippet_of(title: str, text: str, max_tokens: int = 64, names: tuple[str, ...] = ()) -> str:
    """``"title: text"`` cut to ``max_tokens`` approximate tokens, scrubbed (``names`` too)."""
    body = " ".join(scrub_text(text or "", names).split())
    head = " ".join(scrub_text(title or "", names).split())
    if body and body != head:
        words = body.split()
        out, used = [], count_tokens(head) + 1
        for w in words:
            used += count_tokens(w)
            if used > max_tokens:
                out.append("...")
                break
            out.append(w)
        return f"{head}: {' '.join(out)}" if head else " ".join(out)
    return head


def fill_budget(
    ranked: list[tuple[str, float]],
    context: PersonaContext,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    *,
    counter: Callable[[str], int] = count_tokens,
    snippet_tokens: int = 64,
    names: tuple[str, ...] = (),
) -> list[Evidence]:
    """Evidence, best first, until the next snippet would overflow ``token_budget`` tokens.

    ``names`` (user names known to the dataset) are scrubbed from snippets with the other identifiers.
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be >= 1, got {token_budget}")
    out, used = [], 0
    for item_id, weight in ranked:
        item = context.items[item_id]
        snip = snippet_of(item.title, item.text, snippet_tokens, names)
        cost = counter(snip)
        if used + cost > token_budget:
            break
        used += cost
        out.append(Evidence(item_id, round(float(weight), 6), snip))
    return out


def interests(ranked: list[tuple[str, float]], context: PersonaContext, user_id: str) -> dict[str, float]:
    """Tag weights: the sum of evidence weights of the items carrying each tag, negative for dislikes."""
    sign = {}
    for x in context.visible.get(user_id, []):
        sign[x.item_id] = -1.0 if context.is_disliked(x) else (1.0 if context.is_liked(x) else 0.25)
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
    titles = []
    for item_id, score in telling_items(ranked, context, user_id, k=n_titles, population=pop):
        title = scrub_label(context.items[item_id].title, names)
        if title:
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

    ranked = recency_prior(ranked, context.visible.get(user_id, []), recency_half_life)
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
    evidence = fill_budget(ranked, context, token_budget, names=names)
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
