"""The common dataset bundle every importer returns, its validation, and writing it to a workspace."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import DataError, Problems
from workbench.records import Interaction, Item, User


@dataclass
class DatasetBundle:
    """A dataset in the common records, ready to store.

    Args:
        name: Dataset id in the workspace.
        source: Importer name (``movielens``, ``stackexchange``, ``faces``, ``synthetic``, ``table``).
        users, items, interactions: The records.
        meta: What later stages need to know: ``demographics`` (attribute keys that are demographic),
            ``like_threshold`` / ``dislike_threshold`` (on ``Interaction.value``), ``licence``.
        params: The importer's arguments, for provenance.
        problems: Rows skipped under ``--lenient``, counted by kind.
    """

    name: str
    source: str
    users: list[User]
    items: list[Item]
    interactions: list[Interaction]
    meta: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    problems: Problems = field(default_factory=Problems)

    def summary(self) -> dict[str, Any]:
        return {
            "dataset": self.name,
            "source": self.source,
            "users": len(self.users),
            "items": len(self.items),
            "interactions": len(self.interactions),
            "skipped": dict(self.problems.counts),
        }


def validate_bundle(bundle: DatasetBundle) -> DatasetBundle:
    """Check ids are unique and every interaction points at a known user and item.

    Raises:
        DataError: naming the record and field at fault (or, under ``lenient``, drops and counts
            dangling interactions; duplicate ids always raise because which copy to keep is unknown).
    """
    where = f"dataset {bundle.name!r}"
    if not bundle.users:
        raise DataError("no users", file=where, fix="Check the input holds user rows.")
    if not bundle.interactions:
        raise DataError("no interactions", file=where, fix="Check the input holds interaction rows.")
    seen: set[str] = set()
    for i, user in enumerate(bundle.users, start=1):
        if not isinstance(user.user_id, str) or not user.user_id:
            raise DataError(
                f"user record #{i} has an empty or non-string id {user.user_id!r}", file=where, field="user_id"
            )
        if user.user_id in seen:
            raise DataError(
                f"user record #{i} repeats id {user.user_id!r}",
                file=where,
                field="user_id",
                fix="User ids must be unique.",
            )
        seen.add(user.user_id)
    items: set[str] = set()
    for i, item in enumerate(bundle.items, start=1):
        if not isinstance(item.item_id, str) or not item.item_id:
            raise DataError(
                f"item record #{i} has an empty or non-string id {item.item_id!r}", file=where, field="item_id"
            )
        if item.item_id in items:
            raise DataError(
                f"item record #{i} repeats id {item.item_id!r}",
                file=where,
                field="item_id",
                fix="Item ids must be unique.",
            )
        items.add(item.item_id)
    kept = []
    for i, inter in enumerate(bundle.interactions, start=1):
        if inter.user_id not in seen:
            bundle.problems.report(
                DataError(f"interaction record #{i} names unknown user {inter.user_id!r}", file=where, field="user_id"),
                "unknown user",
            )
            continue
        if inter.item_id not in items:
            bundle.problems.report(
                DataError(f"interaction record #{i} names unknown item {inter.item_id!r}", file=where, field="item_id"),
                "unknown item",
            )
            continue
        bad = next(
            (
                f
                for f in ("value", "timestamp")
                if getattr(inter, f) is not None and not math.isfinite(getattr(inter, f))
            ),
            None,
        )
        if bad:
            bundle.problems.report(
                DataError(
                    f"interaction record #{i} has non-finite {bad} {getattr(inter, bad)!r}", file=where, field=bad
                ),
                "bad value",
            )
            continue
        kept.append(inter)
    bundle.interactions = kept
    if not kept:
        raise DataError("no valid interactions left", file=where)
    return bundle
