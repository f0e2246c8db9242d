"""The ``template`` rewriter: deterministic insertion of persona cues. A baseline, no language model.

``rewritten = "{prompt}, {cue_1}, {cue_2}, {cue_3}"`` with one visual cue per liked trait (from
``prompting/templates/cues.yaml``, else ``"inspired by <trait>"``); ``negative`` lists the cues of
disliked traits.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from prompting.backends.base import PersonaRequest, RewriteRequest, RewriteResult, RewriterBackend
from prompting.guard import sanitize, tag_like


@lru_cache(maxsize=1)
def load_cues() -> dict[str, str]:
    import yaml

    text = resources.files("prompting.templates").joinpath("cues.yaml").read_text(encoding="utf-8")
    return {str(k).lower(): str(v) for k, v in (yaml.safe_load(text) or {}).items()}


class TemplateBackend(RewriterBackend):
    """Deterministic persona-cue insertion.

    Args:
        max_cues: Liked traits turned into cues (>= 1).
        max_negative: Disliked traits turned into negative-prompt cues (>= 0).
    """

    name = "template"

    def __init__(self, max_cues: int = 3, max_negative: int = 2):
        if max_cues < 1:
            raise ValueError(f"max_cues must be >= 1, got {max_cues}")
        if max_negative < 0:
            raise ValueError(f"max_negative must be >= 0, got {max_negative}")
        self.max_cues, self.max_negative = max_cues, max_negative
        self.cues = load_cues()

    @property
    def model(self) -> str:
        return f"template-v1(cues={self.max_cues})"

    def cue(self, trait: str) -> str:
        clean = sanitize(trait, 60)
        return self.cues.get(clean.lower(), f"inspired by {clean}")

    def rewrite_batch(self, requests: list[RewriteRequest], params=None) -> list[RewriteResult]:
        out = []
        for req in requests:
            traits = [t for t in req.persona.traits if t.get("kind", "interest") == "interest" and tag_like(t["name"])]
            likes = [t["name"] for t in traits if t["weight"] > 0][: self.max_cues]
            dislikes = [t["name"] for t in traits if t["weight"] < 0][: self.max_negative]
            prompt = req.prompt.strip().rstrip(".")
            parts = [prompt] + [self.cue(t) for t in likes if sanitize(t, 60)]
            out.append(RewriteResult(", ".join(parts), ", ".join(self.cue(t) for t in dislikes if sanitize(t, 60))))
        return out

    def verbalize_batch(self, requests: list[PersonaRequest]) -> list[str]:
        """The template persona text of :func:`persona.verbalize.verbalize` (top three evidence titles)."""
        from persona.verbalize import verbalize

        out = []
        for req in requests:
            card = req.card
            traits = [t for t in card.traits if t.get("kind", "interest") == "interest" and tag_like(t["name"])]
            titles = [sanitize(e.snippet.split(": ")[0], 80) for e in card.evidence[:3]]
            out.append(verbalize(traits, [t for t in titles if t], card.demographics, req.item_noun))
        return out
