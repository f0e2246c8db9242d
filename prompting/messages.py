"""Chat messages for LLM rewriters: the versioned prompt templates (``prompting/templates/rewrite_*.yaml``)
turned into the system, example and request messages, and the model's reply parsed back.

The conversation is: a system message with the roleplay instruction and the rules; one worked example
as a user/assistant exchange (small models need it); then the request. The persona (and, k-shot, the
user's own history) goes inside data fences, in the system message (``rewrite_v1``) or at the head of
the request (``rewrite_v2``, ``persona_in: request``: the prefix before it is then identical for every
request, so servers reuse its KV cache). Persona text is written in the first
person from the card's interests, dislikes and known demographics, then evidence snippets until
``RewriteParams.persona_tokens`` is spent.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

from prompting.guard import fence
from prompting.params import RewriteParams
from workbench.records import PersonaCard
from workbench.scrub import sanitize, tag_like


@lru_cache(maxsize=8)
def load_template(name: str = "rewrite_v1") -> dict[str, Any]:
    """A rewrite template by name (``rewrite_v1``) or by path to a YAML file of the same shape."""
    import os

    import yaml

    if os.path.sep in name or name.endswith((".yaml", ".yml")):
        with open(name, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    else:
        try:
            data = yaml.safe_load(resources.files("prompting.templates").joinpath(f"{name}.yaml").read_text("utf-8"))
        except FileNotFoundError:
            raise ValueError(
                f"no rewrite template {name!r}; shipped: rewrite_v1, rewrite_v2, or pass a YAML path"
            ) from None
    missing = [k for k in ("version", "system", "persona", "example", "shots", "request") if k not in (data or {})]
    if missing:
        raise ValueError(f"rewrite template {name!r} lacks {', '.join(missing)}")
    return data


def first_person(card: PersonaCard, token_budget: int = 256) -> str:
    """The persona in the first person, evidence added until ``token_budget`` approximate tokens."""
    from persona.evidence import count_tokens

    interests = [t for t in card.traits if t.get("kind", "interest") == "interest" and tag_like(t["name"])]
    likes = [sanitize(t["name"], 60) for t in interests if t["weight"] > 0]
    dislikes = [sanitize(t["name"], 60) for t in interests if t["weight"] < 0]
    cues = [sanitize(t["name"], 80) for t in card.traits if t.get("kind") == "cue"]
    parts = []
    if likes:
        parts.append("I am drawn to " + ", ".join(likes) + ".")
    if dislikes:
        parts.append("I tend to avoid " + ", ".join(dislikes) + ".")
    if cues:
        parts.append("Looks I like: " + "; ".join(cues) + ".")
    if card.demographics:
        parts.append(
            "About me: "
            + ", ".join(f"{k.replace('_', ' ')} {sanitize(str(v), 40)}" for k, v in card.demographics.items())
            + "."
        )
    if not parts and card.summary:
        parts.append(sanitize(card.summary, 400))
    text = " ".join(parts)
    used = count_tokens(text)
    liked = []
    for e in card.evidence:
        title, sep, body = e.snippet.partition(": ")
        # "Title: Title (1994). Genres: Drama." -> "Title (1994). Genres: Drama."
        snip = sanitize(body if sep and body.startswith(title) else e.snippet, 160)
        cost = count_tokens(snip) + 2
        if used + cost > token_budget:
            break
        used += cost
        liked.append(snip)
    if liked:
        text += "\nThings I liked: " + "; ".join(liked)
    return text


def rewrite_messages(
    card: PersonaCard,
    prompt: str,
    history: list[str] | None = None,
    params: RewriteParams | None = None,
    template: str = "rewrite_v2",
) -> list[dict[str, str]]:
    """Chat messages asking for ``prompt`` rewritten from ``card``'s perspective."""
    params = params or RewriteParams()
    t = load_template(template)
    system = t["system"].format(max_words=params.max_words).strip()
    about = t["persona"].format(persona=fence(first_person(card, params.persona_tokens), 4000)).strip()
    shots = [sanitize(h, 120) for h in (history or [])[: params.shots] if sanitize(h, 120)]
    if shots:
        about += "\n\n" + t["shots"].format(history=fence("\n".join(f"- {h}" for h in shots), 4000)).strip()
    request = t["request"].format(prompt=sanitize(prompt, 500)).strip()
    if t.get("persona_in", "system") == "request":  # a prefix shared by every request (KV-cache reuse)
        request = about + "\n\n" + request
    else:
        system += "\n\n" + about
    ex = t["example"]
    example_user = (
        f"Example for a different person ({ex['persona']}).\n" + t["request"].format(prompt=ex["prompt"]).strip()
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": example_user},
        {"role": "assistant", "content": ex["rewrite"]},
        {"role": "user", "content": request},
    ]


def negative_messages(
    conversation: list[dict[str, str]], rewrite: str, template: str = "rewrite_v2"
) -> list[dict[str, str]]:
    """The conversation continued with the rewrite and a request for a negative prompt."""
    t = load_template(template)
    return conversation + [
        {"role": "assistant", "content": rewrite},
        {"role": "user", "content": t.get("negative_request", "What would I not want to see?").strip()},
    ]


def parse_reply(text: str) -> str:
    """The rewrite out of a model reply: first non-empty line, labels and wrapping quotes removed."""
    import re

    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        line = re.sub(r"^(rewritten prompt|rewrite|prompt|answer)\s*[:\-]\s*", "", line, flags=re.IGNORECASE)
        line = line.strip().strip("\"'`").strip()
        if line:
            return line
    return ""
