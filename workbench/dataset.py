"""The common dataset bundle every importer returns, its validation, and writing it to a workspace."""

from __future__ import annotations

import json
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


class StagedDataset:
    """A dataset an importer read into a staging database (:class:`workbench.store.ingest.staging.Staging`), checked
    and shaped there: what :class:`DatasetBundle` is, without a Python object per row.

    :func:`workbench.store.datasets.write_dataset` copies the staged tables into the workspace in bulk. The
    ``users``, ``items`` and ``interactions`` attributes still give the records (read from the staging file on
    first use, in the order the importer met them), for code and tests that look at a small import. The
    staging folder is removed when the object is garbage-collected.

    Args:
        name, source, meta, params, problems: As :class:`DatasetBundle`'s.
        staging: The closed :class:`~workbench.store.ingest.staging.Staging` holding ``users``, ``items`` and
            ``interactions`` in the workspace's shape.
        counts: Rows of each of the three tables.
    """

    def __init__(
        self,
        name: str,
        source: str,
        staging: Any,
        counts: dict[str, int],
        meta: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        problems: Problems | None = None,
    ):
        import shutil
        import weakref

        self.name, self.source, self.staging, self.counts = name, source, staging, dict(counts)
        self.meta, self.params = meta or {}, params or {}
        self.problems = problems or Problems()
        self._records: dict[str, list] = {}
        weakref.finalize(self, shutil.rmtree, str(staging.dir), True)

    def _read(self, table: str) -> list:
        if table not in self._records:
            from workbench.store.ingest.staging import staged_records

            rows = staged_records(self.staging, table)
            if table == "users":
                out = [
                    User(r[0], json.loads(r[1]) if r[1] else {}, r[2] or "", json.loads(r[3]) if r[3] else None)
                    for r in rows
                ]
            elif table == "items":
                out = [Item(r[0], r[1], r[2] or "", r[3] or "", r[4], tuple(r[5] or ())) for r in rows]
            else:
                out = [Interaction(*r[:5], r[5] or "") for r in rows]
            self._records[table] = out
        return self._records[table]

    @property
    def users(self) -> list[User]:
        return self._read("users")

    @property
    def items(self) -> list[Item]:
        return self._read("items")

    @property
    def interactions(self) -> list[Interaction]:
        return self._read("interactions")

    def to_bundle(self) -> DatasetBundle:
        """The same dataset as a :class:`DatasetBundle` of records (for code that edits records; small data)."""
        return DatasetBundle(
            self.name,
            self.source,
            list(self.users),
            list(self.items),
            list(self.interactions),
            dict(self.meta),
            dict(self.params),
            self.problems,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "dataset": self.name,
            "source": self.source,
            "users": self.counts["users"],
            "items": self.counts["items"],
            "interactions": self.counts["interactions"],
            "skipped": dict(self.problems.counts),
        }

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"StagedDataset({self.name!r}, source={self.source!r}, users={c['users']}, items={c['items']}, "
            f"interactions={c['interactions']})"
        )


def check_staged(bundle: StagedDataset) -> None:
    """What :func:`validate_bundle` checks that staging has not: the dataset has users and interactions.

    Raises:
        DataError: as :func:`validate_bundle` words it.
    """
    where = f"dataset {bundle.name!r}"
    if not bundle.counts["users"]:
        raise DataError("no users", file=where, fix="Check the input holds user rows.")
    if not bundle.counts["interactions"]:
        raise DataError("no interactions", file=where, fix="Check the input holds interaction rows.")


def validate_bundle(bundle: DatasetBundle) -> DatasetBundle:
    """Check ids are unique and every interaction points at a known user and item.

    A :class:`StagedDataset` was checked in its staging database: only :func:`check_staged` is left to do.

    Raises:
        DataError: naming the record and field at fault (or, under ``lenient``, drops and counts
            dangling interactions; duplicate ids always raise because which copy to keep is unknown).
    """
    if isinstance(bundle, StagedDataset):
        check_staged(bundle)
        return bundle
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
