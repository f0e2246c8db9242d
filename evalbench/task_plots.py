"""The plots of a task report as PNG bytes: personal win rate per text encoder, per-group bars, raw vs
IPF-reweighted, lift against k, and cost. Each plot is a function of the report dict returning the figure,
or ``None`` when the report has nothing to draw for it."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from evalbench.task_report import group_key


def report_plots(rep: dict[str, Any]) -> dict[str, bytes]:
    """``{plot name: PNG bytes}`` of every plot the report has data for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = _systems(rep)
    plots = [
        (f"personal_{te.replace('/', '_')}", lambda te=te: _personal(plt, rep, te))
        for te in rep.get("text_encoders") or []
    ]
    plots += [(f"groups_{a}", lambda a=a: _groups(plt, rep, systems, a)) for a in rep["attributes"]]
    plots += [
        ("raw_vs_ipf", lambda: _raw_vs_ipf(plt, systems)),
        ("lift_vs_k", lambda: _lift_vs_k(plt, systems)),
        ("cost", lambda: _cost(plt, systems)),
    ]
    out = {}
    for name, draw in plots:  # one figure open at a time
        fig = draw()
        if fig is None:
            continue
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def _systems(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The systems of the first text encoder (every system for an image task), reference rows left out."""
    first = (rep.get("text_encoders") or [None])[0]
    return [e for e in rep["systems"] if not e.get("reference") and (first is None or e.get("text_encoder") == first)]


def _groups_of(rep: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    return rep["groups"].get(group_key(entry) if "text_encoder" in entry else entry["name"], {})


def _personal(plt, rep: dict[str, Any], te: str):
    """Every row's personal win rate under text encoder ``te`` with its CI (reference rows in grey)."""
    rows = [e for e in rep["systems"] if e.get("text_encoder") == te]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows)), 3.4))
    vals = [e["personal_win_rate"] for e in rows]
    lo = [v - e["personal_ci"][0] if e["personal_ci"][0] == e["personal_ci"][0] else 0 for v, e in zip(vals, rows)]
    hi = [e["personal_ci"][1] - v if e["personal_ci"][1] == e["personal_ci"][1] else 0 for v, e in zip(vals, rows)]
    colors = ["#999999" if e.get("reference") else "#3b6ea8" for e in rows]
    ax.bar(np.arange(len(rows)), vals, yerr=[lo, hi], capsize=3, color=colors)
    ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(rows)), [e["name"] for e in rows], rotation=25, ha="right", fontsize=7)
    ax.set_ylabel("personal win rate")
    ax.set_title(f"own persona vs other users' ({rows[0]['metric']}, 95% CI)")
    return fig


def _groups(plt, rep: dict[str, Any], systems: list[dict[str, Any]], attribute: str):
    """Per group of ``attribute`` (in the report's order: bins low to high), each system's win rate with its
    CI over users."""
    cats = list(dict.fromkeys(c for e in systems for c in _groups_of(rep, e).get(attribute, {}).get("groups", {})))
    if not cats:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(cats) * max(1, len(systems)) / 2), 3.2))
    width = 0.8 / max(1, len(systems))
    for k, e in enumerate(systems):
        gr = _groups_of(rep, e).get(attribute, {}).get("groups", {})
        vals = [gr.get(c, {}).get("mean", np.nan) for c in cats]
        lo = [v - gr.get(c, {}).get("ci_low", v) if c in gr else 0 for c, v in zip(cats, vals)]
        hi = [gr.get(c, {}).get("ci_high", v) - v if c in gr else 0 for c, v in zip(cats, vals)]
        ax.bar(np.arange(len(cats)) + k * width, vals, width, yerr=[lo, hi], capsize=2, label=e["name"])
    ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(cats)) + width * (len(systems) - 1) / 2, cats)
    ax.set_ylabel("personal win rate" if rep.get("text_encoders") else "win rate vs baseline")
    ax.set_title(f"per {attribute} group (95% CI over users)")
    ax.legend(fontsize=7)
    return fig


def _raw_vs_ipf(plt, systems: list[dict[str, Any]]):
    """Each system's win rate with users weighted equally beside the one raked to the population targets."""
    raw = [(s.get("bias") or {}).get("overall", {}).get("raw_mean", np.nan) for s in systems]
    rw = [(s.get("bias") or {}).get("overall", {}).get("reweighted_mean", np.nan) for s in systems]
    if not systems or all(np.isnan(rw)):
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(systems)), 3.2))
    x = np.arange(len(systems))
    ax.bar(x - 0.2, raw, 0.4, label="raw")
    ax.bar(x + 0.2, rw, 0.4, label="IPF-reweighted")
    ax.set_xticks(x, [s["name"] for s in systems], rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("win rate")
    ax.set_title("raw vs IPF-reweighted to the population targets")
    ax.legend(fontsize=7)
    return fig


def _lift_vs_k(plt, systems: list[dict[str, Any]]):
    """Lift against k for every series of k-shot systems (their entries' ``shots``) with two k or more."""
    series: dict[str, list[tuple[int, float, float, float]]] = {}
    for s in systems:
        if s.get("shots"):
            series.setdefault(s["shots"]["series"], []).append((s["shots"]["k"], s["lift_x100"], *s["lift_x100_ci"]))
    if not any(len(v) >= 2 for v in series.values()):
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for base, pts in series.items():
        pts.sort()
        ax.errorbar(
            [p[0] for p in pts],
            [p[1] for p in pts],
            yerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
            marker="o",
            capsize=3,
            label=base,
        )
    ax.axhline(0, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("k (the user's own items shown as examples)")
    ax.set_ylabel("lift x100 vs baseline")
    ax.set_title("lift vs k")
    ax.legend(fontsize=7)
    return fig


def _cost(plt, systems: list[dict[str, Any]]):
    """Each system's rewrite latency."""
    if not systems:
        return None
    lat = [(s.get("cost") or {}).get("rewrite_latency_s", np.nan) * 1000 for s in systems]
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(systems)), 3))
    ax.bar(np.arange(len(systems)), lat)
    ax.set_xticks(np.arange(len(systems)), [s["name"] for s in systems], rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("ms per rewrite")
    ax.set_title("cost: rewrite latency")
    return fig
