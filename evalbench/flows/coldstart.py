"""Cold start: loading a trained graph encoder for new users (the CLI and the API share it), and the
cold-start curve, persona quality of held-out users seen as new users with only ``k`` known interactions.

Loading has two halves so a server holds the workspace only while it reads: :func:`read_coldstart`
(the split's catalogue, visible interactions and the checkpoint's path, from an open workspace) and
:func:`load_coldstart` (the encoder fitted from its checkpoint, the intake survey; no workspace).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from persona.coldstart import ColdStart, Survey, default_survey
from workbench.records import Interaction


@dataclass(frozen=True)
class ColdStartSource:
    """What cold start reads from the workspace: the split's context (users, items, visible interactions)
    and where the trained encoder of these settings is kept."""

    split_id: str
    encoder: str
    encoder_kwargs: dict[str, Any]
    context: Any  # persona.models.base.PersonaContext
    checkpoint: Path

    @property
    def trained(self) -> bool:
        """Whether ``pwb personas mine`` has trained this encoder (with these settings) on the split."""
        return self.checkpoint.exists()

    def survey(self) -> Survey:
        """The default intake survey over this split's catalogue (needs no trained model)."""
        return default_survey(self.context)


@dataclass
class ColdStartModel:
    """A trained encoder ready for new users: ``maker`` makes one-pass personas, ``survey`` is the intake
    survey, ``items`` the catalogue ids and ``like`` the value a plain "liked" interaction gets."""

    split_id: str
    encoder: str
    maker: ColdStart
    survey: Survey
    items: frozenset[str]
    like: float | None

    def interactions(
        self, user_id: str, rows: list[tuple[str, str, float | None]]
    ) -> tuple[list[Interaction], list[str]]:
        """``(interactions with catalogue items, ids not in the catalogue)`` from ``(item_id, kind, value)``
        rows; a missing value counts as liked."""
        known = [
            Interaction(user_id=user_id, item_id=i, kind=kind, value=self.like if value is None else value)
            for i, kind, value in rows
            if i in self.items
        ]
        return known, [i for i, _, _ in rows if i not in self.items]

    def answered(self, user_id: str, answers: dict[str, Any]) -> tuple[list[Interaction], list[str]]:
        """``(interactions with the chosen options' catalogue items, the options' traits)`` for intake-survey
        answers; an unknown question or option, or two answers to a one-answer question, is ``ValueError``."""
        items, traits = self.survey.resolve(answers)
        return [
            Interaction(user_id=user_id, item_id=i, kind="survey", value=self.like) for i in items if i in self.items
        ], traits


def read_coldstart(
    ws, split: str | None = None, encoder: str = "gat", encoder_kwargs: dict[str, Any] | None = None
) -> ColdStartSource:
    """The split's context and the checkpoint path of ``encoder`` with ``encoder_kwargs`` (``split``: the only
    split when ``None``). When mining kept the model's item states beside its checkpoint, the context is the
    catalogue and the population alone (:func:`_catalogue_context`), whatever the number of users."""
    from persona.mining import checkpoint_path, load_context
    from workbench.store.splits import resolve_split

    split_id = resolve_split(ws, split)
    kwargs = dict(encoder_kwargs or {})
    ckpt = checkpoint_path(ws, split_id, encoder, kwargs)
    context = _catalogue_context(ws, split_id, ckpt) or load_context(ws, split_id)
    return ColdStartSource(split_id=split_id, encoder=encoder, encoder_kwargs=kwargs, context=context, checkpoint=ckpt)


def _catalogue_context(ws, split_id: str, checkpoint: Path):
    """A context of the catalogue alone (no users, no interactions) with the split's population, when mining kept
    the model's item states beside ``checkpoint`` (:func:`persona.models.gat.save_item_states`); ``None``
    otherwise. A new user needs nothing else, so a split of millions of users loads in seconds."""
    from persona.models.base import PersonaContext
    from persona.models.gat import load_item_states
    from persona.traits import population_from
    from workbench.store.datasets import dataset_meta, load_items
    from workbench.store.splits import split_dataset

    if not checkpoint.exists():
        return None
    states = load_item_states(checkpoint)
    if states is None:
        return None
    d = split_dataset(ws, split_id)
    ctx = PersonaContext(split_id, d, {}, load_items(ws, d), {}, dataset_meta(ws, d))
    if sorted(ctx.items) != states["item_ids"]:
        return None
    pop = states["population"]
    ctx.cache["population"] = population_from(ctx, pop["likes"], [tuple(x) for x in pop["said"]])
    ctx.cache["item_states"] = states
    return ctx


def load_coldstart(source: ColdStartSource, *, torch_threads: int | None = None) -> ColdStartModel:
    """The trained encoder fitted from its checkpoint (seconds), with the intake survey and the catalogue.

    Raises ``FileNotFoundError`` naming the ``pwb personas mine`` command when the split has no checkpoint of
    these settings."""
    from persona.models import ENCODERS

    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    if not source.trained:
        raise FileNotFoundError(
            f"no trained {source.encoder} model for split {source.split_id!r}: run `pwb personas "
            f"mine --split {source.split_id} --encoder {source.encoder}` first"
        )
    cls = ENCODERS.get(source.encoder)
    states = source.context.cache.get("item_states")
    if states is not None:  # the catalogue and the kept item states: no pass over the split's users
        enc = cls.from_item_states(source.context, states, checkpoint=str(source.checkpoint), **source.encoder_kwargs)
    else:
        enc = cls(checkpoint=str(source.checkpoint), **source.encoder_kwargs).fit(source.context)
    ctx = source.context
    return ColdStartModel(
        split_id=source.split_id,
        encoder=source.encoder,
        maker=ColdStart(enc),
        survey=source.survey(),
        items=frozenset(ctx.items),
        like=ctx.meta.get("like_threshold"),
    )


def coldstart_curve(
    ws,
    split: str | None = None,
    encoder: str = "gat",
    *,
    ks: tuple[int, ...] = (1, 3, 5, 10),
    prompts: str = "parti36",
    encoder_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Persona quality of held-out users seen as *new* users with only their first ``k`` interactions.

    The encoder is fitted on the split without the held-out users' edges (they are truly unseen);
    each held-out user then gets a one-pass persona from their ``k`` oldest visible interactions. Per
    ``k``: link AUC of hidden liked vs hidden negatives, and the ``text_preference[minilm]`` lift and
    win rate of template rewrites of ``prompts`` over the generic prompts (user-bootstrap CIs).
    """
    from sklearn.metrics import roc_auc_score

    from evalbench.metrics.preference import cluster_mean_ci, preference_margin, win
    from persona.mining import load_context
    from persona.models import ENCODERS
    from prompting.backends.base import RewriteRequest
    from prompting.backends.template import TemplateBackend
    from workbench.encoders.text import load_text_encoder
    from workbench.store.prompts import load_prompts, register_prompt_set
    from workbench.store.splits import hidden_targets, resolve_split, split_users

    split_id = resolve_split(ws, split)
    held = split_users(ws, split_id, ("heldout",))
    full = load_context(ws, split_id)
    held = [u for u in held if u in full.visible]
    train_ctx = replace(full, visible={u: xs for u, xs in full.visible.items() if u not in set(held)}, cache={})
    enc = ENCODERS.get(encoder)(seed=seed, **(encoder_kwargs or {})).fit(train_ctx)
    cs = ColdStart(enc)
    targets = hidden_targets(ws, split_id, held)
    text = load_text_encoder("minilm")
    prompt_rows = load_prompts(ws, register_prompt_set(ws, prompts))
    generic = text.encode([p for _, p in prompt_rows])
    backend = TemplateBackend()
    items = full.items
    out = []
    from workbench.progress import progress_bar

    for k in ks:
        aucs, lifts, wins, users = [], [], [], []
        for u in progress_bar(held, desc=f"cold start k={k}", unit="user", disable=not progress):
            t = targets.get(u, {})
            liked, negs = t.get("liked", []), t.get("disliked", []) + t.get("unseen", [])
            if not liked or not negs:
                continue
            card = cs.persona(u, full.visible[u][:k], full.users[u].attributes, backend=backend)
            h = np.asarray(card.embedding, dtype=np.float32)
            cand = liked + negs
            idx = [cs.item_pos[i] for i in cand]
            s = enc.emb.i1[idx].numpy() @ h + enc.emb.bias[idx].numpy()
            aucs.append(roc_auc_score([1] * len(liked) + [0] * len(negs), s))
            rewrites = [r.rewritten for r in backend.rewrite_batch([RewriteRequest(card, p) for _, p in prompt_rows])]
            le = text.encode([items[i].text or items[i].title for i in liked])
            ne = text.encode([items[i].text or items[i].title for i in negs])
            lift = preference_margin(text.encode(rewrites), le, ne) - preference_margin(generic, le, ne)
            lifts.append(float(lift.mean()))
            wins.append(float(win(lift).mean()))
            users.append(u)
        uu = np.array(users)
        row = {"k": k, "users": len(users)}
        for name, vals in (("link_auc", aucs), ("lift", lifts), ("win_rate", wins)):
            m, lo, hi = cluster_mean_ci(np.array(vals), uu, seed=seed)
            row.update({name: m, f"{name}_low": lo, f"{name}_high": hi})
        out.append(row)
    return out
