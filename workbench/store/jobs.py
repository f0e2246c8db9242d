"""Generation jobs of the HTTP API in the workspace: the ``api_jobs`` table, one row per job (its request,
status, result and error, when it was created and finished). A running server journals these rows
(:mod:`workbench.store.journal`); these functions read what is in the table."""

from __future__ import annotations

from typing import Any

from workbench.store.workspace import Workspace


def job_status(ws: Workspace, job_id: str) -> tuple[str, str | None, str | None, float | None, float | None] | None:
    """``(status, result JSON, error, created_at, finished_at)`` of a job, the times as epoch seconds, or
    ``None`` when the table has no such job."""
    rows = ws.query(
        "SELECT status, result, error, epoch(created_at), epoch(finished_at) FROM api_jobs WHERE job_id = ?", [job_id]
    )
    return tuple(rows[0]) if rows else None


def unfinished_jobs(ws: Workspace) -> list[dict[str, Any]]:
    """Every column of the jobs still ``queued`` or ``running`` (after a restart: those an earlier server
    process never finished)."""
    return ws.query_dicts("SELECT * FROM api_jobs WHERE status IN ('queued', 'running')")
