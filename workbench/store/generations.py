"""Generated images in the workspace: one ``conditions`` row per condition drawn (prompt, references,
guidance, seed, consent) and one ``generations`` row per image (its file and hash, backend, model, latency,
peak memory, UNet evaluations), written by :func:`generation.pipeline.generate`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workbench.store.workspace import Workspace

#: The tables of a generation record and the key a new row replaces an old one by.
RECORD_KEYS = {"conditions": "condition_id", "generations": "generation_id"}


def save_generation_rows(ws: Workspace, rows: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """Upsert ``(table, row)`` pairs (tables of :data:`RECORD_KEYS`; a row replaces the one with its key) in one
    transaction; returns the number of rows written.

    Raises:
        ValueError: naming the table or the missing key, before anything is written.
    """
    for table, row in rows:
        if table not in RECORD_KEYS:
            raise ValueError(f"table: generation records go to {' or '.join(RECORD_KEYS)}, not {table!r}")
        if RECORD_KEYS[table] not in row:
            raise ValueError(f"{table} row: {RECORD_KEYS[table]} is missing")
    with ws.transaction() as con:
        for table, row in rows:
            key, cols = RECORD_KEYS[table], list(row)
            con.execute(f"DELETE FROM {table} WHERE {key} = ?", [row[key]])
            con.execute(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                [row[c] for c in cols],
            )
    return len(rows)


def image_file(ws: Workspace, image_sha256: str) -> str | None:
    """The recorded file of the image with this content hash (as stored: maybe relative to the workspace),
    or ``None`` when no generation has it."""
    rows = ws.query("SELECT image_path FROM generations WHERE image_sha256 = ? LIMIT 1", [image_sha256])
    return rows[0][0] if rows and rows[0][0] else None


def generation_user(ws: Workspace, generation_id: str) -> str | None:
    """The user a generation was drawn for (through its condition), or ``None`` when there is no such one."""
    return ws.scalar(
        "SELECT c.user_id FROM generations g JOIN conditions c ON c.condition_id = g.condition_id "
        "WHERE g.generation_id = ?",
        [generation_id],
    )


def generations_by_watermark(ws: Workspace, watermark_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{watermark id (hex): generation row}`` for the stored generations whose id gives one of
    ``watermark_ids`` (:func:`workbench.provenance.watermark_id`), with their user, image and model."""
    from workbench.provenance import watermark_id

    want = set(watermark_ids)
    if not want:
        return {}
    out = {}
    for gid, user, path, backend, model in ws.query(
        "SELECT generation_id, user_id, image_path, backend, model FROM generations ORDER BY generation_id"
    ):
        key = f"{watermark_id(gid):08x}"
        if key in want:
            out[key] = {"generation_id": gid, "user_id": user, "image_path": path, "backend": backend, "model": model}
    return out


def generations_by_id(ws: Workspace, generation_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{generation id: row}`` (user, image, backend, model) for those of ``generation_ids`` that are stored
    (what a valid manifest's assertion names, for images too small for a watermark)."""
    want = sorted(set(generation_ids))
    if not want:
        return {}
    rows = ws.query(
        "SELECT generation_id, user_id, image_path, backend, model FROM generations "
        f"WHERE generation_id IN ({', '.join('?' for _ in want)}) ORDER BY generation_id",
        want,
    )
    return {
        gid: {"generation_id": gid, "user_id": user, "image_path": path, "backend": backend, "model": model}
        for gid, user, path, backend, model in rows
    }
