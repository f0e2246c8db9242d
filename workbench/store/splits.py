"""User splits in the workspace: the ``splits``, ``split_users`` and ``split_items`` tables.

A split (made by :func:`persona.data.splits.make_split`) gives every user of a dataset a role (``train``,
``heldout``, ``coldstart``) and each evaluated user's items a part: ``visible`` history, or ``hidden``
targets labelled ``liked`` / ``disliked`` / ``neutral`` / ``unseen`` (used only for scoring).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from workbench.records import Interaction
from workbench.store.workspace import Workspace, dumps, loads


def resolve_split(ws: Workspace, name: str | None) -> str:
    """The split called ``name``, or the only one when ``name`` is ``None``."""
    return ws.resolve("split", "splits", "split_id", name, "--split", "pwb data split")


def list_splits(ws: Workspace) -> list[dict[str, Any]]:
    """Every stored split as ``{split_id, dataset_id, seed, created_at}``, oldest first."""
    return ws.query_dicts("SELECT split_id, dataset_id, seed, created_at FROM splits ORDER BY created_at")


def split_record(ws: Workspace, split_id: str) -> tuple[str, dict[str, Any]] | None:
    """``(dataset_id, params)`` of a stored split, or ``None`` when there is none of that id."""
    rows = ws.query("SELECT dataset_id, params FROM splits WHERE split_id = ?", [split_id])
    return (rows[0][0], loads(rows[0][1]) or {}) if rows else None


def write_split(
    ws: Workspace,
    split_id: str,
    dataset_id: str,
    seed: int,
    params: dict[str, Any],
    roles: dict[str, str],
    items: Sequence[tuple[str, str, str, str | None]],
) -> None:
    """Store a split in one transaction: its settings, every user's role (``{user_id: role}``) and the
    evaluated users' items as ``(user_id, item_id, part, label)`` rows."""
    users = sorted(roles)
    with ws.transaction() as con:
        con.execute(
            "INSERT INTO splits (split_id, dataset_id, seed, params) VALUES (?, ?, ?, ?)",
            [split_id, dataset_id, seed, dumps(params)],
        )
        ws.insert_columns(
            "split_users", {"split_id": [split_id] * len(users), "user_id": users, "role": [roles[u] for u in users]}
        )
        ws.insert_columns(
            "split_items",
            {
                "split_id": [split_id] * len(items),
                "user_id": [r[0] for r in items],
                "item_id": [r[1] for r in items],
                "part": [r[2] for r in items],
                "label": [r[3] for r in items],
            },
            casts={"label": "VARCHAR"},
        )


def split_summary(ws: Workspace, split_id: str) -> dict[str, Any]:
    """The split's dataset, its number of users per role and of items per label (``items_visible``, ...)."""
    roles = dict(ws.query("SELECT role, count(*) FROM split_users WHERE split_id = ? GROUP BY role", [split_id]))
    labels = dict(
        ws.query(
            "SELECT coalesce(label, 'visible'), count(*) FROM split_items WHERE split_id = ? GROUP BY 1", [split_id]
        )
    )
    return {
        "split": split_id,
        "dataset": split_dataset(ws, split_id),
        "train": roles.get("train", 0),
        "heldout": roles.get("heldout", 0),
        "coldstart": roles.get("coldstart", 0),
        **{f"items_{k}": v for k, v in sorted(labels.items())},
    }


def split_dataset(ws: Workspace, split_id: str) -> str | None:
    """The id of the dataset the split was made from (``None`` for an unknown split)."""
    return ws.scalar("SELECT dataset_id FROM splits WHERE split_id = ?", [split_id])


def split_users(ws: Workspace, split_id: str, roles: Sequence[str] = ("heldout",)) -> list[str]:
    """The ids of the split's users with one of ``roles``, sorted."""
    return [
        r[0]
        for r in ws.query(
            "SELECT user_id FROM split_users WHERE split_id = ? AND list_contains(?, role) ORDER BY user_id",
            [split_id, list(roles)],
        )
    ]


def split_roles(ws: Workspace, split_id: str) -> dict[str, str]:
    """``{user_id: role}`` of every user of the split."""
    return dict(ws.query("SELECT user_id, role FROM split_users WHERE split_id = ?", [split_id]))


def dataset_splits(ws: Workspace, dataset_id: str) -> list[str]:
    """The ids of the splits made from dataset ``dataset_id``, oldest first."""
    return [
        r[0] for r in ws.query("SELECT split_id FROM splits WHERE dataset_id = ? ORDER BY created_at", [dataset_id])
    ]


def split_parts(ws: Workspace, split_id: str, user_ids: Sequence[str]) -> dict[tuple[str, str], tuple[str, str | None]]:
    """``{(user_id, item_id): (part, label)}`` of the split's item assignments for ``user_ids`` (held-out and
    cold-start users only: a train user's items have none, all of them are visible)."""
    rows = ws.query(
        "SELECT user_id, item_id, part, label FROM split_items WHERE split_id = ? AND list_contains(?, user_id)",
        [split_id, list(user_ids)],
    )
    return {(u, i): (part, label) for u, i, part, label in rows}


#: the order visible interactions are listed in (by user, time with unknown last, item; the rest only breaks
#: ties, so that two readings of one split list them alike: :mod:`workbench.store.frames` reads the same order)
VISIBLE_ORDER = "x.user_id, x.timestamp NULLS LAST, x.item_id, x.kind, x.value NULLS LAST, x.text"


def visible_interactions(ws: Workspace, split_id: str, user_ids: Sequence[str] | None = None) -> list[Interaction]:
    """Each user's visible interactions: all of a train user's, the visible part of the others', ordered by
    user, time (unknown last) and item.

    A held-out or cold-start user's interaction is visible when the split shows that user its item, so one
    added to the dataset after the split (``pwb data import table --into``) on an item hidden from the user
    stays hidden, and one on an item the split never gave the user is left out: never a hidden like in the
    visible history."""
    sql = """
        SELECT x.user_id, x.item_id, x.kind, x.value, x.timestamp, x.text
        FROM interactions x JOIN split_users s ON s.user_id = x.user_id AND s.split_id = ?
        WHERE x.dataset_id = ? AND (s.role = 'train' OR EXISTS (
            SELECT 1 FROM split_items v WHERE v.split_id = s.split_id AND v.user_id = x.user_id
              AND v.item_id = x.item_id AND v.part = 'visible'))
    """
    params: list[Any] = [split_id, split_dataset(ws, split_id)]
    if user_ids is not None:
        sql += " AND list_contains(?, x.user_id)"
        params.append(list(user_ids))
    sql += f" ORDER BY {VISIBLE_ORDER}"
    return [Interaction(*r[:5], r[5] or "") for r in ws.query(sql, params)]


def hidden_targets(
    ws: Workspace, split_id: str, user_ids: Sequence[str] | None = None
) -> dict[str, dict[str, list[str]]]:
    """``{user: {label: [item ids]}}`` of each evaluated user's hidden items (for scoring only)."""
    sql = "SELECT user_id, label, item_id FROM split_items WHERE split_id = ? AND part = 'hidden'"
    params: list[Any] = [split_id]
    if user_ids is not None:
        sql += " AND list_contains(?, user_id)"
        params.append(list(user_ids))
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for u, lab, iid in ws.query(sql + " ORDER BY user_id, item_id", params):
        out[u][lab].append(iid)
    return {u: dict(v) for u, v in out.items()}


def most_liked_titles(ws: Workspace, split_id: str, dataset_id: str, like_threshold: float | None, n: int) -> list[str]:
    """Titles of the ``n`` items the most training users of the split liked (visible interactions only, a
    value at or above ``like_threshold`` when the dataset has one; untitled items left out), ties by item id."""
    rows = ws.query(
        """
        SELECT i.title FROM interactions x
        JOIN split_users s ON s.user_id = x.user_id AND s.split_id = ? AND s.role = 'train'
        JOIN items i ON i.dataset_id = x.dataset_id AND i.item_id = x.item_id
        WHERE x.dataset_id = ? AND (? IS NULL OR x.value IS NULL OR x.value >= ?) AND coalesce(i.title, '') <> ''
        GROUP BY i.item_id, i.title ORDER BY count(DISTINCT x.user_id) DESC, i.item_id LIMIT ?
        """,
        [split_id, dataset_id, like_threshold, like_threshold, n],
    )
    return [r[0] for r in rows]
