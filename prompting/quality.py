"""Quality of stored rewrites without images: subject preservation, persona alignment, fallbacks.

Per (backend, model) over a split's stored rewrites, with the embedded MiniLM text encoder:

* ``subject``: mean cosine similarity of rewrite and original prompt; ``subject_kept``: the share at or
  above :data:`prompting.guard.SUBJECT_MIN_SIMILARITY`;
* ``persona_alignment``: mean of cos(rewrite, persona) - cos(prompt, persona), how far the rewrite moved
  towards the user's first-person persona text;
* ``fallback_rate``: share of rewrites where the template replaced the model's output; ``mean_words``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rewrite_quality(
    ws, split: str | None = None, *, encoder: str = "tfidf", backend: str | None = None, prompts: str = "parti36"
) -> list[dict[str, Any]]:
    """One row per stored ``(backend, model)`` (only ``backend``'s when given) of the split's rewrites of
    ``encoder`` personas for ``prompts``: the measures of the module docstring."""
    from prompting.guard import SUBJECT_MIN_SIMILARITY
    from prompting.messages import first_person
    from workbench.encoders.text import load_text_encoder
    from workbench.store.personas import load_personas
    from workbench.store.prompts import register_prompt_set
    from workbench.store.rewrites import RewriteKey, rewrites_by_model
    from workbench.store.splits import resolve_split
    from workbench.store.workspace import WorkspaceError

    split_id = resolve_split(ws, split)
    prompt_set = register_prompt_set(ws, prompts) if not ws.read_only else prompts
    rows = rewrites_by_model(ws, RewriteKey(split_id, encoder, backend or None, prompt_set=prompt_set))
    if not rows:
        raise WorkspaceError(
            f"No stored rewrites of {encoder} personas for prompt set {prompt_set!r} in split {split_id!r}: "
            f"run `pwb rewrite --split {split_id} --encoder {encoder}` first."
        )
    cards = load_personas(ws, split_id, encoder, sorted({r[2] for r in rows}))
    enc = load_text_encoder("minilm")
    out = []
    groups: dict[tuple[str, str], list[tuple]] = {}
    for r in rows:
        groups.setdefault((r[0], r[1]), []).append(r)
    for (b, m), rs in groups.items():
        p = enc.encode([r[3] for r in rs])
        w = enc.encode([r[4] for r in rs])
        persona = enc.encode([first_person(cards[r[2]]) if r[2] in cards else "" for r in rs])
        subject = (p * w).sum(1)
        align = (w * persona).sum(1) - (p * persona).sum(1)
        out.append(
            {
                "backend": b,
                "model": m,
                "rewrites": len(rs),
                "subject": float(subject.mean()),
                "subject_kept": float((subject >= SUBJECT_MIN_SIMILARITY).mean()),
                "persona_alignment": float(align.mean()),
                "fallback_rate": float(np.mean([1.0 if r[5] else 0.0 for r in rs])),
                "mean_words": float(np.mean([len(r[4].split()) for r in rs])),
            }
        )
    return out
