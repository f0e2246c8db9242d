"""Face encoders by name, to inject identities and to measure identity preservation.

Consent for a reference face lives in :mod:`workbench.consent`. This module holds:

* :class:`FaceEmbedder` and its providers, by name (:func:`get_face_embedder`):

  - ``dlib`` / ``dlib-face`` (:class:`DlibFaceEmbedder`, embedded): dlib's HOG frontal-face detector,
    its 5-point landmark aligner and its ResNet face-recognition network (128-d descriptors), with the
    models of the ``face_recognition_models`` package (CC0). Two faces are the same person when the
    Euclidean distance between descriptors is at most 0.6 (dlib's threshold; 99.38% on LFW).
  - ``arcface`` / ``insightface[:PACK]`` (:class:`InsightFaceEmbedder`, optional): InsightFace's
    ``FaceAnalysis`` (RetinaFace detector + ArcFace recognizer, 512-d unit-length embeddings,
    cosine similarity). Needs ``pip install insightface onnxruntime``; its model packs download on
    first use and are licensed for non-commercial research only.

* :func:`identity_similarity` and :func:`same_person`: how close generated images are to the reference
  face.

Similarity is ``1 - distance`` for dlib (so the same-person rule ``distance <= 0.6`` reads
``similarity >= 0.4``; identical faces give 1.0, typical different people 0.3 or less) and cosine
similarity for ArcFace. Outputs without a detectable face score ``None``, not 0: images from
random-weight test models have no faces, and a missing face is not evidence of a different identity.

Measured on the project's CPU machine (2 cores, dlib-bin 20.0.1) with ``dlib`` on the 512x512
``skimage.data.astronaut()``: 0.45 s to load the models (once per process), then 0.19 s per image:
0.10 s HOG detection at ``upsample=1`` (0.02 s at ``upsample=0``, which misses faces under about 80 px)
and 0.08 s for landmarks and descriptor. Descriptor distance from the original to its mirror image: 0.19;
to copies resized to 256, 384 and 768 px: 0.22, 0.10, 0.07; to its greyscale version: 0.18 (all well
under the 0.6 same-person threshold). No face is found in ``coffee()``, ``chelsea()``, ``rocket()`` or a
flat grey image.

Nothing heavy is imported with this module: dlib, Pillow and insightface load on first use.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from workbench.consent import IdentityReference
from workbench.images import ImageLike, describe_image, to_rgb_array
from workbench.registry import Registry

#: dlib's same-person rule: Euclidean distance between 128-d descriptors at most this.
DLIB_SAME_PERSON_DISTANCE = 0.6

__all__ = [
    "DLIB_SAME_PERSON_DISTANCE",
    "DlibFaceEmbedder",
    "FaceBox",
    "FaceEmbedder",
    "InsightFaceEmbedder",
    "NoFaceError",
    "face_embedder_names",
    "get_face_embedder",
    "identity_similarity",
    "main_face_first",
    "same_person",
]


# ----------------------------------------------------------------------------------------------------
# Face embedders
# ----------------------------------------------------------------------------------------------------


class NoFaceError(ValueError):
    """No face was detected in an image."""


class FaceBox(NamedTuple):
    """A detected face, in pixels: ``left <= x < right``, ``top <= y < bottom``, clipped to the image."""

    left: int
    top: int
    right: int
    bottom: int
    score: float = 0.0

    @property
    def area(self) -> int:
        return max(0, self.right - self.left) * max(0, self.bottom - self.top)


class FaceEmbedder(ABC):
    """Face detection plus an identity embedding of the main face (see :func:`main_face_first`).

    Subclasses set :attr:`name`, :attr:`dim` and :attr:`similarity_threshold` and implement
    :meth:`detect`, :meth:`embed` and :meth:`similarity`.
    """

    #: Registry name, e.g. ``"dlib"``.
    name: str
    #: Embedding length.
    dim: int
    #: :meth:`same_person` is ``similarity >= similarity_threshold``.
    similarity_threshold: float

    @abstractmethod
    def detect(self, image: ImageLike) -> list[FaceBox]:
        """Every face found, the main face first (see :func:`main_face_first`), empty when none."""

    @abstractmethod
    def embed(self, image: ImageLike) -> np.ndarray:
        """``(dim,)`` float32 embedding of the main face; :class:`NoFaceError` when there is none."""

    @abstractmethod
    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """Similarity of two embeddings; higher is more alike, 1.0 for identical ones."""

    def embed_or_none(self, image: ImageLike) -> np.ndarray | None:
        """:meth:`embed`, or ``None`` when no face is found."""
        try:
            return self.embed(image)
        except NoFaceError:
            return None

    def same_person(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether two embeddings are of the same person by this model's threshold."""
        return self.similarity(a, b) >= self.similarity_threshold

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def main_face_first(faces: Sequence[Any], area: Any, score: Any) -> list[Any]:
    """Detections ordered main face first, then the rest largest first.

    The main face is the highest-scoring detection among those at least half as large (in area) as the
    largest one. Plain "largest face" is fooled by weak false positives: dlib's HOG detector finds a
    "face" in the mission patch of ``skimage.data.astronaut()`` at score 0.05-0.3 that is as large as
    the real face (score 1.1-1.4), or larger once the image is upscaled to 768 px.
    """
    by_area = sorted(faces, key=area, reverse=True)
    if len(by_area) < 2:
        return by_area
    big = [f for f in by_area if area(f) * 2 >= area(by_area[0])]
    main = max(big, key=score)
    return [main] + [f for f in by_area if f is not main]


def _check_pair(a: np.ndarray, b: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != (dim,) or b.shape != (dim,):
        raise ValueError(f"expected two ({dim},) embeddings, got shapes {a.shape} and {b.shape}")
    return a, b


def _face_models_dir() -> Path:
    """The ``models/`` folder of the ``face_recognition_models`` package, found without importing it
    (its ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ships)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        raise ImportError(
            "the 'dlib' face embedder needs the face_recognition_models package (CC0 model files): "
            "pip install face_recognition_models==0.3.0"
        )
    roots = list(spec.submodule_search_locations or []) or [os.path.dirname(spec.origin or "")]
    for root in roots:
        if os.path.isdir(os.path.join(root, "models")):
            return Path(root, "models")
    raise ImportError(f"face_recognition_models is installed but has no models/ folder under {roots}")


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise ImportError(
            "the 'dlib' face embedder needs dlib: pip install dlib-bin (prebuilt wheels) or pip install dlib"
        ) from exc
    return dlib


@cache
def _dlib_models(models_dir: str, detector: str):
    """``(detector, shape_predictor, recognizer)``, loaded once per process and configuration."""
    dlib = _import_dlib()
    root = Path(models_dir)
    paths = {
        "predictor": root / "shape_predictor_5_face_landmarks.dat",
        "recognizer": root / "dlib_face_recognition_resnet_model_v1.dat",
    }
    if detector == "cnn":
        paths["cnn"] = root / "mmod_human_face_detector.dat"
    for p in paths.values():
        if not p.is_file():
            raise FileNotFoundError(f"dlib model file missing: {p}")
    det = dlib.cnn_face_detection_model_v1(str(paths["cnn"])) if detector == "cnn" else dlib.get_frontal_face_detector()
    return det, dlib.shape_predictor(str(paths["predictor"])), dlib.face_recognition_model_v1(str(paths["recognizer"]))


class DlibFaceEmbedder(FaceEmbedder):
    """dlib's face recognition network: 128-d descriptors, same person at Euclidean distance <= 0.6.

    Descriptors are returned as dlib computes them (not unit length: 1.46 for the astronaut's face), so
    distances keep dlib's calibration. :meth:`similarity` is ``1 - distance``: the same-person rule
    ``distance <= 0.6`` is ``similarity >= 0.4``.

    Args:
        detector: ``"hog"`` (default, fast on CPU, frontal faces) or ``"cnn"`` (dlib's MMOD CNN detector:
            finds turned and small faces; about 8 s for a 512x512 image on 2 CPU cores, so meant for GPUs).
        upsample: Times the image is upsampled before detection (finds faces half as large each time, at
            about 4x the detection cost). 1 finds faces down to about 40 px.
        num_jitters: Descriptor averaged over this many random jitters of the face (0 or 1: none).
            Slightly more stable, ``num_jitters`` times slower.
        models_dir: Folder holding dlib's ``.dat`` files; default: the ``face_recognition_models`` package.
    """

    name = "dlib-face"
    dim = 128
    similarity_threshold = 1.0 - DLIB_SAME_PERSON_DISTANCE

    def __init__(
        self,
        *,
        detector: str = "hog",
        upsample: int = 1,
        num_jitters: int = 0,
        models_dir: str | os.PathLike | None = None,
    ):
        if detector not in ("hog", "cnn"):
            raise ValueError(f"Expected `detector` to be 'hog' or 'cnn', got {detector!r}")
        if not isinstance(upsample, int) or not 0 <= upsample <= 4:
            raise ValueError(f"Expected `upsample` to be an int between 0 and 4, got {upsample!r}")
        if not isinstance(num_jitters, int) or num_jitters < 0:
            raise ValueError(f"Expected `num_jitters` to be an int >= 0, got {num_jitters!r}")
        self.detector = detector
        self.upsample = upsample
        self.num_jitters = num_jitters
        self.models_dir = Path(models_dir) if models_dir is not None else _face_models_dir()
        self._detector, self._predictor, self._recognizer = _dlib_models(str(self.models_dir.resolve()), detector)

    def _rects(self, rgb: np.ndarray) -> list[tuple[Any, float]]:
        """dlib rectangles with scores, main face first."""
        if self.detector == "cnn":
            found = [(d.rect, float(d.confidence)) for d in self._detector(rgb, self.upsample)]
        else:
            rects, scores, _ = self._detector.run(rgb, self.upsample, 0.0)
            found = list(zip(rects, map(float, scores)))
        return main_face_first(found, area=lambda rs: rs[0].width() * rs[0].height(), score=lambda rs: rs[1])

    def detect(self, image: ImageLike) -> list[FaceBox]:
        rgb = to_rgb_array(image)
        h, w = rgb.shape[:2]
        return [
            FaceBox(max(0, r.left()), max(0, r.top()), min(w, r.right() + 1), min(h, r.bottom() + 1), s)
            for r, s in self._rects(rgb)
        ]

    def embed(self, image: ImageLike) -> np.ndarray:
        rgb = to_rgb_array(image)
        rects = self._rects(rgb)
        if not rects:
            raise NoFaceError(
                f"no face found in {describe_image(image)} ({self.detector} detector, upsample={self.upsample}): "
                f"use a frontal, well-lit face, or try upsample=2 or detector='cnn' for small or turned faces"
            )
        shape = self._predictor(rgb, rects[0][0])
        desc = self._recognizer.compute_face_descriptor(rgb, shape, self.num_jitters)
        return np.asarray(desc, dtype=np.float32)

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        """Euclidean distance between two descriptors (dlib's measure; same person at <= 0.6)."""
        a, b = _check_pair(a, b, DlibFaceEmbedder.dim)
        return float(np.linalg.norm(a - b))

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return 1.0 - self.distance(a, b)

    def same_person(self, a: np.ndarray, b: np.ndarray) -> bool:
        return self.distance(a, b) <= DLIB_SAME_PERSON_DISTANCE

    def __repr__(self) -> str:
        return f"DlibFaceEmbedder(detector={self.detector!r}, upsample={self.upsample}, num_jitters={self.num_jitters})"


class InsightFaceEmbedder(FaceEmbedder):
    """InsightFace's ``FaceAnalysis`` model pack: RetinaFace detection and ArcFace 512-d unit embeddings.

    The embeddings are the ones ArcFace-conditioned adapters (IP-Adapter FaceID, InstantID) are fed, so this
    is the provider to score those with. Needs ``pip install insightface onnxruntime`` (``onnxruntime-gpu``
    on CUDA machines); the pack downloads to ``root`` on first use. InsightFace's pretrained packs are
    licensed for non-commercial research only.

    Args:
        pack: Model pack name (``buffalo_l``, ``buffalo_s``, ``antelopev2``, ...).
        providers: onnxruntime execution providers; default CUDA when onnxruntime offers it, then CPU.
        ctx_id: Device for ``prepare``: a GPU index, or -1 for the CPU; default 0 with CUDA, else -1.
        det_size: Detector input size.
        root: Where packs are stored (InsightFace's default ``~/.insightface``).
        similarity_threshold: Cosine similarity for :meth:`same_person`. Not calibrated in this project;
            0.4 sits inside the 0.3-0.5 range commonly used with ``buffalo_l``'s recognizer.
    """

    dim = 512

    def __init__(
        self,
        pack: str = "buffalo_l",
        *,
        providers: Sequence[str] | None = None,
        ctx_id: int | None = None,
        det_size: tuple[int, int] = (640, 640),
        root: str | os.PathLike = "~/.insightface",
        similarity_threshold: float = 0.4,
    ):
        try:
            import onnxruntime
            from insightface.app import FaceAnalysis
        except ImportError as exc:
            raise ImportError(
                f"the 'insightface:{pack}' face embedder needs insightface and onnxruntime: "
                f"pip install insightface onnxruntime (onnxruntime-gpu on CUDA machines); "
                f"or use the embedded 'dlib' face embedder"
            ) from exc
        self.pack = pack
        self.name = f"insightface:{pack}"
        self.similarity_threshold = float(similarity_threshold)
        if providers is None:
            available = onnxruntime.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.providers = list(providers)
        if ctx_id is None:
            ctx_id = 0 if "CUDAExecutionProvider" in self.providers else -1
        self._app = FaceAnalysis(
            name=pack,
            root=os.path.expanduser(os.fspath(root)),
            providers=self.providers,
            allowed_modules=["detection", "recognition"],
        )
        self._app.prepare(ctx_id=ctx_id, det_size=tuple(det_size))

    def _faces(self, image: ImageLike) -> list[Any]:
        bgr = np.ascontiguousarray(to_rgb_array(image)[:, :, ::-1])
        return main_face_first(
            self._app.get(bgr),
            area=lambda f: float((f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])),
            score=lambda f: float(getattr(f, "det_score", 0.0)),
        )

    def detect(self, image: ImageLike) -> list[FaceBox]:
        out = []
        for f in self._faces(image):
            x0, y0, x1, y1 = (int(round(float(v))) for v in f.bbox)
            out.append(FaceBox(max(0, x0), max(0, y0), x1, y1, float(getattr(f, "det_score", 0.0))))
        return out

    def embed(self, image: ImageLike) -> np.ndarray:
        faces = self._faces(image)
        if not faces:
            raise NoFaceError(f"no face found in {describe_image(image)} ({self.name} detector)")
        return np.asarray(faces[0].normed_embedding, dtype=np.float32)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """Cosine similarity (the embeddings are unit length; normalised again here to be safe)."""
        a, b = _check_pair(a, b, self.dim)
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


#: Face embedders by provider name (``dlib-face`` and ``dlib_face`` are read as ``dlib``, ``insightface`` as
#: ``arcface``; ``insightface:PACK`` takes any InsightFace model pack).
FACE_EMBEDDERS = Registry(
    "face embedder",
    {"dlib": "workbench.encoders.face:DlibFaceEmbedder", "arcface": "workbench.encoders.face:InsightFaceEmbedder"},
    aliases={"dlib-face": "dlib", "dlib_face": "dlib", "insightface": "arcface"},
    prefixes={"insightface:": "workbench.encoders.face:InsightFaceEmbedder"},
    normalize=lambda s: s.strip().lower(),
)


def face_embedder_names() -> list[str]:
    """Names :func:`get_face_embedder` accepts (``insightface:<...>`` takes any pack name)."""
    return FACE_EMBEDDERS.names()


def get_face_embedder(name: str | FaceEmbedder = "dlib", **kwargs: Any) -> FaceEmbedder:
    """A face embedder by name; an embedder instance is returned as it is.

    Args:
        name: ``dlib`` (embedded, 128-d; also ``dlib-face``); ``arcface`` (InsightFace's ``buffalo_l``, 512-d;
            also ``insightface``) or ``insightface:PACK``.
        **kwargs: Passed to the embedder's constructor (e.g. ``upsample=2``, ``providers=[...]``).

    Raises:
        UnknownNameError: unknown name, with the closest match and the available names.
        ImportError: the provider's package is not installed, with the ``pip install`` line.
    """
    if isinstance(name, FaceEmbedder):
        return name
    if not isinstance(name, str):
        raise TypeError(f"face embedder must be a name or a FaceEmbedder, got {type(name).__name__}")
    key, pack = FACE_EMBEDDERS.split(name, field="face embedder")
    cls = FACE_EMBEDDERS.get(key)
    return cls(pack, **kwargs) if pack is not None else cls(**kwargs)


# ----------------------------------------------------------------------------------------------------
# Identity metrics
# ----------------------------------------------------------------------------------------------------


def _reference_embedding(reference: Any, embedder: FaceEmbedder) -> np.ndarray:
    if isinstance(reference, IdentityReference):
        reference.require_consent("identity")
        reference = reference.image
    if isinstance(reference, np.ndarray) and reference.ndim == 1:
        if reference.shape != (embedder.dim,):
            raise ValueError(
                f"reference embedding must have shape ({embedder.dim},) for {embedder.name}, got {reference.shape}"
            )
        return reference.astype(np.float32, copy=False)
    return embedder.embed(reference)  # NoFaceError names the reference when it has no face


def identity_similarity(
    outputs: Sequence[ImageLike],
    reference: ImageLike | IdentityReference | np.ndarray,
    embedder: str | FaceEmbedder = "dlib",
) -> list[float | None]:
    """How much each output looks like the reference face, by ``embedder``'s similarity.

    For ``dlib`` the score is ``1 - distance``: at least 0.4 (distance at most 0.6) means the same person by
    dlib's rule; 1.0 is an identical face. For ArcFace it is cosine similarity.

    Args:
        outputs: Generated images (paths, PIL images or arrays).
        reference: The reference face: an image, an :class:`IdentityReference` (its consent is required), or
            a precomputed ``(dim,)`` embedding from the same embedder.
        embedder: A name for :func:`get_face_embedder` or an embedder.

    Returns:
        One score per output, ``None`` where no face was detected in that output.

    Raises:
        NoFaceError: no face in the reference.
        ConsentError: an :class:`IdentityReference` without consent for identity injection.
    """
    emb = get_face_embedder(embedder)
    ref = _reference_embedding(reference, emb)
    scores: list[float | None] = []
    for image in outputs:
        vec = emb.embed_or_none(image)
        scores.append(None if vec is None else emb.similarity(vec, ref))
    return scores


def same_person(a: ImageLike | np.ndarray, b: ImageLike | np.ndarray, embedder: str | FaceEmbedder = "dlib") -> bool:
    """Whether two images (or precomputed embeddings) show the same person.

    With ``dlib`` this is dlib's rule, Euclidean descriptor distance at most 0.6. Raises :class:`NoFaceError`
    when either image has no face.
    """
    emb = get_face_embedder(embedder)
    return emb.same_person(_reference_embedding(a, emb), _reference_embedding(b, emb))
