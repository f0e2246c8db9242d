"""The persona-encoder interface and the context every encoder sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workbench.records import Interaction, Item, PersonaCard, User


@dataclass
class PersonaContext:
    """What an encoder may look at: users, items and *visible* interactions only (never hidden ones).

    Args:
        users: All users of the split (``attributes`` filtered to the declared demographics).
        items: All items.
        visible: Each user's visible interactions, oldest first.
        meta: The dataset's meta (``like_threshold``, ``dislike_threshold``, ``item_noun``, ...).
        cache: Derived data computed once per context (e.g. :func:`persona.traits.population_of`).
    """

    split_id: str
    dataset_id: str
    users: dict[str, User]
    items: dict[str, Item]
    visible: dict[str, list[Interaction]]
    meta: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def demographics(self, user_id: str) -> dict[str, Any]:
        attrs = self.users[user_id].attributes
        return {k: attrs[k] for k in self.meta.get("demographics", []) if attrs.get(k) not in (None, "")}

    def is_liked(self, x: Interaction) -> bool:
        like = self.meta.get("like_threshold")
        return like is None or x.value is None or x.value >= like

    def is_disliked(self, x: Interaction) -> bool:
        dislike = self.meta.get("dislike_threshold")
        return dislike is not None and x.value is not None and x.value <= dislike


class PersonaEncoder:
    """Base class: ``fit`` on a context, then ``encode`` users into :class:`PersonaCard` s."""

    name = "base"
    version = "0"

    def fit(self, context: PersonaContext) -> PersonaEncoder:
        raise NotImplementedError

    def encode(self, user_ids: list[str]) -> list[PersonaCard]:
        raise NotImplementedError

    @property
    def model_version(self) -> str:
        return f"{self.name}-{self.version}"
