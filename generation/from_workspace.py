"""Build :class:`~generation.conditions.UserCondition` lists from a workspace's stored rewrites."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from .conditions import UserCondition

if TYPE_CHECKING:
    from evalbench.store.workspace import Workspace


def conditions_from_rewrites(ws: Workspace, *, split: str | None = None, encoder: str = "tfidf",
                             rewriter: str = "template", rewriter_model: str | None = None,
                             prompts: str = "parti36", roles: tuple[str, ...] = ("heldout",),
                             users: list[str] | None = None, max_users: int | None = None,
                             prompt_ids: list[str] | None = None, max_prompts: int | None = None,
                             seed: int = 0, **condition: Any) -> list[UserCondition]:
    """One condition per (user, prompt) rewrite stored by ``pwb rewrite``.

    Args:
        split, encoder, rewriter, rewriter_model, prompts: which stored rewrites (as ``pwb rewrite`` named
            them; the rewriter model defaults to the only one stored).
        roles: user roles of the split to draw for; ``users`` picks users by id instead.
        max_users, prompt_ids, max_prompts: limit the grid (users in id order, prompts in set order).
        seed: base seed; each (user, prompt) gets ``seed`` (the same noise for every user, so users are
            compared on equal footing).
        **condition: the other :class:`UserCondition` fields (references, guidance, ...), for every condition.
    """
    from evalbench.runner import _stored_model
    from persona.data.splits import resolve_split
    from evalbench.store.prompts import load_prompts, register_prompt_set
    from evalbench.store.workspace import WorkspaceError

    split_id = resolve_split(ws, split)
    prompt_set = register_prompt_set(ws, prompts)
    model = _stored_model(ws, SimpleNamespace(encoder=encoder, backend=rewriter, model=rewriter_model, prompts=prompts),
                          split_id, prompt_set)
    rows = ws.query(
        "SELECT r.user_id, r.prompt_id, r.rewritten, r.negative FROM rewrites r "
        "JOIN split_users s ON s.split_id = r.split_id AND s.user_id = r.user_id "
        "WHERE r.split_id = ? AND r.encoder = ? AND r.backend = ? AND r.model = ? AND r.prompt_set = ? "
        + ("" if users else f"AND s.role IN ({', '.join('?' * len(roles))}) ")
        + "ORDER BY r.user_id, r.prompt_id",
        [split_id, encoder, rewriter, model, prompt_set, *([] if users else list(roles))],
    )
    order = {pid: i for i, (pid, _) in enumerate(load_prompts(ws, prompt_set))}
    if users:
        wanted = set(users)
        missing = wanted - {r[0] for r in rows}
        if missing:
            raise WorkspaceError(f"no {rewriter} rewrites stored for user(s) {', '.join(sorted(missing))} in split "
                                 f"{split_id!r} (prompt set {prompt_set!r}): run `pwb rewrite` for them first")
        rows = [r for r in rows if r[0] in wanted]
    if prompt_ids:
        unknown = set(prompt_ids) - set(order)
        if unknown:
            raise WorkspaceError(f"prompt id(s) {', '.join(sorted(unknown))} are not in prompt set {prompt_set!r}")
        rows = [r for r in rows if r[1] in set(prompt_ids)]
    keep_prompts = sorted({r[1] for r in rows}, key=lambda p: order.get(p, 1 << 30))
    if max_prompts is not None:
        keep_prompts = keep_prompts[:max_prompts]
    keep_users = sorted({r[0] for r in rows})
    if max_users is not None:
        keep_users = keep_users[:max_users]
    ku, kp = set(keep_users), set(keep_prompts)
    rows = sorted((r for r in rows if r[0] in ku and r[1] in kp), key=lambda r: (r[0], order.get(r[1], 0)))
    if not rows:
        raise WorkspaceError(f"no rewrites match in split {split_id!r} (roles {', '.join(roles)}, prompt set {prompt_set!r})")
    negative = condition.pop("negative_prompt", None)
    return [
        UserCondition(user_id=u, prompt=text, negative_prompt=neg or negative, seed=seed,
                      persona_id=f"{split_id}/{encoder}/{u}", prompt_id=f"{prompt_set}/{p}", **condition)
        for u, p, text, neg in rows
    ]


def baseline_conditions(ws: Workspace, conditions: list[UserCondition], *,
                        negative_prompt: str | None = None) -> list[UserCondition]:
    """The no-persona twin of each condition: the prompt set's original prompt, same user, seed, references
    and guidance, ``persona_id`` empty. Drawn beside the persona images, they are what the dashboard shows
    as "baseline" and what human labels compare against."""
    from dataclasses import replace

    from evalbench.store.prompts import load_prompts

    text: dict[str, str] = {}
    for c in conditions:
        if not c.prompt_id or "/" not in c.prompt_id:
            raise ValueError(f"condition for user {c.user_id!r} has no prompt_id (prompt_set/prompt_id): "
                             "baselines need to know the original prompt")
        pset = c.prompt_id.rsplit("/", 1)[0]
        if pset not in {k.rsplit("/", 1)[0] for k in text}:
            text.update({f"{pset}/{pid}": p for pid, p in load_prompts(ws, pset)})
    return [replace(c, prompt=text[c.prompt_id], negative_prompt=negative_prompt, persona_id=None) for c in conditions]
