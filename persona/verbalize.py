"""Turn a persona's traits, evidence and demographics into one or two plain sentences.

Persona text is scrubbed of personal identifiers (:mod:`workbench.scrub`) before it is stored or sent to
any rewriter.
"""

from __future__ import annotations

from typing import Any

from workbench.records import PersonaCard
from workbench.scrub import sanitize, scrub_text, tag_like


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def describe_demographics(demographics: dict[str, Any]) -> str:
    parts = []
    for key, value in demographics.items():
        if value is None or value == "":
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        parts.append(f"{key.replace('_', ' ')} {value}")
    return ", ".join(parts)


def sides(traits: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """``(liked names, avoided names)``, each name once: a name given more than once (in any letter case)
    is placed by the sum of its weights, so no trait is both liked and avoided.

    >>> sides([{"name": "Action", "weight": .6}, {"name": "Drama", "weight": .2},
    ...        {"name": "action", "weight": -.1}, {"name": "Drama", "weight": -.5}])
    (['Action'], ['Drama'])
    """
    net: dict[str, float] = {}
    shown: dict[str, str] = {}
    for t in traits:
        name = str(t["name"]).strip()
        key = name.casefold()
        net[key] = net.get(key, 0.0) + float(t["weight"])
        shown.setdefault(key, name)
    return [shown[k] for k, w in net.items() if w > 0], [shown[k] for k, w in net.items() if w < 0]


def verbalize(
    traits: list[dict[str, Any]],
    evidence_titles: list[str],
    demographics: dict[str, Any],
    item_noun: str = "items",
    themes: list[str] | None = None,
) -> str:
    """A template persona: likes (in the order given: distinctive first on distinctive cards), examples,
    recurring themes, dislikes and known demographics; a trait is never both liked and avoided (:func:`sides`).

    >>> verbalize([{"name": "Film-Noir", "weight": .5}, {"name": "Thriller", "weight": .3},
    ...            {"name": "Children's", "weight": -.2}], ["Vertigo"], {"age": 24}, "movies")
    "Drawn to Film-Noir and Thriller movies, such as 'Vertigo'. Tends to avoid Children's. Known: age 24."
    """
    likes, dislikes = sides(traits)
    sentences = []
    if likes:
        s = f"Drawn to {_join(likes)} {item_noun}"
        if evidence_titles:
            s += ", such as " + _join([f"'{t}'" for t in evidence_titles])
        sentences.append(s + ".")
    elif evidence_titles:
        sentences.append(f"Recently engaged with {_join([repr(t) for t in evidence_titles])}.")
    else:
        sentences.append("No behaviour known yet.")
    if themes:
        sentences.append(f"Recurring themes: {_join(list(themes))}.")
    if dislikes:
        sentences.append(f"Tends to avoid {_join(dislikes)}.")
    demo = describe_demographics(demographics)
    if demo:
        sentences.append(f"Known: {demo}.")
    return scrub_text(" ".join(sentences))


def _once(names, n: int) -> list[str]:
    """The first ``n`` distinct non-empty ``names`` (scrubbed, letter case aside): two items can share a title.
    ``names`` may be a generator: it is read only until ``n`` are found."""
    out: dict[str, str] = {}
    for name in names:
        if len(out) >= n:
            break
        clean = scrub_text(name)
        if clean:
            out.setdefault(clean.casefold(), clean)
    return list(out.values())


def verbalize_card(card: PersonaCard, item_noun: str = "items") -> str:
    """The template persona text of a card (:func:`verbalize`): its tag-like interests in the card's order,
    its three most telling titles (else the top evidence's), up to three keyphrases as themes; no title
    named twice."""
    from persona.evidence import snippet_title

    traits = [t for t in card.traits if t.get("kind", "interest") == "interest" and tag_like(t["name"])]
    titles = _once((sanitize(t["name"], 80) for t in card.traits if t.get("kind") == "title"), 3) or _once(
        (sanitize(snippet_title(e.snippet), 80) for e in card.evidence), 3
    )
    themes = _once((sanitize(t["name"], 60) for t in card.traits if t.get("kind") == "keyphrase"), 3)
    return verbalize(traits, titles, card.demographics, item_noun, themes=themes)
