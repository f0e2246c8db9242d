"""Generation jobs as rows of the workspace's ``api_jobs`` table: the row a job is journalled as, a job read
back from the workspace (or from the journal, before the writer has applied it), and the marking of jobs an
earlier server process left unfinished."""

from __future__ import annotations

import time
from typing import Any

from apps.api.errors import NotFound

ABANDONED = "the server stopped before this job finished; submit it again"


def ts(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None).isoformat(sep=" ")


def job_row(job: dict[str, Any]) -> dict[str, Any]:
    """The ``api_jobs`` row of an in-memory job."""
    from workbench.store.workspace import dumps

    return {
        "job_id": job["job_id"],
        "key_id": job["key_id"],
        "kind": "generate",
        "status": job["status"],
        "request": dumps(job["request"]),
        "result": dumps(job["images"]) if job["finished_at"] else None,
        "error": job["error"],
        "created_at": ts(job["created_at"]),
        "finished_at": ts(job["finished_at"]) if job["finished_at"] else None,
    }


def stored_job(gate, job_id: str) -> dict[str, Any]:
    """A job no longer (or never) in this process's memory, read back from the workspace or its journal."""
    from workbench.store.jobs import job_status
    from workbench.store.workspace import loads

    with gate.reading() as ws:
        row = job_status(ws, job_id)
    if row is None or row[0] in ("queued", "running"):  # its last row may still be in the journal
        row = journalled_job(gate.journal, job_id) or row
    if row is None:
        raise NotFound(f"no generation job {job_id!r}")
    status, result, error, created, finished = row
    if status in ("queued", "running"):  # a job of an earlier server process that never finished
        status, error = "failed", error or ABANDONED
    return {
        "job_id": job_id,
        "status": status,
        "created_at": created,
        "started_at": None,
        "finished_at": finished,
        "error": error,
        "images": loads(result) or [],
    }


def journalled_job(journal, job_id: str) -> tuple | None:
    """The job's latest row among the journal's pending entries, as :func:`~workbench.store.jobs.job_status`
    returns it."""
    import datetime as dt

    latest = None
    for e in journal.pending():
        d = e.get("data") or {}
        if e.get("kind") == "upsert" and d.get("table") == "api_jobs" and (d.get("row") or {}).get("job_id") == job_id:
            latest = d["row"]
    if latest is None:
        return None

    def epoch(ts):
        return None if ts is None else dt.datetime.fromisoformat(ts).replace(tzinfo=dt.UTC).timestamp()

    return (
        latest["status"],
        latest.get("result"),
        latest.get("error"),
        epoch(latest.get("created_at")),
        epoch(latest.get("finished_at")),
    )


def mark_abandoned(gate, journalled: dict[str, str]) -> int:
    """Mark failed (journalled, so it holds even while the workspace is busy) the jobs an earlier process
    left queued or running; ``journalled`` maps job ids to their latest status still in the journal.
    Returns how many were marked."""
    from workbench.store.jobs import unfinished_jobs

    with gate.reading() as ws:
        stale = unfinished_jobs(ws)
    stale = [
        r for r in stale if journalled.get(r["job_id"]) not in ("completed", "failed")
    ]  # finished, not applied yet
    for row in stale:
        row.update(status="failed", error=ABANDONED, finished_at=ts(time.time()))
        row = {k: (str(v) if k in ("created_at",) and v is not None else v) for k, v in row.items()}
        gate.journal.append("upsert", {"table": "api_jobs", "row": row})
    return len(stale)
