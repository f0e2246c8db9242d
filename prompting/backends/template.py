"""The ``template`` rewriter: deterministic insertion of persona cues. A baseline, no language model.

``rewritten = "{prompt}, in the spirit of {title_1}, {title_2} and {title_3}, {cue_1}, {cue_2}, {cue_3}, {phrase}"``:

* titles: the card's most telling liked items (``kind: "title"`` traits, :func:`persona.traits.telling_items`);
* cues: one visual cue per liked interest, in the card's order (distinctive first on ``traits:
  distinctive`` cards): the card's ``cue`` trait for it, else ``persona/cues.yaml``, else ``"inspired by <trait>"``;
* phrases: the card's distinctive keyphrases (``kind: "keyphrase"``).

``negative`` lists the cues of disliked interests. Only tag-shaped names are used verbatim
(:func:`prompting.guard.tag_like`); titles and phrases are sanitised. Cards from before the open cue
vocabulary (interests only) give ``"{prompt}, {cue_1}, ..."`` as they always did.

Candidates (:meth:`TemplateBackend.candidates_batch`): different subsets of the same cues (which
titles, how many interest cues, which phrase), so a selector can keep the one that best fits the user.
"""

from __future__ import annotations

import itertools

from persona.traits import load_cues
from prompting.backends.base import PersonaRequest, RewriterBackend, RewriteRequest, RewriteResult
from workbench.scrub import sanitize, tag_like


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


class TemplateBackend(RewriterBackend):
    """Deterministic persona-cue insertion.

    Args:
        max_cues: Liked interests turned into cues (>= 1).
        max_negative: Disliked interests turned into negative-prompt cues (>= 0).
        max_titles: Telling titles named (``in the spirit of ...``; >= 0).
        max_phrases: Distinctive keyphrases appended (>= 0).
    """

    name = "template"

    def __init__(self, max_cues: int = 3, max_negative: int = 2, max_titles: int = 3, max_phrases: int = 1):
        if max_cues < 1:
            raise ValueError(f"max_cues must be >= 1, got {max_cues}")
        for field, value in (("max_negative", max_negative), ("max_titles", max_titles), ("max_phrases", max_phrases)):
            if value < 0:
                raise ValueError(f"{field} must be >= 0, got {value}")
        self.max_cues, self.max_negative = max_cues, max_negative
        self.max_titles, self.max_phrases = max_titles, max_phrases
        self.cues = load_cues()

    @property
    def model(self) -> str:
        return f"template-v2(cues={self.max_cues},titles={self.max_titles},phrases={self.max_phrases})"

    def cue(self, trait: str, card_cues: dict[str, str] | None = None) -> str:
        clean = sanitize(trait, 60)
        if card_cues and clean in card_cues:
            return card_cues[clean]
        return self.cues.get(clean.lower(), f"inspired by {clean}")

    def parts(self, req: RewriteRequest) -> tuple[str, list[str], list[str], list[str], str]:
        """``(prompt, titles, interest cues, phrases, negative)``, each list best first and cleaned."""
        traits = req.persona.traits
        interests = [t for t in traits if t.get("kind", "interest") == "interest" and tag_like(t["name"])]
        card_cues = {
            sanitize(t.get("from", ""), 60): sanitize(t["name"], 80)
            for t in traits
            if t.get("kind") == "cue" and t.get("from")
        }
        likes = [t["name"] for t in interests if t["weight"] > 0 and sanitize(t["name"], 60)]
        dislikes = [t["name"] for t in interests if t["weight"] < 0 and sanitize(t["name"], 60)][: self.max_negative]
        titles = list(dict.fromkeys(s for t in traits if t.get("kind") == "title" and (s := sanitize(t["name"], 80))))
        phrases = list(
            dict.fromkeys(s for t in traits if t.get("kind") == "keyphrase" and (s := sanitize(t["name"], 60)))
        )
        prompt = req.prompt.strip().rstrip(" .,;:") or req.prompt.strip()
        return (
            prompt,
            titles,
            [self.cue(t, card_cues) for t in likes],
            phrases,
            ", ".join(self.cue(t, card_cues) for t in dislikes),
        )

    @staticmethod
    def compose(prompt: str, titles: list[str], cues: list[str], phrases: list[str]) -> str:
        parts = [prompt]
        if titles:
            parts.append("in the spirit of " + _join(titles))
        parts += list(dict.fromkeys(cues))
        parts += [p for p in phrases if p not in parts]
        return ", ".join(p.strip().rstrip(",;:").strip() for p in parts if p.strip().rstrip(",;:").strip())

    def rewrite_batch(self, requests: list[RewriteRequest], params=None) -> list[RewriteResult]:
        out = []
        for req in requests:
            prompt, titles, cues, phrases, negative = self.parts(req)
            text = self.compose(prompt, titles[: self.max_titles], cues[: self.max_cues], phrases[: self.max_phrases])
            out.append(RewriteResult(text, negative))
        return out

    def candidates_batch(self, requests: list[RewriteRequest], params=None, n: int = 1) -> list[list[RewriteResult]]:
        """Up to ``n`` different rewrites per request, the :meth:`rewrite_batch` one first; the others use
        other subsets of the card's titles (from its top five), fewer interest cues and other phrases, in
        an order fixed by ``params.seed``."""
        import numpy as np

        seed = getattr(params, "seed", 0) or 0
        firsts = self.rewrite_batch(requests)
        out = []
        for req, first in zip(requests, firsts):
            prompt, titles, cues, phrases, negative = self.parts(req)
            k = min(self.max_titles, len(titles))
            subsets = list(itertools.combinations(titles[:5], k)) if k else [()]
            n_cues = sorted({min(self.max_cues, len(cues)), max(1, min(self.max_cues, len(cues)) - 1), 1}, reverse=True)
            n_cues = [c for c in n_cues if c <= len(cues)] or [0]
            kp = [tuple(phrases[j : j + self.max_phrases]) for j in range(0, max(1, min(len(phrases), 4)))] or [()]
            if self.max_phrases == 0:
                kp = [()]
            combos = list(itertools.product(subsets, n_cues, kp))
            order = np.random.default_rng(seed).permutation(len(combos)) if len(combos) > 1 else [0]
            texts = [first.rewritten]
            for j in order:
                if len(texts) >= n:
                    break
                t, c, p = combos[int(j)]
                text = self.compose(prompt, list(t), cues[:c], list(p))
                if text not in texts:
                    texts.append(text)
            out.append([RewriteResult(t, negative) for t in texts])
        return out

    def verbalize_batch(self, requests: list[PersonaRequest]) -> list[str]:
        """The template persona text of :func:`persona.verbalize.verbalize_card`."""
        from persona.verbalize import verbalize_card

        return [verbalize_card(req.card, req.item_noun) for req in requests]
