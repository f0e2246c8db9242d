"""Power of a split for the personal win rate, computed before any system is scored.

A split can only show a personal effect if the users' own history tells them apart on their hidden items
at all. The **history ceiling** (the user's own visible-liked centroid against every other held-out
user's, no prompt; :class:`evalbench.runner.BenchConfig` with ``reference="history"``) measures that, and
it involves no persona system, so the split can be chosen by it without peeking at any result.

From the ceiling's per-user values (mean :math:`c`, standard deviation :math:`s`, :math:`n` users):

* its 95% CI (percentile bootstrap over users);
* the **minimal detectable personal win rate** of a system whose per-user spread is like the ceiling's:
  :math:`0.5 + z_{0.975}\\, s / \\sqrt n` (smaller and its CI includes 0.5);
* the **target**, half the ceiling's margin: :math:`0.5 + (c - 0.5) / 2`, and the users needed for a system
  at the target to have its CI above 0.5 with 80% power:
  :math:`n^* = \\big((z_{0.975} + z_{0.8})\\, s / (c - 0.5)/2\\big)^2`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def split_power(
    ws,
    split: str | None = None,
    *,
    text_encoder: str = "minilm",
    partners: int = 0,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """The split's power figures (see the module docstring); runs (or reuses) the history-ceiling run."""
    from scipy.stats import norm

    from evalbench.leaderboard import summarise_units
    from evalbench.runner import BenchConfig, run_bench, unit_table
    from workbench.store.splits import hidden_targets, resolve_split, split_users

    split_id = resolve_split(ws, split)
    cfg = BenchConfig(split_id, reference="history", text_encoder=text_encoder, partners=partners, seed=seed)
    run = run_bench(ws, cfg, progress=progress)
    t = unit_table(ws, run["run_id"], cfg.metric_name)
    keep = ~np.isnan(t["personal"])
    per = t["personal"][keep]
    summary = summarise_units(t, seed)
    users = split_users(ws, split_id, ("heldout",))
    targets = hidden_targets(ws, split_id, users)
    liked = [len(targets.get(u, {}).get("liked", [])) for u in users]
    negs = [len(targets.get(u, {}).get("unseen", [])) for u in users]
    dislikes = [len(targets.get(u, {}).get("disliked", [])) for u in users]
    n = int(per.size)
    c = float(per.mean()) if n else float("nan")
    s = float(per.std(ddof=1)) if n > 1 else float("nan")
    z, zb = float(norm.ppf(0.975)), float(norm.ppf(0.8))
    target = 0.5 + (c - 0.5) / 2
    need = ((z + zb) * s / ((c - 0.5) / 2)) ** 2 if c > 0.5 else float("inf")
    return {
        "split": split_id,
        "metric": cfg.metric_name,
        "run_id": run["run_id"],
        "heldout_users": len(users),
        "scored_users": n,
        "median_hidden_likes": float(np.median(liked)) if liked else 0.0,
        "median_hidden_negatives": float(np.median(negs)) if negs else 0.0,
        "median_hidden_dislikes": float(np.median(dislikes)) if dislikes else 0.0,
        "ceiling": c,
        "ceiling_ci": summary["personal_ci"],
        "ceiling_sd": s,
        "min_detectable": 0.5 + z * s / np.sqrt(n) if n else float("nan"),
        "target_half_ceiling": target,
        "users_needed_for_target": float(np.ceil(need)) if np.isfinite(need) else need,
    }
