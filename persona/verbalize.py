"""Turn a persona's traits, evidence and demographics into one or two plain sentences.

Persona text is scrubbed of personal identifiers (e-mail addresses, URLs, phone numbers, @handles)
before it is stored or sent to any rewriter.
"""

from __future__ import annotations

import re
from typing import Any

_SCRUB = [
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[email]"),
    (re.compile(r"https?://\S+|www\.\S+"), "[url]"),
    (re.compile(r"(?<!\w)\+?\d[\d ()-]{7,}\d(?!\w)"), "[phone]"),
    (re.compile(r"(?<![\w@])@\w{2,}"), "[handle]"),
]


def scrub(text: str, names: tuple[str, ...] | list[str] = ()) -> str:
    """Replace e-mail addresses, URLs, phone numbers, @handles and the given user ``names`` with placeholders.

    >>> scrub("mail me at a.b@example.org or see https://x.io/me, call +44 20 7946 0958")
    'mail me at [email] or see [url] call [phone]'
    >>> scrub("Ada Lovelace wrote this", names=["Ada Lovelace"])
    '[name] wrote this'
    """
    for pattern, repl in _SCRUB:
        text = pattern.sub(repl, text)
    for name in sorted({n.strip() for n in names if n and len(n.strip()) >= 2}, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", "[name]", text, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", text).strip()


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


def verbalize(traits: list[dict[str, Any]], evidence_titles: list[str], demographics: dict[str, Any],
              item_noun: str = "items", themes: list[str] | None = None) -> str:
    """A template persona: likes (in the order given: distinctive first on distinctive cards), examples,
    recurring themes, dislikes and known demographics.

    >>> verbalize([{"name": "Film-Noir", "weight": .5}, {"name": "Thriller", "weight": .3},
    ...            {"name": "Children's", "weight": -.2}], ["Vertigo"], {"age": 24}, "movies")
    "Drawn to Film-Noir and Thriller movies, such as 'Vertigo'. Tends to avoid Children's. Known: age 24."
    """
    likes = [t["name"] for t in traits if t["weight"] > 0]
    dislikes = [t["name"] for t in traits if t["weight"] < 0]
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
    return scrub(" ".join(sentences))
