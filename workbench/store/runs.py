"""Runs: config, its hash, code version, timings, status; units done; scores (one long table)."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from workbench.records import Score
from workbench.store.workspace import Workspace, dumps, loads


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
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
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
            con.execute(
                "INSERT INTO runs (run_id, kind, config, config_hash, code_version, started_at, status, n_units)"
                " VALUES (?, ?, ?, ?, ?, now(), 'running', ?)",
                [run_id, kind, dumps(config), h, code_version(), n_units],
            )
            return run_id, "new"
        if row[0][0] != "completed":
            con.execute(
                "UPDATE runs SET status = 'running', error = NULL, code_version = ? WHERE run_id = ?",
                [code_version(), run_id],
            )
    return run_id, row[0][0]


def finish_run(ws: Workspace, run_id: str, status: str = "completed", error: str | None = None) -> None:
    ws.con.execute("UPDATE runs SET status = ?, error = ?, ended_at = now() WHERE run_id = ?", [status, error, run_id])


def done_units(ws: Workspace, run_id: str) -> set[str]:
    return {r[0] for r in ws.query("SELECT unit_id FROM run_units WHERE run_id = ?", [run_id])}


def write_units(
    ws: Workspace,
    run_id: str,
    units: list[tuple[str, str, str]],
    scores: list[Score],
    embeddings: list[tuple[str, str, list[float]]] | None = None,
) -> None:
    """Record finished units ``(unit_id, status, detail)``, their scores and the embeddings of their outputs
    (``(unit_id, model, vector)``) in one transaction."""
    with ws.transaction():
        if embeddings:
            ws.insert_columns(
                "unit_embeddings",
                {
                    "run_id": [run_id] * len(embeddings),
                    "unit_id": [e[0] for e in embeddings],
                    "model": [e[1] for e in embeddings],
                    "embedding": [list(map(float, e[2])) for e in embeddings],
                },
                casts={"embedding": "FLOAT[]"},
            )
        ws.insert_columns(
            "run_units",
            {
                "run_id": [run_id] * len(units),
                "unit_id": [u[0] for u in units],
                "status": [u[1] for u in units],
                "detail": [u[2] for u in units],
            },
            casts={"detail": "VARCHAR"},
        )
        _insert_scores(ws, scores)


def unit_outcomes(ws: Workspace, run_id: str) -> list[tuple[str, str, str | None, int]]:
    """How the run's units ended, per user: ``(user_id, status, detail, units)`` rows (``scored``, or
    ``skipped`` with the reason, e.g. ``no hidden liked items``), the user being the unit id's part
    before ``|``; ordered by user, status and detail."""
    return ws.query(
        "SELECT split_part(unit_id, '|', 1) AS u, status, detail, count(*) FROM run_units WHERE run_id = ? "
        "GROUP BY u, status, detail ORDER BY u, status, detail NULLS FIRST",
        [run_id],
    )


def unit_embeddings(ws: Workspace, run_id: str, model: str) -> dict[str, list[float]]:
    """``{unit_id: embedding}`` of a run's outputs, as stored by :func:`write_units`."""
    return dict(
        ws.query("SELECT unit_id, embedding FROM unit_embeddings WHERE run_id = ? AND model = ?", [run_id, model])
    )


def write_scores(ws: Workspace, scores: list[Score]) -> None:
    """Add score rows for units already recorded (a second pass over a finished run), in one transaction."""
    if not scores:
        return
    with ws.transaction():
        _insert_scores(ws, scores)


def list_runs(ws: Workspace, kind: str | None = None) -> list[dict[str, Any]]:
    sql = (
        "SELECT r.run_id, r.kind, r.status, r.started_at, r.ended_at, r.n_units, r.code_version, r.config_hash, r.config,"
        " (SELECT count(*) FROM run_units u WHERE u.run_id = r.run_id) AS units_done FROM runs r"
    )
    params: list = []
    if kind:
        sql += " WHERE r.kind = ?"
        params.append(kind)
    rows = ws.query_dicts(sql + " ORDER BY r.started_at", params)
    for r in rows:
        r["config"] = loads(r["config"])
    return rows


def run_kind(ws: Workspace, run_id: str) -> str | None:
    """The run's kind (``bench``, ``task``, ``linkeval``, ...), or ``None`` when there is no such run."""
    return ws.scalar("SELECT kind FROM runs WHERE run_id = ?", [run_id])


def run_config(ws: Workspace, run_id: str) -> dict[str, Any] | None:
    """The config a run was started with, or ``None`` when there is no such run."""
    rows = ws.query("SELECT config FROM runs WHERE run_id = ?", [run_id])
    return (loads(rows[0][0]) or {}) if rows else None


def metric_means(ws: Workspace, run_id: str) -> list[dict[str, Any]]:
    """Per metric of the run's scores, by metric name: ``{metric, units (scores), mean}``."""
    return [
        {"metric": m, "units": int(n), "mean": v}
        for m, n, v in ws.query(
            "SELECT metric, count(*), avg(value) FROM scores WHERE run_id = ? GROUP BY metric ORDER BY metric", [run_id]
        )
    ]


def run_record(ws: Workspace, run_id: str, kind: str | None = None) -> dict[str, Any] | None:
    """The run's ``kind``, ``config`` (parsed), ``config_hash``, ``code_version`` and ``status``; ``None`` when
    there is no run ``run_id`` (of ``kind``, when given)."""
    rows = ws.query_dicts(
        "SELECT kind, config, config_hash, code_version, status FROM runs WHERE run_id = ? AND (? IS NULL OR kind = ?)",
        [run_id, kind, kind],
    )
    if not rows:
        return None
    return {**rows[0], "config": loads(rows[0]["config"])}


def bench_runs(
    ws: Workspace, run_ids: Sequence[str] | None = None, *, reference: str | None = None
) -> list[dict[str, Any]]:
    """``run_id``, ``config`` (parsed) and ``status`` of bench runs in start order: those of ``run_ids`` whatever
    their status, else every completed one (only the reference rows ``reference`` names, when given)."""
    sql = "SELECT run_id, config, status FROM runs WHERE kind = 'bench'"
    params: list[Any] = []
    if run_ids:
        sql += " AND list_contains(?, run_id)"
        params.append(list(run_ids))
    else:
        sql += " AND status = 'completed'"
    if reference is not None:
        sql += " AND json_extract_string(config, '$.reference') = ?"
        params.append(reference)
    return [{**r, "config": loads(r["config"])} for r in ws.query_dicts(sql + " ORDER BY started_at", params)]


def unit_scores(ws: Workspace, run_id: str, metrics: Sequence[str]) -> list[tuple]:
    """One row per scored unit of the run, by unit id: ``(user_id, unit_id, value of metrics[0], ...)``, the
    user being the unit id's part before ``|`` and a value ``None`` where the unit has no such score."""
    cols = ", ".join("max(value) FILTER (WHERE metric = ?)" for _ in metrics)
    return ws.query(
        f"SELECT split_part(unit_id, '|', 1), unit_id{', ' if cols else ''}{cols} FROM scores "
        "WHERE run_id = ? GROUP BY unit_id ORDER BY unit_id",
        [*metrics, run_id],
    )


def has_scores(ws: Workspace, run_id: str, metric: str) -> bool:
    """Whether the run has any ``metric`` score (a second pass over a finished run writes them once)."""
    return bool(ws.scalar("SELECT count(*) FROM scores WHERE run_id = ? AND metric = ?", [run_id, metric]))


def image_unit_scores(ws: Workspace, run_id: str) -> list[tuple]:
    """Per unit of an image or reference bench run, by unit id: ``(user_id, unit_id, preference, copy rate,
    diversity, seconds per image, preference metric, personal win, personal margin)``; the preference is
    the run's ``image_preference[...]`` or ``reference_alignment[...]`` score, ``None`` where a unit lacks one."""
    return ws.query(
        """
        SELECT split_part(unit_id, '|', 1), unit_id,
               max(value) FILTER (WHERE (metric LIKE 'image_preference%' OR metric LIKE 'reference_alignment%')
                                  AND metric NOT LIKE '%.personal%'),
               max(value) FILTER (WHERE metric LIKE 'copy_rate%'),
               max(value) FILTER (WHERE metric LIKE 'diversity%'),
               max(value) FILTER (WHERE metric = 'cost.seconds_per_image'),
               any_value(metric) FILTER (WHERE (metric LIKE 'image_preference%' OR metric LIKE 'reference_alignment%')
                                         AND metric NOT LIKE '%.personal%'),
               max(value) FILTER (WHERE metric LIKE '%.personal'),
               max(value) FILTER (WHERE metric LIKE '%.personal_margin')
        FROM scores WHERE run_id = ? GROUP BY unit_id ORDER BY unit_id
        """,
        [run_id],
    )


def clear_run_results(ws: Workspace, run_id: str) -> None:
    """Drop the run's units and scores (a run that is recomputed whole rather than resumed)."""
    with ws.transaction() as con:
        con.execute("DELETE FROM scores WHERE run_id = ?", [run_id])
        con.execute("DELETE FROM run_units WHERE run_id = ?", [run_id])


def write_metric_results(ws: Workspace, run_id: str, results: Sequence[dict[str, Any]]) -> None:
    """Store what each metric of the run computed, replacing earlier results of the run, in one transaction.
    Each result: ``metric``, ``encoder`` (its label), ``model``, ``aggregation``, ``higher_is_better`` and
    ``result`` (a JSON-able dict), in the run's metric order."""
    with ws.transaction() as con:
        con.execute("DELETE FROM metric_results WHERE run_id = ?", [run_id])
        for k, r in enumerate(results):
            con.execute(
                "INSERT INTO metric_results (run_id, position, metric, encoder, model, aggregation, "
                "higher_is_better, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    k,
                    r["metric"],
                    r["encoder"],
                    r.get("model"),
                    r["aggregation"],
                    bool(r["higher_is_better"]),
                    dumps(r["result"]),
                ],
            )


def metric_results(ws: Workspace, run_id: str) -> list[dict[str, Any]]:
    """The run's metric results as :func:`write_metric_results` stored them, in the run's metric order
    (empty for a run that has not finished, one finished before results were stored, or a workspace opened
    read-only before its migration to results)."""
    if not ws.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'metric_results'"):
        return []
    rows = ws.query_dicts(
        "SELECT metric, encoder, model, aggregation, higher_is_better, result FROM metric_results "
        "WHERE run_id = ? ORDER BY position",
        [run_id],
    )
    return [{**r, "result": loads(r["result"])} for r in rows]


def _insert_scores(ws: Workspace, scores: list[Score]) -> None:
    """The score rows, as columns (inside the caller's transaction)."""
    ws.insert_columns(
        "scores",
        {
            "run_id": [s.run_id for s in scores],
            "unit_id": [s.unit_id for s in scores],
            "metric": [s.metric for s in scores],
            "value": [s.value for s in scores],
            "model": [s.model for s in scores],
        },
        casts={"value": "DOUBLE"},
    )
