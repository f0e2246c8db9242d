"""``pwb verify``: what provenance an image carries (C2PA manifest, watermark) and the workspace row it names."""

from __future__ import annotations

from pathlib import Path

import click

from apps.cli.common import emit, friendly_errors, json_option, table

VERDICTS = {
    "marked": "valid manifest",
    "tampered": "manifest does not validate: changed after signing",
    "stripped": "no manifest, watermark found: re-saved or re-encoded",
    "unmarked": "no manifest, no watermark",
}


@click.command("verify")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--db", default=None, help="Workspace to match watermark ids against [default: $PWB_DB or none].")
@json_option
@friendly_errors
def verify(images, db, as_json):
    """Per image: manifest valid or not, its workbench assertion, the watermark id and the generation it matches.

    Tells a stripped image (watermark found, manifest gone) from a tampered one (manifest invalid) from an
    unmarked one.
    """
    import os

    from workbench.provenance import verify as verify_image

    rows = [verify_image(p) for p in images]
    db = db or os.environ.get("PWB_DB")
    if db and Path(db).exists():
        from workbench.store.generations import generations_by_id, generations_by_watermark
        from workbench.store.workspace import Workspace

        named = [r["assertion"]["generation_id"] for r in rows if r["status"] == "marked" and _gid(r)]
        with Workspace(db, read_only=True) as ws:
            found = generations_by_watermark(ws, [r["watermark_id"] for r in rows if r["watermark_id"]])
            by_id = generations_by_id(ws, named)
        for r in rows:  # the watermark names the row; a valid manifest does too (images under 256 x 256 px)
            r["generation"] = found.get(r["watermark_id"] or "") or (
                by_id.get(_gid(r)) if r["status"] == "marked" else None
            )
            r["matched_by"] = (
                None if r["generation"] is None else ("watermark" if r["watermark_id"] in found else "manifest")
            )
    if as_json:
        return emit(rows, True)
    shown = [
        {
            **r,
            "verdict": VERDICTS[r["status"]],
            "ids": ", ".join(f"{k}={v}" for k, v in (r["assertion"] or {}).items()) or "-",
            "row": (r.get("generation") or {}).get("generation_id", "-" if db else "(no --db)"),
        }
        for r in rows
    ]
    click.echo(
        table(
            shown,
            [
                ("image", "image"),
                ("status", "status"),
                ("verdict", "what it means"),
                ("watermark_id", "watermark"),
                ("row", "workspace row"),
                ("ids", "assertion"),
            ],
        )
    )


def _gid(row: dict) -> str | None:
    return (row.get("assertion") or {}).get("generation_id")
