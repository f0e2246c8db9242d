"""Persona cards and their evidence in the workspace, and cohorts (one persona for a group of users)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from workbench.records import Evidence, PersonaCard
from workbench.scrub import scrub_card
from workbench.store.workspace import Workspace, dumps, loads


def save_personas(ws: Workspace, split_id: str, encoder: str, cards: list[PersonaCard]) -> int:
    """Store cards (replacing earlier cards of the same users) in one transaction.

    Every card is scrubbed of personal identifiers first (:func:`workbench.scrub.scrub_card`): the last guard,
    whatever encoder or backend wrote it.
    """
    if not cards:
        return 0
    cards = [scrub_card(c) for c in cards]
    users = [c.user_id for c in cards]
    ev = [(c.user_id, r, e) for c in cards for r, e in enumerate(c.evidence, start=1)]
    with ws.transaction() as con:
        for table in ("personas", "persona_evidence"):
            con.execute(
                f"DELETE FROM {table} WHERE split_id = ? AND encoder = ? AND list_contains(?, user_id)",
                [split_id, encoder, users],
            )
        ws.insert_columns(
            "personas",
            {
                "split_id": [split_id] * len(cards),
                "encoder": [encoder] * len(cards),
                "user_id": users,
                "summary": [c.summary for c in cards],
                "traits": [dumps(c.traits) for c in cards],
                "demographics": [dumps(c.demographics) for c in cards],
                "embedding": [c.embedding for c in cards],
                "model_version": [c.model_version for c in cards],
            },
            casts={"traits": "JSON", "demographics": "JSON", "embedding": "FLOAT[]"},
        )
        ws.insert_columns(
            "persona_evidence",
            {
                "split_id": [split_id] * len(ev),
                "encoder": [encoder] * len(ev),
                "user_id": [u for u, _, _ in ev],
                "rank": [r for _, r, _ in ev],
                "item_id": [e.item_id for _, _, e in ev],
                "weight": [e.weight for _, _, e in ev],
                "snippet": [e.snippet for _, _, e in ev],
            },
            casts={"weight": "DOUBLE", "rank": "INTEGER"},
        )
    return len(cards)


def save_persona_parts(ws: Workspace, split_id: str, encoder: str, folder) -> int:
    """Store the cards a mining job streamed to Parquet parts in ``folder`` (``personas-*.parquet``: user_id,
    summary, traits and demographics as JSON text, embedding, model_version; ``evidence-*.parquet``: user_id,
    rank, item_id, weight, snippet), replacing earlier cards of the same users, in one transaction: one bulk
    insert per table, whatever the number of cards. The parts were scrubbed by the job
    (:func:`persona.inference.infer_cards`). Returns the cards stored."""
    from pathlib import Path

    personas = str(Path(folder) / "personas-*.parquet").replace("'", "''")
    evidence = str(Path(folder) / "evidence-*.parquet").replace("'", "''")
    if not list(Path(folder).glob("personas-*.parquet")):
        return 0
    with ws.transaction() as con:
        for table in ("personas", "persona_evidence"):
            con.execute(
                f"DELETE FROM {table} WHERE split_id = ? AND encoder = ? "
                f"AND user_id IN (SELECT user_id FROM read_parquet('{personas}'))",
                [split_id, encoder],
            )
        con.execute(
            "INSERT INTO personas (split_id, encoder, user_id, summary, traits, demographics, embedding, model_version) "
            "SELECT ?, ?, user_id, summary, CAST(traits AS JSON), CAST(demographics AS JSON), "
            f"CAST(embedding AS FLOAT[]), model_version FROM read_parquet('{personas}')",
            [split_id, encoder],
        )
        if list(Path(folder).glob("evidence-*.parquet")):
            con.execute(
                "INSERT INTO persona_evidence (split_id, encoder, user_id, rank, item_id, weight, snippet) "
                f"SELECT ?, ?, user_id, rank, item_id, weight, snippet FROM read_parquet('{evidence}')",
                [split_id, encoder],
            )
        return int(con.execute(f"SELECT count(*) FROM read_parquet('{personas}')").fetchone()[0])


def load_personas(
    ws: Workspace, split_id: str, encoder: str, user_ids: list[str] | None = None
) -> dict[str, PersonaCard]:
    sql = (
        "SELECT user_id, summary, traits, embedding, model_version, demographics FROM personas "
        "WHERE split_id = ? AND encoder = ?"
    )
    params: list = [split_id, encoder]
    if user_ids is not None:
        sql += " AND list_contains(?, user_id)"
        params.append(list(user_ids))
    cards = {
        r[0]: PersonaCard(r[0], r[1], loads(r[2]) or [], [], r[3], r[4], loads(r[5]) or {})
        for r in ws.query(sql, params)
    }
    esql = (
        "SELECT user_id, item_id, weight, snippet FROM persona_evidence WHERE split_id = ? AND encoder = ?"
        + (" AND list_contains(?, user_id)" if user_ids is not None else "")
        + " ORDER BY user_id, rank"
    )
    for u, iid, w, snip in ws.query(esql, params):
        if u in cards:
            cards[u].evidence.append(Evidence(iid, w, snip or ""))
    return cards


def save_cohort(
    ws: Workspace, split_id: str, encoder: str, card: PersonaCard, kind: str, definition: str, members: list[str]
) -> None:
    """Store a cohort's persona ``card`` (under ``card.user_id``, e.g. ``cohort:<name>``) and its ``cohorts`` row
    (``kind`` ``sql`` or ``archetype``, the definition, the members), replacing an earlier one, in one transaction."""
    with ws.transaction() as con:
        con.execute(
            "DELETE FROM cohorts WHERE split_id = ? AND encoder = ? AND cohort_id = ?",
            [split_id, encoder, card.user_id],
        )
        con.execute(
            "INSERT INTO cohorts (split_id, encoder, cohort_id, kind, definition, members, n_members) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [split_id, encoder, card.user_id, kind, definition, members, len(members)],
        )
        save_personas(ws, split_id, encoder, [card])


def cohort_members(
    ws: Workspace, columns: Mapping[str, Sequence[Any]], types: Mapping[str, str], where: str
) -> list[str]:
    """The sorted ``user_id`` values of the per-user table ``columns`` (one SQL type per column in ``types``,
    ``VARCHAR`` when absent) for which ``where``, a SQL boolean expression over those columns, holds.

    The table lives only for this query (a temporary ``cohort_users``). Raises :class:`ValueError` naming the
    columns when ``where`` cannot be evaluated.
    """
    ddl = ", ".join(f'"{c}" {types.get(c, "VARCHAR")}' for c in columns)
    ws.con.execute("DROP TABLE IF EXISTS cohort_users")
    ws.con.execute(f"CREATE TEMP TABLE cohort_users ({ddl})")
    try:
        ws.insert_columns("cohort_users", columns, casts=dict(types))
        try:
            rows = ws.query(f"SELECT user_id FROM cohort_users WHERE ({where}) ORDER BY user_id")
        except Exception as exc:  # duckdb raises several error types for a bad expression
            raise ValueError(
                f"cannot evaluate --where {where!r}: {str(exc).splitlines()[0]}. Columns: {', '.join(columns)}"
            ) from None
    finally:
        ws.con.execute("DROP TABLE IF EXISTS cohort_users")
    return [r[0] for r in rows]


def list_persona_sets(ws: Workspace) -> list[dict[str, Any]]:
    """Every ``(split_id, encoder)`` that has personas (users, cohorts and archetypes) as ``{split_id, encoder,
    users}``, ordered by split and encoder."""
    rows = ws.query(
        "SELECT split_id, encoder, count(*) FROM personas GROUP BY split_id, encoder ORDER BY split_id, encoder"
    )
    return [{"split_id": s, "encoder": e, "users": int(n)} for s, e, n in rows]


def cohort_info(ws: Workspace, split_id: str, encoder: str, cohort_id: str) -> dict[str, Any] | None:
    """A stored cohort's ``{kind, definition, n_members}`` (``None`` when there is no such cohort)."""
    rows = ws.query(
        "SELECT kind, definition, n_members FROM cohorts WHERE split_id = ? AND encoder = ? AND cohort_id = ?",
        [split_id, encoder, cohort_id],
    )
    return {"kind": rows[0][0], "definition": rows[0][1], "n_members": rows[0][2]} if rows else None


def persona_progress(ws: Workspace, split_id: str, encoder: str, roles) -> tuple[int, int]:
    """``(users of the split with one of roles, how many of them have a persona of encoder)``, counted in SQL."""
    row = ws.query(
        "SELECT count(*), count(p.user_id) FROM split_users s LEFT JOIN personas p ON p.split_id = s.split_id "
        "AND p.encoder = ? AND p.user_id = s.user_id WHERE s.split_id = ? AND list_contains(?, s.role)",
        [encoder, split_id, list(roles)],
    )[0]
    return int(row[0]), int(row[1])


def users_without_persona(ws: Workspace, split_id: str, encoder: str, roles) -> list[str]:
    """The split's users with one of ``roles`` and no persona of ``encoder`` yet, sorted."""
    return [
        r[0]
        for r in ws.query(
            "SELECT s.user_id FROM split_users s ANTI JOIN personas p ON p.split_id = s.split_id AND p.encoder = ? "
            "AND p.user_id = s.user_id WHERE s.split_id = ? AND list_contains(?, s.role) ORDER BY s.user_id",
            [encoder, split_id, list(roles)],
        )
    ]


def persona_user_ids(ws: Workspace, split_id: str, encoder: str) -> list[str]:
    """The ids with a persona of ``encoder`` in ``split_id`` (in no particular order)."""
    return [
        r[0] for r in ws.query("SELECT user_id FROM personas WHERE split_id = ? AND encoder = ?", [split_id, encoder])
    ]


def persona_evidence(ws: Workspace, split_id: str, encoder: str, user_id: str) -> list[dict[str, Any]]:
    """One persona's evidence, best first, with the items' titles: ``{rank, item, title, weight, snippet}``."""
    return ws.query_dicts(
        "SELECT e.rank, e.item_id AS item, i.title, e.weight, e.snippet FROM persona_evidence e "
        "LEFT JOIN splits s ON s.split_id = e.split_id "
        "LEFT JOIN items i ON i.dataset_id = s.dataset_id AND i.item_id = e.item_id "
        "WHERE e.split_id = ? AND e.encoder = ? AND e.user_id = ? ORDER BY e.rank",
        [split_id, encoder, user_id],
    )
