"""The dashboard's Cohorts and bias page, as plain functions of an open workspace: a task or bench run's
scores per demographic group, raw against IPF-reweighted, and each attribute's worst group and gap.

Like :mod:`apps.dashboard.data` (whose number helpers it shares), nothing here imports Streamlit.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from apps.dashboard.data import fci, fnum, run_subject
from evalbench.leaderboard import group_report, leaderboard
from evalbench.task_report import MIN_GROUP, group_key, task_report
from workbench.store.runs import list_runs, run_config, run_kind
from workbench.store.workspace import Workspace, WorkspaceError


def run_options(ws: Workspace) -> list[dict[str, Any]]:
    """Runs with scores to break down: task runs first, then bench runs, newest first within each."""
    out = []
    for kind in ("task", "bench"):
        for r in reversed(list_runs(ws, kind)):
            cfg = r.get("config") or {}
            out.append(
                {
                    "run_id": r["run_id"],
                    "kind": kind,
                    "status": r["status"],
                    "label": f"{r['run_id']} · {kind} · {run_subject(kind, cfg)} · {r['status']}",
                }
            )
    return out


def _worst_rows(system: str, attribute: str, rep: dict[str, Any]) -> dict[str, Any]:
    return {
        "system": system,
        "attribute": attribute,
        "worst group": rep.get("worst_group"),
        "best group": rep.get("best_group"),
        "gap": fnum(rep.get("gap")),
        "disparity ratio": fnum(rep.get("disparity_ratio")),
        "IPF gap": fnum(rep.get("gap_reweighted")),
    }


def _task_cohorts(ws: Workspace, run_id: str) -> dict[str, Any]:
    rep = task_report(ws, run_id)
    text = rep.get("kind", "text") not in ("image", "reference")
    groups, overall, worst = [], [], []
    for s in rep["systems"]:
        bias = s.get("bias") or {}
        if not bias:
            continue
        o, ipf = bias.get("overall") or {}, bias.get("ipf") or {}
        name = s["name"] + (f" [{s['text_encoder']}]" if text and len(rep.get("text_encoders") or []) > 1 else "")
        overall.append(
            {
                "system": name,
                "raw": fnum(o.get("raw_mean")),
                "raw CI": fci(o.get("ci_low"), o.get("ci_high")),
                "IPF-reweighted": fnum(o.get("reweighted_mean")),
                "delta %": fnum(o.get("delta_pct"), 2),
                "IPF effective users": fnum(ipf.get("effective_users"), 1),
                "users": s["n_users"],
            }
        )
        for attribute, arep in (rep["groups"].get(group_key(s) if text else s["name"]) or {}).items():
            worst.append(_worst_rows(name, attribute, arep))
            for group, v in arep["groups"].items():
                groups.append(
                    {
                        "system": name,
                        "attribute": attribute,
                        "group": group,
                        "users": v["n"],
                        "score": fnum(v["mean"]),
                        "ci_low": fnum(v["ci_low"]),
                        "ci_high": fnum(v["ci_high"]),
                        "share": fnum(v.get("share")),
                        "IPF score": fnum(v.get("mean_reweighted")),
                        "target share": fnum(v.get("target_share")),
                    }
                )
    has_ipf = any(r["IPF-reweighted"] is not None for r in overall)
    return {
        "kind": "task",
        "value_label": "personal win rate" if text else "win rate vs baseline",
        "attributes": list(rep["attributes"]),
        "has_ipf": has_ipf,
        "targets": rep.get("targets_source"),
        "overall": pd.DataFrame(overall),
        "worst": pd.DataFrame(worst),
        "groups": pd.DataFrame(groups),
    }


def _bench_cohorts(ws: Workspace, run_id: str) -> dict[str, Any]:
    system = (run_config(ws, run_id) or {}).get("system", run_id)
    rows = group_report(ws, run_id)
    groups = [
        {
            "system": system,
            "attribute": r["attribute"],
            "group": r["group"],
            "users": r["n_users"],
            "score": fnum(r["personal_win_rate"]),
            "ci_low": fnum(r["personal_ci"][0]),
            "ci_high": fnum(r["personal_ci"][1]),
            "vs generic": fnum(r["win_rate"]),
            "lift": fnum(r["lift"], 4),
        }
        for r in rows
    ]
    worst = []
    for attribute in dict.fromkeys(r["attribute"] for r in rows):
        eligible = {
            r["group"]: r["personal_win_rate"]
            for r in rows
            if r["attribute"] == attribute
            and r["n_users"] >= MIN_GROUP
            and r["personal_win_rate"] == r["personal_win_rate"]
        }
        if eligible:
            lo, hi = min(eligible, key=eligible.get), max(eligible, key=eligible.get)
            ratio = eligible[lo] / eligible[hi] if eligible[hi] else float("nan")
            worst.append(
                _worst_rows(
                    system,
                    attribute,
                    {"worst_group": lo, "best_group": hi, "gap": eligible[hi] - eligible[lo], "disparity_ratio": ratio},
                )
            )
    lb = leaderboard(ws, [run_id])
    overall = [
        {
            "system": system,
            "raw": fnum(r["personal_win_rate"]),
            "raw CI": fci(*r["personal_ci"]),
            "IPF-reweighted": None,
            "delta %": None,
            "IPF effective users": None,
            "users": r["n_users"],
        }
        for r in lb
    ]
    return {
        "kind": "bench",
        "value_label": "personal win rate",
        "attributes": list(dict.fromkeys(r["attribute"] for r in rows)),
        "has_ipf": False,
        "targets": None,
        "overall": pd.DataFrame(overall),
        "worst": pd.DataFrame(worst),
        "groups": pd.DataFrame(groups),
    }


def cohort_report(ws: Workspace, run_id: str) -> dict[str, Any]:
    """Per-group results of a task or bench run.

    Returns ``kind``, ``attributes``, ``has_ipf``, ``targets`` (citation or ``None``) and DataFrames
    ``overall`` (raw vs IPF-reweighted per system), ``worst`` (worst / best group and gap per system and
    attribute; groups under ``MIN_GROUP`` users left out) and ``groups`` (one row per system, attribute, group).
    """
    kind = run_kind(ws, run_id)
    if kind is None:
        raise WorkspaceError(f"No run {run_id!r} in this workspace; see `pwb runs list`.")
    return _task_cohorts(ws, run_id) if kind == "task" else _bench_cohorts(ws, run_id)
