"""Every workspace query behind the dashboard, as plain functions of an open :class:`Workspace`.

Nothing here imports Streamlit: the pages (``apps/dashboard/views``) call these through the gate's
read-only connection (and :func:`store_label` through its one writer), cache the results, and render them.
Return values are lists of dicts, dicts and pandas DataFrames, so they pickle into ``st.cache_data``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from evalbench.labels import add_label, human_preference, label_pairs
from evalbench.report import group_report, leaderboard
from evalbench.store.runs import list_runs
from evalbench.store.workspace import Workspace, WorkspaceError, loads
from evalbench.taskreport import MIN_GROUP, compare_runs, leaderboard_rows, task_report


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
    """See :func:`generation.io.resolve_image_path`."""
    from generation.io import resolve_image_path

    return resolve_image_path(path, db_path)


# -- overview ------------------------------------------------------------------------------------------------


def _run_subject(kind: str, cfg: dict[str, Any]) -> str:
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
        rows.append({"run": r["run_id"], "kind": r["kind"], "status": r["status"],
                     "what": _run_subject(r["kind"], cfg), "split": cfg.get("split"),
                     "started": r["started_at"], "ended": r["ended_at"], "units": units})
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


BENCH_COLUMNS = ["run", "system", "split", "metric", "personal", "personal CI", "vs dislikes", "of ceiling", "vs generic",
                 "generic CI", "lift", "users", "units"]


def bench_leaderboard(ws: Workspace) -> pd.DataFrame:
    """Completed bench runs by personal win rate (own persona's rewrite against the other held-out users'),
    then the win rate against the generic prompt, with 95% user-bootstrap CIs."""
    rows = [{"run": r["run_id"], "system": r["system"], "split": r["split"], "metric": r["metric"],
             "personal": fnum(r["personal_win_rate"]), "personal CI": fci(*r["personal_ci"]),
             "vs dislikes": fnum(r["personal_dislikes"]),
             "of ceiling": None if r["ceiling_share"] != r["ceiling_share"] else f"{100 * r['ceiling_share']:.0f}%",
             "vs generic": fnum(r["win_rate"]), "generic CI": fci(r["ci_low"], r["ci_high"]),
             "lift": fnum(r["lift"], 4), "users": r["n_users"], "units": r["n_units"]} for r in leaderboard(ws)]
    return pd.DataFrame(rows, columns=BENCH_COLUMNS)


def human_preference_table(ws: Workspace) -> pd.DataFrame:
    """Human labels per system: share preferring the persona image [95% CI over users], sign-test p."""
    rows = [{"system": r["system"], "labels": r["labels"], "flagged": r["flags"], "judged": r["judged"],
             "prefer persona": r["prefer_system"], "human preference": fnum(r["win_rate"]),
             "CI": fci(r["ci_low"], r["ci_high"]), "users": r["users"], "sign test p": fnum(r["sign_test_p"], 4)}
            for r in human_preference(ws)]
    return pd.DataFrame(rows, columns=["system", "labels", "flagged", "judged", "prefer persona", "human preference",
                                       "CI", "users", "sign test p"])


# -- cohorts and bias ----------------------------------------------------------------------------------------


def run_options(ws: Workspace) -> list[dict[str, Any]]:
    """Runs with scores to break down: task runs first, then bench runs, newest first within each."""
    out = []
    for kind in ("task", "bench"):
        for r in reversed(list_runs(ws, kind)):
            cfg = r.get("config") or {}
            out.append({"run_id": r["run_id"], "kind": kind, "status": r["status"],
                        "label": f"{r['run_id']} · {kind} · {_run_subject(kind, cfg)} · {r['status']}"})
    return out


def _worst_rows(system: str, attribute: str, rep: dict[str, Any]) -> dict[str, Any]:
    return {"system": system, "attribute": attribute, "worst group": rep.get("worst_group"),
            "best group": rep.get("best_group"), "gap": fnum(rep.get("gap")),
            "disparity ratio": fnum(rep.get("disparity_ratio")), "IPF gap": fnum(rep.get("gap_reweighted"))}


def _task_cohorts(ws: Workspace, run_id: str) -> dict[str, Any]:
    from evalbench.taskreport import _group_key

    rep = task_report(ws, run_id)
    text = rep.get("kind", "text") not in ("image", "reference")
    groups, overall, worst = [], [], []
    for s in rep["systems"]:
        bias = s.get("bias") or {}
        if not bias:
            continue
        o, ipf = bias.get("overall") or {}, bias.get("ipf") or {}
        name = s["name"] + (f" [{s['text_encoder']}]" if text and len(rep.get("text_encoders") or []) > 1 else "")
        overall.append({"system": name, "raw": fnum(o.get("raw_mean")), "raw CI": fci(o.get("ci_low"), o.get("ci_high")),
                        "IPF-reweighted": fnum(o.get("reweighted_mean")), "delta %": fnum(o.get("delta_pct"), 2),
                        "IPF effective users": fnum(ipf.get("effective_users"), 1), "users": s["n_users"]})
        for attribute, arep in (rep["groups"].get(_group_key(s) if text else s["name"]) or {}).items():
            worst.append(_worst_rows(name, attribute, arep))
            for group, v in arep["groups"].items():
                groups.append({"system": name, "attribute": attribute, "group": group, "users": v["n"],
                               "score": fnum(v["mean"]), "ci_low": fnum(v["ci_low"]), "ci_high": fnum(v["ci_high"]),
                               "share": fnum(v.get("share")), "IPF score": fnum(v.get("mean_reweighted")),
                               "target share": fnum(v.get("target_share"))})
    has_ipf = any(r["IPF-reweighted"] is not None for r in overall)
    return {"kind": "task", "value_label": "personal win rate" if text else "win rate vs baseline",
            "attributes": list(rep["attributes"]), "has_ipf": has_ipf,
            "targets": rep.get("targets_source"), "overall": pd.DataFrame(overall), "worst": pd.DataFrame(worst),
            "groups": pd.DataFrame(groups)}


def _bench_cohorts(ws: Workspace, run_id: str) -> dict[str, Any]:
    system = (loads(ws.scalar("SELECT config FROM runs WHERE run_id = ?", [run_id])) or {}).get("system", run_id)
    rows = group_report(ws, run_id)
    groups = [{"system": system, "attribute": r["attribute"], "group": r["group"], "users": r["n_users"],
               "score": fnum(r["personal_win_rate"]), "ci_low": fnum(r["personal_ci"][0]),
               "ci_high": fnum(r["personal_ci"][1]), "vs generic": fnum(r["win_rate"]), "lift": fnum(r["lift"], 4)}
              for r in rows]
    worst = []
    for attribute in dict.fromkeys(r["attribute"] for r in rows):
        eligible = {r["group"]: r["personal_win_rate"] for r in rows
                    if r["attribute"] == attribute and r["n_users"] >= MIN_GROUP
                    and r["personal_win_rate"] == r["personal_win_rate"]}
        if eligible:
            lo, hi = min(eligible, key=eligible.get), max(eligible, key=eligible.get)
            ratio = eligible[lo] / eligible[hi] if eligible[hi] else float("nan")
            worst.append(_worst_rows(system, attribute, {"worst_group": lo, "best_group": hi,
                                                         "gap": eligible[hi] - eligible[lo], "disparity_ratio": ratio}))
    lb = leaderboard(ws, [run_id])
    overall = [{"system": system, "raw": fnum(r["personal_win_rate"]), "raw CI": fci(*r["personal_ci"]),
                "IPF-reweighted": None, "delta %": None, "IPF effective users": None, "users": r["n_users"]} for r in lb]
    return {"kind": "bench", "value_label": "personal win rate",
            "attributes": list(dict.fromkeys(r["attribute"] for r in rows)), "has_ipf": False,
            "targets": None, "overall": pd.DataFrame(overall), "worst": pd.DataFrame(worst), "groups": pd.DataFrame(groups)}


def cohort_report(ws: Workspace, run_id: str) -> dict[str, Any]:
    """Per-group results of a task or bench run.

    Returns ``kind``, ``attributes``, ``has_ipf``, ``targets`` (citation or ``None``) and DataFrames
    ``overall`` (raw vs IPF-reweighted per system), ``worst`` (worst / best group and gap per system and
    attribute; groups under ``MIN_GROUP`` users left out) and ``groups`` (one row per system, attribute, group).
    """
    kind = ws.scalar("SELECT kind FROM runs WHERE run_id = ?", [run_id])
    if kind is None:
        raise WorkspaceError(f"No run {run_id!r} in this workspace; see `pwb runs list`.")
    return _task_cohorts(ws, run_id) if kind == "task" else _bench_cohorts(ws, run_id)


# -- personas ------------------------------------------------------------------------------------------------


def persona_sets(ws: Workspace) -> list[dict[str, Any]]:
    """``(split_id, encoder)`` pairs that have personas, with their counts (users, cohorts and archetypes)."""
    rows = ws.query("SELECT split_id, encoder, count(*) FROM personas GROUP BY split_id, encoder ORDER BY split_id, encoder")
    return [{"split_id": s, "encoder": e, "users": int(n)} for s, e, n in rows]


def persona_users(ws: Workspace, split_id: str, encoder: str) -> list[str]:
    """Users with a persona of ``encoder`` in ``split_id``, in natural order."""
    rows = ws.query("SELECT user_id FROM personas WHERE split_id = ? AND encoder = ?", [split_id, encoder])
    return sorted((r[0] for r in rows), key=natural_key)


def persona_detail(ws: Workspace, split_id: str, encoder: str, user_id: str) -> dict[str, Any] | None:
    """The persona card of one user: summary, traits, demographics, attention-ranked evidence, rewrites."""
    row = ws.query("SELECT summary, traits, demographics, model_version FROM personas "
                   "WHERE split_id = ? AND encoder = ? AND user_id = ?", [split_id, encoder, user_id])
    if not row:
        return None
    summary, traits, demographics, model_version = row[0]
    evidence = ws.query_dicts(
        "SELECT e.rank, e.item_id AS item, i.title, e.weight, e.snippet FROM persona_evidence e "
        "LEFT JOIN splits s ON s.split_id = e.split_id "
        "LEFT JOIN items i ON i.dataset_id = s.dataset_id AND i.item_id = e.item_id "
        "WHERE e.split_id = ? AND e.encoder = ? AND e.user_id = ? ORDER BY e.rank", [split_id, encoder, user_id])
    rewrites = ws.query_dicts(
        "SELECT prompt_set AS \"prompt set\", prompt_id AS \"prompt id\", backend || ':' || model AS rewriter, "
        "prompt, rewritten, negative FROM rewrites WHERE split_id = ? AND encoder = ? AND user_id = ? "
        "ORDER BY prompt_set, prompt_id, rewriter", [split_id, encoder, user_id])
    trait_rows = [{"trait": t.get("name", str(t)), "weight": fnum(t.get("weight"))} if isinstance(t, dict)
                  else {"trait": str(t), "weight": None} for t in (loads(traits) or [])]
    return {"user_id": user_id, "summary": summary or "", "model_version": model_version,
            "demographics": loads(demographics) or {}, "traits": pd.DataFrame(trait_rows, columns=["trait", "weight"]),
            "evidence": pd.DataFrame(evidence, columns=["rank", "item", "title", "weight", "snippet"]),
            "rewrites": pd.DataFrame(rewrites, columns=["prompt set", "prompt id", "rewriter", "prompt", "rewritten",
                                                        "negative"])}


# -- generations and labels ----------------------------------------------------------------------------------


def pair_users(ws: Workspace) -> list[str]:
    """Users with at least one persona image that has a no-persona baseline."""
    return sorted({p.user_id for p in label_pairs(ws)}, key=natural_key)


def pair_prompts(ws: Workspace, user_id: str) -> list[dict[str, str]]:
    """The prompts of ``user_id``'s pairs: ``prompt_id`` and the original (baseline) prompt text."""
    seen: dict[str, str] = {}
    for p in label_pairs(ws, user_id=user_id):
        seen.setdefault(p.prompt_id, p.baseline_prompt)
    return [{"prompt_id": k, "prompt": v} for k, v in sorted(seen.items(), key=lambda kv: natural_key(kv[0]))]


def pairs_for(ws: Workspace, user_id: str | None = None, prompt_id: str | None = None) -> list[dict[str, Any]]:
    """Label pairs with their image paths resolved (``a_path`` / ``b_path``; ``None`` when the file is gone)."""
    out = []
    for p in label_pairs(ws, user_id=user_id, prompt_id=prompt_id):
        d = p.to_dict()
        d["a_path"] = resolve_image(p.a_image, ws.path)
        d["b_path"] = resolve_image(p.b_image, ws.path)
        out.append(d)
    return out


def labels_by_pair(ws: Workspace, pair_ids: list[str] | tuple[str, ...] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Labels given so far (all, or those of ``pair_ids``), newest first, grouped by ``pair_id``.

    Each label has ``choice``, ``system_side``, ``annotator``, ``note``, ``created_at`` and ``verdict``
    (``persona``, ``baseline`` or ``flag``: what the choice means once the sides are known).
    """
    sql = ("SELECT system_generation_id || ':' || baseline_generation_id AS pair_id, choice, system_side, annotator, "
           "note, created_at FROM labels")
    params: list[Any] = []
    if pair_ids is not None:
        sql += " WHERE list_contains(?, system_generation_id || ':' || baseline_generation_id)"
        params.append(list(pair_ids))
    out: dict[str, list[dict[str, Any]]] = {}
    for r in ws.query_dicts(sql + " ORDER BY created_at DESC, label_id", params):
        r["verdict"] = "flag" if r["choice"] == "flag" else ("persona" if r["choice"] == r["system_side"] else "baseline")
        out.setdefault(r["pair_id"], []).append(r)
    return out


def find_pair(ws: Workspace, pair_id: str):
    """The :class:`~evalbench.labels.LabelPair` called ``pair_id`` (``<system gen>:<baseline gen>``)."""
    system_gen, _, _ = str(pair_id).partition(":")
    user = ws.scalar("SELECT c.user_id FROM generations g JOIN conditions c ON c.condition_id = g.condition_id "
                     "WHERE g.generation_id = ?", [system_gen])
    for p in label_pairs(ws, user_id=user) if user is not None else []:
        if p.pair_id == pair_id:
            return p
    raise WorkspaceError(f"No image pair {pair_id!r} in this workspace (were its generations deleted?)")


def store_label(ws: Workspace, pair_id: str, choice: str, annotator: str | None = None,
                note: str | None = None) -> dict[str, Any]:
    """Store one label (``choice``: ``a``, ``b`` or ``flag``) on a read-write workspace.

    Returns ``label_id``, ``choice``, ``system_side`` and ``system``, so the UI can reveal which side was
    the persona image once the label is in.
    """
    pair = find_pair(ws, pair_id)
    label_id = add_label(ws, pair, choice, annotator=annotator, note=note)
    return {"label_id": label_id, "pair_id": pair_id, "choice": choice, "system_side": pair.system_side,
            "system": pair.system, "annotator": annotator}


# -- compare runs --------------------------------------------------------------------------------------------


def bench_runs(ws: Workspace) -> list[dict[str, Any]]:
    """Bench runs with per-prompt scores, newest first: ``run_id``, ``system``, ``split``, ``label`` (the
    history ceiling, one unit per user and no prompt, pairs with nothing and is left out)."""
    out = []
    for r in reversed(list_runs(ws, "bench")):
        cfg = r.get("config") or {}
        if not r["units_done"] or cfg.get("reference") == "history":
            continue
        out.append({"run_id": r["run_id"], "system": cfg.get("system", "?"), "split": cfg.get("split"),
                    "label": f"{cfg.get('system', '?')} · {r['run_id']} · {cfg.get('split')}"})
    return out


def comparison(ws: Workspace, run_a: str, run_b: str) -> dict[str, Any]:
    """:func:`evalbench.taskreport.compare_runs` (A's rewritten prompts against B's, paired on shared units)."""
    if run_a == run_b:
        raise ValueError("pick two different runs")
    return compare_runs(ws, run_a, run_b)
