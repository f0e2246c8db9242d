"""The leaderboard of bench runs (from each run's stored metric results) and per-demographic-group results
pivoted out of the long ``scores`` table."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalbench.metrics.preference import TextPreference
from evalbench.runner import compute_metric_results, unit_table
from workbench.store.datasets import dataset_meta, load_users
from workbench.store.runs import bench_runs, metric_results, run_config
from workbench.store.splits import split_dataset
from workbench.store.workspace import Workspace, WorkspaceError

AGE_BINS = [
    (0, 18, "<18"),
    (18, 25, "18-24"),
    (25, 35, "25-34"),
    (35, 45, "35-44"),
    (45, 55, "45-54"),
    (55, 200, "55+"),
]


def run_results(ws: Workspace, run_id: str, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """What each metric of a bench run computed (``{metric, encoder, model, aggregation, higher_is_better,
    result}``, the run's first metric first): as stored with the run, or for a run without stored results
    (unfinished, or finished before runs stored them) computed now from its units the same way."""
    return metric_results(ws, run_id) or compute_metric_results(ws, run_id, cfg)


def result_label(result: dict[str, Any]) -> str:
    """A metric result's name with its encoder, as tables show it: ``text_preference[minilm]``."""
    return f"{result['metric']}[{result['encoder']}]" if result["encoder"] else result["metric"]


def run_metric(ws: Workspace, run_id: str, cfg: dict[str, Any]) -> str:
    """A bench run's first metric with its encoder (``text_preference[minilm]``)."""
    return result_label(run_results(ws, run_id, cfg)[0])


def summarise_units(t: dict[str, np.ndarray], seed: int = 0) -> dict[str, Any]:
    """The text-preference result of a table of units (:func:`evalbench.runner.unit_table`; a group's
    units, say): personal win rates with CIs and the Wilcoxon p, the win rate and lift against the generic
    prompt (see :meth:`evalbench.metrics.preference.TextPreference.compute`)."""
    m = TextPreference()
    m.update(
        t["lift"],
        t["user"],
        personal=t["personal"],
        personal_margin=t["personal_margin"],
        personal_dislikes=t["personal_dislikes"],
    )
    return m.compute(seed=seed)


def ceiling_share(personal: float, ceiling: float) -> float:
    """A system's share of the history ceiling's margin: ``(personal - 0.5) / (ceiling - 0.5)``."""
    if not (personal == personal and ceiling == ceiling) or abs(ceiling - 0.5) < 1e-9:
        return float("nan")
    return (personal - 0.5) / (ceiling - 0.5)


def _reference_key(cfg: dict[str, Any]) -> tuple:
    """What a run must share with a history ceiling for the ceiling to be its reference."""
    return (
        cfg.get("split"),
        cfg.get("metric_name") or cfg.get("text_encoder"),
        cfg.get("partners", 0),
        cfg.get("seed", 0),
        cfg.get("max_users", 0),
    )


def leaderboard(ws: Workspace, run_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per bench run (default: every completed one), highest personal win rate first.

    Each row carries the personal win rate (own rewrite against the partners' rewrites of the same system,
    on the own user's hidden items) with its CI and Wilcoxon p, the same with negatives = hidden dislikes
    only, the win rate against the generic prompt, and ``ceiling_share``: the row's share of the history
    ceiling's margin (the ceiling of the same split, metric, partners and seed, where one was run).
    """
    out = []
    for run in bench_runs(ws, run_ids):
        cfg = run["config"]
        primary = run_results(ws, run["run_id"], cfg)[0]
        if not primary["result"]["n_units"]:
            continue
        metric = result_label(primary)
        out.append(
            {
                "run_id": run["run_id"],
                "system": cfg["system"],
                "split": cfg["split"],
                "metric": metric,
                "status": run["status"],
                "reference": cfg.get("reference", ""),
                "prompts": cfg.get("prompts"),
                "partners": cfg.get("partners", 0),
                **primary["result"],
                "_key": _reference_key({**cfg, "metric_name": metric}),
            }
        )
    ceilings = {r["_key"]: r["personal_win_rate"] for r in out if r["reference"] == "history"}
    if len(ceilings) < len({r["_key"] for r in out}):
        for run in bench_runs(ws, reference="history"):
            primary = run_results(ws, run["run_id"], run["config"])[0]
            key = _reference_key({**run["config"], "metric_name": result_label(primary)})
            if key not in ceilings:
                res = primary["result"]
                ceilings[key] = res["personal_win_rate"] if res["n_units"] else float("nan")
    for r in out:
        key = r.pop("_key")
        r["ceiling"] = ceilings.get(key, float("nan"))
        r["ceiling_share"] = float("nan") if r["reference"] else ceiling_share(r["personal_win_rate"], r["ceiling"])
    out.sort(
        key=lambda r: (
            -(r["personal_win_rate"] if r["personal_win_rate"] == r["personal_win_rate"] else -1.0),
            -(r["win_rate"] if r["win_rate"] == r["win_rate"] else -1.0),
        )
    )
    return out


def user_attributes(ws: Workspace, dataset_id: str) -> dict[str, dict[str, Any]]:
    """``{user_id: attributes}`` of the dataset's users (the demographics groups are drawn from)."""
    return {u: user.attributes for u, user in load_users(ws, dataset_id).items()}


def group_of(value: Any, key: str) -> str:
    """The group a user's ``key`` attribute puts them in: the value as text, ages in :data:`AGE_BINS`,
    ``unknown`` when missing."""
    if value is None or value == "":
        return "unknown"
    if key in ("age", "rater_age") and isinstance(value, (int, float)):
        return next(label for lo, hi, label in AGE_BINS if lo <= value < hi)
    return str(value)


def group_report(ws: Workspace, run_id: str) -> list[dict[str, Any]]:
    """The run's personal win rate, win rate and lift per value of each demographic attribute (age in bins)."""
    cfg = run_config(ws, run_id)
    if cfg is None:
        raise WorkspaceError(f"No run {run_id!r}; see `pwb runs list`.")
    dataset_id = split_dataset(ws, cfg["split"])
    keys = dataset_meta(ws, dataset_id).get("demographics", [])
    attrs = user_attributes(ws, dataset_id)
    metric = run_metric(ws, run_id, cfg)
    t = unit_table(ws, run_id, metric)
    out = []
    for key in keys:
        labels = np.array([group_of(attrs.get(u, {}).get(key), key) for u in t["user"]], dtype=object)
        for value in sorted(set(labels.tolist())):
            m = labels == value
            sub = {k: (v[m] if isinstance(v, np.ndarray) else v) for k, v in t.items()}
            out.append({"attribute": key, "group": value, "metric": metric, **summarise_units(sub, cfg.get("seed", 0))})
    return out
