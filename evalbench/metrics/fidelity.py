"""Fidelity to the prompt: CLIPScore-style text-image alignment.

``prompt_alignment[<clip model>]`` (Hessel et al. 2021, "CLIPScore", arXiv 2104.08718):

.. math::
    \\mathrm{CLIPScore}(c, v) = w \\cdot \\max(\\cos(E_T(c), E_I(v)), 0), \\qquad w = 2.5

averaged over (prompt, image) pairs. It needs one encoder that embeds text and images in the same space,
so only ``clip:<model id or path>`` encoders qualify: the embedded stand-ins (MiniLM for text,
EfficientNet-Lite0 for images) live in different spaces, and a "prompt alignment" between them would be
meaningless, so it is refused rather than faked. Reference alignment (image to image) is
``reference_alignment[<encoder>]`` in :mod:`evalbench.image_runs`; identity similarity is
``workbench.encoders.face.identity_similarity``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CLIPSCORE_W = 2.5


def clip_score(text_embeddings: np.ndarray, image_embeddings: np.ndarray, w: float = CLIPSCORE_W) -> np.ndarray:
    """Per pair ``w * max(cos, 0)`` of row-aligned text and image embeddings (any scale)."""
    t = np.asarray(text_embeddings, dtype=float)
    v = np.asarray(image_embeddings, dtype=float)
    if t.shape != v.shape:
        raise ValueError(f"text and image embeddings must pair row by row, got {t.shape} and {v.shape}")
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return w * np.maximum((t * v).sum(1), 0.0)


@dataclass
class PromptAlignment:
    """Mean CLIPScore of generated images against their prompts.

    Args:
        encoder: ``clip:<model id or path>``, or an object with ``encode_text`` / ``encode_image`` and a
            ``label`` (tests pass a tiny random CLIP).

    Example:
        >>> class Toy:
        ...     label = "toy"
        ...     def encode_text(self, t): return np.array([[1.0, 0.0]] * len(t))
        ...     def encode_image(self, i): return np.array([[1.0, 1.0]] * len(i))
        >>> m = PromptAlignment(Toy()); m.update(["a cat"], ["img"]); round(m.compute(), 4)
        1.7678
    """

    encoder: Any = "clip:openai/clip-vit-base-patch32"
    higher_is_better: bool = field(default=True, init=False)
    values: list[float] = field(default_factory=list, init=False)

    def __post_init__(self):
        if isinstance(self.encoder, str):
            if not self.encoder.startswith("clip:"):
                raise ValueError(
                    f"prompt alignment needs a joint text-image encoder (clip:<model id or path>), not "
                    f"{self.encoder!r}: the embedded stand-ins embed text and images in different spaces"
                )
            from workbench.encoders import load_encoder

            self.encoder = load_encoder(self.encoder)

    @property
    def name(self) -> str:
        return f"prompt_alignment[{self.encoder.label}]"

    def update(self, prompts: Sequence[str], images: Sequence[Any]) -> None:
        if len(prompts) != len(images):
            raise ValueError(f"one prompt per image: got {len(prompts)} prompts and {len(images)} images")
        self.values.extend(
            clip_score(self.encoder.encode_text(list(prompts)), self.encoder.encode_image(list(images))).tolist()
        )

    def compute(self) -> float:
        if not self.values:
            raise ValueError("no pairs: call update() first")
        return float(np.mean(self.values))

    def reset(self) -> None:
        self.values.clear()
