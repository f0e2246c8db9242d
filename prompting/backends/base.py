"""The interface every rewriter backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.records import PersonaCard, PersonaRequest


@dataclass
class RewriteRequest:
    """One prompt to rewrite for one persona.

    Args:
        persona: The user's persona card.
        prompt: The generic prompt.
        history: Titles of items the user engaged with (k-shot context for LLM backends).
    """

    persona: PersonaCard
    prompt: str
    history: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"prompt must be a non-empty string, got {self.prompt!r}")


@dataclass
class RewriteResult:
    """A backend's answer; ``fallback`` says why the template baseline replaced the model's output."""

    rewritten: str
    negative: str = ""
    fallback: str = ""


class RewriterBackend:
    """Rewrites prompts from a persona's perspective. ``rewrite_batch`` takes and returns lists."""

    name = "base"

    @property
    def model(self) -> str:
        return self.name

    def rewrite_batch(self, requests: list[RewriteRequest], params=None) -> list[RewriteResult]:
        """Rewrite each request; ``params`` is a :class:`prompting.params.RewriteParams` (or ``None``)."""
        raise NotImplementedError

    def candidates_batch(self, requests: list[RewriteRequest], params=None, n: int = 1) -> list[list[RewriteResult]]:
        """Up to ``n`` rewrites per request (``[request][candidate]``), candidate 0 being
        :meth:`rewrite_batch`'s. Default: ``n`` batches with :meth:`RewriteParams.for_candidate`'s settings
        (other seeds, sampling on); a backend with a cheaper way overrides it."""
        from prompting.params import RewriteParams

        params = params or RewriteParams()
        rounds = [self.rewrite_batch(requests, params.for_candidate(j)) for j in range(n)]
        return [[rounds[j][i] for j in range(n)] for i in range(len(requests))]

    def verbalize_batch(self, requests: list[PersonaRequest]) -> list[str]:
        """Persona text for each card. Language-model backends send :func:`prompting.guard.persona_messages`."""
        raise NotImplementedError(f"the {self.name} backend cannot verbalise personas")
