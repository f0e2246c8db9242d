"""Pick reference images from a pool by similarity to a (rewritten) prompt.

Two encoders:

- ``caption-minilm`` (embedded, offline; a stand-in): each pool image is represented by its caption
  (given, or its file name with ``_``/``-`` as spaces), embedded with MiniLM like the prompt. It matches
  words, not pixels, and is named so.
- ``clip:<model id or path>``: CLIP's text and image towers (transformers), the real thing, on users'
  machines (tested here with a tiny random CLIP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class PoolImage:
    image: Any  # path or PIL image
    caption: str


def load_pool(source: Any) -> list[PoolImage]:
    """A pool from a folder (captions from ``captions.tsv`` — ``file<TAB>caption`` — or file names), a
    mapping caption -> image, or a list of :class:`PoolImage` / ``(image, caption)`` pairs."""
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"image pool {str(source)!r} is not a folder")
        captions = {}
        tsv = folder / "captions.tsv"
        if tsv.exists():
            for line in tsv.read_text("utf-8").splitlines():
                name, _, cap = line.partition("\t")
                if cap:
                    captions[name.strip()] = cap.strip()
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"image pool {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return [PoolImage(str(p), captions.get(p.name, p.stem.replace("_", " ").replace("-", " "))) for p in files]
    if isinstance(source, dict):
        return [PoolImage(img, str(cap)) for cap, img in source.items()]
    out = []
    for item in source:
        out.append(item if isinstance(item, PoolImage) else PoolImage(item[0], str(item[1])))
    if not out:
        raise ValueError("the image pool is empty")
    return out


class ReferenceRetriever:
    """Rank a pool's images for a prompt.

    Args:
        pool: see :func:`load_pool`.
        encoder: ``caption-minilm`` (stand-in, default) or ``clip:<model id or path>``.
    """

    def __init__(self, pool: Any, encoder: str = "caption-minilm"):
        self.pool = load_pool(pool)
        self.encoder = encoder
        if encoder == "caption-minilm":
            from workbench.encoders.text import load_text_encoder

            self._text = load_text_encoder("minilm")
            self._keys = self._text.encode([p.caption for p in self.pool])
        elif encoder.startswith("clip:"):
            self._load_clip(encoder.split(":", 1)[1])
            self._keys = self._clip_images([p.image for p in self.pool])
        else:
            raise ValueError(f"unknown retrieval encoder {encoder!r}: use caption-minilm or clip:<model id or path>")

    def _load_clip(self, name: str) -> None:
        from workbench.encoders.clip import ClipEncoder

        self._clip = ClipEncoder(name)

    def _clip_images(self, images: Sequence[Any]) -> np.ndarray:
        from workbench.images import load_image

        return self._clip.encode_image([load_image(i) for i in images])

    def _query(self, prompt: str) -> np.ndarray:
        if self.encoder == "caption-minilm":
            return self._text.encode([prompt])[0]
        return self._clip.encode_text([prompt])[0]

    def rank(self, prompt: str, k: int = 1) -> list[tuple[PoolImage, float]]:
        """The ``k`` pool images most similar to ``prompt``, with their cosine similarities."""
        if not prompt or not prompt.strip():
            raise ValueError("retrieval needs a non-empty prompt")
        sims = self._keys @ self._query(prompt)
        order = np.argsort(-sims, kind="stable")[:k]
        return [(self.pool[i], float(sims[i])) for i in order]


def retrieve_references(prompt: str, pool: Any, *, k: int = 1, encoder: str = "caption-minilm") -> list[Any]:
    """The images of the ``k`` best-matching pool entries for ``prompt``."""
    return [p.image for p, _ in ReferenceRetriever(pool, encoder).rank(prompt, k)]


def sample_pool() -> list[PoolImage]:
    """The public-domain sample images that ship with scikit-image, with short captions (the default
    pool of ``pwb demo`` and ``pwb variations --pool samples``)."""
    from PIL import Image
    from skimage import data

    items = [
        ("chelsea", "a tabby cat close-up portrait, whiskers and green eyes"),
        ("coffee", "a cup of coffee on a saucer, warm cafe still life"),
        ("rocket", "a rocket on the launch pad, space mission, technology"),
        ("astronaut", "an astronaut portrait with the flag, space exploration"),
        ("brick", "a brick wall texture, urban architecture"),
        ("grass", "green grass texture, nature and meadows"),
        ("gravel", "gravel stones texture, rough ground"),
        ("immunohistochemistry", "colourful microscope cells, abstract science art"),
        ("hubble_deep_field", "deep space galaxies and stars, the night sky"),
        ("coins", "old coins collection, vintage history"),
    ]
    out = []
    for name, caption in items:
        arr = getattr(data, name)()
        img = Image.fromarray(arr)
        out.append(PoolImage(img.convert("RGB"), caption))
    return out
