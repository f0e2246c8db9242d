"""The workspace: one DuckDB file holding every stage's inputs and outputs.

Writers hold one connection; readers (the dashboard) open read-only. Schema changes are numbered
migrations recorded in ``schema_migrations``. Multi-row writes go through :meth:`Workspace.transaction`,
so a failed stage leaves the file exactly as it was.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from workbench.store.migrations import MIGRATIONS

DEFAULT_DB = Path(".pwb") / "workbench.duckdb"


def resolve_db_path(path: str | os.PathLike | None = None) -> Path:
    """``path`` if given, else ``$PWB_DB``, else ``./.pwb/workbench.duckdb``."""
    if path is not None and str(path) != "":
        return Path(path)
    env = os.environ.get("PWB_DB")
    return Path(env) if env else DEFAULT_DB


class WorkspaceError(RuntimeError):
    """The workspace cannot be opened or does not hold what a command needs."""


class WorkspaceBusy(WorkspaceError):
    """Another process holds the workspace file for longer than the caller waits."""


# -- file checks and lock holders --------------------------------------------------------------------
# A truncated DuckDB file opens, and even answers queries, until one touches a missing block (at 95% a
# short `pwb runs list` succeeded). So every open checks, before anything is read or written, that the
# file holds every block DuckDB's own storage metadata says is in use (``pragma_storage_info`` per
# table): one query of ~50 ms, done once per file size and modification time in a process.
_HEADER = 4096
_VERIFIED: dict[tuple[str, int, int], bool] = {}


def check_file(path: Path) -> None:
    """Raise :class:`WorkspaceError` naming ``path`` if it is empty or not a DuckDB file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return  # a new workspace
    except OSError as exc:
        raise WorkspaceError(io_message(exc, path, "read the workspace")) from exc
    if size == 0:
        raise WorkspaceError(
            f"Workspace {path} is an empty file (0 bytes): delete it to start afresh, or restore it from a backup."
        )
    try:
        with open(path, "rb") as fh:
            head = fh.read(3 * _HEADER)
    except OSError as exc:
        raise WorkspaceError(io_message(exc, path, "read the workspace")) from exc
    if len(head) < 3 * _HEADER or head[8:12] != b"DUCK":
        raise WorkspaceError(
            f"Workspace {path} is not a DuckDB database ({size} bytes; no DuckDB header): "
            "point --db / PWB_DB at a workspace file, or restore it from a backup."
        )


def check_blocks(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Raise :class:`WorkspaceError` if the file is shorter than the blocks its tables use."""
    try:
        st = path.stat()
    except OSError:
        return
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall()
    ]
    used = -1
    if tables:
        union = " UNION ALL ".join(
            f"SELECT max(block_id) AS b FROM pragma_storage_info('{t.replace(chr(39), chr(39) * 2)}') WHERE block_id >= 0"
            for t in tables
        )
        used = con.execute(f"SELECT coalesce(max(b), -1) FROM ({union})").fetchone()[0]
    block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0] or 262144
    need = 3 * _HEADER + (int(used) + 1) * int(block_size) if used >= 0 else 0
    if st.st_size < need:
        raise WorkspaceError(
            f"Workspace {path} is truncated: {st.st_size} bytes, but its tables use blocks up to byte {need}. "
            "Restore it from a backup; nothing was read or changed."
        )
    _VERIFIED[key] = True


def mark_verified(path: Path) -> None:
    """Record ``path`` as whole at its current size and time (this process just closed its own write)."""
    try:
        st = path.stat()
    except OSError:
        return
    _VERIFIED[(str(path.resolve()), st.st_size, st.st_mtime_ns)] = True


def io_message(exc: OSError, path: str | os.PathLike, doing: str) -> str:
    """One line for an operating-system error: what failed, on which file, and what to do."""
    import errno

    fix = {
        errno.EACCES: "it is not writable by this user: fix its permissions or choose another path",
        errno.EPERM: "it is not writable by this user: fix its permissions or choose another path",
        errno.EROFS: "the file system is read-only: choose a writable path",
        errno.ENOSPC: "the disk is full: free some space or choose another path",
        errno.EDQUOT: "the disk quota is exhausted: free some space or choose another path",
        errno.EFBIG: "the file would exceed the allowed size: free some space or choose another path",
        errno.ENOENT: "it does not exist: check the path",
    }.get(exc.errno, "check the path and try again")
    reason = exc.strerror or type(exc).__name__
    where = exc.filename or path
    return f"Cannot {doing} at {where}: {reason}; {fix}."


def is_lock_conflict(exc: BaseException) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def lock_holder(exc: BaseException | str) -> str:
    """``"PID 123 (pwb serve ...)"`` from DuckDB's lock message, or ``"another process"``."""
    m = re.search(r"PID (\d+)", str(exc))
    return process_name(int(m.group(1))) if m else "another process"


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return f"PID {pid}"
    # `python -m pytest`, `.venv/bin/pwb serve ...`: show the program and its first words
    words = list(argv)
    if words and os.path.basename(words[0]).startswith("python") and len(words) > 1:
        words = words[2:] if words[1] == "-m" else words[1:]
    if words:
        words[0] = os.path.basename(words[0])
        if words[0] == "apps.cli":  # `python -m apps.cli ...` is pwb
            words[0] = "pwb"
    text = " ".join(" ".join(words[:4]).split())  # one line, even for `python -c "<script>"`
    return f"PID {pid} ({text[:60]})" if text else f"PID {pid}"


def damaged_message(path: Path, exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"Workspace {path} cannot be read ({first}): the file is damaged or not a workspace. "
        "Restore it from a backup, or point --db / PWB_DB at another workspace."
    )


class WriterIntent:
    """``<db>.writer-waiting``: a process waiting to write says so, so long-running readers (the API, the
    dashboard, through :class:`~workbench.store.gate.WorkspaceGate`) stop opening the file until it has
    had its turn. Without it a busy server's overlapping reads could hold the file open indefinitely."""

    def __init__(self, db: Path):
        self.file = intent_file(db)
        try:
            self.file.write_text(f"{os.getpid()}\n")
        except OSError:
            self.file = None  # a read-only folder: waiting still works, only without the courtesy

    def release(self) -> None:
        if self.file is not None:
            try:
                if self.file.read_text().strip() == str(os.getpid()):
                    self.file.unlink()
            except OSError:
                pass


def intent_file(db: Path) -> Path:
    return Path(str(db) + ".writer-waiting")


def foreign_writer_waiting(db: Path) -> str | None:
    """Who is waiting to write ``db`` (another live process), or ``None``."""
    f = intent_file(db)
    try:
        pid = int(f.read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid == os.getpid() or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        try:
            f.unlink()  # left by a process that died
        except OSError:
            pass
        return None
    except PermissionError:
        pass
    return process_name(pid)


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

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        read_only: bool = False,
        wait_s: float = 0.0,
        on_wait: Callable[[str], None] | None = None,
    ):
        self.path = resolve_db_path(path)
        self.read_only = read_only
        self._in_tx = False
        self.replayed = None  # the journal entries this open applied (a ReplayResult), read-write only
        memory = str(self.path) == ":memory:"
        if not memory:
            if read_only and not self.path.exists():
                raise WorkspaceError(
                    f"No workspace at {self.path}: import a dataset first (`pwb data import ...`) "
                    "or point --db / PWB_DB at an existing workspace."
                )
            if not read_only:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise WorkspaceError(io_message(exc, self.path.parent, "create the workspace folder")) from exc
            check_file(self.path)
        self.con = self._connect(wait_s, on_wait) if not memory else duckdb.connect(":memory:")
        if not read_only:
            try:
                self.migrate()
                if not memory:
                    from workbench.store.journal import replay

                    self.replayed = replay(self)
            except BaseException:
                self.con.close()
                raise

    def _connect(self, wait_s: float, on_wait: Callable[[str], None] | None) -> duckdb.DuckDBPyConnection:
        """Connect, waiting up to ``wait_s`` while another process holds the file (``on_wait`` hears who, once)."""
        deadline = time.monotonic() + max(0.0, wait_s)
        delay, told, intent = 0.01, False, None
        try:
            while True:
                try:
                    con = duckdb.connect(str(self.path), read_only=self.read_only)
                except duckdb.IOException as exc:
                    if not is_lock_conflict(exc):
                        raise WorkspaceError(damaged_message(self.path, exc)) from exc
                    holder = lock_holder(exc)
                    if time.monotonic() >= deadline:
                        raise WorkspaceBusy(
                            f"Workspace {self.path} is held by {holder}"
                            + (f" for more than {wait_s:.3g} s" if wait_s > 0 else "")
                            + "; try again when it has finished (or raise the wait: --wait / PWB_WAIT seconds)."
                        ) from exc
                    if not self.read_only and intent is None:
                        intent = WriterIntent(self.path)  # long-running servers hold off new readers
                    if on_wait is not None and not told:
                        on_wait(
                            f"waiting for the workspace {self.path}, held by {holder} "
                            f"(up to {wait_s:.3g} s; --wait / PWB_WAIT changes it)"
                        )
                        told = True
                except (duckdb.Error, RuntimeError) as exc:  # SerializationException, InternalException, ...
                    raise WorkspaceError(damaged_message(self.path, exc)) from exc
                else:
                    try:
                        check_blocks(con, self.path)
                    except WorkspaceError:
                        con.close()
                        raise
                    except duckdb.Error as exc:
                        con.close()
                        raise WorkspaceError(damaged_message(self.path, exc)) from exc
                    return con
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        finally:
            if intent is not None:
                intent.release()

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self.con.close()
        if not self.read_only and str(self.path) != ":memory:":
            mark_verified(self.path)  # this process wrote it last: whole, no need to check it again

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
                con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, fn.__name__])
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

    @contextmanager
    def memory_limit(self, limit: str | None = None) -> Iterator[None]:
        """DuckDB's memory limit set to ``limit`` (default ``$PWB_DUCKDB_MEMORY`` or ``"2GB"``) for the block,
        then back to what it was: a large read (a split of tens of millions of interactions) then sorts and joins
        out of core in the workspace's folder instead of holding most of the machine's memory (DuckDB's own
        default is 80% of it, and it keeps what it took)."""
        limit = limit or os.environ.get("PWB_DUCKDB_MEMORY", "2GB")
        before = self.scalar("SELECT current_setting('memory_limit')")
        self.con.execute(f"SET memory_limit = '{limit}'")
        try:
            yield
        finally:
            self.con.execute(f"SET memory_limit = '{before}'")

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

    def insert_columns(
        self, table: str, columns: Mapping[str, Sequence[Any]], casts: Mapping[str, str] | None = None
    ) -> int:
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
        frame = _object_frame(columns, n)
        casts = casts or {}
        select = ", ".join(f"CAST({c} AS {casts[c]}) AS {c}" if c in casts else c for c in names)
        view = f"_pwb_insert_{table}"
        self.con.register(view, frame)
        try:
            self.con.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {select} FROM {view}")
        finally:
            self.con.unregister(view)
        return n

    def update_columns(
        self,
        table: str,
        where: Mapping[str, Any],
        keys: Mapping[str, Sequence[Any]],
        columns: Mapping[str, Sequence[Any]],
        casts: Mapping[str, str] | None = None,
    ) -> int:
        """Bulk-update rows: the row whose ``keys`` columns hold each entry's values (and whose ``where``
        columns hold the given constants) gets that entry's ``columns``; like :meth:`insert_columns`, one scan.

        Example: ``update_columns("users", {"dataset_id": "d"}, {"user_id": ids}, {"attributes": attrs})``.
        """
        frame_cols = {**keys, **columns}
        n = len(next(iter(frame_cols.values()))) if frame_cols else 0
        if not columns or n == 0:
            return 0
        frame = _object_frame(frame_cols, n)
        casts = casts or {}
        sets = ", ".join(f"{c} = CAST(v.{c} AS {casts[c]})" if c in casts else f"{c} = v.{c}" for c in columns)
        conds = [f"{table}.{c} = v.{c}" for c in keys] + [f"{table}.{c} = ?" for c in where]
        view = f"_pwb_update_{table}"
        self.con.register(view, frame)
        try:
            self.con.execute(
                f"UPDATE {table} SET {sets} FROM {view} AS v WHERE {' AND '.join(conds)}", list(where.values())
            )
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


def _object_frame(columns: Mapping[str, Sequence[Any]], n: int) -> dict[str, Any]:
    """Columns as object arrays of ``n`` values each (what DuckDB registers as a view), checking the lengths."""
    frame = {}
    for name, values in columns.items():
        if len(values) != n:
            raise ValueError(f"column {name!r} has {len(values)} values, expected {n}")
        arr = np.empty(n, dtype=object)
        arr[:] = list(values)
        frame[name] = arr
    return frame
