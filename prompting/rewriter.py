"""Rewrite prompts from each user's persona: one interface over every backend, and the stored stage."""

from __future__ import annotations

import time
from typing import Any

from evalbench.store.personas import load_personas
from evalbench.store.prompts import load_prompts, register_prompt_set
from evalbench.store.workspace import Workspace, WorkspaceError
from persona.data.splits import resolve_split, split_users
from persona.records import PersonaCard, Rewrite
from prompting.backends import BACKENDS
from prompting.backends.base import RewriteRequest
from prompting.guard import validate_rewrite


class Rewriter:
    """``Rewriter(backend, **backend_kwargs).rewrite(persona, prompt)``.

    Args:
        backend: A registered backend name (``template``; LLM backends land later).
        **kwargs: Passed to the backend's constructor.

    Example:
        >>> from persona.records import PersonaCard
        >>> card = PersonaCard("u1", "", traits=[{"name": "Film-Noir", "weight": 0.4}])
        >>> Rewriter("template").rewrite(card, "a cat on a stairway").rewritten
        'a cat on a stairway, film-noir shadows in black and white'
    """

    def __init__(self, backend: str = "template", **kwargs: Any):
        self.backend_name = backend
        self.backend = BACKENDS.get(backend)(**kwargs)

    @property
    def model(self) -> str:
        return self.backend.model

    def rewrite(self, persona: PersonaCard, prompt: str, history: list[str] | None = None) -> Rewrite:
        return self.rewrite_many([(persona, prompt)], history=[history or []])[0]

    def rewrite_many(self, pairs: list[tuple[PersonaCard, str]], history: list[list[str]] | None = None) -> list[Rewrite]:
        """Rewrite ``(persona, prompt)`` pairs in one backend batch; latency is the batch's, per item."""
        if history is not None and len(history) != len(pairs):
            raise ValueError(f"history must have one entry per pair ({len(pairs)}), got {len(history)}")
        reqs = [RewriteRequest(p, q, (history or [[]] * len(pairs))[i]) for i, (p, q) in enumerate(pairs)]
        t0 = time.perf_counter()
        results = self.backend.rewrite_batch(reqs)
        per = (time.perf_counter() - t0) / max(1, len(reqs))
        return [Rewrite(r.persona.user_id, r.prompt, validate_rewrite(res.rewritten), res.negative, self.backend_name,
                        self.model, len(r.history), per) for r, res in zip(reqs, results)]


def rewrite_split(ws: Workspace, split: str | None = None, *, encoder: str = "tfidf", backend: str = "template",
                  prompts: str = "parti36", roles: tuple[str, ...] = ("heldout",), progress: bool = False,
                  backend_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rewrite every prompt of ``prompts`` for every user in ``roles``; stored per user, resumable."""
    rw = Rewriter(backend, **(backend_kwargs or {}))
    split_id = resolve_split(ws, split)
    prompt_set = register_prompt_set(ws, prompts)
    plist = load_prompts(ws, prompt_set)
    users = split_users(ws, split_id, roles)
    cards = load_personas(ws, split_id, encoder, users)
    missing = [u for u in users if u not in cards]
    if missing:
        raise WorkspaceError(f"{len(missing)} of {len(users)} users have no {encoder} persona in split {split_id!r} "
                             f"(e.g. {missing[0]!r}): run `pwb personas mine --split {split_id} --encoder {encoder}` first.")
    done = {r[0] for r in ws.query(
        "SELECT user_id FROM rewrites WHERE split_id = ? AND encoder = ? AND backend = ? AND model = ? AND prompt_set = ? "
        "GROUP BY user_id HAVING count(*) = ?", [split_id, encoder, backend, rw.model, prompt_set, len(plist)])}
    todo = [u for u in users if u not in done]
    from tqdm.auto import tqdm

    for u in tqdm(todo, desc=f"rewriting ({backend})", unit="user", disable=not progress):
        out = rw.rewrite_many([(cards[u], p) for _, p in plist])
        n = len(out)
        with ws.transaction() as con:
            con.execute("DELETE FROM rewrites WHERE split_id = ? AND encoder = ? AND backend = ? AND model = ? "
                        "AND prompt_set = ? AND user_id = ?", [split_id, encoder, backend, rw.model, prompt_set, u])
            ws.insert_columns("rewrites", {
                "split_id": [split_id] * n, "encoder": [encoder] * n, "backend": [backend] * n, "model": [rw.model] * n,
                "user_id": [u] * n, "prompt_set": [prompt_set] * n, "prompt_id": [pid for pid, _ in plist],
                "prompt": [r.prompt for r in out], "rewritten": [r.rewritten for r in out],
                "negative": [r.negative for r in out], "shots": [r.shots for r in out],
                "latency_s": [r.latency_s for r in out],
            }, casts={"shots": "INTEGER", "latency_s": "DOUBLE"})
    return {"split": split_id, "encoder": encoder, "backend": backend, "model": rw.model, "prompts": prompt_set,
            "users": len(users), "rewritten": len(todo), "already_stored": len(done)}


def load_rewrites(ws: Workspace, split_id: str, encoder: str, backend: str, model: str, prompt_set: str) -> dict[tuple[str, str], str]:
    rows = ws.query("SELECT user_id, prompt_id, rewritten FROM rewrites WHERE split_id = ? AND encoder = ? AND backend = ? "
                    "AND model = ? AND prompt_set = ?", [split_id, encoder, backend, model, prompt_set])
    return {(u, p): r for u, p, r in rows}
