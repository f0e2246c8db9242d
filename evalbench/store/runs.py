"""Runs: config, its hash, code version, timings, status; units done; scores (one long table)."""

from __future__ import annotations

import hashlib
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from evalbench.store.workspace import Workspace, dumps, loads
from persona.records import Score


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(dumps(config).encode()).hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+g<commit>[.dirty]`` inside a git checkout, else the package version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("persona-workbench")
    except PackageNotFoundError:
        v = "0+unknown"
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return v
    return f"{v}+g{sha}{'.dirty' if dirty else ''}" if sha else v


def start_run(ws: Workspace, kind: str, config: dict[str, Any], n_units: int) -> tuple[str, str]:
    """Create the run for ``config`` or pick up an unfinished one; returns ``(run_id, status before)``.

    The run id derives from the config hash, so the same config always resumes the same run.
    """
    h = config_hash(config)
    run_id = f"{kind}-{h[:12]}"
    row = ws.query("SELECT status FROM runs WHERE run_id = ?", [run_id])
    with ws.transaction() as con:
        if not row:
            con.execute("INSERT INTO runs (run_id, kind, config, config_hash, code_version, started_at, status, n_units)"
                        " VALUES (?, ?, ?, ?, ?, now(), 'running', ?)", [run_id, kind, dumps(config), h, code_version(), n_units])
            return run_id, "new"
        if row[0][0] != "completed":
            con.execute("UPDATE runs SET status = 'running', error = NULL, code_version = ? WHERE run_id = ?",
                        [code_version(), run_id])
    return run_id, row[0][0]


def finish_run(ws: Workspace, run_id: str, status: str = "completed", error: str | None = None) -> None:
    ws.con.execute("UPDATE runs SET status = ?, error = ?, ended_at = now() WHERE run_id = ?", [status, error, run_id])


def done_units(ws: Workspace, run_id: str) -> set[str]:
    return {r[0] for r in ws.query("SELECT unit_id FROM run_units WHERE run_id = ?", [run_id])}


def write_units(ws: Workspace, run_id: str, units: list[tuple[str, str, str]], scores: list[Score],
                embeddings: list[tuple[str, str, list[float]]] | None = None) -> None:
    """Record finished units ``(unit_id, status, detail)``, their scores and the embeddings of their outputs
    (``(unit_id, model, vector)``) in one transaction."""
    with ws.transaction():
        if embeddings:
            ws.insert_columns("unit_embeddings", {
                "run_id": [run_id] * len(embeddings), "unit_id": [e[0] for e in embeddings],
                "model": [e[1] for e in embeddings], "embedding": [list(map(float, e[2])) for e in embeddings]},
                casts={"embedding": "FLOAT[]"})
        ws.insert_columns("run_units", {"run_id": [run_id] * len(units), "unit_id": [u[0] for u in units],
                                        "status": [u[1] for u in units], "detail": [u[2] for u in units]},
                          casts={"detail": "VARCHAR"})
        ws.insert_columns("scores", {"run_id": [s.run_id for s in scores], "unit_id": [s.unit_id for s in scores],
                                     "metric": [s.metric for s in scores], "value": [s.value for s in scores],
                                     "model": [s.model for s in scores]}, casts={"value": "DOUBLE"})


def unit_embeddings(ws: Workspace, run_id: str, model: str) -> dict[str, list[float]]:
    """``{unit_id: embedding}`` of a run's outputs, as stored by :func:`write_units`."""
    return dict(ws.query("SELECT unit_id, embedding FROM unit_embeddings WHERE run_id = ? AND model = ?", [run_id, model]))


def write_scores(ws: Workspace, scores: list[Score]) -> None:
    """Add score rows for units already recorded (a second pass over a finished run), in one transaction."""
    if not scores:
        return
    with ws.transaction():
        ws.insert_columns("scores", {"run_id": [s.run_id for s in scores], "unit_id": [s.unit_id for s in scores],
                                     "metric": [s.metric for s in scores], "value": [s.value for s in scores],
                                     "model": [s.model for s in scores]}, casts={"value": "DOUBLE"})


def list_runs(ws: Workspace, kind: str | None = None) -> list[dict[str, Any]]:
    sql = ("SELECT r.run_id, r.kind, r.status, r.started_at, r.ended_at, r.n_units, r.code_version, r.config_hash, r.config,"
           " (SELECT count(*) FROM run_units u WHERE u.run_id = r.run_id) AS units_done FROM runs r")
    params: list = []
    if kind:
        sql += " WHERE r.kind = ?"
        params.append(kind)
    rows = ws.query_dicts(sql + " ORDER BY r.started_at", params)
    for r in rows:
        r["config"] = loads(r["config"])
    return rows
