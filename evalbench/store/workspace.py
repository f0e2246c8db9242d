"""The workspace: one DuckDB file holding every stage's inputs and outputs.

Writers hold one connection; readers (the dashboard) open read-only. Schema changes are numbered
migrations recorded in ``schema_migrations``. Multi-row writes go through :meth:`Workspace.transaction`,
so a failed stage leaves the file exactly as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from evalbench.store.migrations import MIGRATIONS

DEFAULT_DB = Path(".pwb") / "workbench.duckdb"


def resolve_db_path(path: str | os.PathLike | None = None) -> Path:
    """``path`` if given, else ``$PWB_DB``, else ``./.pwb/workbench.duckdb``."""
    if path is not None and str(path) != "":
        return Path(path)
    env = os.environ.get("PWB_DB")
    return Path(env) if env else DEFAULT_DB


class WorkspaceError(RuntimeError):
    """The workspace cannot be opened or does not hold what a command needs."""


class Workspace:
    """An open workspace.

    Args:
        path: DuckDB file; ``None`` uses ``$PWB_DB`` or ``./.pwb/workbench.duckdb``. ``":memory:"``
            gives a throw-away workspace.
        read_only: Open without write access (no migrations are applied).

    Example:
        >>> with Workspace(":memory:") as ws:
        ...     ws.applied_migrations()
        [1]
    """

    def __init__(self, path: str | os.PathLike | None = None, *, read_only: bool = False):
        self.path = resolve_db_path(path)
        self.read_only = read_only
        if str(self.path) != ":memory:":
            if read_only and not self.path.exists():
                raise WorkspaceError(
                    f"No workspace at {self.path}: import a dataset first (`pwb data import ...`) "
                    "or point --db / PWB_DB at an existing workspace."
                )
            if not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:  # most often: another process holds the write lock
            raise WorkspaceError(
                f"Cannot open workspace {self.path}: {exc}. Is another `pwb` process writing to it?"
            ) from exc
        self._in_tx = False
        if not read_only:
            self.migrate()

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r}, read_only={self.read_only})"

    # -- schema ----------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply pending migrations in order; returns the versions applied now."""
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
            " applied_at TIMESTAMP DEFAULT current_timestamp)"
        )
        done = set(self.applied_migrations())
        applied = []
        for version, fn in MIGRATIONS:
            if version in done:
                continue
            with self.transaction() as con:
                fn(con)
                con.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, fn.__name__]
                )
            applied.append(version)
        return applied

    def applied_migrations(self) -> list[int]:
        return [r[0] for r in self.con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()]

    # -- transactions and helpers ----------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """``BEGIN`` ... ``COMMIT``; any exception rolls everything back and propagates.

        Nested use joins the outer transaction.
        """
        if self._in_tx:
            yield self.con
            return
        self.con.execute("BEGIN TRANSACTION")
        self._in_tx = True
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")
        finally:
            self._in_tx = False

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        return self.con.execute(sql, params or []).fetchall()

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, params or [])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        row = self.con.execute(sql, params or []).fetchone()
        return None if row is None else row[0]

    def resolve(self, what: str, table: str, column: str, name: str | None, option: str, make: str) -> str:
        """The ``what`` called ``name``, or the only one when ``name`` is ``None``; errors say what to run."""
        names = [r[0] for r in self.query(f"SELECT {column} FROM {table} ORDER BY created_at")]
        if name is None:
            if len(names) == 1:
                return names[0]
            if not names:
                raise WorkspaceError(f"No {what} in {self.path}: run `{make}` first.")
            raise WorkspaceError(f"Several {what}s in {self.path}; pass {option}, one of: {', '.join(names)}")
        if name not in names:
            raise WorkspaceError(f"No {what} {name!r} in {self.path}; available: {', '.join(names) or '(none)'}")
        return name

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]], casts: Mapping[str, str] | None = None) -> int:
        """Bulk-insert column arrays (a DuckDB scan over numpy arrays, not row-by-row ``executemany``).

        Args:
            table: Target table.
            columns: Column name to equal-length sequences.
            casts: Optional SQL types to cast columns to (``{"tags": "VARCHAR[]"}``).
        """
        names = list(columns)
        if not names:
            return 0
        n = len(columns[names[0]])
        if n == 0:
            return 0
        frame = {}
        for name in names:
            values = columns[name]
            if len(values) != n:
                raise ValueError(f"column {name!r} has {len(values)} values, expected {n}")
            arr = np.empty(n, dtype=object)
            arr[:] = list(values)
            frame[name] = arr
        casts = casts or {}
        select = ", ".join(f"CAST({c} AS {casts[c]}) AS {c}" if c in casts else c for c in names)
        view = f"_pwb_insert_{table}"
        self.con.register(view, frame)
        try:
            self.con.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {select} FROM {view}")
        finally:
            self.con.unregister(view)
        return n


def dumps(value: Any) -> str | None:
    """JSON for the store (sorted keys, so equal configs give equal text and hashes)."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=str)


def loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)
