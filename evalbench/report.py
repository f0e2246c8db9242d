"""Reports pivoted out of the long ``scores`` table: the leaderboard and per-demographic-group results."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalbench.metrics.preference import cluster_mean_ci
from evalbench.store.datasets import dataset_meta
from evalbench.store.workspace import Workspace, WorkspaceError, loads

AGE_BINS = [(0, 18, "<18"), (18, 25, "18-24"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 55, "45-54"), (55, 200, "55+")]


#: per-unit score suffixes a bench run stores under its metric (``text_preference[minilm].win``)
UNIT_FIELDS = ("generic", "rewritten", "lift", "win", "personal", "personal_dislikes", "personal_margin")


def run_metric(ws: Workspace, run_id: str, cfg: dict[str, Any] | None = None) -> str:
    """A bench run's metric with its encoder (``text_preference[minilm]``): from its config, or for runs
    stored before configs named it, from its score rows."""
    if cfg and cfg.get("metric_name"):
        return cfg["metric_name"]
    name = ws.scalar("SELECT min(metric) FROM scores WHERE run_id = ?", [run_id])
    return name.rsplit(".", 1)[0] if name else ""


def unit_table(ws: Workspace, run_id: str, metric: str) -> dict[str, np.ndarray]:
    """The per-unit scores of a bench run as columns: ``user``, ``unit`` and each of :data:`UNIT_FIELDS`
    (NaN where a unit has none, e.g. ``personal_dislikes`` for a user without hidden dislikes)."""
    cols = ", ".join(f"max(value) FILTER (WHERE metric = ?) AS {f}" for f in UNIT_FIELDS)
    rows = ws.query(f"SELECT split_part(unit_id, '|', 1), unit_id, {cols} FROM scores WHERE run_id = ? "
                    "GROUP BY unit_id ORDER BY unit_id", [f"{metric}.{f}" for f in UNIT_FIELDS] + [run_id])
    c = list(zip(*rows)) if rows else [()] * (2 + len(UNIT_FIELDS))
    out = {"user": np.array(c[0], dtype=object), "unit": np.array(c[1], dtype=object)}
    for k, f in enumerate(UNIT_FIELDS):
        out[f] = np.array([np.nan if v is None else v for v in c[2 + k]], dtype=float)
    return out


def _ci_of(values: np.ndarray, users: np.ndarray, seed: int) -> tuple[float, float, float, int]:
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan"), float("nan"), float("nan"), 0
    m, lo, hi = cluster_mean_ci(values[keep], users[keep], seed=seed)
    return m, lo, hi, int(np.unique(users[keep]).size)


def summarise_units(t: dict[str, np.ndarray], seed: int = 0) -> dict[str, Any]:
    """Personal win rate (own vs partners, negatives = the hidden unseen items; then dislikes only) with
    CIs and the Wilcoxon p of the per-user margins, and the win rate and lift against the generic prompt."""
    from evalbench.metrics.preference import cluster_wilcoxon

    users = t["user"]
    pw, plo, phi, _ = _ci_of(t["personal"], users, seed)
    keep = ~np.isnan(t["personal_margin"])
    p = cluster_wilcoxon(t["personal_margin"][keep], users[keep])
    dw, dlo, dhi, n_d = _ci_of(t["personal_dislikes"], users, seed)
    w, lo, hi, _ = _ci_of(t["win"], users, seed)
    lm, llo, lhi, _ = _ci_of(t["lift"], users, seed)
    return {"personal_win_rate": pw, "personal_ci": [plo, phi], "personal_wilcoxon_p": p,
            "personal_dislikes": dw, "personal_dislikes_ci": [dlo, dhi], "personal_dislikes_users": n_d,
            "win_rate": w, "ci_low": lo, "ci_high": hi, "lift": lm, "lift_ci_low": llo, "lift_ci_high": lhi,
            "n_users": int(np.unique(users).size), "n_units": int(users.size)}


def ceiling_share(personal: float, ceiling: float) -> float:
    """A system's share of the history ceiling's margin: ``(personal - 0.5) / (ceiling - 0.5)``."""
    if not (personal == personal and ceiling == ceiling) or abs(ceiling - 0.5) < 1e-9:
        return float("nan")
    return (personal - 0.5) / (ceiling - 0.5)


def _reference_key(cfg: dict[str, Any]) -> tuple:
    """What a run must share with a history ceiling for the ceiling to be its reference."""
    return (cfg.get("split"), cfg.get("metric_name") or cfg.get("text_encoder"), cfg.get("partners", 0), cfg.get("seed", 0),
            cfg.get("max_users", 0))


def leaderboard(ws: Workspace, run_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per bench run (default: every completed one), highest personal win rate first.

    Each row carries the personal win rate (own rewrite against the partners' rewrites of the same system,
    on the own user's hidden items) with its CI and Wilcoxon p, the same with negatives = hidden dislikes
    only, the win rate against the generic prompt, and ``ceiling_share``: the row's share of the history
    ceiling's margin (the ceiling of the same split, metric, partners and seed, where one was run).
    """
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
        metric = run_metric(ws, run_id, cfg)
        t = unit_table(ws, run_id, metric)
        if not t["unit"].size:
            continue
        out.append({"run_id": run_id, "system": cfg["system"], "split": cfg["split"], "metric": metric,
                    "status": status, "reference": cfg.get("reference", ""), "prompts": cfg.get("prompts"),
                    "partners": cfg.get("partners", 0), **summarise_units(t, cfg.get("seed", 0)),
                    "_key": _reference_key({**cfg, "metric_name": metric})})
    ceilings = {r["_key"]: r["personal_win_rate"] for r in out if r["reference"] == "history"}
    if len(ceilings) < len({r["_key"] for r in out}):
        for run_id, config in ws.query("SELECT run_id, config FROM runs WHERE kind = 'bench' AND status = 'completed' "
                                       "AND json_extract_string(config, '$.reference') = 'history'"):
            cfg = loads(config)
            key = _reference_key({**cfg, "metric_name": run_metric(ws, run_id, cfg)})
            if key not in ceilings:
                t = unit_table(ws, run_id, run_metric(ws, run_id, cfg))
                ceilings[key] = summarise_units(t, cfg.get("seed", 0))["personal_win_rate"] if t["unit"].size else float("nan")
    for r in out:
        key = r.pop("_key")
        r["ceiling"] = ceilings.get(key, float("nan"))
        r["ceiling_share"] = float("nan") if r["reference"] else ceiling_share(r["personal_win_rate"], r["ceiling"])
    out.sort(key=lambda r: (-(r["personal_win_rate"] if r["personal_win_rate"] == r["personal_win_rate"] else -1.0),
                            -(r["win_rate"] if r["win_rate"] == r["win_rate"] else -1.0)))
    return out


def _group_of(value: Any, key: str) -> str:
    if value is None or value == "":
        return "unknown"
    if key in ("age", "rater_age") and isinstance(value, (int, float)):
        return next(label for lo, hi, label in AGE_BINS if lo <= value < hi)
    return str(value)


def group_report(ws: Workspace, run_id: str) -> list[dict[str, Any]]:
    """The run's personal win rate, win rate and lift per value of each demographic attribute (age in bins)."""
    row = ws.query("SELECT config FROM runs WHERE run_id = ?", [run_id])
    if not row:
        raise WorkspaceError(f"No run {run_id!r}; see `pwb runs list`.")
    cfg = loads(row[0][0])
    dataset_id = ws.scalar("SELECT dataset_id FROM splits WHERE split_id = ?", [cfg["split"]])
    keys = dataset_meta(ws, dataset_id).get("demographics", [])
    attrs = {u: loads(a) or {} for u, a in ws.query("SELECT user_id, attributes FROM users WHERE dataset_id = ?", [dataset_id])}
    metric = run_metric(ws, run_id, cfg)
    t = unit_table(ws, run_id, metric)
    out = []
    for key in keys:
        labels = np.array([_group_of(attrs.get(u, {}).get(key), key) for u in t["user"]], dtype=object)
        for value in sorted(set(labels.tolist())):
            m = labels == value
            sub = {k: (v[m] if isinstance(v, np.ndarray) else v) for k, v in t.items()}
            out.append({"attribute": key, "group": value, "metric": metric, **summarise_units(sub, cfg.get("seed", 0))})
    return out
