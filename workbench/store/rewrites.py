"""Rewritten prompts in the workspace: the ``rewrites`` table, keyed by a :class:`RewriteKey`
``(split_id, encoder, backend, model, prompt_set)`` and then ``(user_id, prompt_id)``; and the
``rewrite_cache`` (request hash -> rewrite) that answers a repeated request for free."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from typing import Any

from workbench.records import Rewrite
from workbench.store.workspace import Workspace, WorkspaceError, dumps


@dataclass(frozen=True)
class RewriteKey:
    """Which stored rewrites: the personas' split and encoder, the rewriter's backend and model (its label,
    e.g. ``<model>|k3``) and the prompt set. A field left ``None`` matches every value (all models of a
    backend, all backends of a split), so one key says what every rewrites query selects."""

    split_id: str
    encoder: str
    backend: str | None = None
    model: str | None = None
    prompt_set: str | None = None

    def where(self, alias: str = "") -> tuple[str, list[str]]:
        """``("split_id = ? AND encoder = ? ...", [values])`` for the fields that are set, the columns
        prefixed by ``alias.`` when given (for a join)."""
        prefix = f"{alias}." if alias else ""
        pairs = [(f.name, v) for f, v in zip(fields(self), astuple(self)) if v is not None]
        return " AND ".join(f"{prefix}{name} = ?" for name, _ in pairs), [v for _, v in pairs]


def rewrite_models(ws: Workspace, split_id: str, encoder: str, backend: str, prompt_set: str) -> list[str]:
    """The models that have rewrites of ``encoder`` personas by ``backend`` for ``prompt_set``, sorted."""
    where, params = RewriteKey(split_id, encoder, backend, prompt_set=prompt_set).where()
    return [r[0] for r in ws.query(f"SELECT DISTINCT model FROM rewrites WHERE {where} ORDER BY 1", params)]


def resolve_rewrite_model(
    ws: Workspace,
    split_id: str,
    encoder: str,
    backend: str,
    prompt_set: str,
    model: str | None = None,
    *,
    prompts: str | None = None,
) -> str:
    """The one stored model of these rewrites, or ``model`` once it is checked to be stored.

    Raises :class:`WorkspaceError` naming the ``pwb rewrite`` command to run when none is stored, and asking
    for ``--model`` when several are.
    """
    models = rewrite_models(ws, split_id, encoder, backend, prompt_set)
    if model is not None:
        if model not in models:
            raise WorkspaceError(f"No rewrites by model {model!r}; stored: {', '.join(models) or '(none)'}")
        return model
    if not models:
        raise WorkspaceError(
            f"No {backend} rewrites of {encoder} personas for prompt set {prompt_set!r} in "
            f"split {split_id!r}: run `pwb rewrite --split {split_id} --encoder {encoder} "
            f"--backend {backend} --prompts {prompts or prompt_set}` first."
        )
    if len(models) > 1:
        raise WorkspaceError(f"Several {backend} models have rewrites ({', '.join(models)}); pass --model.")
    return models[0]


def rewrites_for_roles(
    ws: Workspace,
    split_id: str,
    encoder: str,
    backend: str,
    model: str,
    prompt_set: str,
    roles: Sequence[str] | None = None,
) -> list[tuple[str, str, str, str]]:
    """``(user_id, prompt_id, rewritten, negative)`` of the split's users (those with one of ``roles``, or
    all of them when ``roles`` is ``None``), ordered by user and prompt id."""
    where, params = RewriteKey(split_id, encoder, backend, model, prompt_set).where("r")
    role_sql = "" if roles is None else f"AND s.role IN ({', '.join('?' * len(roles))}) "
    return ws.query(
        "SELECT r.user_id, r.prompt_id, r.rewritten, r.negative FROM rewrites r "
        "JOIN split_users s ON s.split_id = r.split_id AND s.user_id = r.user_id "
        f"WHERE {where} {role_sql}ORDER BY r.user_id, r.prompt_id",
        [*params, *([] if roles is None else list(roles))],
    )


def users_with_rewrites(ws: Workspace, key: RewriteKey, n_prompts: int) -> set[str]:
    """The users who have all ``n_prompts`` prompts of ``key`` rewritten (a resumed run skips them)."""
    where, params = key.where()
    return {
        r[0]
        for r in ws.query(
            f"SELECT user_id FROM rewrites WHERE {where} GROUP BY user_id HAVING count(*) = ?", [*params, n_prompts]
        )
    }


def save_user_rewrites(
    ws: Workspace, key: RewriteKey, user_id: str, prompt_ids: Sequence[str], rewrites: Sequence[Rewrite]
) -> int:
    """Replace one user's rewrites under ``key`` (every field set; ``rewrites[i]`` answers ``prompt_ids[i]``)
    in one transaction, so an interrupted run resumes per user; returns the number of rows written."""
    unset = [f.name for f, v in zip(fields(key), astuple(key)) if v is None]
    if unset:
        raise ValueError(f"save_user_rewrites needs a full key; {', '.join(unset)} is unset")
    if len(prompt_ids) != len(rewrites):
        raise ValueError(f"prompt_ids and rewrites must have equal lengths, got {len(prompt_ids)} and {len(rewrites)}")
    where, params = key.where()
    n = len(rewrites)
    with ws.transaction() as con:
        con.execute(f"DELETE FROM rewrites WHERE {where} AND user_id = ?", [*params, user_id])
        ws.insert_columns(
            "rewrites",
            {
                "split_id": [key.split_id] * n,
                "encoder": [key.encoder] * n,
                "backend": [key.backend] * n,
                "model": [key.model] * n,
                "user_id": [user_id] * n,
                "prompt_set": [key.prompt_set] * n,
                "prompt_id": list(prompt_ids),
                "prompt": [r.prompt for r in rewrites],
                "rewritten": [r.rewritten for r in rewrites],
                "negative": [r.negative for r in rewrites],
                "shots": [r.shots for r in rewrites],
                "latency_s": [r.latency_s for r in rewrites],
                "fallback": [r.fallback or None for r in rewrites],
                "selector_score": [r.selector_score for r in rewrites],
            },
            casts={"shots": "INTEGER", "latency_s": "DOUBLE", "fallback": "VARCHAR", "selector_score": "DOUBLE"},
        )
    return n


def load_rewrites(ws: Workspace, key: RewriteKey) -> dict[tuple[str, str], str]:
    """``{(user_id, prompt_id): rewritten}`` of the rewrites under ``key``."""
    where, params = key.where()
    return {
        (u, p): r for u, p, r in ws.query(f"SELECT user_id, prompt_id, rewritten FROM rewrites WHERE {where}", params)
    }


def rewrites_by_model(ws: Workspace, key: RewriteKey) -> list[tuple[str, str, str, str, str, str | None]]:
    """``(backend, model, user_id, prompt, rewritten, fallback)`` of the rewrites under ``key`` (usually with
    backend and model open), ordered by backend, model, user and prompt id."""
    where, params = key.where()
    return ws.query(
        f"SELECT backend, model, user_id, prompt, rewritten, fallback FROM rewrites WHERE {where} "
        "ORDER BY backend, model, user_id, prompt_id",
        params,
    )


def cached_rewrites(ws: Workspace, keys: Sequence[str]) -> dict[str, Rewrite]:
    """``{request key: Rewrite}`` of the cache entries among ``keys`` (latency 0: a cached answer costs nothing)."""
    if not keys:
        return {}
    rows = ws.query(
        "SELECT key, user_id, prompt, rewritten, negative, backend, model, shots, fallback, selector_score "
        "FROM rewrite_cache WHERE list_contains(?, key)",
        [sorted(set(keys))],
    )
    return {
        k: Rewrite(u, p, r, neg or "", b, m, s or 0, 0.0, fallback=fb or "", selector_score=sc)
        for k, u, p, r, neg, b, m, s, fb, sc in rows
    }


def cache_rewrites(ws: Workspace, entries: dict[str, tuple[dict[str, Any], Rewrite]]) -> int:
    """Store ``{request key: (request params, rewrite)}`` in the cache, replacing entries of the same keys, in
    one transaction; returns the number stored."""
    if not entries:
        return 0
    keys = list(entries)
    params = [p for p, _ in entries.values()]
    rws = [r for _, r in entries.values()]
    with ws.transaction() as con:
        con.execute("DELETE FROM rewrite_cache WHERE list_contains(?, key)", [keys])
        ws.insert_columns(
            "rewrite_cache",
            {
                "key": keys,
                "backend": [r.backend for r in rws],
                "model": [r.model for r in rws],
                "params": [dumps(p) for p in params],
                "user_id": [r.user_id for r in rws],
                "prompt": [r.prompt for r in rws],
                "rewritten": [r.rewritten for r in rws],
                "negative": [r.negative for r in rws],
                "shots": [r.shots for r in rws],
                "fallback": [r.fallback for r in rws],
                "selector_score": [r.selector_score for r in rws],
            },
            casts={"params": "JSON", "shots": "INTEGER", "selector_score": "DOUBLE"},
        )
    return len(keys)


def user_rewrites(ws: Workspace, key: RewriteKey, user_id: str) -> list[dict[str, Any]]:
    """One user's rewrites under ``key`` (usually only split and encoder set) as ``{prompt_set, prompt_id,
    backend, model, prompt, rewritten, negative}``, ordered by prompt set, prompt id, backend and model."""
    where, params = key.where()
    return ws.query_dicts(
        f"SELECT prompt_set, prompt_id, backend, model, prompt, rewritten, negative FROM rewrites "
        f"WHERE {where} AND user_id = ? ORDER BY prompt_set, prompt_id, backend || ':' || model",
        [*params, user_id],
    )


def rewrite_stats(ws: Workspace, key: RewriteKey) -> tuple[float | None, int, int]:
    """``(mean latency in seconds or None, rewrites, template fallbacks)`` of the rewrites under ``key``."""
    where, params = key.where()
    lat, n, fallbacks = ws.query(
        f"SELECT avg(latency_s), count(*), count(fallback) FROM rewrites WHERE {where}", params
    )[0]
    return (None if lat is None else float(lat)), int(n or 0), int(fallbacks or 0)
