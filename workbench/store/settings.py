"""Settings kept in the workspace across restarts: the ``settings`` table of ``key -> value`` (e.g. the
split a server serves, ``serve.split``). Written through the journal (:mod:`workbench.store.journal`)."""

from __future__ import annotations

from workbench.store.workspace import Workspace


def setting(ws: Workspace, key: str) -> str | None:
    """The stored value of ``key``, or ``None`` when it was never set."""
    rows = ws.query("SELECT value FROM settings WHERE key = ?", [key])
    return rows[0][0] if rows else None
