"""Reports pivoted out of the long ``scores`` table: the leaderboard and per-demographic-group results."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalbench.metrics.preference import cluster_mean_ci
from evalbench.store.datasets import dataset_meta
from evalbench.store.workspace import Workspace, WorkspaceError, loads

AGE_BINS = [(0, 18, "<18"), (18, 25, "18-24"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 55, "45-54"), (55, 200, "55+")]


def _unit_rows(ws: Workspace, run_id: str) -> tuple[str, list[tuple[str, float, float]]]:
    """``(metric base name, [(user, win, lift)])`` for a bench run."""
    rows = ws.query(
        """
        SELECT split_part(unit_id, '|', 1) AS user_id,
               max(value) FILTER (WHERE metric LIKE '%.win') AS win,
               max(value) FILTER (WHERE metric LIKE '%.lift') AS lift,
               any_value(regexp_replace(metric, '\\.[a-z]+$', '')) AS base
        FROM scores WHERE run_id = ? GROUP BY unit_id ORDER BY unit_id
        """, [run_id])
    base = rows[0][3] if rows else ""
    return base, [(r[0], r[1], r[2]) for r in rows]


def _summarise(rows: list[tuple[str, float, float]], seed: int) -> dict[str, Any]:
    users = np.array([r[0] for r in rows])
    wins = np.array([r[1] for r in rows], dtype=float)
    lifts = np.array([r[2] for r in rows], dtype=float)
    w, lo, hi = cluster_mean_ci(wins, users, seed=seed)
    lm, llo, lhi = cluster_mean_ci(lifts, users, seed=seed)
    return {"win_rate": w, "ci_low": lo, "ci_high": hi, "lift": lm, "lift_ci_low": llo, "lift_ci_high": lhi,
            "n_users": int(np.unique(users).size), "n_units": len(rows)}


def leaderboard(ws: Workspace, run_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per bench run (default: every completed one), best win rate first."""
    sql = "SELECT run_id, config, status FROM runs WHERE kind = 'bench'"
    params: list = []
    if run_ids:
        sql += " AND list_contains(?, run_id)"
        params.append(run_ids)
    else:
        sql += " AND status = 'completed'"
    out = []
    for run_id, config, status in ws.query(sql + " ORDER BY started_at", params):
        cfg = loads(config)
        metric, rows = _unit_rows(ws, run_id)
        if not rows:
            continue
        out.append({"run_id": run_id, "system": cfg["system"], "split": cfg["split"], "metric": metric,
                    "status": status, **_summarise(rows, cfg.get("seed", 0))})
    out.sort(key=lambda r: -r["win_rate"])
    return out


def _group_of(value: Any, key: str) -> str:
    if value is None or value == "":
        return "unknown"
    if key in ("age", "rater_age") and isinstance(value, (int, float)):
        return next(label for lo, hi, label in AGE_BINS if lo <= value < hi)
    return str(value)


def group_report(ws: Workspace, run_id: str) -> list[dict[str, Any]]:
    """The run's win rate and lift per value of each demographic attribute (age in bins)."""
    row = ws.query("SELECT config FROM runs WHERE run_id = ?", [run_id])
    if not row:
        raise WorkspaceError(f"No run {run_id!r}; see `pwb runs list`.")
    cfg = loads(row[0][0])
    dataset_id = ws.scalar("SELECT dataset_id FROM splits WHERE split_id = ?", [cfg["split"]])
    keys = dataset_meta(ws, dataset_id).get("demographics", [])
    attrs = {u: loads(a) or {} for u, a in ws.query("SELECT user_id, attributes FROM users WHERE dataset_id = ?", [dataset_id])}
    metric, rows = _unit_rows(ws, run_id)
    out = []
    for key in keys:
        groups: dict[str, list] = {}
        for r in rows:
            groups.setdefault(_group_of(attrs.get(r[0], {}).get(key), key), []).append(r)
        for value, grows in sorted(groups.items()):
            out.append({"attribute": key, "group": value, "metric": metric, **_summarise(grows, cfg.get("seed", 0))})
    return out
