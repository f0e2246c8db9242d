"""Evidence selection and structured persona cards.

A user's visible interactions are ranked by the encoder's learned weight (PersonaGAT: attention
averaged over heads and layers); the top ones fill a **token budget** (default 2,048: ZIPP's gains
saturate near 2K evidence tokens and hallucinations grow above 8K) with each item's title and a
snippet of its text. Every snippet is scrubbed of personal identifiers before it is stored.

The card then holds known demographics only, weighted interests (item tags weighted by the evidence
weights; disliked items count negatively) and style / mood cues drawn from the top interests
(``kind: "cue"``), and its summary is written by a prompting backend (:func:`verbalize_cards`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from persona.models.base import PersonaContext
from persona.records import Evidence, PersonaCard
from persona.verbalize import scrub

DEFAULT_TOKEN_BUDGET = 2048
_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Approximate LLM token count: words and punctuation marks (BPE tokenisers give about the same
    or slightly more for English; pass a real tokenizer's counter to :func:`fill_budget` when exact
    budgets matter)."""
    return len(_TOKEN.findall(text))


NAME_ATTRIBUTES = ("name", "display_name", "username", "user_name", "full_name")


def snippet_of(title: str, text: str, max_tokens: int = 64, names: tuple[str, ...] = ()) -> str:
    """``"title: text"`` cut to ``max_tokens`` approximate tokens, scrubbed (``names`` too)."""
    body = scrub(text or "", names)
    head = scrub(title or "", names)
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


def fill_budget(ranked: list[tuple[str, float]], context: PersonaContext, token_budget: int = DEFAULT_TOKEN_BUDGET,
                *, counter: Callable[[str], int] = count_tokens, snippet_tokens: int = 64,
                names: tuple[str, ...] = ()) -> list[Evidence]:
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


def build_card(context: PersonaContext, user_id: str, ranked: list[tuple[str, float]], embedding: list[float] | None,
               model_version: str, *, n_traits: int = 4, n_dislikes: int = 2, n_cues: int = 3,
               token_budget: int = DEFAULT_TOKEN_BUDGET, backend=None) -> PersonaCard:
    """A structured card whose summary is written by ``backend`` (default ``template``).

    ``ranked`` is ``(item_id, weight)`` over the user's visible items, best first; the card's evidence
    is everything that fits ``token_budget``.
    """
    from prompting.backends.template import load_cues

    w = interests(ranked, context, user_id)
    likes = sorted(((t, v) for t, v in w.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))[:n_traits]
    dislikes = sorted(((t, v) for t, v in w.items() if v < 0), key=lambda kv: (kv[1], kv[0]))[:n_dislikes]
    traits: list[dict[str, Any]] = [{"name": t, "weight": round(v, 4), "kind": "interest"} for t, v in likes + dislikes]
    cues = load_cues()
    for t, v in likes[:n_cues]:
        if t.lower() in cues:
            traits.append({"name": cues[t.lower()], "weight": round(v, 4), "kind": "cue", "from": t})
    user = context.users.get(user_id)
    names = tuple(str(user.attributes[k]) for k in NAME_ATTRIBUTES if user and user.attributes.get(k))
    card = PersonaCard(user_id, "", traits, fill_budget(ranked, context, token_budget, names=names), embedding,
                       model_version, context.demographics(user_id))
    return verbalize_cards([card], backend, item_noun=context.meta.get("item_noun", "items"))[0]


def verbalize_cards(cards: list[PersonaCard], backend=None, *, item_noun: str = "items") -> list[PersonaCard]:
    """Rewrite each card's ``summary`` through a prompting backend (default: ``template``)."""
    from prompting.backends.base import PersonaRequest

    if backend is None:
        from prompting.backends.template import TemplateBackend

        backend = TemplateBackend()
    texts = backend.verbalize_batch([PersonaRequest(c, item_noun) for c in cards])
    for card, text in zip(cards, texts):
        card.summary = scrub(text)
    return cards
