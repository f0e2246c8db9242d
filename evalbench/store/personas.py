"""Persona cards and their evidence in the workspace."""

from __future__ import annotations

from evalbench.store.workspace import Workspace, dumps, loads
from persona.records import Evidence, PersonaCard
from persona.scrub import scrub_card


def save_personas(ws: Workspace, split_id: str, encoder: str, cards: list[PersonaCard]) -> int:
    """Store cards (replacing earlier cards of the same users) in one transaction.

    Every card is scrubbed of personal identifiers first (:func:`persona.scrub.scrub_card`): the last guard,
    whatever encoder or backend wrote it.
    """
    if not cards:
        return 0
    cards = [scrub_card(c) for c in cards]
    users = [c.user_id for c in cards]
    ev = [(c.user_id, r, e) for c in cards for r, e in enumerate(c.evidence, start=1)]
    with ws.transaction() as con:
        for table in ("personas", "persona_evidence"):
            con.execute(f"DELETE FROM {table} WHERE split_id = ? AND encoder = ? AND list_contains(?, user_id)",
                        [split_id, encoder, users])
        ws.insert_columns("personas", {
            "split_id": [split_id] * len(cards), "encoder": [encoder] * len(cards), "user_id": users,
            "summary": [c.summary for c in cards], "traits": [dumps(c.traits) for c in cards],
            "demographics": [dumps(c.demographics) for c in cards], "embedding": [c.embedding for c in cards],
            "model_version": [c.model_version for c in cards],
        }, casts={"traits": "JSON", "demographics": "JSON", "embedding": "FLOAT[]"})
        ws.insert_columns("persona_evidence", {
            "split_id": [split_id] * len(ev), "encoder": [encoder] * len(ev), "user_id": [u for u, _, _ in ev],
            "rank": [r for _, r, _ in ev], "item_id": [e.item_id for _, _, e in ev],
            "weight": [e.weight for _, _, e in ev], "snippet": [e.snippet for _, _, e in ev],
        }, casts={"weight": "DOUBLE", "rank": "INTEGER"})
    return len(cards)


def load_personas(ws: Workspace, split_id: str, encoder: str, user_ids: list[str] | None = None) -> dict[str, PersonaCard]:
    sql = ("SELECT user_id, summary, traits, embedding, model_version, demographics FROM personas "
           "WHERE split_id = ? AND encoder = ?")
    params: list = [split_id, encoder]
    if user_ids is not None:
        sql += " AND list_contains(?, user_id)"
        params.append(list(user_ids))
    cards = {r[0]: PersonaCard(r[0], r[1], loads(r[2]) or [], [], r[3], r[4], loads(r[5]) or {})
             for r in ws.query(sql, params)}
    esql = ("SELECT user_id, item_id, weight, snippet FROM persona_evidence WHERE split_id = ? AND encoder = ?"
            + (" AND list_contains(?, user_id)" if user_ids is not None else "") + " ORDER BY user_id, rank")
    for u, iid, w, snip in ws.query(esql, params):
        if u in cards:
            cards[u].evidence.append(Evidence(iid, w, snip or ""))
    return cards
