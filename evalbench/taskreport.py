"""Task reports: every system against the no-persona baseline with CIs and a paired test, per-group
scores with raw vs IPF-reweighted results, cost; as a dict (JSON), Markdown or HTML with plots."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np

from evalbench.store.workspace import Workspace, WorkspaceError, loads

#: groups with fewer users are shown but do not define the worst-group gap or the disparity ratio
MIN_GROUP = 5


def _units(ws: Workspace, run_id: str) -> dict[str, np.ndarray]:
    """A bench run's per-unit scores (:func:`evalbench.report.unit_table`); an error if it has none."""
    from evalbench.report import run_metric, unit_table

    cfg = loads(ws.scalar("SELECT config FROM runs WHERE run_id = ?", [run_id]) or "{}") or {}
    t = unit_table(ws, run_id, run_metric(ws, run_id, cfg))
    if not t["unit"].size:
        raise WorkspaceError(f"run {run_id!r} has no scores")
    return t


def _user_groups(ws: Workspace, split: str, users: np.ndarray, attributes: list[str]) -> dict[str, np.ndarray]:
    from evalbench.report import _group_of

    dataset_id = ws.scalar("SELECT dataset_id FROM splits WHERE split_id = ?", [split])
    attrs = {u: loads(a) or {} for u, a in ws.query("SELECT user_id, attributes FROM users WHERE dataset_id = ?", [dataset_id])}
    return {a: np.array([_group_of(attrs.get(u, {}).get(a), a) for u in users]) for a in attributes}


def _cost(ws: Workspace, bench_cfg: dict[str, Any]) -> dict[str, Any]:
    """Rewrite latency, output tokens (approximate: words and punctuation, the same count for every
    backend) and template fallbacks of the system's stored rewrites."""
    from persona.evidence import count_tokens

    params = [bench_cfg["split"], bench_cfg["encoder"], bench_cfg["backend"], bench_cfg["model"], bench_cfg["prompts"]]
    where = "WHERE split_id = ? AND encoder = ? AND backend = ? AND model = ? AND prompt_set = ?"
    row = ws.query(f"SELECT avg(latency_s), count(*), sum(CASE WHEN fallback IS NOT NULL THEN 1 ELSE 0 END) FROM rewrites {where}",
                   params)
    lat, n, fb = row[0] if row else (None, 0, 0)
    texts = [r[0] or "" for r in ws.query(f"SELECT rewritten FROM rewrites {where}", params)]
    return {"rewrite_latency_s": float(lat) if lat is not None else float("nan"), "rewrites": int(n or 0),
            "fallbacks": int(fb or 0),
            "output_tokens_per_rewrite": float(np.mean([count_tokens(t) for t in texts])) if texts else float("nan")}


def task_report(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The report of a ``task`` run (see :func:`evalbench.taskspec.run_task`)."""
    from evalbench.metrics.bias import bias_summary, load_targets
    from evalbench.metrics.paired import paired_comparison
    from evalbench.metrics.preference import cluster_mean_ci

    row = ws.query("SELECT config, code_version, config_hash, status FROM runs WHERE run_id = ? AND kind = 'task'", [run_id])
    if not row:
        raise WorkspaceError(f"No task run {run_id!r}; see `pwb runs list --kind task`.")
    cfg, code, chash, status = loads(row[0][0]), row[0][1], row[0][2], row[0][3]
    task, split, seed = cfg["task"], cfg["split"], cfg["task"]["seed"]
    bias_cfg = task.get("bias") or {}
    attributes = list(bias_cfg.get("attributes") or [])
    targets = load_targets(bias_cfg["targets"]) if bias_cfg.get("targets") else None
    if targets is not None:  # rake only on attributes the task reports
        from evalbench.metrics.bias import Targets

        targets = Targets(marginals={a: m for a, m in targets.marginals.items() if a in attributes},
                          source=targets.source, notes=getattr(targets, "notes", None))
    systems, groups_out = [], {}
    baseline = None
    if task.get("kind", "text") in ("image", "reference"):
        return _image_task_report(ws, run_id, cfg, code, chash, status, attributes, targets)
    from evalbench.report import ceiling_share, run_metric, summarise_units, unit_table

    members = []
    for m in cfg["members"]:
        bench_cfg = loads(ws.scalar("SELECT config FROM runs WHERE run_id = ?", [m["run_id"]]))
        metric = run_metric(ws, m["run_id"], bench_cfg)
        t = unit_table(ws, m["run_id"], metric)
        if not t["unit"].size:
            continue
        members.append((m, bench_cfg, metric, t))
    encoders = list(dict.fromkeys(m.get("text_encoder") or bench_cfg.get("text_encoder", "minilm")
                                  for m, bench_cfg, _, _ in members))
    ceilings = {}
    for m, bench_cfg, metric, t in members:
        te = m.get("text_encoder") or bench_cfg.get("text_encoder", "minilm")
        reference = m.get("reference") or bench_cfg.get("reference", "")
        summary = summarise_units(t, seed)
        entry = {"name": m["name"], "run_id": m["run_id"], "system": m["system"], "metric": metric, "text_encoder": te,
                 "reference": reference, "prompts": bench_cfg.get("prompts"), "partners": bench_cfg.get("partners", 0),
                 "max_users": bench_cfg.get("max_users", 0),
                 **{k: summary[k] for k in ("personal_win_rate", "personal_ci", "personal_wilcoxon_p", "personal_dislikes",
                                            "personal_dislikes_ci", "personal_dislikes_users")},
                 "n_users": summary["n_users"], "n_units": summary["n_units"]}
        if reference == "history":
            ceilings[(te, bench_cfg.get("max_users", 0))] = summary["personal_win_rate"]
            entry.update({"win_rate": float("nan"), "win_rate_ci": [float("nan")] * 2, "lift_x100": float("nan"),
                          "lift_x100_ci": [float("nan")] * 2, "wilcoxon_p": float("nan"), "sign_test_p": float("nan"),
                          "score": float("nan"), "score_ci": [float("nan")] * 2, "cost": {}})
            systems.append(entry)
            continue
        if baseline is None or (baseline.get("text_encoder") != encoders[0] and te == encoders[0]):
            b, blo, bhi = cluster_mean_ci(t["generic"], t["user"], seed=seed)
            baseline = {"name": task["baseline"], "score": b, "score_ci": [blo, bhi], "n_users": int(np.unique(t["user"]).size),
                        "n_units": int(t["unit"].size), "text_encoder": te, "metric": metric}
        pc = paired_comparison(t["rewritten"], t["generic"], t["user"], seed=seed)
        score, slo, shi = cluster_mean_ci(t["rewritten"], t["user"], seed=seed)
        entry.update({"win_rate": pc.win_rate, "win_rate_ci": [pc.win_rate_ci_low, pc.win_rate_ci_high],
                      "lift_x100": 100 * pc.mean_difference,
                      "lift_x100_ci": [100 * pc.mean_difference_ci_low, 100 * pc.mean_difference_ci_high],
                      "wilcoxon_p": pc.wilcoxon_p, "sign_test_p": pc.sign_test_p, "score": score, "score_ci": [slo, shi],
                      "cost": _cost(ws, bench_cfg) if not reference else {}})
        if attributes:
            g = _user_groups(ws, split, t["user"], attributes)
            # per-group personal win rates; groups under MIN_GROUP users are reported but left out of the
            # worst-group gap and the ratio
            ipf_error = None
            try:
                rep = bias_summary(t["personal"], g, targets, cluster_ids=t["user"], seed=seed, min_n=MIN_GROUP)
            except ValueError as e:  # a user subset (max_users) can miss a target category: raw groups only
                ipf_error = str(e)
                rep = bias_summary(t["personal"], g, None, cluster_ids=t["user"], seed=seed, min_n=MIN_GROUP)
            ipf = None
            if rep.ipf is not None:
                w = np.asarray(rep.ipf.weights, dtype=float)
                ipf = {"iterations": rep.ipf.iterations, "max_error": rep.ipf.max_error, "converged": rep.ipf.converged,
                       "max_weight": float(w.max()), "effective_users": float(w.sum() ** 2 / (w ** 2).sum())}
            entry["bias"] = {"overall": rep.overall, "ipf": ipf, **({"ipf_error": ipf_error} if ipf_error else {})}
            groups_out[_group_key(entry)] = {a: {k: v for k, v in r.items()} for a, r in rep.attributes.items()}
        systems.append(entry)
    for e in systems:
        e["ceiling"] = ceilings.get((e["text_encoder"], e.get("max_users", 0)), float("nan"))
        e["ceiling_share"] = float("nan") if e["reference"] else ceiling_share(e["personal_win_rate"], e["ceiling"])
    systems.sort(key=lambda r: (encoders.index(r["text_encoder"]) if r["text_encoder"] in encoders else 99,
                                {"history": 0, "": 1, "popularity": 2}.get(r["reference"], 1),
                                -(r["personal_win_rate"] if r["personal_win_rate"] == r["personal_win_rate"] else -1.0)))
    return {"task": task["task"], "version": task["version"], "run_id": run_id, "status": status, "split": split,
            "seed": seed, "code_version": code, "config_hash": chash, "prompts": task["prompts"],
            "text_encoder": task["text_encoder"], "text_encoders": encoders, "partners": task.get("partners", 0),
            "power": task.get("power") or {}, "baseline": baseline, "systems": systems, "groups": groups_out,
            "attributes": attributes, "targets_source": getattr(targets, "source", None) if targets else None}


def _personal_of(u: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    """An image run's personal win rate (own images against the other users' images on the user's own
    hidden images) with its CI and Wilcoxon p; NaN where the run has none (reference tasks)."""
    from evalbench.metrics.preference import cluster_mean_ci, cluster_wilcoxon

    p = u.get("personal", np.array([]))
    keep = ~np.isnan(p) if p.size else np.array([], dtype=bool)
    if not keep.any():
        return {"personal_win_rate": float("nan"), "personal_ci": [float("nan"), float("nan")],
                "personal_wilcoxon_p": float("nan")}
    m, lo, hi = cluster_mean_ci(p[keep], u["user"][keep], seed=seed)
    return {"personal_win_rate": m, "personal_ci": [lo, hi],
            "personal_wilcoxon_p": cluster_wilcoxon(u["personal_margin"][keep], u["user"][keep])}


def _group_key(entry: dict[str, Any]) -> str:
    """Where a system's per-group results are filed: its name, with the encoder when not the first."""
    return f"{entry['name']} [{entry['text_encoder']}]"


def _image_task_report(ws, run_id, cfg, code, chash, status, attributes, targets) -> dict[str, Any]:
    """Image tasks: each system's image preference against the baseline system's, paired on shared units."""
    from evalbench.imagebench import image_units
    from evalbench.metrics.bias import bias_summary
    from evalbench.metrics.paired import paired_comparison
    from evalbench.metrics.preference import cluster_mean_ci

    task, split, seed = cfg["task"], cfg["split"], cfg["task"]["seed"]
    units = {m["name"]: image_units(ws, m["run_id"]) for m in cfg["members"]}
    base_name = task["baseline"]
    b = units[base_name]
    bs, blo, bhi = cluster_mean_ci(b["score"], b["user"], seed=seed) if b["unit"].size else (float("nan"),) * 3
    baseline = {"name": base_name, "score": bs, "score_ci": [blo, bhi], "n_users": int(np.unique(b["user"]).size),
                "n_units": int(b["unit"].size), "metric": b["metric"]}
    bidx = {u: i for i, u in enumerate(b["unit"])}
    systems, groups_out = [], {}
    for m in cfg["members"]:
        if m["name"] == base_name:
            continue
        u = units[m["name"]]
        keep = [i for i, unit in enumerate(u["unit"]) if unit in bidx]
        if not keep:
            continue
        x = u["score"][keep]
        y = np.array([b["score"][bidx[u["unit"][i]]] for i in keep])
        users = u["user"][keep]
        pc = paired_comparison(x, y, users, seed=seed)
        score, slo, shi = cluster_mean_ci(x, users, seed=seed)
        entry = {"name": m["name"], "run_id": m["run_id"], "system": m["system"], "metric": u["metric"],
                 **_personal_of(u, seed),
                 "win_rate": pc.win_rate, "win_rate_ci": [pc.win_rate_ci_low, pc.win_rate_ci_high],
                 "lift_x100": 100 * pc.mean_difference,
                 "lift_x100_ci": [100 * pc.mean_difference_ci_low, 100 * pc.mean_difference_ci_high],
                 "wilcoxon_p": pc.wilcoxon_p, "sign_test_p": pc.sign_test_p, "score": score, "score_ci": [slo, shi],
                 "n_users": pc.n_clusters, "n_units": pc.n_units,
                 "copy_rate_32px": float(np.nanmean(u["copy"][keep])), "diversity": float(np.nanmean(u["diversity"][keep])),
                 "cost": {"rewrite_latency_s": float("nan"), "rewrites": 0, "fallbacks": 0,
                          "seconds_per_image": float(np.nanmean(u["latency"][keep])) if u["latency"].size else float("nan")}}
        if attributes:
            wins = np.where(np.abs(x - y) <= 1e-9, 0.5, (x > y).astype(float))
            if task.get("kind") == "reference":  # subjects grouped by their DreamBench class
                classes = m.get("classes", {})
                g = {a: np.array([classes.get(s, "unknown") for s in users]) for a in attributes}
            else:
                g = _user_groups(ws, split, users, attributes)
            rep = bias_summary(wins, g, targets, cluster_ids=users, seed=seed, min_n=MIN_GROUP)
            entry["bias"] = {"overall": rep.overall, "ipf": None}
            groups_out[m["name"]] = {a: dict(r) for a, r in rep.attributes.items()}
        systems.append(entry)
    baseline.update(_personal_of(b, seed))
    systems.sort(key=lambda r: (-(r["personal_win_rate"] if r["personal_win_rate"] == r["personal_win_rate"] else -1.0),
                                -r["win_rate"]))
    return {"task": task["task"], "version": task["version"], "run_id": run_id, "status": status, "split": split,
            "seed": seed, "code_version": code, "config_hash": chash, "prompts": "-", "kind": task.get("kind"),
            "text_encoder": task["text_encoder"], "baseline": baseline, "systems": systems, "groups": groups_out,
            "attributes": attributes, "targets_source": getattr(targets, "source", None) if targets else None}


# -- rendering -----------------------------------------------------------------------------------------


def _f(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _ci(pair) -> str:
    return f"[{_f(pair[0])}, {_f(pair[1])}]"


def _pct(x: Any) -> str:
    return "-" if x is None or x != x else f"{100 * x:.0f}%"


def leaderboard_rows(rep: dict[str, Any], text_encoder: str | None = None) -> list[dict[str, str]]:
    """One table (per text encoder; default the first): the personal win rate first, then the history
    ceiling's share, the win rate against the generic prompt, bias and cost."""
    te = text_encoder or (rep.get("text_encoders") or [None])[0]
    entries = [s for s in rep["systems"] if te is None or s.get("text_encoder", te) == te]
    rows = []
    for s in entries:
        o = (s.get("bias") or {}).get("overall", {})
        gaps = [a.get("gap") for a in rep["groups"].get(_group_key(s) if "text_encoder" in s else s["name"], {}).values()]
        name = s["name"] + (" (no prompt)" if s.get("reference") == "history" else "")
        tag = f"[{s.get('prompts')}]"
        if s.get("prompts") and rep.get("prompts") and s["prompts"] not in ("-", rep["prompts"]) and tag not in name:
            base, paren, rest = name.partition(" (")  # before any "(shuffled control)" / "(40 users)"
            name = f"{base} {tag}" + (paren + rest if paren else "")
        rows.append({"system": name, "personal": _f(s.get("personal_win_rate")),
                     "personal CI": _ci(s.get("personal_ci", [None, None])),
                     "vs dislikes": _f(s.get("personal_dislikes")), "of ceiling": _pct(s.get("ceiling_share")),
                     "personal p": _f(s.get("personal_wilcoxon_p"), 4),
                     "vs generic" if te else "vs baseline": _f(s["win_rate"]),
                     "generic CI" if te else "baseline CI": _ci(s["win_rate_ci"]), "lift x100": _f(s["lift_x100"]),
                     "score": _f(s.get("score")), "raw": _f(o.get("raw_mean")), "IPF": _f(o.get("reweighted_mean")),
                     "IPF eff. users": _f(((s.get("bias") or {}).get("ipf") or {}).get("effective_users"), 1),
                     "worst gap": _f(max((g for g in gaps if g is not None), default=None)),
                     "cost": _cost_label(s.get("cost", {})), "users": str(s["n_users"])})
    b = rep.get("baseline")
    if b and (te is None or b.get("text_encoder", te) == te):
        rows.append({**({k: "-" for k in rows[0]} if rows else {}), "system": f"{b['name']} (baseline)",
                     "personal": _f(b.get("personal_win_rate", 0.5)), "score": _f(b.get("score")),
                     "users": str(b["n_users"])})
    return rows


def _cost_label(c: dict[str, Any]) -> str:
    if c.get("seconds_per_image") == c.get("seconds_per_image") and c.get("seconds_per_image") is not None:
        return f"{c['seconds_per_image']:.2f} s/image"
    lat = c.get("rewrite_latency_s")
    if lat is None or lat != lat:
        return "-"
    tok = c.get("output_tokens_per_rewrite")
    return f"{1000 * lat:.1f} ms/rewrite" + (f", {tok:.0f} tok" if tok == tok and tok is not None else "")


def group_rows(rep: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for name, attrs in rep["groups"].items():
        for a, r in attrs.items():
            for c, v in r["groups"].items():
                out.append({"system": name, "attribute": a, "group": c, "win rate": _f(v["mean"]),
                            "CI": _ci([v["ci_low"], v["ci_high"]]), "users": str(v["n"]),
                            "share": _f(v.get("share")), "target": _f(v.get("target_share"))})
    return out


def _md_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(none)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _plots(rep: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes: per-group bars, raw vs IPF, cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}

    def save(fig, name):
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        out[name] = buf.getvalue()

    first = (rep.get("text_encoders") or [None])[0]
    entries = [e for e in rep["systems"] if not e.get("reference") and (first is None or e.get("text_encoder") == first)]
    names = [e["name"] for e in entries]
    keys = [_group_key(e) if "text_encoder" in e else e["name"] for e in entries]
    for te in rep.get("text_encoders") or []:
        rows = [e for e in rep["systems"] if e.get("text_encoder") == te]
        if not rows:
            continue
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
        save(fig, f"personal_{te.replace('/', '_')}")
    for a in rep["attributes"]:
        cats = sorted({c for k in keys for c in rep["groups"].get(k, {}).get(a, {}).get("groups", {})})
        if not cats:
            continue
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(cats) * max(1, len(names)) / 2), 3.2))
        width = 0.8 / max(1, len(names))
        for k, (n, key) in enumerate(zip(names, keys)):
            gr = rep["groups"].get(key, {}).get(a, {}).get("groups", {})
            vals = [gr.get(c, {}).get("mean", np.nan) for c in cats]
            lo = [v - gr.get(c, {}).get("ci_low", v) if c in gr else 0 for c, v in zip(cats, vals)]
            hi = [gr.get(c, {}).get("ci_high", v) - v if c in gr else 0 for c, v in zip(cats, vals)]
            ax.bar(np.arange(len(cats)) + k * width, vals, width, yerr=[lo, hi], capsize=2, label=n)
        ax.axhline(0.5, color="gray", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(cats)) + width * (len(names) - 1) / 2, cats)
        ax.set_ylabel("personal win rate" if first else "win rate vs baseline")
        ax.set_title(f"per {a} group (95% CI over users)")
        ax.legend(fontsize=7)
        save(fig, f"groups_{a}")
    raw = [(s.get("bias") or {}).get("overall", {}).get("raw_mean", np.nan) for s in entries]
    rw = [(s.get("bias") or {}).get("overall", {}).get("reweighted_mean", np.nan) for s in entries]
    if names and not all(np.isnan(rw)):
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(names)), 3.2))
        x = np.arange(len(names))
        ax.bar(x - 0.2, raw, 0.4, label="raw")
        ax.bar(x + 0.2, rw, 0.4, label="IPF-reweighted")
        ax.set_xticks(x, names, rotation=20, ha="right", fontsize=7)
        ax.set_ylabel("win rate")
        ax.set_title("raw vs IPF-reweighted to the population targets")
        ax.legend(fontsize=7)
        save(fig, "raw_vs_ipf")
    import re

    series: dict[str, list[tuple[int, float, float, float]]] = {}
    for s in entries:
        m = re.search(r" k=(\d+)", s["name"])
        if m:
            base = s["name"].replace(m.group(0), "")
            series.setdefault(base, []).append((int(m.group(1)), s["lift_x100"], *s["lift_x100_ci"]))
    if any(len(v) >= 2 for v in series.values()):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for base, pts in series.items():
            pts.sort()
            ks = [p[0] for p in pts]
            ax.errorbar(ks, [p[1] for p in pts], yerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
                        marker="o", capsize=3, label=base)
        ax.axhline(0, color="gray", lw=0.8, ls="--")
        ax.set_xlabel("k (the user's own items shown as examples)")
        ax.set_ylabel("lift x100 vs baseline")
        ax.set_title("lift vs k")
        ax.legend(fontsize=7)
        save(fig, "lift_vs_k")
    lat = [(s.get("cost") or {}).get("rewrite_latency_s", np.nan) * 1000 for s in entries]
    if names:
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(names)), 3))
        ax.bar(np.arange(len(names)), lat)
        ax.set_xticks(np.arange(len(names)), names, rotation=20, ha="right", fontsize=7)
        ax.set_ylabel("ms per rewrite")
        ax.set_title("cost: rewrite latency")
        save(fig, "cost")
    return out


PERSONAL_LEGEND = (
    "personal: how often a user's own rewrite beats the rewrites the same system made for the other held-out users "
    "(same prompt), all scored on that user's hidden likes against hidden negatives (popularity-matched unseen "
    "items); 0.5 = nothing personal. vs dislikes: the same with the hidden dislikes as the "
    "only negatives. of ceiling: (personal - 0.5) / (history ceiling - 0.5), the history ceiling being the user's "
    "own visible-liked centroid against the others' (no prompt). personal p: Wilcoxon signed-rank test of the "
    "per-user margins over the others' mean. vs generic: win rate over the generic prompt (the popularity control, "
    "the same popular titles for everyone, shows what a cue that helps anyone gets). raw / IPF: personal win rate "
    "with users weighted equally / raked to the population targets; worst gap: largest difference between groups "
    f"of at least {MIN_GROUP} users. CIs: 95% percentile bootstrap over users.")


def render_markdown(rep: dict[str, Any], plot_dir=None) -> str:
    """Markdown; with ``plot_dir`` the plots are written there as PNGs and linked."""
    from pathlib import Path

    parts = [f"# {rep['task']} (v{rep['version']}) — run {rep['run_id']}\n",
             f"split `{rep['split']}`, prompts `{rep['prompts']}`, seed {rep['seed']}, code `{rep['code_version']}`, "
             f"config hash `{rep['config_hash'][:12]}`\n",
             "## Personal win rate\n",
             PERSONAL_LEGEND + "\n"]
    for te in rep.get("text_encoders") or [None]:
        metric = next((s["metric"] for s in rep["systems"] if s.get("text_encoder") == te), "")
        parts += [f"### `{metric}`\n" if te else "", _md_table(leaderboard_rows(rep, te))]
    if rep.get("power"):
        parts += ["\n## Power (chosen before any system was scored)\n",
                  "\n".join(f"- {k}: {v}" for k, v in rep["power"].items()) + "\n"]
    if rep["groups"]:
        parts += ["\n## Per group\n", _md_table(group_rows(rep))]
    if rep.get("targets_source"):
        src = rep["targets_source"]
        parts.append(f"\nPopulation targets: {src.get('title', '')}, {src.get('publisher', '')} ({src.get('year', '')}), "
                     f"{src.get('url', '')}\n")
    if plot_dir is not None:
        d = Path(plot_dir)
        d.mkdir(parents=True, exist_ok=True)
        parts.append("\n## Plots\n")
        for name, png in _plots(rep).items():
            (d / f"{name}.png").write_bytes(png)
            parts.append(f"![{name}]({d.name}/{name}.png)\n")
    return "\n".join(parts)


def render_html(rep: dict[str, Any]) -> str:
    """One self-contained HTML file (plots inlined as PNG data URIs)."""
    import html

    def table(rows):
        if not rows:
            return "<p>(none)</p>"
        cols = list(rows[0])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in cols) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    imgs = "".join(f'<figure><img alt="{n}" src="data:image/png;base64,{base64.b64encode(p).decode()}"/></figure>'
                   for n, p in _plots(rep).items())
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}"
             "td:first-child{text-align:left}figure{display:inline-block;margin:4px}")
    src = rep.get("targets_source") or {}
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(rep['task'])} {rep['run_id']}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(rep['task'])} (v{rep['version']})</h1>"
            f"<p>run {rep['run_id']} · split {html.escape(rep['split'])} · prompts {html.escape(rep['prompts'])} · seed "
            f"{rep['seed']} · code {html.escape(str(rep['code_version']))}</p><h2>Personal win rate</h2>"
            f"<p>{html.escape(PERSONAL_LEGEND)}</p>"
            + "".join(f"<h3>{html.escape(next((s['metric'] for s in rep['systems'] if s.get('text_encoder') == te), ''))}</h3>"
                      f"{table(leaderboard_rows(rep, te))}" for te in (rep.get("text_encoders") or [None]))
            + f"<h2>Per group</h2>{table(group_rows(rep))}"
            + (f"<p>Population targets: {html.escape(str(src.get('title', '')))} ({src.get('year', '')})</p>" if src else "")
            + f"<h2>Plots</h2>{imgs}</body></html>")


def compare_runs(ws: Workspace, run_a: str, run_b: str) -> dict[str, Any]:
    """Two bench runs on the same units: paired comparison of their rewritten prompts' scores (A vs B)."""
    from evalbench.metrics.paired import paired_comparison

    a, b = _units(ws, run_a), _units(ws, run_b)
    ia = {u: i for i, u in enumerate(a["unit"])}
    ib = {u: i for i, u in enumerate(b["unit"])}
    # units both scored a rewrite on (the history ceiling has none: one unit per user, no prompt)
    common = sorted(u for u in set(ia) & set(ib) if np.isfinite(a["rewritten"][ia[u]]) and np.isfinite(b["rewritten"][ib[u]]))
    if not common:
        raise WorkspaceError(f"runs {run_a} and {run_b} share no units with rewrites (different splits or prompt sets, "
                             "or a history ceiling?)")
    xa = np.array([a["rewritten"][ia[u]] for u in common])
    xb = np.array([b["rewritten"][ib[u]] for u in common])
    users = np.array([u.split("|", 1)[0] for u in common])
    pc = paired_comparison(xa, xb, users)
    names = {r: loads(ws.scalar("SELECT config FROM runs WHERE run_id = ?", [r])).get("system", r) for r in (run_a, run_b)}
    return {"a": {"run_id": run_a, "system": names[run_a]}, "b": {"run_id": run_b, "system": names[run_b]},
            "units": len(common), **pc.as_dict()}
