"""Reports on stored runs as the apps show them: a task run's report after running it, the leaderboard of
bench runs (or one task run's full report), and one run's scores for the HTTP API."""

from __future__ import annotations

from typing import Any

from workbench.errors import WorkbenchError


def run_task_report(
    ws, spec, *, progress: bool = True, executor: str = "local", workers: int | None = None
) -> dict[str, Any]:
    """Run every system of the task ``spec`` against its baseline (an interrupted run of the same config
    resumes), and return the run's report (:func:`evalbench.task_report.task_report`)."""
    from evalbench.task_report import task_report
    from evalbench.task_spec import run_task

    res = run_task(ws, spec, progress=progress, executor=executor, workers=workers)
    return task_report(ws, res["run_id"])


def runs_report(
    ws, run_ids: list[str] | tuple[str, ...] = (), *, groups: bool = False, bins: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The report on ``run_ids`` (default: every completed bench run); ``bins``
    (:func:`evalbench.groups.parse_bins`) bin the groups' attributes and add any other they name.

    Returns:
        ``{"task": report}`` when ``run_ids`` is one task run; else ``{"leaderboard": rows, "groups":
        {run_id: per-group rows}, "group_notes": {run_id: why it has no groups}}`` (``groups`` and
        ``group_notes`` only when asked for; a run with groups has no note).

    Raises:
        WorkbenchError: (field ``run_ids``) when a task run is named beside other runs; (field ``--bins``)
            for bins of an attribute that is not numeric or that no run's users have.
    """
    from evalbench.leaderboard import group_breakdown, leaderboard
    from workbench.store.runs import run_kind

    tasks = [r for r in run_ids if run_kind(ws, r) == "task"]
    if tasks:
        if len(run_ids) != 1:
            raise WorkbenchError("give one task run at a time", field="run_ids")
        from evalbench.task_report import task_report

        return {"task": task_report(ws, tasks[0], bins=bins)}
    rows = leaderboard(ws, list(run_ids) or None)
    parts = {r["run_id"]: group_breakdown(ws, r["run_id"], bins, strict=False) for r in rows} if groups or bins else {}
    unknown = [k for k in bins or {} if parts and all(k in p["bins_missing"] for p in parts.values())]
    if unknown:  # no run's users carry it: the error names what they do carry
        ref = next((k for k, p in parts.items() if not p["note"]), rows[0]["run_id"])
        group_breakdown(ws, ref, {k: bins[k] for k in unknown})
    return {
        "leaderboard": rows,
        "groups": {k: p["rows"] for k, p in parts.items() if not p["note"]},
        "group_notes": {k: p["note"] for k, p in parts.items() if p["note"]},
    }


def run_scores(ws, run_id: str) -> dict[str, Any] | None:
    """One run's scores, or ``None`` when there is no such run.

    Returns:
        ``{"run": its row (:func:`workbench.store.runs.list_runs`), "metrics": [{metric, units, mean}],
        "leaderboard": rows, "groups": rows}``: for a task run its baseline and systems (bias columns flat)
        and every system's groups; for a bench run its leaderboard row and per-group rows; else empty lists.
    """
    from evalbench.leaderboard import group_report, leaderboard
    from workbench.store.runs import list_runs, metric_means

    run = next((r for r in list_runs(ws) if r["run_id"] == run_id), None)
    if run is None:
        return None
    board: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    if run["kind"] == "task":
        board, groups = _task_scores(ws, run_id)
    elif run["kind"] == "bench":
        board, groups = leaderboard(ws, [run_id]), group_report(ws, run_id)
    return {"run": run, "metrics": metric_means(ws, run_id), "leaderboard": board, "groups": groups}


def _task_scores(ws, run_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A task run's ``(leaderboard rows, group rows)``: the baseline first (``baseline: True``), then each
    system with its bias summary as ``bias_overall`` / ``ipf`` columns."""
    from evalbench.task_report import task_report

    rep = task_report(ws, run_id)
    board = [{**rep["baseline"], "system": rep["baseline"]["name"], "baseline": True}] if rep.get("baseline") else []
    board += [{**{k: v for k, v in r.items() if k != "bias"}, **_bias_columns(r.get("bias"))} for r in rep["systems"]]
    groups = [{"system": name, "attribute": a, **g} for name, per in rep["groups"].items() for a, g in per.items()]
    return board, groups


def _bias_columns(bias: dict[str, Any] | None) -> dict[str, Any]:
    if not bias:
        return {}
    return {"bias_overall": bias.get("overall"), "ipf": bias.get("ipf")}
