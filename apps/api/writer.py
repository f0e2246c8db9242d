"""The API's journal writer: one thread that moves acknowledged writes from the workspace journal into DuckDB."""

from __future__ import annotations

import threading
import time

from apps.api.logs import log


class JournalWriter:
    """One thread that applies the workspace journal (cold-start personas, job rows) into DuckDB.

    Requests append to the journal (fsynced) before they answer; this thread only moves entries from the
    journal into the workspace, as soon as the file is free. While another process holds it, it keeps
    trying (backing off to ``max_delay_s``) and never gives up: the entries wait on disk, and any later
    read-write open of the workspace (a ``pwb`` command, the next server) applies them too.
    """

    def __init__(self, gate, batch_s: float, max_delay_s: float = 2.0, min_gap_s: float = 0.0):
        self.gate, self.batch_s, self.max_delay_s, self.min_gap_s = gate, batch_s, max_delay_s, min_gap_s
        self.waiting_since: float | None = None
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="pwb-journal-writer", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def _apply_once(self, wait_s: float | None = None) -> bool:
        """One attempt; ``True`` when the journal is empty afterwards."""
        from workbench.store.workspace import WorkspaceBusy

        try:
            self.gate.apply_journal(wait_s=wait_s)  # the replay logs what it applied and rejected
        except WorkspaceBusy as exc:
            now = time.monotonic()
            if self.waiting_since is None:
                self.waiting_since = now
                log.warning(
                    "journal waits for the workspace",
                    extra={"event": "store_wait", "error": str(exc), "pending": self.gate.journal.pending_count()},
                )
            return False
        except Exception as exc:  # noqa: BLE001 - an I/O fault: logged, retried; the entries stay on disk
            log.error("journal apply failed", extra={"event": "store_error", "error": f"{type(exc).__name__}: {exc}"})
            return False
        if self.waiting_since is not None:
            log.info(
                "journal caught up",
                extra={"event": "store_resumed", "waited_s": round(time.monotonic() - self.waiting_since, 2)},
            )
            self.waiting_since = None
        return True

    def _loop(self) -> None:
        delay = self.batch_s
        while not self._stop:
            self._wake.wait()
            if self._stop:
                break
            time.sleep(self.batch_s)  # gather a batch
            self._wake.clear()
            t0 = time.perf_counter()
            if self._apply_once():
                delay = self.batch_s
                # under steady load, applying takes at most a fifth of the time (it shares the cores and the
                # GIL with the requests); the entries are on disk and answered from memory meanwhile
                time.sleep(max(self.min_gap_s, min(4 * (time.perf_counter() - t0), 5.0)))
            else:
                self._wake.set()  # try again after a pause
                time.sleep(delay)
                delay = min(delay * 2, self.max_delay_s)

    def close(self, timeout: float = 5.0) -> None:
        """Stop; one last attempt to apply what is pending (what is left stays in the journal)."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        if not self._apply_once(wait_s=1.0) and self.gate.journal.files():
            log.warning(
                "journal left for the next open",
                extra={"event": "store_deferred", "pending": self.gate.journal.pending_count()},
            )
