"""The files a personalize run hands on: ``manifest.parquet`` / ``manifest.csv`` (one row per target x prompt x
image), ``personas.jsonl`` (one persona per target, no embedding) and ``index.html``, a contact sheet per
target: its persona summary and top evidence, then per prompt the rewrite, its images and the baselines."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evalbench.flows.personalize import Plan

#: The manifest's columns, in order, with their Parquet (SQL) types.
MANIFEST_COLUMNS = {
    "target_id": "VARCHAR",
    "target_kind": "VARCHAR",
    "members": "INTEGER",
    "variant": "VARCHAR",
    "persona_id": "VARCHAR",
    "persona_hash": "VARCHAR",
    "prompt_set": "VARCHAR",
    "prompt_id": "VARCHAR",
    "prompt": "VARCHAR",
    "rewrite": "VARCHAR",
    "negative": "VARCHAR",
    "selector_score": "DOUBLE",
    "rewriter": "VARCHAR",
    "image_index": "INTEGER",
    "generator": "VARCHAR",
    "model": "VARCHAR",
    "seed": "BIGINT",
    "guidance": "VARCHAR",
    "guidance_scale": "DOUBLE",
    "height": "INTEGER",
    "width": "INTEGER",
    "image": "VARCHAR",
    "content_sha256": "VARCHAR",
    "sha256": "VARCHAR",
    "provenance": "VARCHAR",
    "watermark_id": "VARCHAR",
    "condition_id": "VARCHAR",
    "generation_id": "VARCHAR",
    "seconds": "DOUBLE",
}
EVIDENCE_SHOWN = 3


def write_outputs(p: Plan, rows: list[dict[str, Any]]) -> None:
    """Write the manifest (Parquet and CSV), ``personas.jsonl`` and ``index.html`` into the run's folder."""
    from workbench.images import write_atomic
    from workbench.store.files import write_parquet

    out = Path(p.config.out)
    write_parquet(rows, MANIFEST_COLUMNS, out / "manifest.parquet")
    write_atomic(out / "manifest.csv", _csv(rows))
    write_atomic(out / "personas.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in persona_rows(p)))
    write_atomic(out / "index.html", contact_sheet(p, rows))


def _csv(rows: list[dict[str, Any]]) -> str:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(MANIFEST_COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in MANIFEST_COLUMNS})
    return buf.getvalue()


def persona_rows(p: Plan) -> list[dict[str, Any]]:
    """One record per target: ids, kind, members, the persona's text hash, summary, traits and top evidence."""
    from prompting.rewriter import persona_hash

    return [
        {
            "target_id": t.target_id,
            "kind": t.kind,
            "persona_id": t.persona_id,
            "persona_hash": persona_hash(t.card),
            "members": t.members,
            "definition": t.definition,
            "summary": t.card.summary,
            "traits": t.card.traits,
            "evidence": [{"item_id": e.item_id, "weight": e.weight, "snippet": e.snippet} for e in t.card.evidence],
            "model_version": t.card.model_version,
        }
        for t in p.targets
    ]


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 4px;border-top:1px solid #ddd;padding-top:16px}
.meta{color:#666;font-size:13px} .summary{margin:6px 0;max-width:900px} ol.ev{font-size:13px;color:#444;margin:4px 0}
table{border-collapse:collapse;margin-top:8px} td{vertical-align:top;padding:6px 10px 6px 0;font-size:13px}
td.text{max-width:360px} .rw{color:#0b5394} .neg{color:#a61c00;font-size:12px}
figure{display:inline-block;margin:0 6px 0 0;text-align:center;font-size:11px;color:#666}
figure img{display:block;border:1px solid #ccc} figure.base img{border-style:dashed}
"""


def contact_sheet(p: Plan, rows: list[dict[str, Any]]) -> str:
    """``index.html``: a section per target (persona summary, top evidence), a row per prompt (prompt,
    rewrite, its images, the baselines beside them); images by relative path."""
    cfg, esc = p.config, html.escape
    shown = min(cfg.size, 192)
    by_key: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        by_key.setdefault((r["target_id"], r["prompt_id"], r["variant"]), []).append(r)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Personalize: contact sheet</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Personalize: contact sheet</h1>",
        f"<p class='meta'>{len(p.targets)} targets x {len(p.prompts)} prompts x {cfg.images} image(s)"
        f"{' + baselines' if cfg.baseline else ''} &middot; split {esc(p.split_id)}, {esc(p.encoder)} personas &middot; "
        f"rewriter {esc(cfg.rewriter)} (candidates {cfg.candidates}) &middot; generator {esc(cfg.generator)}"
        f"{' ' + esc(cfg.model) if cfg.model else ''}, {cfg.size} px, seed {cfg.seed} &middot; "
        "<a href='manifest.csv'>manifest.csv</a> &middot; <a href='personas.jsonl'>personas.jsonl</a></p>",
    ]
    for t in p.targets:
        members = f", {t.members} members" if t.members is not None else ""
        definition = f" &middot; <code>{esc(t.definition)}</code>" if t.definition else ""
        parts.append(
            f"<h2 id='{esc(t.target_id)}'>{esc(t.target_id)} <span class='meta'>({t.kind}{members}){definition}</span></h2>"
        )
        parts.append(f"<p class='summary'>{esc(t.card.summary)}</p>")
        if t.card.evidence:
            items = "".join(
                f"<li>{esc(e.snippet or e.item_id)} <span class='meta'>({e.weight:.3f})</span></li>"
                for e in t.card.evidence[:EVIDENCE_SHOWN]
            )
            parts.append(f"<ol class='ev'>{items}</ol>")
        parts.append("<table>")
        for pid, prompt in p.prompts:
            mine = by_key.get((t.target_id, pid, "persona"), [])
            base = by_key.get((t.target_id, pid, "baseline"), [])
            rw = mine[0] if mine else {}
            neg = f"<div class='neg'>not: {esc(rw['negative'])}</div>" if rw.get("negative") else ""
            figs = "".join(_figure(r, shown, "persona") for r in mine) + "".join(
                _figure(r, shown, "baseline", "base") for r in base
            )
            parts.append(
                f"<tr><td class='text'><b>{esc(pid)}</b> {esc(prompt)}<div class='rw'>{esc(rw.get('rewrite') or '')}</div>"
                f"{neg}</td><td>{figs}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _figure(r: dict[str, Any], px: int, label: str, cls: str = "") -> str:
    esc = html.escape
    return (
        f"<figure class='{cls}'><img src='{esc(r['image'])}' width='{px}' height='{px}' alt='{label} seed {r['seed']}'>"
        f"{label} &middot; seed {r['seed']}</figure>"
    )
