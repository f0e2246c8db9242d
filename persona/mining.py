"""Mine personas for a split's users with a registered encoder and store them."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from persona.models import ENCODERS
from persona.models.base import PersonaContext
from workbench.records import PersonaCard
from workbench.store.datasets import dataset_meta, load_items, load_users
from workbench.store.personas import load_personas, save_personas
from workbench.store.splits import resolve_split, split_dataset, split_record, split_users, visible_interactions
from workbench.store.workspace import Workspace, WorkspaceError, dumps

ROLES = ("train", "heldout", "coldstart")


def load_context(ws: Workspace, split_id: str) -> PersonaContext:
    """Users, items and visible interactions of a split (hidden items are never loaded here)."""
    dataset_id = split_dataset(ws, split_id)
    visible = defaultdict(list)
    for x in visible_interactions(ws, split_id):
        visible[x.user_id].append(x)
    return PersonaContext(
        split_id,
        dataset_id,
        load_users(ws, dataset_id),
        load_items(ws, dataset_id),
        dict(visible),
        dataset_meta(ws, dataset_id),
    )


def persona_set(encoder: str, encoder_kwargs: dict[str, Any] | None = None) -> str:
    """The name a split's personas are stored under: the encoder, plus the options it was given
    (``gat``, ``gat[traits=share]``, ``sage[epochs=3]``), so personas of one encoder made with other
    options sit beside each other instead of answering for each other. Rewrites and benchmark runs
    name their personas by it (``pwb rewrite --encoder 'gat[traits=share]'``).

    >>> persona_set("gat"), persona_set("gat", {"traits": "share", "progress": True})
    ('gat', 'gat[traits=share]')
    """
    extra = {k: v for k, v in sorted((encoder_kwargs or {}).items()) if k not in ("progress", "checkpoint")}
    if not extra:
        return encoder
    return f"{encoder}[{','.join(f'{k}={v}' for k, v in extra.items())}]"


def mine_personas(
    ws: Workspace,
    split: str | None = None,
    encoder: str = "tfidf",
    *,
    roles: tuple[str, ...] = ROLES,
    force: bool = False,
    progress: bool = False,
    encoder_kwargs: dict[str, Any] | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Fit ``encoder`` on the split's visible interactions and store a persona for each user in ``roles``.

    The personas are stored under :func:`persona_set` (the encoder and its options; the result's
    ``encoder``). Users who already have a persona there are skipped unless ``force``. Options that only
    change how cards are written (the encoder's ``card_options``, e.g. ``traits``) reuse the trained
    checkpoint of the same split and training options.
    """
    cls = ENCODERS.get(encoder)
    label = persona_set(encoder, encoder_kwargs)
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise ValueError(f"roles must be among {', '.join(ROLES)}, got {', '.join(bad)}")
    split_id = resolve_split(ws, split)
    users = split_users(ws, split_id, roles)
    done = set() if force else set(load_personas(ws, split_id, label, users))
    todo = [u for u in users if u not in done]
    ckpt, training = None, None
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
        training = _training_note(model, reused=bool(kwargs.get("checkpoint")))
        todo = [u for u in todo if u in context.visible]
        from workbench.progress import progress_bar

        bar = progress_bar(total=len(todo), desc=f"mining personas ({label})", unit="user", disable=not progress)
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            save_personas(ws, split_id, label, model.encode(batch))
            bar.update(len(batch))
        bar.close()
    out = {"split": split_id, "encoder": label, "mined": len(todo), "already_stored": len(done), "users": len(users)}
    if ckpt is not None:
        out["checkpoint"] = str(ckpt)
    if training:
        out["training"] = training
    return out


def _training_note(model, reused: bool) -> str | None:
    """What training did (steps run, why it stopped), for encoders that report it; ``None`` otherwise."""
    report = getattr(model, "report", None)
    if report is None:
        return "reused the checkpoint" if reused else None
    return f"reused the checkpoint: {report.note()}" if reused else report.note()


def checkpoint_path(ws: Workspace, split_id: str, encoder: str, kwargs: dict[str, Any]):
    """Where a trained encoder of this split and configuration is kept: ``<workspace dir>/models/``.

    Options that only change how cards are written (the encoder class's ``card_options``) are not part of
    the key, so ``gat`` and ``gat[traits=share]`` share one trained model; the split's dataset and settings
    are, so a model is never reused for another split of the same name."""
    from pathlib import Path

    from workbench.store.runs import config_hash

    card_options = getattr(ENCODERS.get(encoder), "card_options", ()) if encoder in ENCODERS else ()
    base = Path(str(ws.path)).parent if str(ws.path) != ":memory:" else Path(".pwb")
    cfg = {k: v for k, v in sorted(kwargs.items()) if k not in ("progress", "checkpoint") and k not in card_options}
    # the split's own settings too: two workspaces in one folder may hold different splits of one name
    stored = split_record(ws, split_id)
    if stored is not None:
        cfg["_split"] = [stored[0], dumps(stored[1])]  # the stored text, so existing checkpoints keep their names
    return base / "models" / f"{split_id.replace('/', '_')}-{encoder}-{config_hash(cfg)[:12]}.pt"


def get_persona(ws: Workspace, user_id: str, split: str | None = None, encoder: str = "tfidf") -> PersonaCard:
    split_id = resolve_split(ws, split)
    cards = load_personas(ws, split_id, encoder, [user_id])
    if user_id not in cards:
        raise WorkspaceError(
            f"No {encoder} persona for user {user_id!r} in split {split_id!r}: "
            f"run `pwb personas mine --split {split_id} --encoder {encoder}` first "
            "(or check the user id)."
        )
    return cards[user_id]
