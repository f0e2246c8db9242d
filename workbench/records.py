"""Typed records shared by every stage (names fixed by DESIGN.md).

Records are plain dataclasses so stages exchange them by function call and the store maps them
one-to-one onto DuckDB rows. Free-form dictionaries (``attributes``, ``traits``) are JSON in the store.

The generation records, :class:`generation.conditions.UserCondition` and
:class:`generation.conditions.Generation`, live with the guidance rules their content hash is made of
(a condition's id hashes its rule's full configuration); they are the only ones of their names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class User:
    """A member of a community.

    Args:
        user_id: Identifier unique within its dataset (always a string).
        attributes: Demographic or profile attributes (``{"age": 24, "gender": "M"}``). Only the keys
            a dataset declares as demographics are ever shown to persona encoders.
        text: Free text the user wrote about themself (e.g. a Stack Exchange *AboutMe*), or ``""``.
        ground_truth: Planted labels kept by synthetic generators for recovery tests; never shown to
            encoders or rewriters.
    """

    user_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    ground_truth: dict[str, Any] | None = None


@dataclass
class Item:
    """Something users interact with: a movie, a tag, a post, an image.

    Args:
        item_id: Identifier unique within its dataset.
        kind: What it is (``"movie"``, ``"tag"``, ``"question"``, ``"image"``, ...).
        title: Short human-readable name.
        text: Longer description used by text encoders.
        image_uri: Path or URI of the item's image, if it has one.
        tags: Categorical descriptors (genres, tags, face attributes) used by persona encoders.
    """

    item_id: str
    kind: str = "item"
    title: str = ""
    text: str = ""
    image_uri: str | None = None
    tags: tuple[str, ...] = ()


@dataclass
class Interaction:
    """One observed behaviour of a user towards an item.

    Args:
        user_id: The acting user.
        item_id: The item acted on.
        kind: Behaviour type (``"rating"``, ``"ask"``, ``"answer"``, ``"comment"``, ``"tag"``, ...).
        value: Numeric strength (a rating, a score, a count); ``None`` when the behaviour has none.
        timestamp: Seconds since the epoch, or ``None`` when unknown.
        text: What the user wrote with it (a review, an answer body), or ``""``.
    """

    user_id: str
    item_id: str
    kind: str = "interaction"
    value: float | None = None
    timestamp: float | None = None
    text: str = ""


@dataclass
class Evidence:
    """One piece of behaviour a persona rests on, with its weight (attention or TF-IDF mass)."""

    item_id: str
    weight: float
    snippet: str = ""


@dataclass
class PersonaCard:
    """A user's mined persona.

    Args:
        user_id: Whose persona this is.
        summary: The verbalised persona (one or two sentences).
        traits: Ranked traits, each ``{"name": str, "weight": float}``; a negative weight is a dislike.
        evidence: Behaviour ranked by how much it supports the persona.
        embedding: A vector representation (encoder-specific), or ``None``.
        model_version: Encoder name and version that produced the card.
    """

    user_id: str
    summary: str
    traits: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    embedding: list[float] | None = None
    model_version: str = ""
    demographics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rewrite:
    """A prompt rewritten from a persona's perspective."""

    user_id: str
    prompt: str
    rewritten: str
    negative: str = ""
    backend: str = ""
    model: str = ""
    shots: int = 0
    latency_s: float = 0.0
    prompt_id: str = ""
    fallback: str = ""  # why the template baseline replaced the model's output ("" = it did not)
    selector_score: float | None = None  # how well the kept candidate fits the visible history (prompting.select)


@dataclass
class Score:
    """One metric value for one unit of a run; the ``scores`` table is a long list of these."""

    run_id: str
    unit_id: str
    metric: str
    value: float
    model: str = ""


@dataclass
class PersonaRequest:
    """A structured persona card to turn into persona text (its ``summary`` is ignored)."""

    card: PersonaCard
    item_noun: str = "items"


@runtime_checkable
class PersonaVerbalizer(Protocol):
    """What persona mining needs of a text backend: persona text for structured cards.

    Every rewriter backend of ``prompting`` satisfies it; ``persona`` takes one by this protocol (so it never
    imports ``prompting``), and without one writes the template text of :func:`persona.verbalize.verbalize_card`.
    """

    def verbalize_batch(self, requests: list[PersonaRequest]) -> list[str]: ...
