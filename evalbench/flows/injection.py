"""The prompt-injection check of a rewriter backend, by name (``pwb rewrite injection``): needs no workspace."""

from __future__ import annotations

from typing import Any


def injection_check(
    backend: str = "template", model: str | None = None, *, options: dict[str, Any] | None = None, shots: int = 3
) -> dict[str, Any]:
    """Plant the prompt-injection corpus in user text (interests, evidence, history), rewrite with ``backend``
    (``model``, backend ``options``) showing ``shots`` history items, and count the outputs that carry an
    injected instruction's canary: :func:`prompting.injection.injection_eval`'s result."""
    from prompting.injection import injection_eval
    from prompting.params import RewriteParams
    from prompting.rewriter import Rewriter

    return injection_eval(Rewriter(backend, model, **(options or {})), params=RewriteParams(shots=shots))
