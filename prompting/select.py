"""Candidate selection: of N rewrites of one prompt, keep the one that best fits the user's *visible* history.

The selector reads only the persona card (whose evidence is the user's visible history, ranked by the
encoder) and the candidates' text, so hidden items cannot reach it. It must not share the metric's
encoder either (the benchmark scores with MiniLM and MPNet sentence embeddings): a selector that used the
scorer would grade its own homework. ``tfidf-history`` works in a TF-IDF space instead:

.. math::
    s(c) = \\cos\\big(t(c),\\ \\textstyle\\sum_k w_k\\, t(e_k)\\big)

with :math:`t` the L2-normalised TF-IDF vector of a text (1-2-grams, sublinear tf, the IDF fitted on a
reference corpus: the item catalogue in :func:`prompting.rewriter.rewrite_split`, else the card's own
evidence), :math:`e_k` the card's evidence snippets and :math:`w_k` their evidence weights; :math:`c` is
the candidate without the original prompt (which all candidates share). Ties keep the earlier candidate,
so candidate 0 (what ``candidates=1`` gives) wins unless another fits the history strictly better.
"""

from __future__ import annotations

import numpy as np

from workbench.records import PersonaCard


class TfidfHistorySelector:
    """Scores candidates against the card's evidence in TF-IDF space (see the module docstring).

    Args:
        corpus: Texts the IDF is fitted on (e.g. every item's title and text); ``None``: each card's own
            evidence and candidates.
    """

    name = "tfidf-history"

    def __init__(self, corpus: list[str] | None = None):
        self._vec = self._fit(corpus) if corpus else None

    @staticmethod
    def _fit(texts: list[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english", dtype=np.float64)
        try:
            vec.fit(texts)
        except ValueError:  # no usable terms at all
            return None
        return vec

    def scores(self, card: PersonaCard, prompt: str, candidates: list[str]) -> np.ndarray:
        """One score per candidate (higher fits the visible history better); all zeros without evidence."""
        history = [e.snippet for e in card.evidence if e.snippet]
        if not history or not candidates:
            return np.zeros(len(candidates))
        head = prompt.strip().rstrip(" .,;:")
        added = [c[len(head) :] if head and c.startswith(head) else c for c in candidates]
        vec = self._vec or self._fit(history + added)
        if vec is None:
            return np.zeros(len(candidates))
        from sklearn.preprocessing import normalize

        w = np.array([max(float(e.weight), 0.0) for e in card.evidence if e.snippet])
        w = w if w.sum() > 0 else np.ones(len(history))
        profile = normalize(np.asarray(vec.transform(history).T @ w).reshape(1, -1))
        cand = normalize(vec.transform(added))
        return np.asarray(cand @ profile.T).ravel()

    def choose(self, card: PersonaCard, prompt: str, candidates: list[str]) -> tuple[int, float]:
        """``(index of the best candidate, its score)``; the first of equal scores wins."""
        s = self.scores(card, prompt, candidates)
        k = int(np.argmax(s)) if len(s) else 0
        return k, float(s[k]) if len(s) else 0.0
