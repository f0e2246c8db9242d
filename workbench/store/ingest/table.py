"""The table importer's SQL: a user's interaction log (and optional users and items files) read into
:class:`~workbench.store.ingest.staging.Staging`, checked and shaped into the workspace's tables.

The column mapping (:class:`persona.data.table.ColumnMapping`) says which column holds what; here it is any
object with its attributes. A value is read the way :func:`persona.data.table.load_table`'s record reader
reads it (ids and texts stripped, a number or a missing-value spelling, epoch seconds or an ISO date); a row
that reader would refuse, or one whose reading here could differ from it, raises
:class:`~workbench.store.ingest.staging.NeedsRecords` and the record reader decides (see :mod:`workbench.store.ingest.staging`).

Each staged table is read in one pass: an inner query parses every mapped column (``_p_<name>``) beside the raw
cells, and the outer one keeps the parsed values with one ``_doubt`` flag per row, so the checks cost one scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workbench.store.ingest.staging import (
    NeedsRecords,
    Staging,
    quote_ident,
    quote_literal,
    read_rows,
    refuse,
    refuse_repeats,
    refuse_unknown,
    shape,
)

_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_FLOAT = ("FLOAT", "DOUBLE")
_TIME = ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATE")


def _numeric(t: str) -> bool:
    """A type whose values DuckDB turns into the same DOUBLE as Python's ``float()`` of them: integers, floats,
    and decimals of at most 15 digits (a correctly rounded division of an exact integer)."""
    if t in _INTEGER or t in _FLOAT:
        return True
    if t.startswith("DECIMAL(") and t.endswith(")"):
        return int(t[8:-1].split(",")[0]) <= 15
    return False


class _Reader:
    """Reads the mapped columns of one staged table the way the record reader does: ``parsed`` maps each
    output name to its SQL expression over the raw cells, ``doubts`` the conditions (over the raw cells and
    the parsed ``_p_<name>`` columns) that send a row to the record reader."""

    def __init__(self, types: dict[str, str], table: str):
        self.types, self.table = types, table
        self.parsed: dict[str, str] = {}
        self.doubts: list[str] = []

    def _refuse_type(self, column: str, t: str):
        raise NeedsRecords(f"column {column!r} of {self.table} is {t}; the record reader reads it")

    def text(self, name: str, column: str | None) -> str:
        """``_cell``: the value as text, stripped; ``''`` for a missing cell or column."""
        if not column:
            expr = "''"
        else:
            c, t = quote_ident(column), self.types[column]
            if t == "VARCHAR":
                self.doubts.append(f"odd_edges({c})")
                expr = f"cell({c})"
            elif t in _INTEGER:
                expr = f"coalesce(CAST({c} AS VARCHAR), '')"
            else:
                self._refuse_type(column, t)
        self.parsed[name] = expr
        return f"_p_{name}"

    def number(self, name: str, column: str | None) -> str:
        """``parse_float``: a number, NULL for a missing-value spelling; anything else is doubted. One pattern
        is matched per cell: whether a cell DuckDB reads as a number is a plain one (DuckDB also reads
        ``+-1`` and ``nan(0x1)``), or whether one it cannot read is a missing-value spelling."""
        p = f"_p_{name}"
        if not column:
            self.parsed[name] = "CAST(NULL AS DOUBLE)"
            return p
        c, t = quote_ident(column), self.types[column]
        if t == "VARCHAR":
            self.parsed[name] = f"TRY_CAST({c} AS DOUBLE)"
            self.doubts.append(
                f"(CASE WHEN {p} IS NULL THEN NOT is_missing({c}) ELSE NOT plain_number({c}) OR NOT isfinite({p}) END)"
            )
        elif _numeric(t):
            self.parsed[name] = f"CAST({c} AS DOUBLE)"
            self.doubts.append(f"({p} IS NOT NULL AND NOT isfinite({p}))")
        else:
            self._refuse_type(column, t)
        return p

    def timestamp(self, name: str, column: str | None) -> str:
        """``_timestamp``: epoch seconds, an ISO date (naive: UTC) or a date-time type; blank is NULL."""
        p = f"_p_{name}"
        if not column:
            self.parsed[name] = "CAST(NULL AS DOUBLE)"
            return p
        c, t = quote_ident(column), self.types[column]
        if t == "VARCHAR":
            n = f"_p_{name}_n"
            self.parsed[f"{name}_n"] = f"TRY_CAST({c} AS DOUBLE)"
            self.parsed[name] = f"(CASE WHEN {n} IS NOT NULL THEN {n} WHEN iso_date({c}) THEN iso_epoch({c}) END)"
            self.doubts.append(
                f"(CASE WHEN {n} IS NOT NULL THEN NOT plain_number({c}) OR NOT isfinite({n}) "
                f"WHEN {p} IS NULL THEN NOT is_blank({c}) ELSE NOT isfinite({p}) END)"
            )
        elif _numeric(t):
            self.parsed[name] = f"CAST({c} AS DOUBLE)"
            self.doubts.append(f"({p} IS NOT NULL AND NOT isfinite({p}))")
        elif t in _TIME:
            self.parsed[name] = f"(epoch_us(CAST({c} AS TIMESTAMPTZ)) / 1e6)"
        else:
            self._refuse_type(column, t)
        return p

    def attributes(self, name: str, columns: Sequence[str]) -> str:
        """The user's attributes as a JSON object (keys sorted, as the store writes them): text stripped,
        other values as they are."""
        parts = []
        for column in sorted(columns):
            c, t = quote_ident(column), self.types[column]
            if t == "VARCHAR":
                self.doubts.append(f"odd_edges({c})")
                value = f"trim({c})"
            elif _numeric(t) or t == "BOOLEAN":
                value = c
            else:
                self._refuse_type(column, t)
            parts.append(f"{quote_literal(column)}, {value}")
        self.parsed[name] = f"json_object({', '.join(parts)})" if parts else "CAST('{}' AS JSON)"
        return f"_p_{name}"

    def tags(self, name: str, column: str | None, separator: str) -> str:
        """``separator``-split categories, each stripped, blanks dropped."""
        if not column:
            self.parsed[name] = "CAST([] AS VARCHAR[])"
            return f"_p_{name}"
        c, t = quote_ident(column), self.types[column]
        if t != "VARCHAR":
            self._refuse_type(column, t)
        self.doubts.append(f"odd_space({c})")
        sep = quote_literal(separator)
        self.parsed[name] = (
            f"list_filter(list_transform(string_split(cell({c}), {sep}), lambda t: trim(t)), lambda t: t <> '')"
        )
        return f"_p_{name}"

    def item(self, prefix: str, m: Any, iid: str) -> dict[str, str]:
        """The item's title, text, image and tags as :class:`workbench.records.Item` gets them from a row."""
        title, text = self.text(f"{prefix}t0", m.item_title), self.text(f"{prefix}x0", m.item_text)
        image = self.text(f"{prefix}i0", m.item_image)
        return {
            "title": f"(CASE WHEN {title} = '' THEN {iid} ELSE {title} END)",
            "text": f"(CASE WHEN {text} <> '' THEN {text} WHEN {title} <> '' THEN {title} ELSE {iid} END)",
            "image_uri": f"NULLIF({image}, '')",
            "tags": self.tags(f"{prefix}tags", m.item_tags, m.tags_separator),
        }

    def read(self, staging: Staging, source: str, target: str, out: dict[str, str]) -> None:
        """``target`` := ``source``'s rows in file order with the ``out`` columns; :class:`NeedsRecords` when any
        row is doubted (:func:`~workbench.store.ingest.staging.read_rows`)."""
        read_rows(staging, source, target, self.parsed, out, self.doubts)


def stage_table(staging: Staging, m: Any, sources: dict[str, str]) -> dict[str, int]:
    """Read, check and shape the ``sources`` (FROM clauses of ``staging``: ``inter``, and ``users`` / ``items``
    when those files were given) into ``users``, ``items`` and ``interactions``; returns their row counts.

    Raises:
        NeedsRecords: when a row is bad, or its reading here could differ from the record reader's.
    """
    # 1. Each interaction row read as the record reader reads it (doubted rows go to the record reader)
    users_file, items_file = "users" in sources, "items" in sources
    r = _Reader(staging.types(sources["inter"]), "the interactions")
    uid, iid, kind = r.text("user_id", m.user), r.text("item_id", m.item), r.text("kind", m.kind)
    out = {
        "user_id": uid,
        "item_id": iid,
        "kind": f"(CASE WHEN {kind} = '' THEN {quote_literal(m.default_kind)} ELSE {kind} END)",
        "value": r.number("value", m.value),
        "timestamp": r.timestamp("timestamp", m.timestamp),
        "text": r.text("text", m.text),
    }
    # the users' and items' columns ride on each row only when the rows carry them (a copy per row costs)
    if not users_file and m.user_attributes:
        out["attributes"] = r.attributes("attributes", m.user_attributes)
    if not items_file and m.item_columns():
        out.update({f"item_{k}": v for k, v in r.item("item_", m, iid).items()})
    r.doubts.append(f"{uid} = '' OR {iid} = ''")  # an empty id: the record reader reports it
    r.read(staging, sources["inter"], "inter_read", out)

    # 2. Users: their own file (ids unique, interactions name only them), else the first row of each
    if users_file:
        u = _Reader(staging.types(sources["users"]), "the users file")
        cols = {"user_id": u.text("user_id", m.user), "attributes": u.attributes("attributes", m.user_attributes)}
        u.read(staging, sources["users"], "users_read", cols)
        _refuse_keys(staging, "users_read", "user_id", "inter_read")
        users = "SELECT user_id, attributes, '' AS text, NULL AS ground_truth, rowid AS _row FROM users_read"
    elif m.user_attributes:
        refuse(
            staging,
            "(SELECT user_id FROM inter_read GROUP BY user_id HAVING count(DISTINCT CAST(attributes AS VARCHAR)) > 1)",
            {"a user with conflicting attributes": "true"},
        )
        users = (
            "SELECT user_id, arg_min(attributes, rowid) AS attributes, '' AS text, NULL AS ground_truth, "
            "min(rowid) AS _row FROM inter_read GROUP BY user_id"
        )
    else:
        users = (
            "SELECT user_id, '{}' AS attributes, '' AS text, NULL AS ground_truth, min(rowid) AS _row "
            "FROM inter_read GROUP BY user_id"
        )
    # 3. Items: their own file likewise, else the first row of each (rows that disagree are refused)
    fields = ("title", "text", "image_uri", "tags")
    if items_file:
        it = _Reader(staging.types(sources["items"]), "the items file")
        key = it.text("item_id", m.item)
        it.read(staging, sources["items"], "items_read", {"item_id": key, **it.item("", m, key)})
        _refuse_keys(staging, "items_read", "item_id", "inter_read")
        items = f"SELECT item_id, 'item' AS kind, {', '.join(fields)}, rowid AS _row FROM items_read"
    elif m.item_columns():
        distinct = "count(DISTINCT (" + ", ".join(f"item_{f}" for f in fields) + "))"
        refuse(
            staging,
            f"(SELECT item_id FROM inter_read GROUP BY item_id HAVING {distinct} > 1)",
            {"an item with conflicting values": "true"},
        )
        firsts = ", ".join(f"arg_min(item_{f}, rowid) AS {f}" for f in fields)
        items = f"SELECT item_id, 'item' AS kind, {firsts}, min(rowid) AS _row FROM inter_read GROUP BY item_id"
    else:  # an item with no columns of its own: its id is its title and text
        items = (
            "SELECT item_id, 'item' AS kind, item_id AS title, item_id AS text, NULL AS image_uri, "
            "CAST([] AS VARCHAR[]) AS tags, min(rowid) AS _row FROM inter_read GROUP BY item_id"
        )
    # 4. The shaped tables, in the order the records came (the interactions as read: their columns are the
    # workspace's already, and a copy of a large log costs time)
    shape(staging, "users", users)
    shape(staging, "items", items)
    for t in ("users_read", "items_read"):
        staging.execute(f"DROP TABLE IF EXISTS {t}")
    staging.execute("ALTER TABLE inter_read RENAME TO interactions")
    return staging.counts()


def _refuse_keys(staging: Staging, table: str, key: str, inter: str) -> None:
    """A users or items file: every id present and once, and every interaction naming one of them."""
    refuse_repeats(staging, table, key)
    refuse_unknown(staging, inter, key, table)
