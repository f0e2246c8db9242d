"""Many readers or one writer: how long-running processes (the HTTP API, the dashboard) share a workspace.

DuckDB lets one process write a database file, or many processes read it, never both; inside one process
a read-only and a read-write connection to the same file cannot coexist either. A server that held a
write connection for its lifetime would lock out every ``pwb`` command, and the dashboard that held a
read-only one could never store a label. So the serving processes open the workspace only for the span
of one read or one write, through a :class:`WorkspaceGate`:

* :meth:`WorkspaceGate.reading` yields a read-only :class:`Workspace`; readers run concurrently;
* :meth:`WorkspaceGate.writing` waits until no reader of this process holds the file, blocks new ones,
  and yields the one read-write :class:`Workspace` (a transaction is the caller's);
* when another process holds the file (a ``pwb bench run`` writing), opening is retried with backoff for
  ``wait_s`` seconds, then a :class:`WorkspaceBusy` says who to wait for (the API answers it with 503
  and ``Retry-After``);
* when another process is waiting to write (a ``pwb`` command's ``<db>.writer-waiting`` file), no new
  read or write is opened until it has had its turn (up to ``wait_s``), so a busy server's overlapping
  requests cannot keep a CLI writer out.

Writes that must be acknowledged at once (cold-start personas, labels, jobs) do not go through
:meth:`WorkspaceGate.writing` directly: they are appended to the :class:`~workbench.store.journal.Journal`
and applied by :meth:`WorkspaceGate.apply_journal` (any read-write open applies it too).

Python's standard library has no reader-writer lock, hence the small one here (writer preference, so a
stream of dashboard reads cannot starve a label write).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workbench.store.journal import Journal, ReplayResult
from workbench.store.workspace import Workspace, WorkspaceBusy, foreign_writer_waiting, resolve_db_path

__all__ = ["WorkspaceBusy", "WorkspaceGate"]


class WorkspaceGate:
    """Open the workspace at ``path`` per read or per write; see the module docstring.

    Args:
        path: The DuckDB file (``None``: ``$PWB_DB`` or ``./.pwb/workbench.duckdb``).
        wait_s: How long to retry while another process holds the file.
        migrate: Apply pending migrations once, now (needs a moment of write access).
    """

    def __init__(self, path: str | Path | None = None, *, wait_s: float = 10.0, migrate: bool = True):
        self.path = resolve_db_path(path)
        self.wait_s = float(wait_s)
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0
        if migrate:
            with self.writing():
                pass  # opening read-write applies the migrations

    @property
    def journal(self) -> Journal:
        return Journal(self.path)

    def _open(self, read_only: bool, wait_s: float | None = None) -> Workspace:
        wait_s = self.wait_s if wait_s is None else wait_s
        deadline = time.monotonic() + wait_s
        delay = 0.01
        while (who := foreign_writer_waiting(self.path)) is not None:  # let a waiting `pwb` writer in first
            if time.monotonic() >= deadline:
                raise WorkspaceBusy(
                    f"Workspace {self.path} is about to be written by {who}; try again when it has finished."
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        try:
            return Workspace(self.path, read_only=read_only, wait_s=max(0.0, deadline - time.monotonic()))
        except WorkspaceBusy as exc:
            holder = str(exc).split(" is held by ", 1)[-1].split(" for more than ")[0].split("; try again")[0]
            raise WorkspaceBusy(
                f"Workspace {self.path} is held by {holder} for more than {wait_s:.3g} s; "
                "try again when it has finished."
            ) from exc

    def apply_journal(self, wait_s: float | None = None) -> ReplayResult:
        """Apply the journal now if it holds anything (raises :class:`WorkspaceBusy` while another process
        holds the file for more than ``wait_s``, default the gate's; the entries stay in the journal)."""
        j = self.journal
        if not j.files():
            return ReplayResult()
        with self.writing(wait_s=wait_s) as ws:  # opening read-write replays the journal
            return ws.replayed or ReplayResult()

    @contextmanager
    def reading(self) -> Iterator[Workspace]:
        """A read-only workspace, shared with this process's other readers."""
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        with self._held(read_only=True) as ws:
            yield ws

    @contextmanager
    def writing(self, wait_s: float | None = None) -> Iterator[Workspace]:
        """The one read-write workspace of this process (waits for readers to finish)."""
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        with self._held(read_only=False, wait_s=wait_s) as ws:
            yield ws

    @contextmanager
    def _held(self, read_only: bool, wait_s: float | None = None) -> Iterator[Workspace]:
        """Open, yield, close; then give back the reader's or the writer's turn."""
        try:
            ws = self._open(read_only=read_only, wait_s=wait_s)
            try:
                yield ws
            finally:
                ws.close()
        finally:
            with self._cond:
                if read_only:
                    self._readers -= 1
                else:
                    self._writing = False
                self._cond.notify_all()
