"""Task reports rendered for people: the leaderboard and per-group tables, Markdown and one
self-contained HTML file with the plots (:mod:`evalbench.task_plots`), from :func:`evalbench.task_report.task_report`'s dict."""

from __future__ import annotations

import base64
import math
from typing import Any

from evalbench.task_plots import report_plots
from evalbench.task_report import MIN_GROUP, group_key


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


def tagged_name(rep: dict[str, Any], s: dict[str, Any]) -> str:
    """A system's name with its prompt set where that is not the report's (``gat+embedded [parti3]``), for
    tables without a prompts column."""
    name, tag = s["system"], f"[{s.get('prompts')}]"
    if s.get("prompts") and rep.get("prompts") and s["prompts"] not in ("-", rep["prompts"]) and tag not in name:
        base, paren, rest = name.partition(" (")  # before any "(shuffled control)" / "(40 users)"
        name = f"{base} {tag}" + (paren + rest if paren else "")
    return name


def leaderboard_rows(rep: dict[str, Any], text_encoder: str | None = None) -> list[dict[str, str]]:
    """One table (per text encoder; default the first): the system and its prompt set, the personal win
    rate, then the history ceiling's share, the win rate against the generic prompt, bias and cost."""
    te = text_encoder or (rep.get("text_encoders") or [None])[0]
    entries = [s for s in rep["systems"] if te is None or s.get("text_encoder", te) == te]
    rows = []
    for s in entries:
        o = (s.get("bias") or {}).get("overall", {})
        gaps = [
            a.get("gap") for a in rep["groups"].get(group_key(s) if "text_encoder" in s else s["name"], {}).values()
        ]
        rows.append(
            {
                "system": s["name"] + (" (no prompt)" if s.get("reference") == "history" else ""),
                "prompts": str(s.get("prompts") or "-"),
                "personal": _f(s.get("personal_win_rate")),
                "personal CI": _ci(s.get("personal_ci", [None, None])),
                "vs dislikes": _f(s.get("personal_dislikes")),
                "of ceiling": _pct(s.get("ceiling_share")),
                "personal p": _f(s.get("personal_wilcoxon_p"), 4),
                "vs generic" if te else "vs baseline": _f(s["win_rate"]),
                "generic CI" if te else "baseline CI": _ci(s["win_rate_ci"]),
                "lift x100": _f(s["lift_x100"]),
                "score": _f(s.get("score")),
                "raw": _f(o.get("raw_mean")),
                "IPF": _f(o.get("reweighted_mean")),
                "IPF eff. users": _f(((s.get("bias") or {}).get("ipf") or {}).get("effective_users"), 1),
                "worst gap": _f(max((g for g in gaps if g is not None), default=None)),
                "cost": _cost_label(s.get("cost", {})),
                "users": str(s["n_users"]),
            }
        )
    b = rep.get("baseline")
    if b and (te is None or b.get("text_encoder", te) == te):
        rows.append(
            {
                **({k: "-" for k in rows[0]} if rows else {}),
                "system": f"{b['name']} (baseline)",
                "prompts": str(b.get("prompts") or rep.get("prompts") or "-"),
                "personal": _f(b.get("personal_win_rate", 0.5)),
                "score": _f(b.get("score")),
                "users": str(b["n_users"]),
            }
        )
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
                out.append(
                    {
                        "system": name,
                        "attribute": a,
                        "group": c,
                        "win rate": _f(v["mean"]),
                        "CI": _ci([v["ci_low"], v["ci_high"]]),
                        "users": str(v["n"]),
                        "share": _f(v.get("share")),
                        "target": _f(v.get("target_share")),
                    }
                )
    return out


def metric_rows(rep: dict[str, Any]) -> list[dict[str, str]]:
    """The further metrics of the task's ``metric_list``, one row per system and metric (none without them)."""
    out = []
    for s in rep["systems"]:
        for label, r in (s.get("metrics") or {}).items():
            out.append(
                {
                    "system": s["name"],
                    "metric": label,
                    "aggregation": r["aggregation"],
                    "better": "higher" if r["higher_is_better"] else "lower",
                    "value": _f(r.get("value")),
                    "CI": _ci(r.get("ci", [None, None])),
                    "users": str(r.get("n_users", "-")),
                }
            )
    return out


def _md_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(none)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


PERSONAL_LEGEND = (
    "personal: how often a user's own rewrite beats the rewrites the same system made for the other held-out users "
    "(same prompt), all scored on that user's hidden likes against hidden negatives (popularity-matched unseen "
    "items); 0.5 = nothing personal. vs dislikes: the same with the hidden dislikes as the "
    "only negatives. of ceiling: (personal - 0.5) / (history ceiling - 0.5), the history ceiling being the user's "
    "own visible-liked centroid against the others' (no prompt). personal p: Wilcoxon signed-rank test of the "
    "per-user margins over the others' mean. vs generic: win rate over the generic prompt (the popularity control, "
    "the same popular titles for everyone, shows what a cue that helps anyone gets). raw / IPF: personal win rate "
    "with users weighted equally / raked to the population targets; worst gap: largest difference between groups "
    f"of at least {MIN_GROUP} users. CIs: 95% percentile bootstrap over users."
)


def render_markdown(rep: dict[str, Any], plot_dir=None) -> str:
    """Markdown; with ``plot_dir`` the plots are written there as PNGs and linked."""
    from pathlib import Path

    parts = [
        f"# {rep['task']} (v{rep['version']}) — run {rep['run_id']}\n",
        f"split `{rep['split']}`, prompts `{rep['prompts']}`, seed {rep['seed']}, code `{rep['code_version']}`, "
        f"config hash `{rep['config_hash'][:12]}`\n",
        *[f"{line}\n" for line in rep.get("dropped_notes") or []],
        "## Personal win rate\n",
        PERSONAL_LEGEND + "\n",
    ]
    for te in rep.get("text_encoders") or [None]:
        metric = next((s["metric"] for s in rep["systems"] if s.get("text_encoder") == te), "")
        parts += [f"### `{metric}`\n" if te else "", _md_table(leaderboard_rows(rep, te))]
    if metric_rows(rep):
        parts += ["\n## Further metrics\n", _md_table(metric_rows(rep))]
    if rep.get("power"):
        parts += [
            "\n## Power (chosen before any system was scored)\n",
            "\n".join(f"- {k}: {v}" for k, v in rep["power"].items()) + "\n",
        ]
    if rep["groups"]:
        parts += ["\n## Per group\n", _md_table(group_rows(rep))]
    elif rep.get("groups_note"):
        parts += ["\n## Per group\n", rep["groups_note"] + "\n"]
    if rep.get("targets_source"):
        src = rep["targets_source"]
        parts.append(
            f"\nPopulation targets: {src.get('title', '')}, {src.get('publisher', '')} ({src.get('year', '')}), "
            f"{src.get('url', '')}\n"
        )
    if plot_dir is not None:
        d = Path(plot_dir)
        d.mkdir(parents=True, exist_ok=True)
        parts.append("\n## Plots\n")
        for name, png in report_plots(rep).items():
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

    imgs = "".join(
        f'<figure><img alt="{n}" src="data:image/png;base64,{base64.b64encode(p).decode()}"/></figure>'
        for n, p in report_plots(rep).items()
    )
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}"
        "td:first-child{text-align:left}figure{display:inline-block;margin:4px}"
    )
    src = rep.get("targets_source") or {}
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(rep['task'])} {rep['run_id']}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(rep['task'])} (v{rep['version']})</h1>"
        f"<p>run {rep['run_id']} · split {html.escape(rep['split'])} · prompts {html.escape(rep['prompts'])} · seed "
        f"{rep['seed']} · code {html.escape(str(rep['code_version']))}</p>"
        + "".join(f"<p>{html.escape(line)}</p>" for line in rep.get("dropped_notes") or [])
        + "<h2>Personal win rate</h2>"
        f"<p>{html.escape(PERSONAL_LEGEND)}</p>"
        + "".join(
            f"<h3>{html.escape(next((s['metric'] for s in rep['systems'] if s.get('text_encoder') == te), ''))}</h3>"
            f"{table(leaderboard_rows(rep, te))}"
            for te in (rep.get("text_encoders") or [None])
        )
        + (f"<h2>Further metrics</h2>{table(metric_rows(rep))}" if metric_rows(rep) else "")
        + "<h2>Per group</h2>"
        + (
            table(group_rows(rep))
            if rep["groups"] or not rep.get("groups_note")
            else f"<p>{html.escape(rep['groups_note'])}</p>"
        )
        + (
            f"<p>Population targets: {html.escape(str(src.get('title', '')))} ({src.get('year', '')})</p>"
            if src
            else ""
        )
        + f"<h2>Plots</h2>{imgs}</body></html>"
    )
