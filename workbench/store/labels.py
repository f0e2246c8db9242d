"""Human labels: the ``labels`` table (a person's choice between a persona image and its no-persona
baseline) and the generation pairs a label can be given on."""

from __future__ import annotations

from typing import Any

from workbench.store.workspace import Workspace

#: the columns :func:`list_labels` returns, in order
LABEL_COLUMNS = (
    "label_id",
    "user_id",
    "prompt_id",
    "system_generation_id",
    "baseline_generation_id",
    "system_side",
    "choice",
    "annotator",
    "note",
    "created_at",
)


def label_pair_rows(ws: Workspace, *, user_id: str | None = None, prompt_id: str | None = None) -> list[tuple]:
    """Every (system image, baseline image) pair of stored generations, optionally for one user or prompt:
    ``(user_id, prompt_id, persona_id, backend, model, system generation id, baseline generation id, system
    image path, baseline image path, system prompt, baseline prompt)``, by user, prompt and generation ids.

    A baseline shares the system condition's user, prompt, seed, references and guidance, and the
    generation's backend and model, and has no persona."""
    sql = """
        SELECT cs.user_id, cs.prompt_id, cs.persona_id, gs.backend, gs.model, gs.generation_id, gb.generation_id,
               gs.image_path, gb.image_path, cs.prompt, cb.prompt
        FROM generations gs JOIN conditions cs ON cs.condition_id = gs.condition_id
        JOIN conditions cb ON cb.user_id = cs.user_id AND cb.prompt_id = cs.prompt_id AND cb.seed = cs.seed
                          AND cb.persona_id IS NULL
                          AND cb.reference_images IS NOT DISTINCT FROM cs.reference_images
                          AND CAST(cb.guidance AS VARCHAR) IS NOT DISTINCT FROM CAST(cs.guidance AS VARCHAR)
        JOIN generations gb ON gb.condition_id = cb.condition_id AND gb.backend = gs.backend AND gb.model = gs.model
        WHERE cs.persona_id IS NOT NULL AND cs.prompt_id IS NOT NULL
          AND (? IS NULL OR cs.user_id = ?) AND (? IS NULL OR cs.prompt_id = ?)
        ORDER BY cs.user_id, cs.prompt_id, gs.generation_id, gb.generation_id
    """
    return ws.query(sql, [user_id, user_id, prompt_id, prompt_id])


def insert_label(ws: Workspace, row: dict[str, Any]) -> None:
    """Store one ``labels`` row (column -> value) in its own transaction."""
    with ws.transaction() as con:
        con.execute(f"INSERT INTO labels ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", list(row.values()))


def list_labels(ws: Workspace, limit: int | None = None) -> list[dict[str, Any]]:
    """The stored labels, newest first, as dicts of :data:`LABEL_COLUMNS` (at most ``limit``)."""
    rows = ws.query(
        f"SELECT {', '.join(LABEL_COLUMNS)} FROM labels ORDER BY created_at DESC, label_id"
        + (f" LIMIT {int(limit)}" if limit else "")
    )
    return [dict(zip(LABEL_COLUMNS, r)) for r in rows]


def label_choices(ws: Workspace) -> list[tuple[str, str, str, str | None, str, str]]:
    """Every label with what its system image came from, oldest first: ``(user_id, system_side, choice,
    persona_id, backend, model)``."""
    return ws.query("""
        SELECT l.user_id, l.system_side, l.choice, cs.persona_id, g.backend, g.model
        FROM labels l JOIN generations g ON g.generation_id = l.system_generation_id
        JOIN conditions cs ON cs.condition_id = g.condition_id
        ORDER BY l.created_at, l.label_id
    """)


def insert_new_labels(ws: Workspace, rows: list[dict[str, Any]]) -> int:
    """Store the ``labels`` rows whose ``label_id`` is not stored yet, in one transaction; returns how many
    were new (so importing the same labels twice adds nothing)."""
    if not rows:
        return 0
    have = {r[0] for r in ws.query("SELECT label_id FROM labels")}
    new = [r for r in {r["label_id"]: r for r in rows}.values() if r["label_id"] not in have]
    if not new:
        return 0
    cols = list(new[0])
    with ws.transaction() as con:
        con.executemany(
            f"INSERT INTO labels ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
            [[r[c] for c in cols] for r in new],
        )
    return len(new)
