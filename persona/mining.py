"""Mine personas for a split's users with a registered encoder and store them."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from evalbench.store.datasets import dataset_meta, load_items, load_users
from evalbench.store.personas import load_personas, save_personas
from evalbench.store.workspace import Workspace, WorkspaceError
from persona.data.splits import resolve_split, split_dataset, split_users, visible_interactions
from persona.models import ENCODERS
from persona.models.base import PersonaContext
from persona.records import PersonaCard

ROLES = ("train", "heldout", "coldstart")


def load_context(ws: Workspace, split_id: str) -> PersonaContext:
    """Users, items and visible interactions of a split (hidden items are never loaded here)."""
    dataset_id = split_dataset(ws, split_id)
    visible = defaultdict(list)
    for x in visible_interactions(ws, split_id):
        visible[x.user_id].append(x)
    return PersonaContext(split_id, dataset_id, load_users(ws, dataset_id), load_items(ws, dataset_id),
                          dict(visible), dataset_meta(ws, dataset_id))


def mine_personas(ws: Workspace, split: str | None = None, encoder: str = "tfidf", *,
                  roles: tuple[str, ...] = ROLES, force: bool = False, progress: bool = False,
                  encoder_kwargs: dict[str, Any] | None = None, batch_size: int = 256) -> dict[str, Any]:
    """Fit ``encoder`` on the split's visible interactions and store a persona for each user in ``roles``.

    Users who already have a persona from this encoder are skipped unless ``force``.
    """
    cls = ENCODERS.get(encoder)
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise ValueError(f"roles must be among {', '.join(ROLES)}, got {', '.join(bad)}")
    split_id = resolve_split(ws, split)
    users = split_users(ws, split_id, roles)
    done = set() if force else set(load_personas(ws, split_id, encoder, users))
    todo = [u for u in users if u not in done]
    ckpt = None
    if todo:
        context = load_context(ws, split_id)
        kwargs = dict(encoder_kwargs or {})
        ckpt = checkpoint_path(ws, split_id, encoder, kwargs) if hasattr(cls, "save") else None
        if ckpt is not None and ckpt.exists() and not force and "checkpoint" not in kwargs:
            kwargs["checkpoint"] = str(ckpt)
        if ckpt is not None and progress:
            kwargs.setdefault("progress", True)
        model = cls(**kwargs).fit(context)
        if ckpt is not None and not kwargs.get("checkpoint"):
            model.save(ckpt)
        todo = [u for u in todo if u in context.visible]
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"mining personas ({encoder})", unit="user", disable=not progress)
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            save_personas(ws, split_id, encoder, model.encode(batch))
            bar.update(len(batch))
        bar.close()
    out = {"split": split_id, "encoder": encoder, "mined": len(todo), "already_stored": len(done), "users": len(users)}
    if ckpt is not None:
        out["checkpoint"] = str(ckpt)
    return out


def checkpoint_path(ws: Workspace, split_id: str, encoder: str, kwargs: dict[str, Any]):
    """Where a trained encoder of this split and configuration is kept: ``<workspace dir>/models/``."""
    from pathlib import Path

    from evalbench.store.runs import config_hash

    base = Path(str(ws.path)).parent if str(ws.path) != ":memory:" else Path(".pwb")
    cfg = {k: v for k, v in sorted(kwargs.items()) if k not in ("progress", "checkpoint")}
    return base / "models" / f"{split_id.replace('/', '_')}-{encoder}-{config_hash(cfg)[:12]}.pt"


def get_persona(ws: Workspace, user_id: str, split: str | None = None, encoder: str = "tfidf") -> PersonaCard:
    split_id = resolve_split(ws, split)
    cards = load_personas(ws, split_id, encoder, [user_id])
    if user_id not in cards:
        raise WorkspaceError(f"No {encoder} persona for user {user_id!r} in split {split_id!r}: "
                             f"run `pwb personas mine --split {split_id} --encoder {encoder}` first "
                             "(or check the user id).")
    return cards[user_id]
