"""CLIP's text and image towers through transformers (``clip:<model id or path>``)."""

from __future__ import annotations

import numpy as np


class ClipEncoder:
    """CLIP's text and image towers through transformers, unit-normalised; ``clip:<model id or path>``.

    On users' machines any Hugging Face CLIP id works (``clip:openai/clip-vit-large-patch14``); here the
    tests load a tiny random CLIP saved to a folder.
    """

    kind = "text+image"

    def __init__(self, name: str):
        from transformers import AutoTokenizer, CLIPModel

        from workbench.encoders.image import _clip_processor_class

        self.model_id = name
        self.label = (
            "clip-" + name.rstrip("/").split("/")[-1]
            if not name.rstrip("/").split("/")[-1].startswith("clip")
            else name.rstrip("/").split("/")[-1]
        )
        self._model = CLIPModel.from_pretrained(name).eval()
        self._tok = AutoTokenizer.from_pretrained(name)
        self._proc = _clip_processor_class().from_pretrained(name)

    @staticmethod
    def _norm(f) -> np.ndarray:
        import torch

        f = (f if isinstance(f, torch.Tensor) else f.pooler_output).float().numpy()
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        import torch

        ids = self._tok(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            return self._norm(self._model.get_text_features(**ids))

    def encode_image(self, images: list) -> np.ndarray:
        import torch

        from workbench.images import load_image

        pix = self._proc(images=[load_image(i) for i in images], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            return self._norm(self._model.get_image_features(pixel_values=pix))
