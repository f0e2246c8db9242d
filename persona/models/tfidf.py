"""The ``tfidf`` baseline persona encoder.

A user's liked visible items vote for their tags (genres, Stack Exchange tags, image attributes; item
title words where a dataset has no tags). TF-IDF across users turns the counts into weights, so a
trait common to everyone (MovieLens' *Drama*) counts less than a distinctive one (*Film-Noir*):

.. math::
    w_{u,t} = \\frac{c_{u,t}\\,\\mathrm{idf}_t}{\\lVert c_{u}\\,\\mathrm{idf} \\rVert_2},\\qquad
    \\mathrm{idf}_t = 1 + \\ln\\frac{1 + |U|}{1 + |\\{u : c_{u,t} > 0\\}|}

Evidence ranks liked items by the summed weight of their tags (then disliked items by their tags'
dislike weight); the card is written from that ranking as for every encoder
(:func:`persona.evidence.build_card`: distinctive or share traits, cues, keyphrases, telling titles), and
its embedding is the user's TF-IDF row. It is a baseline: no graph, no learning, no neighbours; the GAT
miner is measured against it.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from persona.models.base import PersonaContext, PersonaEncoder
from workbench.records import PersonaCard


class TfidfPersonaEncoder(PersonaEncoder):
    """TF-IDF over the tags of a user's liked items.

    Args:
        n_traits: Liked traits kept per persona.
        n_dislikes: Disliked traits kept per persona.
        n_evidence: Evidence items kept per persona.
        traits: ``distinctive`` (log-odds against the population) or ``share``; see :mod:`persona.traits`.
        recency_half_life: Recency prior on the evidence weights, in interactions (default 4; ``off``: none).
    """

    name = "tfidf"
    version = "2"

    def __init__(
        self,
        n_traits: int = 4,
        n_dislikes: int = 2,
        n_evidence: int = 3,
        traits: str = "distinctive",
        recency_half_life: float | None = None,
    ):
        from persona.evidence import DEFAULT_HALF_LIFE
        from persona.models.gat import _half_life
        from persona.traits import check_mode

        if n_traits < 1:
            raise ValueError(f"n_traits must be >= 1, got {n_traits}")
        if n_dislikes < 0 or n_evidence < 0:
            raise ValueError(f"n_dislikes and n_evidence must be >= 0, got {n_dislikes}, {n_evidence}")
        self.n_traits, self.n_dislikes, self.n_evidence = n_traits, n_dislikes, n_evidence
        self.traits = check_mode(traits)
        self.recency_half_life = DEFAULT_HALF_LIFE if recency_half_life is None else _half_life(recency_half_life)
        self.context: PersonaContext | None = None

    def __repr__(self) -> str:
        return (
            f"TfidfPersonaEncoder(n_traits={self.n_traits}, n_dislikes={self.n_dislikes}, n_evidence={self.n_evidence}, "
            f"traits={self.traits!r})"
        )

    def _terms(self, item_id: str) -> tuple[str, ...]:
        from persona.traits import item_terms

        return item_terms(self.context, item_id)

    def fit(self, context: PersonaContext) -> TfidfPersonaEncoder:
        from scipy.sparse import csr_matrix
        from sklearn.feature_extraction.text import TfidfTransformer

        self.context = context
        self.users = sorted(context.visible)
        vocab: dict[str, int] = {}
        likes, dislikes = [], []
        for u in self.users:
            lc, dc = Counter(), Counter()
            for x in context.visible[u]:
                terms = self._terms(x.item_id)
                if context.is_liked(x):
                    lc.update(terms)
                elif context.is_disliked(x):
                    dc.update(terms)
            for t in list(lc) + list(dc):
                vocab.setdefault(t, len(vocab))
            likes.append(lc)
            dislikes.append(dc)
        self.vocab = sorted(vocab)
        if not self.vocab:
            from workbench.errors import WorkbenchError

            raise WorkbenchError(
                f"tfidf found no terms to weigh in split {context.split_id!r}: no liked or disliked visible "
                "interaction is on an item with tags or title words.",
                field="encoder",
                fix="Give the items tags or titles (`pwb data import table --item-tags-col/--item-title-col`, or "
                "`--into DATASET --items-file ...`), check --like-threshold, or mine with --encoder gat.",
            )
        index = {t: i for i, t in enumerate(self.vocab)}

        def matrix(counters):
            rows, cols, vals = [], [], []
            for r, c in enumerate(counters):
                for t, n in c.items():
                    rows.append(r), cols.append(index[t]), vals.append(n)
            return csr_matrix((vals, (rows, cols)), shape=(len(counters), len(self.vocab)), dtype=float)

        self._tfidf = TfidfTransformer(smooth_idf=True, sublinear_tf=True)
        self.like_w = self._tfidf.fit_transform(matrix(likes)).toarray()
        self.dislike_w = self._tfidf.transform(matrix(dislikes)).toarray()
        self._row = {u: i for i, u in enumerate(self.users)}
        return self

    def ranked(self, user_id: str) -> list[tuple[str, float]]:
        """The user's visible items as ``(item_id, weight)``, best first: liked items by the summed TF-IDF
        weight of their terms, then disliked items by their terms' dislike weight (ties: higher value,
        then item id)."""
        ctx = self.context
        r = self._row[user_id]
        like = {self.vocab[i]: float(self.like_w[r, i]) for i in np.nonzero(self.like_w[r])[0]}
        dislike = {self.vocab[i]: float(self.dislike_w[r, i]) for i in np.nonzero(self.dislike_w[r])[0]}
        liked, disliked, seen = [], [], set()
        for x in ctx.visible[user_id]:
            if x.item_id in seen:
                continue
            seen.add(x.item_id)
            terms = self._terms(x.item_id)
            if ctx.is_liked(x):
                liked.append((sum(like.get(t, 0.0) for t in terms), x.value or 0.0, x.item_id))
            elif ctx.is_disliked(x):
                disliked.append((sum(dislike.get(t, 0.0) for t in terms), -(x.value or 0.0), x.item_id))
        out = []
        for group in (liked, disliked):
            group.sort(key=lambda t: (-t[0], -t[1], t[2]))
            out += [(iid, s) for s, _, iid in group]
        return out

    def encode(self, user_ids: list[str]) -> list[PersonaCard]:
        from persona.evidence import build_card
        from persona.traits import population_of

        if self.context is None:
            raise RuntimeError("call fit() before encode()")
        ctx = self.context
        pop = population_of(ctx)
        cards = []
        for u in user_ids:
            if u not in self._row:
                raise KeyError(f"user {u!r} has no visible interactions in split {ctx.split_id!r}")
            cards.append(
                build_card(
                    ctx,
                    u,
                    self.ranked(u),
                    [round(float(v), 5) for v in self.like_w[self._row[u]]],
                    self.model_version,
                    traits=self.traits,
                    n_traits=self.n_traits,
                    n_dislikes=self.n_dislikes,
                    n_evidence=self.n_evidence,
                    recency_half_life=self.recency_half_life,
                    population=pop,
                )
            )
        return cards
