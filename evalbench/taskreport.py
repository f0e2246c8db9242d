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
    rows = ws.query(
        """
        SELECT split_part(unit_id, '|', 1) AS user_id, unit_id,
               max(value) FILTER (WHERE metric LIKE '%.generic') AS generic,
               max(value) FILTER (WHERE metric LIKE '%.rewritten') AS rewritten,
               max(value) FILTER (WHERE metric LIKE '%.lift') AS lift,
               max(value) FILTER (WHERE metric LIKE '%.win') AS win,
               any_value(regexp_replace(metric, '\\.[a-z]+$', '')) AS base
        FROM scores WHERE run_id = ? GROUP BY unit_id ORDER BY unit_id
        """, [run_id])
    if not rows:
        raise WorkspaceError(f"run {run_id!r} has no scores")
    cols = list(zip(*rows))
    return {"user": np.array(cols[0]), "unit": np.array(cols[1]), "generic": np.array(cols[2], float),
            "rewritten": np.array(cols[3], float), "lift": np.array(cols[4], float), "win": np.array(cols[5], float),
            "metric": cols[6][0]}


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
    for m in cfg["members"]:
        u = _units(ws, m["run_id"])
        bench_cfg = loads(ws.scalar("SELECT config FROM runs WHERE run_id = ?", [m["run_id"]]))
        if baseline is None:
            b, blo, bhi = cluster_mean_ci(u["generic"], u["user"], seed=seed)
            baseline = {"name": task["baseline"], "score": b, "score_ci": [blo, bhi], "n_users": int(np.unique(u["user"]).size),
                        "n_units": int(u["unit"].size)}
        pc = paired_comparison(u["rewritten"], u["generic"], u["user"], seed=seed)
        score, slo, shi = cluster_mean_ci(u["rewritten"], u["user"], seed=seed)
        entry = {"name": m["name"], "run_id": m["run_id"], "system": m["system"], "metric": u["metric"],
                 "win_rate": pc.win_rate, "win_rate_ci": [pc.win_rate_ci_low, pc.win_rate_ci_high],
                 "lift_x100": 100 * pc.mean_difference,
                 "lift_x100_ci": [100 * pc.mean_difference_ci_low, 100 * pc.mean_difference_ci_high],
                 "wilcoxon_p": pc.wilcoxon_p, "sign_test_p": pc.sign_test_p, "score": score, "score_ci": [slo, shi],
                 "n_users": pc.n_clusters, "n_units": pc.n_units, "cost": _cost(ws, bench_cfg)}
        if attributes:
            g = _user_groups(ws, split, u["user"], attributes)
            # groups under MIN_GROUP users are reported but left out of the worst-group gap and the ratio
            rep = bias_summary(u["win"], g, targets, cluster_ids=u["user"], seed=seed, min_n=MIN_GROUP)
            ipf = None
            if rep.ipf is not None:
                w = np.asarray(rep.ipf.weights, dtype=float)
                ipf = {"iterations": rep.ipf.iterations, "max_error": rep.ipf.max_error, "converged": rep.ipf.converged,
                       "max_weight": float(w.max()), "effective_users": float(w.sum() ** 2 / (w ** 2).sum())}
            entry["bias"] = {"overall": rep.overall, "ipf": ipf}
            groups_out[m["name"]] = {a: {k: v for k, v in r.items()} for a, r in rep.attributes.items()}
        systems.append(entry)
    systems.sort(key=lambda r: -r["win_rate"])
    return {"task": task["task"], "version": task["version"], "run_id": run_id, "status": status, "split": split,
            "seed": seed, "code_version": code, "config_hash": chash, "prompts": task["prompts"],
            "text_encoder": task["text_encoder"], "baseline": baseline, "systems": systems, "groups": groups_out,
            "attributes": attributes, "targets_source": getattr(targets, "source", None) if targets else None}


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
    systems.sort(key=lambda r: -r["win_rate"])
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


def leaderboard_rows(rep: dict[str, Any]) -> list[dict[str, str]]:
    b = rep["baseline"]
    rows = [{"system": f"{b['name']} (baseline)", "score": _f(b["score"]), "score CI": _ci(b["score_ci"]), "win rate": "-",
             "win CI": "-", "lift x100": "-", "Wilcoxon p": "-", "raw": "-", "IPF": "-", "delta %": "-",
             "IPF eff. users": "-", "worst gap": "-", "cost": "-",
             "users": str(b["n_users"])}]
    for s in rep["systems"]:
        o = (s.get("bias") or {}).get("overall", {})
        gaps = [a.get("gap") for a in rep["groups"].get(s["name"], {}).values()]
        rows.append({"system": s["name"], "score": _f(s["score"]), "score CI": _ci(s["score_ci"]),
                     "win rate": _f(s["win_rate"]), "win CI": _ci(s["win_rate_ci"]), "lift x100": _f(s["lift_x100"]),
                     "Wilcoxon p": _f(s["wilcoxon_p"], 4), "raw": _f(o.get("raw_mean")), "IPF": _f(o.get("reweighted_mean")),
                     "delta %": _f(o.get("delta_pct"), 2),
                     "IPF eff. users": _f(((s.get("bias") or {}).get("ipf") or {}).get("effective_users"), 1),
                     "worst gap": _f(max((g for g in gaps if g is not None), default=None)),
                     "cost": _cost_label(s.get("cost", {})),
                     "users": str(s["n_users"])})
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

    names = [s["name"] for s in rep["systems"]]
    for a in rep["attributes"]:
        cats = sorted({c for n in names for c in rep["groups"].get(n, {}).get(a, {}).get("groups", {})})
        if not cats:
            continue
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(cats) * max(1, len(names)) / 2), 3.2))
        width = 0.8 / max(1, len(names))
        for k, n in enumerate(names):
            gr = rep["groups"][n][a]["groups"]
            vals = [gr.get(c, {}).get("mean", np.nan) for c in cats]
            lo = [v - gr.get(c, {}).get("ci_low", v) if c in gr else 0 for c, v in zip(cats, vals)]
            hi = [gr.get(c, {}).get("ci_high", v) - v if c in gr else 0 for c, v in zip(cats, vals)]
            ax.bar(np.arange(len(cats)) + k * width, vals, width, yerr=[lo, hi], capsize=2, label=n)
        ax.axhline(0.5, color="gray", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(cats)) + width * (len(names) - 1) / 2, cats)
        ax.set_ylabel("win rate vs baseline")
        ax.set_title(f"per {a} group (95% CI over users)")
        ax.legend(fontsize=7)
        save(fig, f"groups_{a}")
    raw = [(s.get("bias") or {}).get("overall", {}).get("raw_mean", np.nan) for s in rep["systems"]]
    rw = [(s.get("bias") or {}).get("overall", {}).get("reweighted_mean", np.nan) for s in rep["systems"]]
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
    for s in rep["systems"]:
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
    lat = [s["cost"]["rewrite_latency_s"] * 1000 for s in rep["systems"]]
    if names:
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(names)), 3))
        ax.bar(np.arange(len(names)), lat)
        ax.set_xticks(np.arange(len(names)), names, rotation=20, ha="right", fontsize=7)
        ax.set_ylabel("ms per rewrite")
        ax.set_title("cost: rewrite latency")
        save(fig, "cost")
    return out


def render_markdown(rep: dict[str, Any], plot_dir=None) -> str:
    """Markdown; with ``plot_dir`` the plots are written there as PNGs and linked."""
    from pathlib import Path

    parts = [f"# {rep['task']} (v{rep['version']}) — run {rep['run_id']}\n",
             f"split `{rep['split']}`, prompts `{rep['prompts']}`, seed {rep['seed']}, code `{rep['code_version']}`, "
             f"config hash `{rep['config_hash'][:12]}`\n",
             "## Systems against the baseline\n",
             f"score: mean `{rep['systems'][0]['metric'] if rep['systems'] else ''}` of the (rewritten) prompt; win rate "
             "and lift: the system's rewrite against the baseline's generic prompt, per user then averaged, 95% "
             "percentile-bootstrap CIs over users; Wilcoxon: signed-rank test on per-user mean differences. raw / IPF: "
             f"win rate with users weighted equally / raked to the population targets; delta % = (IPF - raw) / raw; worst gap: largest difference between groups of at least {MIN_GROUP} users.\n",
             _md_table(leaderboard_rows(rep))]
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
            f"{rep['seed']} · code {html.escape(str(rep['code_version']))}</p><h2>Systems against the baseline</h2>"
            f"{table(leaderboard_rows(rep))}<h2>Per group</h2>{table(group_rows(rep))}"
            + (f"<p>Population targets: {html.escape(str(src.get('title', '')))} ({src.get('year', '')})</p>" if src else "")
            + f"<h2>Plots</h2>{imgs}</body></html>")


def compare_runs(ws: Workspace, run_a: str, run_b: str) -> dict[str, Any]:
    """Two bench runs on the same units: paired comparison of their rewritten prompts' scores (A vs B)."""
    from evalbench.metrics.paired import paired_comparison

    a, b = _units(ws, run_a), _units(ws, run_b)
    common = sorted(set(a["unit"]) & set(b["unit"]))
    if not common:
        raise WorkspaceError(f"runs {run_a} and {run_b} share no units (different splits or prompt sets?)")
    ia = {u: i for i, u in enumerate(a["unit"])}
    ib = {u: i for i, u in enumerate(b["unit"])}
    xa = np.array([a["rewritten"][ia[u]] for u in common])
    xb = np.array([b["rewritten"][ib[u]] for u in common])
    users = np.array([u.split("|", 1)[0] for u in common])
    pc = paired_comparison(xa, xb, users)
    names = {r: loads(ws.scalar("SELECT config FROM runs WHERE run_id = ?", [r])).get("system", r) for r in (run_a, run_b)}
    return {"a": {"run_id": run_a, "system": names[run_a]}, "b": {"run_id": run_b, "system": names[run_b]},
            "units": len(common), **pc.as_dict()}
