"""What the dashboard's pages read, as plain functions of an open :class:`Workspace` over the library and the
store (the Cohorts and bias page's reads are :mod:`apps.dashboard.cohort_data`, the Generations page's
image pairs and labels :mod:`apps.dashboard.label_data`).

Nothing here imports Streamlit: the pages (``apps/dashboard/views``) call these through the gate's
read-only connection, cache the results, and render them.
Return values are lists of dicts, dicts and pandas DataFrames, so they pickle into ``st.cache_data``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from evalbench.labels import human_preference
from evalbench.leaderboard import leaderboard
from evalbench.task_render import leaderboard_rows
from evalbench.task_report import compare_runs, task_report
from workbench.store.personas import list_persona_sets, load_personas, persona_evidence, persona_user_ids
from workbench.store.rewrites import RewriteKey, user_rewrites
from workbench.store.runs import list_runs
from workbench.store.workspace import Workspace

# -- small helpers -------------------------------------------------------------------------------------------


def natural_key(text: str) -> list[Any]:
    """Sort key putting ``u2`` before ``u10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text))]


def fnum(x: Any, nd: int = 3) -> float | None:
    """``x`` rounded to ``nd`` decimals; ``None`` for missing or NaN (shown as empty cells)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else round(v, nd)


def fci(lo: Any, hi: Any, nd: int = 3) -> str:
    """``[lo, hi]`` with ``nd`` decimals, ``-`` when either end is missing."""
    a, b = fnum(lo, nd), fnum(hi, nd)
    return "-" if a is None or b is None else f"[{a:.{nd}f}, {b:.{nd}f}]"


def resolve_image(path: str | None, db_path: str | Path | None = None) -> str | None:
    """See :func:`workbench.images.resolve_image_path`."""
    from workbench.images import resolve_image_path

    return resolve_image_path(path, db_path)


# -- overview ------------------------------------------------------------------------------------------------


def run_subject(kind: str, cfg: dict[str, Any]) -> str:
    """What a run ran, in a few words: the task and its systems, or the system."""
    if kind == "task":
        task = cfg.get("task") or {}
        return f"{task.get('task', '?')} v{task.get('version', '?')} ({len(cfg.get('members') or [])} systems)"
    return str(cfg.get("system") or cfg.get("name") or "")


def runs_table(ws: Workspace) -> pd.DataFrame:
    """One row per run, newest first: id, kind, status, what it ran, started, ended, units done / planned."""
    rows = []
    for r in reversed(list_runs(ws)):
        cfg = r.get("config") or {}
        units = f"{r['units_done']}/{r['n_units']}" if r["kind"] != "task" else f"{len(cfg.get('members') or [])} runs"
        rows.append(
            {
                "run": r["run_id"],
                "kind": r["kind"],
                "status": r["status"],
                "what": run_subject(r["kind"], cfg),
                "split": cfg.get("split"),
                "started": r["started_at"],
                "ended": r["ended_at"],
                "units": units,
            }
        )
    return pd.DataFrame(rows, columns=["run", "kind", "status", "what", "split", "started", "ended", "units"])


def task_runs(ws: Workspace) -> list[dict[str, Any]]:
    """Task runs, newest first: ``run_id``, ``task``, ``status``."""
    out = []
    for r in reversed(list_runs(ws, "task")):
        task = (r.get("config") or {}).get("task") or {}
        out.append({"run_id": r["run_id"], "task": task.get("task", "?"), "status": r["status"]})
    return out


def task_leaderboard(ws: Workspace, run_id: str) -> pd.DataFrame:
    """The task report's leaderboards, one block per text encoder (a ``metric`` column says which), each
    led by the personal win rate: the history ceiling, the systems by personal win rate, the controls."""
    rep = task_report(ws, run_id)
    frames = []
    for te in rep.get("text_encoders") or [None]:
        metric = next((s["metric"] for s in rep["systems"] if s.get("text_encoder") == te), "") if te else ""
        rows = leaderboard_rows(rep, te)
        if rows:
            frames.append(pd.DataFrame([{"metric": metric, **r} for r in rows]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


BENCH_COLUMNS = [
    "run",
    "system",
    "prompts",
    "split",
    "metric",
    "personal",
    "personal CI",
    "vs dislikes",
    "of ceiling",
    "vs generic",
    "generic CI",
    "lift",
    "users",
    "units",
]


def bench_leaderboard(ws: Workspace) -> pd.DataFrame:
    """Completed bench runs by personal win rate (own persona's rewrite against the other held-out users'),
    then the win rate against the generic prompt, with 95% user-bootstrap CIs."""
    rows = [
        {
            "run": r["run_id"],
            "system": r["system"],
            "prompts": r["prompts"],
            "split": r["split"],
            "metric": r["metric"],
            "personal": fnum(r["personal_win_rate"]),
            "personal CI": fci(*r["personal_ci"]),
            "vs dislikes": fnum(r["personal_dislikes"]),
            "of ceiling": None if r["ceiling_share"] != r["ceiling_share"] else f"{100 * r['ceiling_share']:.0f}%",
            "vs generic": fnum(r["win_rate"]),
            "generic CI": fci(r["ci_low"], r["ci_high"]),
            "lift": fnum(r["lift"], 4),
            "users": r["n_users"],
            "units": r["n_units"],
        }
        for r in leaderboard(ws)
    ]
    return pd.DataFrame(rows, columns=BENCH_COLUMNS)


def human_preference_table(ws: Workspace) -> pd.DataFrame:
    """Human labels per system: share preferring the persona image [95% CI over users], sign-test p."""
    rows = [
        {
            "system": r["system"],
            "labels": r["labels"],
            "flagged": r["flags"],
            "judged": r["judged"],
            "prefer persona": r["prefer_system"],
            "human preference": fnum(r["win_rate"]),
            "CI": fci(r["ci_low"], r["ci_high"]),
            "users": r["users"],
            "sign test p": fnum(r["sign_test_p"], 4),
        }
        for r in human_preference(ws)
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "system",
            "labels",
            "flagged",
            "judged",
            "prefer persona",
            "human preference",
            "CI",
            "users",
            "sign test p",
        ],
    )


# -- personas ------------------------------------------------------------------------------------------------


def persona_sets(ws: Workspace) -> list[dict[str, Any]]:
    """``(split_id, encoder)`` pairs that have personas, with their counts (users, cohorts and archetypes)."""
    return list_persona_sets(ws)


def persona_users(ws: Workspace, split_id: str, encoder: str) -> list[str]:
    """Users with a persona of ``encoder`` in ``split_id``, in natural order."""
    return sorted(persona_user_ids(ws, split_id, encoder), key=natural_key)


def persona_detail(ws: Workspace, split_id: str, encoder: str, user_id: str) -> dict[str, Any] | None:
    """The persona card of one user: summary, traits, demographics, attention-ranked evidence, rewrites."""
    card = load_personas(ws, split_id, encoder, [user_id]).get(user_id)
    if card is None:
        return None
    rewrites = [
        {
            "prompt set": r["prompt_set"],
            "prompt id": r["prompt_id"],
            "rewriter": f"{r['backend']}:{r['model']}",
            "prompt": r["prompt"],
            "rewritten": r["rewritten"],
            "negative": r["negative"],
        }
        for r in user_rewrites(ws, RewriteKey(split_id=split_id, encoder=encoder), user_id)
    ]
    trait_rows = [
        {"trait": t.get("name", str(t)), "weight": fnum(t.get("weight"))}
        if isinstance(t, dict)
        else {"trait": str(t), "weight": None}
        for t in card.traits
    ]
    return {
        "user_id": user_id,
        "summary": card.summary or "",
        "model_version": card.model_version,
        "demographics": card.demographics,
        "traits": pd.DataFrame(trait_rows, columns=["trait", "weight"]),
        "evidence": pd.DataFrame(
            persona_evidence(ws, split_id, encoder, user_id), columns=["rank", "item", "title", "weight", "snippet"]
        ),
        "rewrites": pd.DataFrame(
            rewrites, columns=["prompt set", "prompt id", "rewriter", "prompt", "rewritten", "negative"]
        ),
    }


# -- compare runs --------------------------------------------------------------------------------------------


def bench_runs(ws: Workspace) -> list[dict[str, Any]]:
    """Bench runs with per-prompt scores, newest first: ``run_id``, ``system``, ``split``, ``label`` (the
    history ceiling, one unit per user and no prompt, pairs with nothing and is left out)."""
    out = []
    for r in reversed(list_runs(ws, "bench")):
        cfg = r.get("config") or {}
        if not r["units_done"] or cfg.get("reference") == "history":
            continue
        out.append(
            {
                "run_id": r["run_id"],
                "system": cfg.get("system", "?"),
                "split": cfg.get("split"),
                "label": f"{cfg.get('system', '?')} · {r['run_id']} · {cfg.get('split')}",
            }
        )
    return out


def comparison(ws: Workspace, run_a: str, run_b: str) -> dict[str, Any]:
    """:func:`evalbench.task_report.compare_runs` (A's rewritten prompts against B's, paired on shared units)."""
    if run_a == run_b:
        raise ValueError("pick two different runs")
    return compare_runs(ws, run_a, run_b)
