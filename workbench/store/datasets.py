"""Datasets in the workspace: write a validated bundle in one transaction, read records back."""

from __future__ import annotations

from typing import Any

from workbench.dataset import DatasetBundle, StagedDataset, check_staged, validate_bundle
from workbench.errors import DataError
from workbench.records import Interaction, Item, User
from workbench.store.workspace import Workspace, dumps, loads


def write_dataset(ws: Workspace, bundle: DatasetBundle | StagedDataset) -> dict[str, Any]:
    """Validate ``bundle`` and store it in one transaction; returns its summary.

    A :class:`~workbench.dataset.StagedDataset` (checked in its staging database already) is copied in bulk:
    the staging file is attached read-only and each table inserted with one ``INSERT ... SELECT``.

    Raises:
        DataError: when the bundle is invalid or a dataset of that name exists. Either way the
            workspace is unchanged.
    """
    staged = isinstance(bundle, StagedDataset)
    if staged:
        check_staged(bundle)
    else:
        validate_bundle(bundle)
    if ws.scalar("SELECT count(*) FROM datasets WHERE dataset_id = ?", [bundle.name]):
        raise DataError(
            f"dataset {bundle.name!r} already exists in {ws.path}",
            field="name",
            fix="Pass another --name, or use another --db.",
        )
    if staged:
        _write_staged(ws, bundle)
        return bundle.summary()
    d = bundle.name
    with ws.transaction() as con:
        _insert_dataset_row(con, bundle, len(bundle.users), len(bundle.items), len(bundle.interactions))
        _insert_records(ws, d, bundle.users, bundle.items, bundle.interactions)
    return bundle.summary()


#: the staged tables copied into the workspace, in the order the importer met the records
_STAGED = ("users", "items", "interactions")


def _write_staged(ws: Workspace, bundle: StagedDataset) -> None:
    """Copy a staged dataset's tables into the workspace in one transaction (see :func:`write_dataset`)."""
    from workbench.store.ingest.staging import SHAPES

    d, alias = bundle.name, "pwb_staged"
    ws.con.execute(f"ATTACH '{str(bundle.staging.path).replace(chr(39), chr(39) * 2)}' AS {alias} (READ_ONLY)")
    try:
        with ws.transaction() as con:
            c = bundle.counts
            _insert_dataset_row(con, bundle, c["users"], c["items"], c["interactions"])
            for table in _STAGED:
                cols = ", ".join(SHAPES[table])
                insert_staged(con, table, f"SELECT ?, {cols} FROM {alias}.{table}", [d])  # in rowid order
    finally:
        ws.con.execute(f"DETACH {alias}")


def _insert_dataset_row(con, bundle, n_users: int, n_items: int, n_interactions: int) -> None:
    """The ``datasets`` row of a bundle being written (inside the caller's transaction)."""
    con.execute(
        "INSERT INTO datasets (dataset_id, source, params, meta, n_users, n_items, n_interactions)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [bundle.name, bundle.source, dumps(bundle.params), dumps(bundle.meta), n_users, n_items, n_interactions],
    )


def insert_staged(con, table: str, select: str, params: list) -> None:
    """``INSERT INTO table`` the rows of ``select`` (dataset id first, then the shaped columns): one statement,
    inside the caller's transaction."""
    from workbench.store.ingest.staging import SHAPES

    con.execute(f"INSERT INTO {table} (dataset_id, {', '.join(SHAPES[table])}) {select}", params)


def _insert_records(ws: Workspace, d: str, users: list[User], items: list[Item], xs: list[Interaction]) -> None:
    """Insert users, items and interactions of dataset ``d`` (inside the caller's transaction)."""
    ws.insert_columns(
        "users",
        {
            "dataset_id": [d] * len(users),
            "user_id": [u.user_id for u in users],
            "attributes": [dumps(u.attributes or {}) for u in users],
            "text": [u.text or "" for u in users],
            "ground_truth": [dumps(u.ground_truth) for u in users],
        },
        casts={"attributes": "JSON", "ground_truth": "JSON"},
    )
    ws.insert_columns(
        "items",
        {
            "dataset_id": [d] * len(items),
            "item_id": [i.item_id for i in items],
            "kind": [i.kind for i in items],
            "title": [i.title or "" for i in items],
            "text": [i.text or "" for i in items],
            "image_uri": [i.image_uri for i in items],
            "tags": [list(i.tags) for i in items],
        },
        casts={"tags": "VARCHAR[]", "image_uri": "VARCHAR"},
    )
    ws.insert_columns(
        "interactions",
        {
            "dataset_id": [d] * len(xs),
            "user_id": [x.user_id for x in xs],
            "item_id": [x.item_id for x in xs],
            "kind": [x.kind for x in xs],
            "value": [x.value for x in xs],
            "timestamp": [x.timestamp for x in xs],
            "text": [x.text or "" for x in xs],
        },
        casts={"value": "DOUBLE", "timestamp": "DOUBLE"},
    )


def extend_dataset(
    ws: Workspace,
    dataset_id: str,
    *,
    new_users: list[User],
    changed_users: list[User],
    new_items: list[Item],
    changed_items: list[Item],
    interactions: list[Interaction],
    meta: dict[str, Any],
    params: dict[str, Any],
) -> None:
    """Add records to the stored dataset ``dataset_id`` in one transaction: insert the new users, items and
    interactions, replace the attributes of ``changed_users`` and the title/text/image/tags of
    ``changed_items``, and store the dataset's new ``meta``, ``params`` and counts. Any failure rolls it
    all back (the dataset stays as it was)."""
    d = dataset_id
    with ws.transaction() as con:
        _insert_records(ws, d, new_users, new_items, interactions)
        ws.update_columns(
            "users",
            {"dataset_id": d},
            {"user_id": [u.user_id for u in changed_users]},
            {"attributes": [dumps(u.attributes or {}) for u in changed_users]},
            casts={"attributes": "JSON"},
        )
        ws.update_columns(
            "items",
            {"dataset_id": d},
            {"item_id": [i.item_id for i in changed_items]},
            {
                "title": [i.title or "" for i in changed_items],
                "text": [i.text or "" for i in changed_items],
                "image_uri": [i.image_uri for i in changed_items],
                "tags": [list(i.tags) for i in changed_items],
            },
            casts={"tags": "VARCHAR[]", "image_uri": "VARCHAR"},
        )
        con.execute(
            "UPDATE datasets SET meta = ?, params = ?,"
            " n_users = (SELECT count(*) FROM users WHERE dataset_id = ?),"
            " n_items = (SELECT count(*) FROM items WHERE dataset_id = ?),"
            " n_interactions = (SELECT count(*) FROM interactions WHERE dataset_id = ?)"
            " WHERE dataset_id = ?",
            [dumps(meta), dumps(params), d, d, d, d],
        )


def dataset_params(ws: Workspace, dataset_id: str) -> dict[str, Any]:
    """The importer's arguments the dataset was stored with (its provenance; ``{}`` when none)."""
    return loads(ws.scalar("SELECT params FROM datasets WHERE dataset_id = ?", [dataset_id])) or {}


def list_datasets(ws: Workspace) -> list[dict[str, Any]]:
    rows = ws.query_dicts(
        "SELECT dataset_id, source, n_users, n_items, n_interactions, created_at FROM datasets ORDER BY created_at"
    )
    return rows


def resolve_dataset(ws: Workspace, name: str | None) -> str:
    """The dataset called ``name``, or the only one when ``name`` is ``None``."""
    return ws.resolve("dataset", "datasets", "dataset_id", name, "--dataset", "pwb data import ...")


def dataset_meta(ws: Workspace, dataset_id: str) -> dict[str, Any]:
    return loads(ws.scalar("SELECT meta FROM datasets WHERE dataset_id = ?", [dataset_id])) or {}


def load_users(ws: Workspace, dataset_id: str) -> dict[str, User]:
    rows = ws.query(
        "SELECT user_id, attributes, text, ground_truth FROM users WHERE dataset_id = ? ORDER BY user_id", [dataset_id]
    )
    return {r[0]: User(r[0], loads(r[1]) or {}, r[2] or "", loads(r[3])) for r in rows}


def load_items(ws: Workspace, dataset_id: str) -> dict[str, Item]:
    rows = ws.query(
        "SELECT item_id, kind, title, text, image_uri, tags FROM items WHERE dataset_id = ? ORDER BY item_id",
        [dataset_id],
    )
    return {r[0]: Item(r[0], r[1], r[2] or "", r[3] or "", r[4], tuple(r[5] or ())) for r in rows}


def load_interactions(ws: Workspace, dataset_id: str, user_ids: list[str] | None = None) -> list[Interaction]:
    """The dataset's interactions (of ``user_ids`` only, when given), by user, time (unknown last) and item."""
    sql = "SELECT user_id, item_id, kind, value, timestamp, text FROM interactions WHERE dataset_id = ?"
    params: list[Any] = [dataset_id]
    if user_ids is not None:  # a hash join on the ids (list_contains would test every row against every id)
        sql += " AND user_id IN (SELECT unnest(CAST(? AS VARCHAR[])))"
        params.append(list(user_ids))
    sql += " ORDER BY user_id, timestamp NULLS LAST, item_id"
    return [Interaction(*r[:5], r[5] or "") for r in ws.query(sql, params)]


def user_item_counts(ws: Workspace, dataset_id: str) -> tuple[list[str], list[int]]:
    """``(user ids, distinct items of each)`` of every user with an interaction, sorted by id."""
    rows = ws.query(
        "SELECT user_id, count(DISTINCT item_id) FROM interactions WHERE dataset_id = ? GROUP BY user_id ORDER BY user_id",
        [dataset_id],
    )
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def item_activity(ws: Workspace, dataset_id: str) -> dict[str, tuple[int, float | None]]:
    """``{item_id: (interactions, earliest timestamp or None)}`` of every item with an interaction."""
    rows = ws.query(
        "SELECT item_id, count(*), min(timestamp) FROM interactions WHERE dataset_id = ? GROUP BY item_id", [dataset_id]
    )
    return {r[0]: (int(r[1]), r[2]) for r in rows}


def has_dataset(ws: Workspace, dataset_id: str) -> bool:
    """Whether the workspace holds the dataset ``dataset_id`` (a task imports it only when absent)."""
    return bool(ws.scalar("SELECT count(*) FROM datasets WHERE dataset_id = ?", [dataset_id]))
