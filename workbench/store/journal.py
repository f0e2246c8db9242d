"""The journal: writes that are acknowledged before the workspace can take them, and never lost.

DuckDB lets one process write a file at a time. A server that answers "stored" (a cold-start persona, a
dashboard label, a generation job) cannot wait for a ``pwb bench run`` that holds the file for an hour,
and must not hold the answer in memory only (a crash, a restart or a full queue loses it). So those
writes go first to ``<workspace>.journal`` beside the DuckDB file: one JSON line per write, appended
under an exclusive ``flock`` and ``fsync``-ed before :meth:`Journal.append` returns. Only then does the
caller say "stored".

Every read-write open of the workspace (:class:`~workbench.store.workspace.Workspace`, so any ``pwb``
command, the server's writer thread, the dashboard) replays the journal into DuckDB:

* the journal is renamed aside (``.journal.<stamp>.replaying``) under the lock, so appends continue
  into a fresh file while it is applied;
* entries are applied in order, in batches, with their ids recorded in ``journal_applied`` in the same
  transaction (exactly once: a crash between the commit and the file's removal re-reads the file and
  skips what is in);
* a batch that fails is retried entry by entry, so one bad record never takes others with it; an entry
  that cannot be applied goes to ``journal_rejected`` with its error (kept, visible, never retried
  silently); a line torn by a crash in the middle of an append was never acknowledged and is skipped.

Kinds: ``persona`` (a persona card for a split and encoder) and ``upsert`` (a whole row of one of
:data:`UPSERT_TABLES`, replacing the row with the same key: labels, API jobs, generation records).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("pwb.journal")

#: Tables an ``upsert`` entry may write, and each one's key column.
UPSERT_TABLES = {
    "labels": "label_id",
    "api_jobs": "job_id",
    "conditions": "condition_id",
    "generations": "generation_id",
    "settings": "key",
}
_BATCH = 500
_REPLAY_LOCK = threading.Lock()  # one replay per process at a time (DuckDB already excludes other processes)
_APPEND_LOCK = threading.Lock()


def journal_path(db: str | os.PathLike) -> Path:
    return Path(str(db) + ".journal")


@dataclass
class ReplayResult:
    applied: int = 0
    skipped: int = 0  # already in (a replay interrupted after its commit)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    torn: int = 0


class Journal:
    """The journal of the workspace ``db``; see the module docstring."""

    def __init__(self, db: str | os.PathLike):
        self.db = Path(db)
        self.file = journal_path(db)
        self.lock_file = Path(str(db) + ".journal.lock")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with _APPEND_LOCK:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def append(self, kind: str, data: dict[str, Any]) -> str:
        """Write one entry durably (fsync) and return its id.

        Raises:
            ValueError: ``data`` cannot be written as UTF-8 JSON (a lone surrogate, NaN): nothing is written.
            OSError: the journal's folder is read-only or the disk is full: nothing was acknowledged.
        """
        entry_id, raw = self.encode(kind, data)
        self.write(raw)
        return entry_id

    def encode(self, kind: str, data: dict[str, Any]) -> tuple[str, bytes]:
        """``(entry id, the line's bytes)``; ``ValueError`` when it cannot be stored (nothing is written)."""
        if kind not in ("persona", "upsert"):
            raise ValueError(f"journal kind must be 'persona' or 'upsert', got {kind!r}")
        if kind == "upsert" and data.get("table") not in UPSERT_TABLES:
            raise ValueError(
                f"journal upsert table must be one of {', '.join(UPSERT_TABLES)}, got {data.get('table')!r}"
            )
        entry = {"id": uuid.uuid4().hex, "kind": kind, "at": round(time.time(), 6), "data": data}
        try:
            raw = (json.dumps(entry, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        except (ValueError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
            raise ValueError(f"this record cannot be stored: {exc}") from exc
        return entry["id"], raw

    def write(self, raw: bytes) -> None:
        """Append whole lines and fsync them (all or nothing: a failed write is cut off again)."""
        with self._locked():
            new = not self.file.exists()
            fd = os.open(self.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                start = os.lseek(fd, 0, os.SEEK_END)
                try:
                    view = memoryview(raw)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                    _sync(fd)
                except BaseException:
                    # a partial line (disk full) would be torn and skipped; cut it off so the next append is clean
                    try:
                        os.ftruncate(fd, start)
                    except OSError:
                        pass
                    raise
            finally:
                os.close(fd)
            if new:  # the new file's name must survive a crash too
                _fsync_dir(self.file.parent)

    def files(self) -> list[Path]:
        """Journal files waiting to be applied, oldest first (renamed-aside ones, then the live one)."""
        aside = sorted(self.db.parent.glob(self.file.name + ".*.replaying"))
        return aside + ([self.file] if self.file.exists() else [])

    def pending(self) -> list[dict[str, Any]]:
        """Every entry not yet removed from the journal files (some may already be applied)."""
        out: list[dict[str, Any]] = []
        for f in self.files():
            out.extend(_read(f)[0])
        return out

    def pending_count(self) -> int:
        return len(self.pending())


class GroupCommit:
    """Many concurrent appends, one write and one ``fsync`` per group (group commit, as databases do).

    A request handler calls :meth:`submit` and waits on the future: it resolves once the entry is on disk,
    or fails with the write's ``OSError`` (nothing of that group is acknowledged). One ``fsync`` per
    request would cap a server at the disk's fsync rate; a group shares it.
    """

    def __init__(self, journal: Journal):
        self.journal = journal
        self._pending: list[tuple[bytes, Any]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="pwb-journal-commit", daemon=True)
        self._thread.start()

    def submit(self, kind: str, data: dict[str, Any]):
        """A :class:`concurrent.futures.Future` of the entry id; ``ValueError`` at once if it cannot be stored."""
        from concurrent.futures import Future

        entry_id, raw = self.journal.encode(kind, data)
        fut: Future = Future()
        fut.entry_id = entry_id  # type: ignore[attr-defined]
        with self._cond:
            if self._stop:
                raise RuntimeError("the journal is closed")
            self._pending.append((raw, fut))
            self._cond.notify()
        return fut

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
            try:
                self.journal.write(b"".join(raw for raw, _ in batch))
            except BaseException as exc:  # noqa: BLE001 - every waiter hears it
                for _, fut in batch:
                    fut.set_exception(exc)
            else:
                for _, fut in batch:
                    fut.set_result(fut.entry_id)

    def close(self) -> None:
        """Write what is pending, then stop."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10)


def _sync(fd: int) -> None:
    """``fdatasync`` where there is one (the data and the size an append changed, without the times)."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read(path: Path) -> tuple[list[dict[str, Any]], int]:
    """``(entries, torn lines)`` of one journal file."""
    entries, torn = [], 0
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            e = json.loads(line.decode("utf-8"))
            if not isinstance(e, dict) or "id" not in e or "kind" not in e:
                raise ValueError("not a journal entry")
        except ValueError:
            torn += 1
            continue
        entries.append(e)
    return entries, torn


def replay(ws) -> ReplayResult:
    """Apply the journal of ``ws`` (open read-write) into it; see the module docstring."""
    result = ReplayResult()
    if ws.read_only or str(ws.path) == ":memory:":
        return result
    j = Journal(ws.path)
    if not j.file.exists() and not any(j.db.parent.glob(j.file.name + ".*.replaying")):
        return result  # the common case: one stat
    with _REPLAY_LOCK:
        try:
            with j._locked():
                if j.file.exists() and j.file.stat().st_size > 0:
                    stamp = f"{time.time_ns()}-{os.getpid()}"
                    os.replace(j.file, j.db.parent / f"{j.file.name}.{stamp}.replaying")
        except OSError as exc:  # a read-only folder: apply what is there, leave the files
            log.warning("journal not rotated", extra={"event": "journal_error", "error": str(exc)})
        for f in sorted(j.db.parent.glob(j.file.name + ".*.replaying")):
            _replay_file(ws, f, result)
    if result.applied or result.rejected or result.torn:
        log.info(
            "journal replayed",
            extra={
                "event": "journal_replayed",
                "applied": result.applied,
                "skipped": result.skipped,
                "rejected": len(result.rejected),
                "torn": result.torn,
                "db": str(ws.path),
            },
        )
    return result


def _replay_file(ws, path: Path, result: ReplayResult) -> None:
    entries, torn = _read(path)
    result.torn += torn
    ids = [e["id"] for e in entries]
    done = (
        {r[0] for r in ws.query("SELECT entry_id FROM journal_applied WHERE list_contains(?, entry_id)", [ids])}
        if ids
        else set()
    )
    done |= (
        {r[0] for r in ws.query("SELECT entry_id FROM journal_rejected WHERE list_contains(?, entry_id)", [ids])}
        if ids
        else set()
    )
    todo = [e for e in entries if e["id"] not in done]
    result.skipped += len(entries) - len(todo)
    source = path.name
    for start in range(0, len(todo), _BATCH):
        batch = todo[start : start + _BATCH]
        try:
            with ws.transaction():
                _apply(ws, batch, source)
            result.applied += len(batch)
            continue
        except Exception:  # noqa: BLE001 - retried one by one below
            pass
        for e in batch:
            try:
                with ws.transaction():
                    _apply(ws, [e], source)
                result.applied += 1
            except Exception as exc:  # noqa: BLE001 - kept in journal_rejected with its error
                err = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                _reject(ws, e, err, source)
                result.rejected.append({"id": e["id"], "kind": e.get("kind"), "error": err})
                log.error(
                    "journal entry rejected",
                    extra={"event": "journal_rejected", "entry": e["id"], "kind": e.get("kind"), "error": err},
                )
    try:
        path.unlink()
    except OSError:
        return  # a read-only folder: the ids in journal_applied keep the next replay from doubling
    with ws.transaction() as con:
        con.execute("DELETE FROM journal_applied WHERE source = ?", [source])


def _apply(ws, entries: list[dict[str, Any]], source: str) -> None:
    """Apply ``entries`` inside the caller's transaction (runs of one kind go together)."""
    from workbench.store.personas import save_personas

    i = 0
    while i < len(entries):
        kind = entries[i]["kind"]
        j = i
        while j < len(entries) and entries[j]["kind"] == kind:
            j += 1
        run = entries[i:j]
        if kind == "persona":
            groups: dict[tuple[str, str], dict[str, Any]] = {}
            for e in run:
                d = e["data"]
                card = card_from_dict(d["card"])
                groups.setdefault((d["split_id"], d["encoder"]), {})[card.user_id] = card  # the last one wins
            for (split_id, encoder), cards in groups.items():
                save_personas(ws, split_id, encoder, list(cards.values()))
        elif kind == "upsert":
            for e in run:
                _upsert(ws, e["data"])
        else:
            raise ValueError(f"unknown journal entry kind {kind!r}")
        i = j
    ws.insert_columns(
        "journal_applied",
        {
            "entry_id": [e["id"] for e in entries],
            "kind": [e["kind"] for e in entries],
            "source": [source] * len(entries),
        },
    )


def card_to_dict(card) -> dict[str, Any]:
    """A :class:`~workbench.records.PersonaCard` as JSON-ready data (what a ``persona`` entry holds)."""
    emb = card.embedding
    if emb is not None and hasattr(emb, "tolist"):
        emb = emb.tolist()
    return {
        "user_id": card.user_id,
        "summary": card.summary,
        "traits": card.traits,
        "evidence": [
            {"item_id": e.item_id, "weight": float(e.weight), "snippet": e.snippet or ""} for e in card.evidence
        ],
        "embedding": None if emb is None else [float(x) for x in emb],
        "model_version": card.model_version,
        "demographics": card.demographics or {},
    }


def card_from_dict(d: dict[str, Any]):
    from workbench.records import Evidence, PersonaCard

    return PersonaCard(
        d["user_id"],
        d["summary"],
        d.get("traits") or [],
        [Evidence(e["item_id"], e["weight"], e.get("snippet") or "") for e in d.get("evidence") or []],
        d.get("embedding"),
        d.get("model_version") or "",
        d.get("demographics") or {},
    )


def _upsert(ws, data: dict[str, Any]) -> None:
    table, row = data.get("table"), data.get("row")
    key = UPSERT_TABLES.get(table)
    if key is None or not isinstance(row, dict) or key not in row:
        raise ValueError(f"upsert needs a table of {', '.join(UPSERT_TABLES)} and a row with its key")
    cols = list(row)
    known = {r[0] for r in ws.query("SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table])}
    bad = [c for c in cols if c not in known]
    if bad:
        raise ValueError(f"upsert into {table}: unknown columns {', '.join(bad)}")
    ws.con.execute(f"DELETE FROM {table} WHERE {key} = ?", [row[key]])
    ws.con.execute(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})", [row[c] for c in cols]
    )


def _reject(ws, entry: dict[str, Any], error: str, source: str) -> None:
    text = json.dumps(entry, sort_keys=True, ensure_ascii=True, default=str)  # \\ud800 stays an escape
    with ws.transaction() as con:
        con.execute(
            "INSERT INTO journal_rejected (entry_id, kind, entry, error, source) VALUES (?, ?, ?, ?, ?)",
            [entry["id"], str(entry.get("kind")), text, error, source],
        )
