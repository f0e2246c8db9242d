"""Streamlit plumbing shared by the dashboard's views: the workspace gate, cached reads, the label writer.

The workspace is opened per read through :meth:`WorkspaceGate.reading` (read-only) and per label through
:meth:`WorkspaceGate.writing` (the one writer), so ``pwb`` commands can still write to the file while the
dashboard runs. Reads are cached for :data:`TTL_S` seconds per workspace path; label-dependent reads
live in a separate cache that is cleared after every label, so a label shows up right after the click.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import streamlit as st

from apps.dashboard import cohort_data, data, label_data
from workbench.store.gate import WorkspaceBusy, WorkspaceGate
from workbench.store.workspace import WorkspaceError, resolve_db_path

#: seconds a cached read stays fresh (the sidebar's "Reload data" clears it at once)
TTL_S = 60


def db_path() -> Path:
    """The workspace this dashboard shows: ``$PWB_DB`` (set by ``pwb dashboard``) or ``./.pwb/workbench.duckdb``."""
    return resolve_db_path(None).absolute()


def annotator() -> str:
    """Who the labels are stored as: ``$PWB_ANNOTATOR`` (``pwb dashboard --annotator``), else ``anonymous``."""
    return os.environ.get("PWB_ANNOTATOR") or "anonymous"


@st.cache_resource(show_spinner=False)
def _gate(path: str) -> WorkspaceGate:
    return WorkspaceGate(path, wait_s=10, migrate=True)


def gate() -> WorkspaceGate:
    """The process's one gate for this workspace (stops the page with a clear message if it cannot open)."""
    path = require_workspace()
    try:
        return _gate(str(path))
    except WorkspaceBusy as exc:
        st.warning(f"{exc} Reload this page when it has finished.")
        st.stop()
    except WorkspaceError as exc:
        st.error(str(exc))
        st.stop()


def require_workspace() -> Path:
    """The workspace path; stops the page with an error naming it when there is no file there."""
    path = db_path()
    if not path.is_file():
        st.error(
            f"No workspace at `{path}`. Make one with `pwb demo --db {path}` (or `pwb data import ...`), "
            "or point `pwb dashboard --db` / `PWB_DB` at an existing workspace file."
        )
        st.stop()
    return path


#: where :func:`load` finds the read it is named: the pages' queries, the cohort report's, the image pairs'
READ_MODULES = (data, cohort_data, label_data)


def _read(path: str, name: str, args: tuple) -> Any:
    fn = next(getattr(m, name) for m in READ_MODULES if hasattr(m, name))
    with _gate(path).reading() as ws:
        return fn(ws, *args)


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=512)
def _cached(path: str, name: str, *args: Any) -> Any:
    return _read(path, name, args)


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=512)
def _cached_labels(path: str, name: str, *args: Any) -> Any:
    return _read(path, name, args)


def load(name: str, *args: Any, labels: bool = False) -> Any:
    """``<module>.<name>(ws, *args)`` (:data:`READ_MODULES`) on a read-only connection, cached; ``None`` (after
    showing why) on errors.

    ``labels=True`` puts the result in the cache that every label write clears.
    """
    path = str(gate().path)
    try:
        return (_cached_labels if labels else _cached)(path, name, *args)
    except WorkspaceBusy as exc:
        st.warning(f"{exc} Reload this page when it has finished.")
    except (WorkspaceError, ValueError) as exc:
        st.error(str(exc))
    return None


def write_label(pair_id: str, choice: str) -> dict[str, Any]:
    """Store a label durably, then into the workspace when it is free; clear the label-dependent caches.

    The label is appended to the workspace's journal (fsynced) first, so it is kept even while a `pwb`
    command holds the file; ``pending`` in the result says it is not in the tables yet (any later write
    applies it). Raises :class:`WorkspaceError` (the pair cannot be read: busy, or gone) for the caller.
    """
    from evalbench.labels import label_row

    g = _gate(str(db_path()))
    with g.reading() as ws:
        pair = label_data.find_pair(ws, pair_id)
    row = label_row(pair, choice, annotator=annotator())
    g.journal.append("upsert", {"table": "labels", "row": row})
    pending = False
    try:
        g.apply_journal()
    except WorkspaceBusy:
        pending = True
    _cached_labels.clear()
    return {
        "label_id": row["label_id"],
        "pair_id": pair_id,
        "choice": choice,
        "system_side": pair.system_side,
        "system": pair.system,
        "annotator": row["annotator"],
        "pending": pending,
    }


def clear_caches() -> None:
    """Forget every cached read (the sidebar's "Reload data")."""
    _cached.clear()
    _cached_labels.clear()


def empty(message: str) -> NoReturn:
    """A page has nothing to show: say so, and what would fill it, then stop."""
    st.info(message)
    st.stop()
