"""Cold start: a persona for a user the model never saw, in one inductive forward pass.

PersonaGAT has no per-user parameters: a user's embedding is a function of their demographics and
their edges to items, given the item states :math:`i^{(0)}, i^{(1)}` of the trained graph. So a new
user costs one pass over their own few edges (no retraining, no graph rebuild); an existing user's
cold-start embedding equals their full-graph embedding (tested).

Two ways in:

* :meth:`ColdStart.persona` from a few interactions (``Interaction`` records, ids of known items);
* :meth:`ColdStart.from_survey` from intake-survey answers: each option of a :class:`Survey` question
  maps to catalogue items (treated as liked) or to traits (added to the card with unit weight).

:func:`evalbench.flows.coldstart.coldstart_curve` measures persona quality against the number of known
interactions ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workbench.records import Interaction, PersonaCard


@dataclass
class SurveyOption:
    label: str
    items: list[str] = field(default_factory=list)
    traits: list[str] = field(default_factory=list)


@dataclass
class SurveyQuestion:
    qid: str
    text: str
    options: list[SurveyOption]
    multiple: bool = True


@dataclass
class Survey:
    """A short intake question set. ``answers`` map question id to chosen option labels."""

    questions: list[SurveyQuestion]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Survey:
        """From ``{"questions": [{"id", "text", "options": [{"label", "items": [...], "traits": [...]}]}]}``."""
        qs = []
        for k, q in enumerate(data.get("questions") or []):
            if "id" not in q or "options" not in q:
                raise ValueError(f"survey question {k} needs 'id' and 'options'")
            opts = [
                SurveyOption(
                    str(o["label"]), [str(i) for i in o.get("items", [])], [str(t) for t in o.get("traits", [])]
                )
                for o in q["options"]
            ]
            qs.append(SurveyQuestion(str(q["id"]), str(q.get("text", q["id"])), opts, bool(q.get("multiple", True))))
        if not qs:
            raise ValueError("a survey needs at least one question under 'questions'")
        return cls(qs)

    def resolve(self, answers: dict[str, list[str] | str]) -> tuple[list[str], list[str]]:
        """``(item ids, traits)`` chosen by ``answers``; unknown questions or options raise ``ValueError``."""
        by_id = {q.qid: q for q in self.questions}
        items, traits = [], []
        for qid, chosen in answers.items():
            if qid not in by_id:
                raise ValueError(f"unknown survey question {qid!r}; questions: {', '.join(by_id)}")
            chosen = [chosen] if isinstance(chosen, str) else list(chosen)
            q = by_id[qid]
            if not q.multiple and len(chosen) > 1:
                raise ValueError(f"question {qid!r} takes one answer, got {len(chosen)}")
            labels = {o.label: o for o in q.options}
            for c in chosen:
                if c not in labels:
                    raise ValueError(f"question {qid!r} has no option {c!r}; options: {', '.join(labels)}")
                items.extend(labels[c].items)
                traits.extend(labels[c].traits)
        return list(dict.fromkeys(items)), list(dict.fromkeys(traits))


def default_survey(context, n_options: int = 8, items_per_option: int = 3) -> Survey:
    """One "which do you enjoy?" question over the catalogue's most common tags (scrubbed of personal
    identifiers: :func:`workbench.scrub.scrub_terms`), each option mapped to the tag's most engaged-with
    items (by visible likes)."""
    from collections import Counter

    from persona.traits import population_of
    from workbench.scrub import scrub_terms

    likes = population_of(context).item_likes  # liked visible interactions per item, however the split was read
    terms = {i: scrub_terms(tuple(it.tags)) for i, it in context.items.items()}
    tag_count = Counter(t for ts in terms.values() for t in ts)
    opts = []
    for tag, _ in tag_count.most_common(n_options):
        top = sorted((i for i, ts in terms.items() if tag in ts), key=lambda i: (-likes.get(i, 0), i))
        opts.append(SurveyOption(tag, top[:items_per_option], [tag]))
    noun = context.meta.get("item_noun", "items")
    return Survey([SurveyQuestion("tastes", f"Which kinds of {noun} do you enjoy?", opts)])


class ColdStart:
    """One-pass personas for new users from a fitted ``gat`` / ``sage`` encoder."""

    def __init__(self, encoder):
        if not hasattr(encoder, "emb") or not hasattr(encoder, "graph"):
            raise TypeError("ColdStart needs a fitted gat, gat-noalign or sage encoder (call .fit first)")
        self.enc = encoder
        self.graph = encoder.graph
        self.item_pos = self.graph.item_index

    def embed(self, interactions: list[Interaction], attributes: dict[str, Any] | None = None):
        """``(embedding (D,), [(item_id, weight), ...] best first)`` for one user."""
        import torch

        from persona.graph import edge_features, user_features

        ctx, g = self.enc.context, self.graph
        known = [x for x in interactions if x.item_id in self.item_pos]
        if not known:
            raise ValueError("none of the interactions names a known item; pass ids from the catalogue")
        cols, attrs, liked, disliked = edge_features(ctx, known, g.kinds, g.t_range, self.item_pos)
        demo = {k: v for k, v in (attributes or {}).items() if k in ctx.meta.get("demographics", [])}
        x_user = torch.from_numpy(user_features(demo, g.demo_values, len(cols)))[None]
        cols_t = torch.tensor(cols, dtype=torch.long)
        # only this user's items enter the pass: the convolutions project every source row they are given,
        # so slicing the item states first (and renumbering the edges) gives the same result at a fraction
        # of the cost on a large catalogue
        local = torch.arange(len(cols), dtype=torch.long)
        iu = torch.stack([local, torch.zeros_like(local)])
        model = self.enc.model
        with torch.inference_mode():
            h, alpha = model.users(
                x_user,
                self.enc.emb.i0[cols_t],
                self.enc.emb.i1[cols_t],
                iu,
                torch.tensor(attrs, dtype=torch.float32),
                torch.tensor(liked),
                torch.tensor(disliked),
                attention=model.attentive,
            )
        if alpha is None:
            alpha = torch.softmax(torch.tensor([a[0] + 2 * a[1] for a in attrs]), 0)
        ranked = sorted(((g.item_ids[c], float(w)) for c, w in zip(cols, alpha.tolist())), key=lambda t: (-t[1], t[0]))
        return h[0].numpy(), ranked

    def persona(
        self,
        user_id: str,
        interactions: list[Interaction],
        attributes: dict[str, Any] | None = None,
        *,
        extra_traits: list[str] | None = None,
        backend=None,
    ) -> PersonaCard:
        """A PersonaCard for a new user from a few interactions (and optional declared attributes); survey
        traits are scrubbed of personal identifiers like every other part of the card (:mod:`workbench.scrub`)."""
        from persona.evidence import build_card
        from persona.models.base import PersonaContext
        from workbench.records import User

        ctx = self.enc.context
        demo_keys = ctx.meta.get("demographics", [])
        user = User(user_id, {k: v for k, v in (attributes or {}).items() if k in demo_keys})
        local = PersonaContext(
            ctx.split_id,
            ctx.dataset_id,
            {user_id: user},
            ctx.items,
            {user_id: [x for x in interactions if x.item_id in self.item_pos]},
            ctx.meta,
        )
        h, ranked = self.embed(interactions, attributes)
        from persona.traits import population_of

        card = build_card(
            local,
            user_id,
            ranked,
            [round(float(v), 5) for v in h],
            f"{self.enc.model_version}+coldstart",
            traits=getattr(self.enc, "traits", "distinctive"),
            n_traits=self.enc.n_traits,
            token_budget=self.enc.token_budget,
            population=population_of(ctx),
            recency_half_life=getattr(self.enc, "recency_half_life", None),
            backend=backend,
        )
        if extra_traits:
            from workbench.scrub import scrub_card

            extra = list(dict.fromkeys(extra_traits))
            card.traits = [{"name": t, "weight": 1.0, "kind": "interest", "from": "survey"} for t in extra] + [
                t for t in card.traits if not (t.get("kind", "interest") == "interest" and t["name"] in extra)
            ]
            from persona.evidence import verbalize_cards

            verbalize_cards([card], backend, item_noun=ctx.meta.get("item_noun", "items"))
            card = scrub_card(card)  # the survey traits and the new text (build_card scrubbed the rest)
        return card

    def from_survey(
        self,
        user_id: str,
        survey: Survey,
        answers: dict[str, Any],
        attributes: dict[str, Any] | None = None,
        *,
        backend=None,
    ) -> PersonaCard:
        """A PersonaCard from intake-survey answers (chosen items count as liked interactions)."""
        items, traits = survey.resolve(answers)
        like = self.enc.context.meta.get("like_threshold")
        xs = [
            Interaction(user_id, i, "survey", float(like) if like is not None else None)
            for i in items
            if i in self.item_pos
        ]
        if not xs:
            raise ValueError("the answers map to no catalogue items; choose at least one option with items")
        return self.persona(user_id, xs, attributes, extra_traits=traits, backend=backend)
