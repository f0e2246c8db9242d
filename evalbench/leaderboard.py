"""The leaderboard of bench runs (from each run's stored metric results) and per-demographic-group results
pivoted out of the long ``scores`` table."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalbench.groups import AGE_BINS as AGE_BINS
from evalbench.groups import Bins, assign_groups, carried_attributes, check_bins_attributes, no_groups_note
from evalbench.metrics.preference import TextPreference
from evalbench.runner import compute_metric_results, unit_table, user_coverage
from workbench.store.datasets import dataset_meta, load_users
from workbench.store.runs import bench_runs, metric_results, run_config
from workbench.store.splits import split_dataset
from workbench.store.workspace import Workspace, WorkspaceError


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
                **user_coverage(ws, run["run_id"], cfg),
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


def group_report(ws: Workspace, run_id: str, bins: dict[str, Bins] | None = None) -> list[dict[str, Any]]:
    """The run's personal win rate, win rate and lift per group of each demographic attribute (see
    :func:`group_breakdown`; no rows when the dataset has no demographics)."""
    return group_breakdown(ws, run_id, bins)["rows"]


#: how a bench report groups by an attribute the dataset does not declare demographic
BINS_FIX = "group by one with pwb bench report --groups --bins ATTR=values (or ATTR=quantiles)"


def group_breakdown(
    ws: Workspace, run_id: str, bins: dict[str, Bins] | None = None, *, strict: bool = True
) -> dict[str, Any]:
    """``{"rows", "note", "bins_missing"}``: the run's personal win rate, win rate and lift per group of each
    demographic attribute and of each attribute ``bins`` names (groups by
    :func:`evalbench.groups.assign_groups` over the run's users: ages in fixed bins, numeric attributes with
    many values in quantile bins, ``bins`` as given), in group order; ``note`` says why there are no groups
    (no user attributes) or is ``None``; ``bins_missing``: the attributes of ``bins`` the dataset's users
    lack (left out; an error when ``strict``).

    Raises:
        WorkspaceError: for an unknown run.
        WorkbenchError: (the bins' field) when ``bins`` bins an attribute that is not numeric, or (``strict``)
            one no user of the dataset has.
    """
    cfg = run_config(ws, run_id)
    if cfg is None:
        raise WorkspaceError(f"No run {run_id!r}; see `pwb runs list`.")
    dataset_id = split_dataset(ws, cfg["split"])
    bins = bins or {}
    attrs = user_attributes(ws, dataset_id)
    carried = carried_attributes(attrs)
    missing = [k for k in bins if k not in carried]
    if strict and missing:
        check_bins_attributes({k: bins[k] for k in missing}, attrs, dataset_id)
    keys = list(dataset_meta(ws, dataset_id).get("demographics", []))
    keys += [k for k in bins if k not in keys and k not in missing]
    note = no_groups_note(dataset_id, attrs, keys, BINS_FIX)
    metric = run_metric(ws, run_id, cfg)
    t = unit_table(ws, run_id, metric)
    out: list[dict[str, Any]] = []
    if note or not t["unit"].size:
        return {"rows": out, "note": note, "bins_missing": missing}
    users = list(dict.fromkeys(t["user"].tolist()))
    for key in keys:
        labels, order = assign_groups({u: attrs.get(u, {}).get(key) for u in users}, key, bins.get(key))
        lab = np.array([labels[u] for u in t["user"]], dtype=object)
        for value in order:
            m = lab == value
            sub = {k: (v[m] if isinstance(v, np.ndarray) else v) for k, v in t.items()}
            out.append({"attribute": key, "group": value, "metric": metric, **summarise_units(sub, cfg.get("seed", 0))})
    return {"rows": out, "note": None, "bins_missing": missing}
