"""Staging: where an import is read by DuckDB, checked in SQL and shaped, before it touches the workspace.

An importer reads its files into a private DuckDB database in a temporary folder (CSV and TSV with
``read_csv``, Parquet with ``read_parquet``, Arrow tables as they are, XML rows appended in chunks), checks
the rows in SQL, and builds three tables in the workspace's shape: ``users``, ``items`` and
``interactions``. :func:`workbench.store.datasets.write_dataset` then copies them into the workspace in one
transaction (the staging file attached read-only), so no Python object is made per row and memory stays
bounded by DuckDB's buffer manager, whatever the size of the input.

The checks here are deliberately conservative: they accept only values whose reading in SQL is the same
as the record readers' (a number in plain decimal notation, an ISO date DuckDB and Python read alike, ids
without exotic whitespace at their ends). Anything else raises :class:`NeedsRecords`, and the importer hands
the file to its record reader, which reports the first bad row with its file, line and field (or, under
``--lenient``, skips and counts the bad rows) exactly as before. Clean input, the overwhelming case for a
large log, never goes through Python row by row.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

#: whitespace Python's ``str.strip()`` removes besides the space: the ASCII controls DuckDB's ``trim`` keeps and
#: the Unicode spaces; a value with one at either end is left to the record reader (``trim`` takes the spaces)
_OTHER_SPACE = (
    r"\t\n\r\x{0b}\x{0c}\x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)
#: ASCII whitespace around a value that both DuckDB's casts and Python's ``float`` skip
_WS = r"[ \t\n\r\x{0b}\x{0c}]*"
#: a number both Python's ``float`` and DuckDB read, and read alike
NUMBER = r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"
#: an ISO date or date-time both ``datetime.fromisoformat`` and DuckDB's TIMESTAMPTZ read, and read alike
ISO_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?"
#: spellings of a missing number (the record readers' ``workbench.tabular.MISSING``), and the blank cell
MISSING = r"(?i:na|n/a|null|none)?"

_MACROS = [
    # the cell as text, spaces trimmed (other whitespace at its ends: see odd_edges)
    "CREATE MACRO cell(v) AS trim(coalesce(v, ''))",
    f"CREATE MACRO odd_edges(v) AS coalesce(regexp_matches(v, '^[{_OTHER_SPACE}]|[{_OTHER_SPACE}]$'), false)",
    f"CREATE MACRO odd_space(v) AS coalesce(regexp_matches(v, '[{_OTHER_SPACE}]'), false)",
    f"CREATE MACRO is_blank(v) AS v IS NULL OR regexp_full_match(v, '{_WS}')",
    f"CREATE MACRO is_missing(v) AS v IS NULL OR regexp_full_match(v, '{_WS}{MISSING}{_WS}')",
    f"CREATE MACRO plain_number(v) AS regexp_full_match(v, '{_WS}{NUMBER}{_WS}')",
    f"CREATE MACRO iso_date(v) AS regexp_full_match(v, '{_WS}{ISO_DATE}{_WS}')",
    # seconds since the epoch of an ISO date (naive: UTC), as Python's datetime.timestamp() gives them
    "CREATE MACRO iso_epoch(v) AS epoch_us(TRY_CAST(trim(v) AS TIMESTAMPTZ)) / 1e6",
]


class NeedsRecords(Exception):
    """The staged reading cannot vouch for this input (a value SQL and the record reader might read apart, a
    row DuckDB's CSV reader refuses, a check that failed): the importer's record reader decides instead."""


def attempt(build) -> tuple[Staging, dict[str, int]] | None:
    """``(staging, counts)`` of ``build(staging)`` (it reads, checks and shapes an import in a fresh
    :class:`Staging`, returning the shaped tables' counts), the staging closed for the workspace to attach; or
    ``None`` when it raised :class:`NeedsRecords` (the importer's record reader then decides). Any other error
    propagates; either way a failed staging folder is removed."""
    staging = Staging()
    try:
        counts = build(staging)
    except NeedsRecords:
        staging.remove()
        return None
    except BaseException:
        staging.remove()
        raise
    staging.close()
    return staging, counts


def stage_dir() -> str | None:
    """Where staging folders go: ``$PWB_TMP``, else the system's temporary folder."""
    return os.environ.get("PWB_TMP") or None


class Staging:
    """A private DuckDB database in a temporary folder, for one import.

    Args:
        memory_limit: DuckDB's memory limit for the staging work (``"2GB"``); beyond it DuckDB spills to
            the staging folder. Default: ``$PWB_STAGE_MEMORY`` or ``"2GB"``.
        threads: DuckDB threads (default: DuckDB's, one per core).

    The database file stays (closed) after :meth:`close` so that the workspace can attach it; :meth:`remove`
    deletes the folder. Use as a context manager to remove it on error.
    """

    def __init__(self, *, memory_limit: str | None = None, threads: int | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="pwb-stage-", dir=stage_dir()))
        self.path = self.dir / "stage.duckdb"
        config = {
            "memory_limit": memory_limit or os.environ.get("PWB_STAGE_MEMORY", "2GB"),
            "temp_directory": str(self.dir / "spill"),
            "preserve_insertion_order": True,
        }
        if threads:
            config["threads"] = threads
        self.con: duckdb.DuckDBPyConnection | None = duckdb.connect(str(self.path), config=config)
        self.con.execute("SET TimeZone = 'UTC'")
        for macro in _MACROS:
            self.con.execute(macro)

    # -- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is not None:
            self.remove()

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection to the closed staging database (the caller closes it)."""
        return duckdb.connect(str(self.path), read_only=True)

    # -- reading sources (each gives a FROM clause; the importer's one query reads it in file order) --------
    def csv_source(self, path: str | os.PathLike, names: Sequence[str], delimiter: str, *, quoted: bool = True) -> str:
        """A CSV/TSV file (``.gz`` too) as a FROM clause of text columns named ``names`` (the header's, read and
        checked by the caller). DuckDB's strict reader refuses rows with a wrong number of fields, stray quotes
        or bytes that are not UTF-8 (the query reading it then raises :class:`NeedsRecords`); empty cells read
        as ``''``, as Python's ``csv`` gives them. ``quoted=False`` reads ``"`` as any other character (a file
        split on its delimiter alone, as RecBole's atomic files are)."""
        columns = "{" + ", ".join(f"{_lit(n)}: 'VARCHAR'" for n in names) + "}"
        cells = ", ".join(f"coalesce({_ident(n)}, '') AS {_ident(n)}" for n in names)
        quote = "quote = '\"', escape = '\"'" if quoted else "quote = '', escape = ''"
        return (
            f"(SELECT {cells} FROM read_csv({_lit(str(path))}, header = true, auto_detect = false, "
            f"columns = {columns}, delim = {_lit(delimiter)}, {quote}, strict_mode = true))"
        )

    def parquet_source(self, path: str | os.PathLike) -> str:
        """A Parquet file as a FROM clause, with its own column types (:meth:`types` of it)."""
        source = f"read_parquet({_lit(str(path))})"
        try:
            self.con.execute(f"DESCRIBE SELECT * FROM {source}")
        except duckdb.Error as exc:
            raise NeedsRecords(f"DuckDB could not read {path}: {str(exc).splitlines()[0]}") from exc
        return source

    def arrow_source(self, name: str, arrow_table: Any) -> str:
        """An Arrow table (a Hugging Face ``datasets`` table, say) as a FROM clause: a view kept until
        :meth:`close`."""
        self.con.register(name, arrow_table)
        return name

    def types(self, source: str) -> dict[str, str]:
        """``{column: SQL type}`` of a table or FROM clause."""
        return {r[0]: r[1] for r in self.con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}

    def create_from(self, table: str, select: str) -> None:
        """``table`` := ``select`` (a query over a source of this staging); a source DuckDB refuses to read as
        the record reader would raises :class:`NeedsRecords`."""
        try:
            self.con.execute(f"CREATE TABLE {table} AS {select}")
        except (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.BinderException) as exc:
            raise NeedsRecords(f"DuckDB's reader refused the input: {str(exc).splitlines()[0]}") from exc

    def create(self, table: str, columns: Mapping[str, str]) -> None:
        """An empty ``table`` with ``columns`` (name to SQL type), for rows appended by :meth:`append`."""
        self.con.execute(f"CREATE TABLE {table} ({', '.join(f'{_ident(c)} {t}' for c, t in columns.items())})")

    def append(self, table: str, columns: Mapping[str, Sequence[Any]]) -> int:
        """Append column arrays to ``table`` in one scan (chunks of a streamed file)."""
        import numpy as np

        names = list(columns)
        n = len(columns[names[0]]) if names else 0
        if n == 0:
            return 0
        frame = {}
        for name in names:
            arr = np.empty(n, dtype=object)
            arr[:] = list(columns[name])
            frame[name] = arr
        view = f"_append_{table}"
        self.con.register(view, frame)
        try:
            self.con.execute(
                f"INSERT INTO {table} ({', '.join(map(_ident, names))}) SELECT {', '.join(map(_ident, names))} FROM {view}"
            )
        finally:
            self.con.unregister(view)
        return n

    # -- inspecting --------------------------------------------------------------------------------
    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        row = self.con.execute(sql, params or []).fetchone()
        return None if row is None else row[0]

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.con.execute(sql, params or [])

    def counts(self) -> dict[str, int]:
        """Rows of the shaped ``users``, ``items`` and ``interactions`` tables."""
        return {t: int(self.scalar(f"SELECT count(*) FROM {t}")) for t in ("users", "items", "interactions")}

    def first_problem(self, table: str, checks: Mapping[str, str]) -> str | None:
        """The name of the first of ``checks`` (name to a SQL condition over ``table``'s rows that marks a bad
        row) any row meets, or ``None`` when the table is clean."""
        if not checks:
            return None
        flags = ", ".join(f"bool_or(coalesce({cond}, true)) AS {_ident(name)}" for name, cond in checks.items())
        row = self.con.execute(f"SELECT {flags} FROM {table}").fetchone()
        return next((name for name, hit in zip(checks, row) if hit), None)


# -- the shaped tables ----------------------------------------------------------------------------------
#: the workspace's columns of each shaped table (less ``dataset_id``), in order
SHAPES = {
    "users": {"user_id": "VARCHAR", "attributes": "JSON", "text": "VARCHAR", "ground_truth": "JSON"},
    "items": {
        "item_id": "VARCHAR",
        "kind": "VARCHAR",
        "title": "VARCHAR",
        "text": "VARCHAR",
        "image_uri": "VARCHAR",
        "tags": "VARCHAR[]",
    },
    "interactions": {
        "user_id": "VARCHAR",
        "item_id": "VARCHAR",
        "kind": "VARCHAR",
        "value": "DOUBLE",
        "timestamp": "DOUBLE",
        "text": "VARCHAR",
    },
}


def read_rows(
    staging: Staging, source: str, target: str, parsed: Mapping[str, str], out: Mapping[str, str], doubts: Sequence[str]
) -> None:
    """``target`` := ``source``'s rows in file order (its ``rowid``), in one pass: an inner query parses the cells
    (``parsed``: name to an expression over the raw cells, each available as ``_p_<name>``), the outer keeps the
    ``out`` columns (name to an expression over the raw and parsed ones); then :class:`NeedsRecords` if any row
    meets one of ``doubts`` (conditions over the same; NULL counts as met)."""
    inner = ", ".join(f"{expr} AS _p_{name}" for name, expr in parsed.items())
    cols = ", ".join(f"{expr} AS {_ident(name)}" for name, expr in out.items())
    doubt = " OR ".join(f"coalesce({d}, true)" for d in doubts) or "false"
    staging.create_from(
        target, f"SELECT {cols}, ({doubt}) AS _doubt FROM (SELECT *{', ' + inner if inner else ''} FROM {source})"
    )
    refuse(staging, target, {f"a row of {source} the record reader may read otherwise": "_doubt"})


def refuse(staging: Staging, table: str, checks: Mapping[str, str]) -> None:
    """Raise :class:`NeedsRecords` naming the first of ``checks`` a row of ``table`` meets."""
    hit = staging.first_problem(table, checks)
    if hit is not None:
        raise NeedsRecords(hit)


def refuse_repeats(staging: Staging, table: str, key: str) -> None:
    """Raise :class:`NeedsRecords` when ``table`` has an empty or repeated ``key``."""
    refuse(staging, table, {f"an empty {key}": f"{key} = ''"})
    refuse(staging, f"(SELECT {key} FROM {table} GROUP BY {key} HAVING count(*) > 1)", {f"a repeated {key}": "true"})


def refuse_unknown(staging: Staging, table: str, key: str, known: str) -> None:
    """Raise :class:`NeedsRecords` when a row of ``table`` names a ``key`` that ``known`` does not hold."""
    refuse(
        staging,
        f"(SELECT x.{key} FROM {table} x ANTI JOIN {known} k ON k.{key} = x.{key})",
        {f"a row naming an unknown {key}": "true"},
    )


def shape(staging: Staging, table: str, select: str) -> None:
    """``table`` (one of :data:`SHAPES`) := ``select``'s rows cast to the workspace's column types, in the order
    of the ``_row`` it gives (the order the records came in: they are listed, and ties stored, in it)."""
    cols = SHAPES[table]
    casts = ", ".join(f"CAST({_ident(c)} AS {t}) AS {_ident(c)}" for c, t in cols.items())
    staging.execute(f"CREATE TABLE {table} AS SELECT {casts} FROM ({select}) ORDER BY _row")


def staged_records(staging: Staging, table: str, limit: int | None = None) -> list[tuple]:
    """The rows of a shaped table, in the workspace's column order and the order the records came in (each
    table is written in it, so ``rowid`` keeps it), for the lazy record view of a staged dataset."""
    con = staging.reader()
    try:
        cols = ", ".join(_ident(c) for c in SHAPES[table])
        return con.execute(
            f"SELECT {cols} FROM {table} ORDER BY rowid" + (f" LIMIT {int(limit)}" if limit else "")
        ).fetchall()
    finally:
        con.close()


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def _lit(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


quote_ident, quote_literal = _ident, _lit
