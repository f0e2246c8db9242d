"""Encoders by name, one spelling each: text (``minilm``, ``mpnet``), image (``effnet-lite0``), face
(``dlib-face``) and ``clip:<model id or path>`` (text and image).

``minilm``, ``effnet-lite0`` and ``dlib-face`` are embedded stand-ins (their weights ship in registry
packages) and metrics name them as such; on users' machines ``clip:openai/clip-vit-large-patch14`` and the
like load real checkpoints. The underscore spellings of earlier task files (``effnet_lite0``,
``dlib_face``) are read as the hyphenated names.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.registry import Registry

ENCODERS = Registry(
    "encoder",
    {
        "minilm": "workbench.encoders:_text",
        "mpnet": "workbench.encoders:_text",
        "effnet-lite0": "workbench.encoders:_image",
        "dlib-face": "workbench.encoders:_face",
    },
    aliases={"effnet_lite0": "effnet-lite0", "dlib_face": "dlib-face"},
    prefixes={"clip:": "workbench.encoders.clip:ClipEncoder"},
)

#: The names :func:`load_encoder` takes, for help texts.
ENCODER_NAMES = ("minilm", "mpnet", "effnet-lite0", "dlib-face", "clip:<model id or path>")


class _Adapter:
    """Gives the single-modality encoders the ``encode_text`` / ``encode_image`` surface."""

    def __init__(self, kind: str, inner: Any, label: str):
        self.kind, self.inner, self.label = kind, inner, label

    def encode_text(self, texts):
        if self.kind != "text":
            raise ValueError(f"encoder {self.label!r} encodes {self.kind}s, not text")
        return self.inner.encode(list(texts))

    def encode_image(self, images):
        if self.kind == "face":
            return np.stack([self.inner.embed(i) for i in images])
        if self.kind != "image":
            raise ValueError(f"encoder {self.label!r} encodes {self.kind}, not images")
        return self.inner.encode(list(images))


def _text(name: str) -> _Adapter:
    from workbench.encoders.text import load_text_encoder

    return _Adapter("text", load_text_encoder(name), name)


def _image(name: str) -> _Adapter:
    from workbench.encoders.image import load_image_encoder

    return _Adapter("image", load_image_encoder(name), name)


def _face(name: str) -> _Adapter:
    from workbench.encoders.face import get_face_embedder

    return _Adapter("face", get_face_embedder("dlib"), name)


def load_encoder(name: str, *, field: str = "encoder"):
    """An encoder by name (see the module docstring); an unknown name raises
    :class:`~workbench.errors.UnknownNameError` naming ``field``, with the closest match."""
    key, arg = ENCODERS.split(name, field=field)
    return ENCODERS.get(key)(key if arg is None else arg)
