"""The ``tfidf`` baseline persona encoder.

A user's liked visible items vote for their tags (genres, Stack Exchange tags, image attributes; item
title words where a dataset has no tags). TF-IDF across users turns the counts into weights, so a
trait common to everyone (MovieLens' *Drama*) counts less than a distinctive one (*Film-Noir*):

.. math::
    w_{u,t} = \\frac{c_{u,t}\\,\\mathrm{idf}_t}{\\lVert c_{u}\\,\\mathrm{idf} \\rVert_2},\\qquad
    \\mathrm{idf}_t = 1 + \\ln\\frac{1 + |U|}{1 + |\\{u : c_{u,t} > 0\\}|}

Traits are the top weighted tags; a tag is a dislike when the user's disliked items carry it clearly
more than their liked ones. Evidence ranks liked items by the summed weight of their tags. It is a
baseline: no graph, no learning, no neighbours; the GAT miner is measured against it.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from persona.models.base import PersonaContext, PersonaEncoder
from persona.records import Evidence, PersonaCard
from persona.verbalize import scrub, verbalize

_WORD = re.compile(r"[a-z][a-z'-]{2,}")
_STOP = {"the", "and", "for", "with", "from", "that", "this", "are", "was", "you", "your", "how", "what", "can",
         "not", "but", "all", "its", "into", "about", "when", "why", "which", "who", "will", "has", "have"}


class TfidfPersonaEncoder(PersonaEncoder):
    """TF-IDF over the tags of a user's liked items.

    Args:
        n_traits: Liked traits kept per persona.
        n_dislikes: Disliked traits kept per persona.
        n_evidence: Evidence items kept per persona.
    """

    name = "tfidf"
    version = "1"

    def __init__(self, n_traits: int = 4, n_dislikes: int = 2, n_evidence: int = 3):
        if n_traits < 1:
            raise ValueError(f"n_traits must be >= 1, got {n_traits}")
        if n_dislikes < 0 or n_evidence < 0:
            raise ValueError(f"n_dislikes and n_evidence must be >= 0, got {n_dislikes}, {n_evidence}")
        self.n_traits, self.n_dislikes, self.n_evidence = n_traits, n_dislikes, n_evidence
        self.context: PersonaContext | None = None

    def __repr__(self) -> str:
        return f"TfidfPersonaEncoder(n_traits={self.n_traits}, n_dislikes={self.n_dislikes}, n_evidence={self.n_evidence})"

    def _terms(self, item_id: str) -> list[str]:
        item = self.context.items[item_id]
        if self._use_tags:
            return list(item.tags)
        return [w for w in _WORD.findall(item.title.lower()) if w not in _STOP]

    def fit(self, context: PersonaContext) -> TfidfPersonaEncoder:
        from scipy.sparse import csr_matrix
        from sklearn.feature_extraction.text import TfidfTransformer

        self.context = context
        self._use_tags = any(it.tags for it in context.items.values())
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

    def encode(self, user_ids: list[str]) -> list[PersonaCard]:
        if self.context is None:
            raise RuntimeError("call fit() before encode()")
        ctx = self.context
        cards = []
        noun = ctx.meta.get("item_noun", "items")
        for u in user_ids:
            if u not in self._row:
                raise KeyError(f"user {u!r} has no visible interactions in split {ctx.split_id!r}")
            w, d = self.like_w[self._row[u]], self.dislike_w[self._row[u]]
            top = [i for i in np.argsort(-w, kind="stable")[: self.n_traits] if w[i] > 0]
            traits = [{"name": self.vocab[i], "weight": round(float(w[i]), 4)} for i in top]
            margin = d - w
            bad = [i for i in np.argsort(-margin, kind="stable")[: self.n_dislikes] if margin[i] > 0.15]
            traits += [{"name": self.vocab[i], "weight": -round(float(margin[i]), 4)} for i in bad]
            weight_of = {self.vocab[i]: float(w[i]) for i in np.nonzero(w)[0]}
            scored = []
            for x in ctx.visible[u]:
                if ctx.is_liked(x):
                    s = sum(weight_of.get(t, 0.0) for t in self._terms(x.item_id))
                    scored.append((s, x.value or 0.0, x.item_id))
            scored.sort(key=lambda t: (-t[0], -t[1], t[2]))
            evidence, seen = [], set()
            for s, _, iid in scored:
                if iid in seen:
                    continue
                seen.add(iid)
                evidence.append(Evidence(iid, round(s, 4), scrub(ctx.items[iid].title)))
                if len(evidence) >= self.n_evidence:
                    break
            demo = ctx.demographics(u)
            summary = verbalize(traits, [e.snippet for e in evidence], demo, noun)
            cards.append(PersonaCard(u, summary, traits, evidence, [round(float(v), 5) for v in w],
                                     self.model_version, demo))
        return cards
