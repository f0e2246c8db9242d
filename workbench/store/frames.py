"""A split's visible interactions as columns: what the persona miner's graph and cards read at scale.

:func:`visible_frame` runs one query (the visible rule of :func:`workbench.store.splits.visible_interactions`)
and reads its result as Arrow columns straight into numpy arrays: user and item positions, interaction kinds,
values and times, a row per interaction, ordered by user, time (unknown last) and item, exactly as
:func:`~workbench.store.splits.visible_interactions` lists them (:data:`~workbench.store.splits.VISIBLE_ORDER`,
sorted here on the users', items' and kinds' positions, which follow their ids' order). Only the rows that carry a text bring a Python
string. A hundred million interactions take a few GB as columns where records took tens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.store.splits import split_dataset
from workbench.store.workspace import Workspace

_VISIBLE = """
    SELECT x.user_id, x.item_id, x.kind, x.value, x.timestamp, x.text
    FROM interactions x JOIN split_users s ON s.user_id = x.user_id AND s.split_id = $split
    WHERE x.dataset_id = $dataset AND (s.role = 'train' OR EXISTS (
        SELECT 1 FROM split_items v WHERE v.split_id = s.split_id AND v.user_id = x.user_id
          AND v.item_id = x.item_id AND v.part = 'visible'))
"""


@dataclass
class VisibleFrame:
    """Visible interactions as columns (``E`` rows, by user, time with unknown last, item).

    Attributes:
        user_ids: The users with a visible interaction, sorted; ``user`` indexes them.
        item_ids: Every item of the dataset, sorted; ``item`` indexes them.
        kinds: The interaction kinds seen, sorted; ``kind`` indexes them.
        user, item: ``int32 (E,)``; kind: ``int16 (E,)``.
        value, timestamp: ``float64 (E,)``, NaN where missing (``has_value`` / ``has_timestamp`` say which).
        text_rows, texts: The rows whose interaction has a text, and those texts.
    """

    split_id: str
    dataset_id: str
    user_ids: list[str]
    item_ids: list[str]
    kinds: list[str]
    user: np.ndarray
    item: np.ndarray
    kind: np.ndarray
    value: np.ndarray
    has_value: np.ndarray
    timestamp: np.ndarray
    has_timestamp: np.ndarray
    text_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    texts: list[str] = field(default_factory=list)

    @property
    def ptr(self) -> np.ndarray:
        """CSR offsets: user ``u``'s rows are ``ptr[u]:ptr[u + 1]`` (computed once)."""
        if getattr(self, "_ptr", None) is None:
            ptr = np.zeros(len(self.user_ids) + 1, dtype=np.int64)
            np.cumsum(np.bincount(self.user, minlength=len(self.user_ids)), out=ptr[1:])
            self._ptr = ptr
        return self._ptr

    def release_positions(self) -> None:
        """Drop the ``user`` and ``item`` columns (a graph built from the frame holds them as its edge index);
        ``ptr`` and ``len`` keep working."""
        self.ptr  # noqa: B018 - computed before the column it is made from goes
        self._len = len(self)
        self.user = self.item = None

    def __len__(self) -> int:
        return int(self.user.shape[0]) if self.user is not None else self._len


def visible_frame(ws: Workspace, split_id: str, batch_rows: int = 1 << 20) -> VisibleFrame:
    """The split's visible interactions as a :class:`VisibleFrame` (see the module docstring). The rows arrive as
    Arrow record batches of ``batch_rows`` and are copied into arrays made to size beforehand, so the read holds
    the columns and one batch, never a second copy of them."""
    dataset_id = split_dataset(ws, split_id)
    params = {"split": split_id, "dataset": dataset_id}
    # 1. One pass for the lists: the users (with their rows' count) and the kinds of the visible interactions.
    rows = ws.con.execute(
        f"""SELECT x.user_id, x.kind, count(*) FROM ({_VISIBLE}) x
        SEMI JOIN items i ON i.dataset_id = $dataset AND i.item_id = x.item_id
        GROUP BY GROUPING SETS ((x.user_id), (x.kind))""",
        params,
    ).fetchall()
    users = sorted((u, c) for u, k, c in rows if u is not None)
    lists = {
        "users": [u for u, _ in users],
        "kinds": sorted(k for u, k, _ in rows if u is None),
        "items": [
            r[0]
            for r in ws.con.execute(
                "SELECT item_id FROM items WHERE dataset_id = ? ORDER BY item_id", [dataset_id]
            ).fetchall()
        ],
    }
    # 2. The columns made to size, then filled from the record batches in the frame's order.
    n = sum(c for _, c in users)
    del rows, users
    cols = {
        "u": np.empty(n, np.int32),
        "i": np.empty(n, np.int32),
        "k": np.empty(n, np.int16),
        "value": np.empty(n, np.float64),
        "has_value": np.empty(n, bool),
        "ts": np.empty(n, np.float64),
        "has_ts": np.empty(n, bool),
    }
    text_rows: list[np.ndarray] = []
    texts: list[str] = []
    cur = ws.con.cursor()  # a connection of its own: the relational API refuses one with a pending result
    try:
        reader = cur.sql(
            f"""
            WITH vis AS ({_VISIBLE}),
            users AS (SELECT user_id, row_number() OVER (ORDER BY user_id) - 1 AS u FROM (SELECT DISTINCT user_id FROM vis)),
            items AS (SELECT item_id, row_number() OVER (ORDER BY item_id) - 1 AS i FROM items WHERE dataset_id = $dataset),
            kinds AS (SELECT kind, row_number() OVER (ORDER BY kind) - 1 AS k FROM (SELECT DISTINCT kind FROM vis))
            SELECT u, i, k, coalesce(x.value, 'NaN'::DOUBLE) AS value, x.value IS NOT NULL AS has_value,
                   coalesce(x.timestamp, 'NaN'::DOUBLE) AS ts, x.timestamp IS NOT NULL AS has_ts,
                   CASE WHEN coalesce(x.text, '') <> '' THEN x.text END AS text
            FROM vis x JOIN users USING (user_id) JOIN items USING (item_id) JOIN kinds USING (kind)
            ORDER BY u, x.timestamp NULLS LAST, i, k, x.value NULLS LAST, x.text
            """,
            params=params,
        ).to_arrow_reader(batch_rows)
        at = 0
        for batch in reader:
            m = batch.num_rows
            for name, out in cols.items():
                out[at : at + m] = batch.column(name).to_numpy(zero_copy_only=False)
            text = batch.column("text")
            if text.null_count < m:
                valid = np.asarray(text.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
                text_rows.append(np.flatnonzero(valid) + at)
                texts += text.filter(text.is_valid()).to_pylist()
            at += m
    finally:
        cur.close()
    # 3. Arrow's memory given back and the count checked against the rows read.
    import pyarrow as pa

    pa.default_memory_pool().release_unused()  # Arrow's pool keeps what the batches took; give it back
    if at != n:  # the count and the rows disagree: the split changed under the read
        raise RuntimeError(f"split {split_id!r}: counted {n} visible interactions, read {at}; read it again")
    return VisibleFrame(
        split_id,
        dataset_id,
        lists["users"],
        lists["items"],
        lists["kinds"],
        cols["u"],
        cols["i"],
        cols["k"],
        cols["value"],
        cols["has_value"],
        cols["ts"],
        cols["has_ts"],
        np.concatenate(text_rows) if text_rows else np.zeros(0, dtype=np.int64),
        texts,
    )


def attribute_values(ws: Workspace, dataset_id: str, keys: Sequence[str], user_ids: Sequence[str] | None = None):
    """Each of ``keys``' attribute value, as Python values (``None`` when absent): for ``user_ids`` in their order
    (``{key: [value, ...]}``), or, with ``user_ids=None``, the set of distinct values over every user of the
    dataset (``{key: [value, ...]}`` of distinct values)."""
    out: dict[str, list[Any]] = {}
    for key in keys:
        path = "$." + json.dumps(str(key))  # a quoted JSON path step: any key spelling
        if user_ids is None:
            rows = ws.query(
                "SELECT DISTINCT CAST(json_extract(attributes, ?) AS VARCHAR) FROM users WHERE dataset_id = ?",
                [path, dataset_id],
            )
            out[key] = [json.loads(r[0]) if r[0] is not None else None for r in rows]
        else:
            rows = ws.con.execute(
                "SELECT CAST(json_extract(u.attributes, $path) AS VARCHAR) FROM (SELECT unnest($ids) AS user_id, "
                "generate_subscripts($ids, 1) AS n) q LEFT JOIN users u ON u.user_id = q.user_id "
                "AND u.dataset_id = $dataset ORDER BY q.n",
                {"path": path, "ids": list(user_ids), "dataset": dataset_id},
            ).fetchall()
            parsed = {t: json.loads(t) for t in {r[0] for r in rows} if t is not None}
            out[key] = [parsed.get(r[0]) for r in rows]
    return out


def visible_user_attributes(ws: Workspace, dataset_id: str, user_ids: Sequence[str], keys: Sequence[str] | None = None):
    """The attributes of ``user_ids`` (a frame's users) in their order, read as Arrow by one join with the ids
    handed to DuckDB as an Arrow column (no Python row per user): with ``keys=None`` each user's attributes as JSON
    text in an Arrow string array (take a batch's with ``.take``), else ``{key: [value, ...]}`` of those keys'
    values (``None`` when absent)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.table({"user_id": pa.array(user_ids, pa.string()), "n": pa.array(np.arange(len(user_ids)))})
    cur = ws.con.cursor()
    cur.register("pwb_frame_users", ids)
    join = "FROM pwb_frame_users v LEFT JOIN users u ON u.dataset_id = $dataset AND u.user_id = v.user_id ORDER BY v.n"
    try:
        if keys is None:
            rel = cur.sql(f"SELECT CAST(u.attributes AS VARCHAR) AS a {join}", params={"dataset": dataset_id})
            return rel.to_arrow_table()["a"].combine_chunks()
        out: dict[str, list[Any]] = {}
        for key in keys:
            col = cur.sql(
                f"SELECT CAST(json_extract(u.attributes, $path) AS VARCHAR) AS v {join}",
                params={"dataset": dataset_id, "path": "$." + json.dumps(str(key))},
            ).to_arrow_table()["v"]
            coded = pc.dictionary_encode(col.combine_chunks())
            values = [None if t is None else json.loads(t) for t in coded.dictionary.to_pylist()]
            out[key] = [None if i is None else values[i] for i in coded.indices.to_pylist()]
        return out
    finally:
        cur.close()
