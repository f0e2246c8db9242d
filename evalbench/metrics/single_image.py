"""Metrics for single-image generators: variations of one reference image.

Written for the training-free single-image generator (closed-form multi-scale patch diffusion,
arXiv 2606.04299, "Efficient and Training-Free Single-Image Diffusion Models"), which makes variations
of one reference picture. Three questions, three metrics, each a functional form and a class:

* ``diversity[<encoder>]`` (:func:`pairwise_diversity`, :class:`Diversity`, higher is better): how much
  the variations of one reference differ from each other, as the mean pairwise cosine distance of their
  deep features.
* ``single_image_fd[<encoder>]`` (:func:`frechet_distance`, :func:`single_image_fd`,
  :class:`SingleImageFD`, lower is better): the SIFID construction of SinGAN (Shaham et al., arXiv
  1905.01164), a Fréchet distance between the per-location deep features of the reference and of one
  generated image. Computed here on the embedded EfficientNet-Lite0 stand-in, never on Inception, so the
  values are **not** comparable with published SIFID numbers and are not called "SIFID".
* ``copy_rate`` (:func:`copy_rate`, :class:`CopyRate`, lower is better): the share of a generated
  image's patches that are near-verbatim copies of some reference patch, in pixel space (no model).

Metric names carry the encoder they were computed with, as everywhere in :mod:`evalbench.metrics`:
the default stand-in is ``effnet-lite0`` (see :mod:`workbench.encoders.image`); a metric computed
with it is labelled as such in its name and in reports. Injected functions (tests pass tiny ones) are
named by ``encoder_name`` or the function's ``__name__``.

Images, everywhere in this module: PIL images, file paths, ``HxWx3`` uint8 arrays (0-255) or float
arrays in [0, 1] (``HxW`` and ``HxWx4`` are converted to RGB).

Measured on the project's CPU machine (2-core Xeon, torch 2.13 CPU) while other processes kept both cores
busy (load average 2.5-3), 256x256 images, after the first call (which imports torch, about 0.7 s, and
loads EfficientNet-Lite0, about 0.2 s): :func:`copy_rate` (3,969 generated patches against 62,001
reference patches, 8x8x3 each) 0.28-0.31 s with ``torch.set_num_threads(1)`` and 0.6-0.8 s with torch's
default two threads, which wait on each other on a busy machine; the unpruned exact search
(:func:`nearest_patch_distances` without ``max_distance``) 1.2 s and 1.9 s. :func:`single_image_fd` with the
EfficientNet-Lite0 feature map (two 64x64x24 maps, a 24x24 square root) 0.02-0.04 s on one thread and
0.8 s on two under that load.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Union

import numpy as np

ImageLike = Union[str, os.PathLike, "PIL.Image.Image", np.ndarray]  # noqa: F821
FeatureFn = Callable[[Sequence[ImageLike]], np.ndarray]
FeatureMapFn = Callable[[ImageLike], np.ndarray]

#: Default ``copy_rate`` threshold: per-pixel RMS distance in [0, 1] units; 0.02 is about 5/255 per pixel
#: and channel, the size of JPEG or resampling noise. Measured on scikit-image's samples at 256x256, the
#: median nearest-patch distance from coffee or chelsea to astronaut is 0.07 (0.41 for uniform noise), but
#: flat patches (sky, plain backgrounds, dark areas) are near some flat reference patch in any picture:
#: copy_rate against astronaut is 0.003 for coffee, 0.02 for chelsea and 0.30 for camera (grey, with a
#: plain sky). Read it against an unrelated-image baseline, not against 0.
COPY_THRESHOLD = 0.02

#: MBConv blocks of EfficientNet-Lite0 run after the stem for ``single_image_fd[effnet-lite0]``: stem and
#: blocks 0-2 give 24 channels at 1/4 of the input resolution, the stride of SIFID's Inception layer
#: (64 channels before the second max-pool).
EFFNET_SIFD_BLOCKS = 3

#: Longest side, in pixels, an image is downscaled to (antialiased bilinear) before its feature map is
#: taken for ``single_image_fd[effnet-lite0]``; smaller images keep their native size.
EFFNET_SIFD_MAX_SIDE = 512


# -- images ---------------------------------------------------------------------------------------


def to_float_rgb(image: ImageLike) -> np.ndarray:
    """An image as an ``HxWx3`` float32 array in [0, 1].

    Args:
        image: A file path, PIL image, uint8 array (0-255) or float array in [0, 1]; ``HxW`` (grey) and
            ``HxWx4`` (alpha dropped) arrays are converted to RGB.
    """
    if isinstance(image, (str, os.PathLike)) or type(image).__module__.startswith("PIL"):
        from PIL import Image

        if isinstance(image, (str, os.PathLike)):
            with Image.open(image) as im:
                image = im.convert("RGB")
        elif not isinstance(image, Image.Image):
            raise TypeError(f"unsupported image type {type(image).__name__}")
        image = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"unsupported image type {type(image).__name__}: pass a path, PIL image, "
            "uint8 array or float array in [0, 1]"
        )
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image arrays must be HxWx3 (HxW or HxWx4 also work); got shape {image.shape}")
    image = image[..., :3]
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if np.issubdtype(image.dtype, np.floating):
        if image.size and (np.nanmin(image) < 0.0 or np.nanmax(image) > 1.0):
            raise ValueError(
                f"float image arrays must lie in [0, 1], got values in "
                f"[{float(np.nanmin(image)):.3g}, {float(np.nanmax(image)):.3g}]"
            )
        return image.astype(np.float32)
    raise ValueError(f"image arrays must be uint8 or float in [0, 1], got dtype {image.dtype}")


# -- diversity ------------------------------------------------------------------------------------


def pairwise_diversity(features: np.ndarray) -> float:
    """Mean pairwise cosine distance between samples' features.

    .. math::
        D = \\frac{2}{n(n-1)} \\sum_{i<j} \\left(1 - \\hat f_i \\cdot \\hat f_j\\right),
        \\qquad \\hat f = f / \\lVert f \\rVert

    0 when all samples have the same (direction of) features; 1 for mutually orthogonal features; at most
    2. Rows are unit-normalised here, so encoders need not normalise.

    Args:
        features: ``(n, d)``, one row per sample, ``n >= 2``.

    Example:
        >>> pairwise_diversity(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]]))  # pairs: 1, 0, 1
        0.6666666666666666
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (n, d) with n >= 2 samples, got shape {f.shape}")
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim = f @ f.T
    iu = np.triu_indices(f.shape[0], k=1)
    return float(np.mean(1.0 - sim[iu]))


def _resolve_encoder(encoder, encoder_name: str | None) -> tuple[Callable, str]:
    """``(images -> (n, d) features, label)`` for a name, an object with ``encode``, or a function."""
    if encoder is None:
        encoder = "effnet-lite0"
    if isinstance(encoder, str):
        if encoder.lower() == "lpips":
            raise ImportError(
                "LPIPS diversity is not available here: LPIPS needs the `lpips` package, which depends on "
                "torchvision, and torchvision is not (and must not be) installed in this environment. On "
                "your own machine, `pip install lpips` gives the LPIPS network; here use the stand-in "
                "encoder='effnet-lite0' (reported as diversity[effnet-lite0]) or inject a features function."
            )
        name = encoder
        state: dict = {}

        def encode(images):  # loads the encoder on first use only
            if "enc" not in state:
                from workbench.encoders.image import load_image_encoder

                state["enc"] = load_image_encoder(name)
            return state["enc"].encode(images)

        if encoder_name is None:
            from workbench.encoders.image import EMBEDDED

            encoder_name = name if name in EMBEDDED else name.rstrip("/").split("/")[-1]
        return encode, encoder_name
    if hasattr(encoder, "encode"):
        return encoder.encode, encoder_name or getattr(encoder, "label", type(encoder).__name__)
    if callable(encoder):
        return encoder, encoder_name or getattr(encoder, "__name__", type(encoder).__name__)
    raise TypeError(
        f"encoder must be None, a name, an object with .encode or a function images -> (n, d) "
        f"features; got {type(encoder).__name__}"
    )


class Diversity:
    """Within-group diversity of generated variations, averaged over groups (references).

    A group is the set of variations of one reference; its diversity is :func:`pairwise_diversity` of
    the variations' features, and :meth:`compute` returns the unweighted mean over groups (each reference
    counts once, however many variations it has). Per-group values are in :attr:`per_group` after
    :meth:`compute`.

    Args:
        encoder: ``None`` or a name (``"effnet-lite0"``, the default stand-in, or a CLIP model id as in
            :class:`~workbench.encoders.image.ImageEncoder`; loaded on first :meth:`update`), an
            object with ``encode(images)``, or a function ``images -> (n, d)`` features (tests inject a
            tiny one). ``"lpips"`` raises :class:`ImportError`: it needs torchvision-based packages.
        encoder_name: Label in the metric's name; default the encoder's name or the function's
            ``__name__``.

    Example:
        >>> def mean_colour(images):
        ...     return np.stack([to_float_rgb(im).mean((0, 1)) for im in images])
        >>> red, green = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
        >>> red[..., 0], green[..., 1] = 255, 255
        >>> m = Diversity(mean_colour)
        >>> m.update([red, green], group="ref1"); m.update([red, red], group="ref2")
        >>> m.name, m.compute(), m.per_group
        ('diversity[mean_colour]', 0.5, {'ref1': 1.0, 'ref2': 0.0})
    """

    higher_is_better = True

    def __init__(self, encoder: None | str | FeatureFn = None, *, encoder_name: str | None = None):
        self._encode, self.encoder = _resolve_encoder(encoder, encoder_name)
        self._features: dict[str, list[np.ndarray]] = {}
        self.per_group: dict[str, float] = {}

    @property
    def name(self) -> str:
        return f"diversity[{self.encoder}]"

    def update(self, images: Sequence[ImageLike], group: str | None = None) -> None:
        """Encode ``images`` and add them to ``group``.

        Args:
            images: Variations of one reference.
            group: The reference they vary; calls with the same group add to it. ``None``: the call's
                images form a new group of their own.
        """
        images = list(images)
        if group is None:
            group = f"group{len(self._features)}"
            while group in self._features:
                group += "_"
        if not images:
            self._features.setdefault(group, [])
            return
        feats = np.asarray(self._encode(images), dtype=np.float64)
        if feats.ndim != 2 or feats.shape[0] != len(images):
            raise ValueError(f"encoder must return (n, d) features for n={len(images)} images, got shape {feats.shape}")
        self._features.setdefault(group, []).append(feats)

    def compute(self) -> float:
        """Mean over groups of the within-group diversity; every group needs at least two images."""
        if not self._features:
            raise ValueError("no images: call update() first")
        per = {}
        for g, chunks in self._features.items():
            n = sum(c.shape[0] for c in chunks)
            if n < 2:
                raise ValueError(f"group {g!r} has {n} image(s); diversity needs at least two per group")
            per[g] = pairwise_diversity(np.concatenate(chunks))
        self.per_group = per
        return float(np.mean(list(per.values())))

    def reset(self) -> None:
        self._features, self.per_group = {}, {}


# -- single-image Fréchet distance ----------------------------------------------------------------


def frechet_distance(
    mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray, *, eps: float = 1e-6
) -> float:
    """Fréchet (2-Wasserstein) distance between two Gaussians.

    .. math::
        d^2 = \\lVert \\mu_1 - \\mu_2 \\rVert^2 + \\operatorname{tr}\\left(\\Sigma_1 + \\Sigma_2
              - 2 (\\Sigma_1 \\Sigma_2)^{1/2}\\right)

    As in pytorch-fid: the matrix square root is :func:`scipy.linalg.sqrtm`'s, its real part taken
    (rounding leaves tiny imaginary parts); if it is not finite (near-singular covariances), ``eps`` is
    added to both diagonals and it is taken again. Tiny negative results from rounding are clipped to 0.
    Returns :math:`d^2`, without the square root, as FID and SIFID report it.

    Args:
        mu1, mu2: Means, shape ``(d,)``.
        cov1, cov2: Covariances, shape ``(d, d)``.
        eps: Diagonal offset used only when the first square root is not finite.

    Example:
        >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))  # 2 + 2 * (1 + 4 - 4)
        4.0
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(
            f"expected means of shape (d,) and covariances (d, d) with one d; got "
            f"{mu1.shape}, {cov1.shape}, {mu2.shape}, {cov2.shape}"
        )
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov1 @ cov2)
        if not np.isfinite(covmean).all():
            offset = np.eye(d) * eps
            covmean = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = np.real(covmean)
    fd = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))
    return max(fd, 0.0)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``(n, c)`` features, ``n >= 2``."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"per-location features must be (h*w, c) with at least two locations, got shape {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


class EffNetEarlyFeatures:
    """Per-location features from an early layer of EfficientNet-Lite0 (the embedded stand-in).

    Runs the stem and the first ``blocks`` MBConv blocks (default 3: 24 channels at 1/4 of the input
    resolution, e.g. 64x64 locations for a 256x256 image; ``blocks=5`` gives 40 channels at 1/8) on the
    image at its native resolution, downscaled (antialiased bilinear) only when its longest side exceeds
    ``max_side`` (default 512, for speed), after ImageNet normalisation. Not the final 1280-channel map,
    which is 7x7 at 224 pixels: far too few locations for per-location statistics.

    Calling it on one image returns ``(h*w, c)`` float32 features. Its :attr:`label`, used in metric
    names, is ``effnet-lite0`` for the default layer and ``effnet-lite0-b<blocks>`` for another one, since
    values from different layers are not comparable.
    """

    @property
    def label(self) -> str:
        return "effnet-lite0" if self.blocks == EFFNET_SIFD_BLOCKS else f"effnet-lite0-b{self.blocks}"

    def __init__(self, blocks: int = EFFNET_SIFD_BLOCKS, *, max_side: int | None = EFFNET_SIFD_MAX_SIDE):
        if not 0 <= blocks <= 16:
            raise ValueError(f"blocks must be between 0 and 16 (EfficientNet-Lite0 has 16), got {blocks}")
        if max_side is not None and max_side < 8:
            raise ValueError(f"max_side must be at least 8 pixels or None, got {max_side}")
        self.blocks, self.max_side = blocks, max_side
        self._model = None

    def _load(self):
        if self._model is None:
            from workbench.encoders.image import load_image_encoder

            self._model = load_image_encoder("effnet-lite0")._model
        return self._model

    def __call__(self, image: ImageLike) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from workbench.encoders.image import IMAGENET_MEAN, IMAGENET_STD

        model = self._load()
        device = next(model.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(to_float_rgb(image).transpose(2, 0, 1)))[None]
        h, w = x.shape[-2:]
        if self.max_side is not None and max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            x = F.interpolate(
                x,
                size=(max(1, round(h * s)), max(1, round(w * s))),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        x = (x - torch.from_numpy(IMAGENET_MEAN)[:, None, None]) / torch.from_numpy(IMAGENET_STD)[:, None, None]
        with torch.no_grad():
            x = x.to(device)
            x = model._swish(model._bn0(model._conv_stem(x)))
            for block in model._blocks[: self.blocks]:
                x = block(x)
        return x[0].flatten(1).T.float().cpu().numpy()


def single_image_fd(reference: ImageLike, generated: ImageLike, feature_map_fn: FeatureMapFn | None = None) -> float:
    """Fréchet distance between the per-location deep features of a reference and a generated image.

    The SIFID construction (Shaham et al., SinGAN, arXiv 1905.01164): each image's feature map is taken
    as a sample of ``h*w`` vectors, a Gaussian is fitted to each sample, and :func:`frechet_distance` is
    taken between them. SIFID uses an early Inception layer; the default ``feature_map_fn`` here is
    :class:`EffNetEarlyFeatures` (EfficientNet-Lite0 stem and 3 blocks, 24 channels), so the value is
    ``single_image_fd[effnet-lite0]`` and not comparable with published SIFID numbers.

    Args:
        reference, generated: Images (they may differ in size).
        feature_map_fn: ``image -> (h*w, c)`` per-location features; default the EfficientNet-Lite0
            early layer (loaded on first use).

    Example:
        >>> def pixels(image):  # raw RGB values as 3-channel "features"
        ...     return to_float_rgb(image).reshape(-1, 3)
        >>> img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        >>> round(single_image_fd(img, img, pixels), 9)
        0.0
    """
    fn = feature_map_fn if feature_map_fn is not None else _default_feature_map()
    return frechet_distance(*gaussian_stats(fn(reference)), *gaussian_stats(fn(generated)))


_DEFAULT_FEATURE_MAP: EffNetEarlyFeatures | None = None


def _default_feature_map() -> EffNetEarlyFeatures:
    global _DEFAULT_FEATURE_MAP
    if _DEFAULT_FEATURE_MAP is None:
        _DEFAULT_FEATURE_MAP = EffNetEarlyFeatures()
    return _DEFAULT_FEATURE_MAP


class SingleImageFD:
    """Mean single-image Fréchet distance over (reference, generated) pairs.

    See :func:`single_image_fd` for the construction (SIFID's, on EfficientNet-Lite0 features by default:
    named ``single_image_fd[effnet-lite0]``, not SIFID). Per-pair values are in :attr:`values`.

    Args:
        feature_map_fn: ``None`` (EfficientNet-Lite0 stem and :data:`EFFNET_SIFD_BLOCKS` blocks, longest
            side capped at :data:`EFFNET_SIFD_MAX_SIDE`) or a function ``image -> (h*w, c)`` features.
        encoder_name: Label in the metric's name; default ``effnet-lite0`` or the function's
            ``__name__``.

    Example:
        >>> def pixels(image):
        ...     return to_float_rgb(image).reshape(-1, 3)
        >>> rng = np.random.default_rng(0)
        >>> ref = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        >>> m = SingleImageFD(pixels)
        >>> m.update(ref, [ref, ref[::-1]])  # a flip has the same pixel statistics
        >>> m.name, round(m.compute(), 6)
        ('single_image_fd[pixels]', 0.0)
    """

    higher_is_better = False

    def __init__(self, feature_map_fn: FeatureMapFn | None = None, *, encoder_name: str | None = None):
        if feature_map_fn is None:
            feature_map_fn = _default_feature_map()
        self._fn = feature_map_fn
        self.encoder = (
            encoder_name
            or getattr(feature_map_fn, "label", None)
            or getattr(feature_map_fn, "__name__", type(feature_map_fn).__name__)
        )
        self.values: list[float] = []

    @property
    def name(self) -> str:
        return f"single_image_fd[{self.encoder}]"

    def update(self, reference: ImageLike, generated: ImageLike | Sequence[ImageLike]) -> None:
        """Add one value per generated image (one image, or a list of variations of ``reference``)."""
        gens = list(generated) if isinstance(generated, (list, tuple)) else [generated]
        ref_stats = gaussian_stats(self._fn(reference))
        for g in gens:
            self.values.append(frechet_distance(*ref_stats, *gaussian_stats(self._fn(g))))

    def compute(self) -> float:
        if not self.values:
            raise ValueError("no pairs: call update() first")
        return float(np.mean(self.values))

    def reset(self) -> None:
        self.values = []


# -- copy rate ------------------------------------------------------------------------------------


def _patches(image: np.ndarray, patch: int, stride: int):
    """``(L, 3*patch*patch)`` float32 torch tensor (a transposed view) of an ``HxWx3`` float image's patches."""
    import torch
    import torch.nn.functional as F

    h, w = image.shape[:2]
    if h < patch or w < patch:
        raise ValueError(f"image of size {h}x{w} is smaller than the {patch}x{patch} patch")
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]
    return F.unfold(x, kernel_size=patch, stride=stride)[0].T


def nearest_patch_distances(
    generated: ImageLike,
    reference: ImageLike,
    *,
    patch: int = 8,
    stride: int = 4,
    reference_stride: int = 1,
    max_distance: float | None = None,
    chunk: int = 512,
    reference_chunk: int = 16384,
) -> np.ndarray:
    """Per-pixel RMS distance from each generated patch to its nearest reference patch.

    .. math::
        d(p) = \\min_q \\sqrt{\\tfrac{1}{3 k^2} \\lVert p - q \\rVert_2^2}

    over the generated image's ``k x k`` patches ``p`` (every ``stride`` pixels, row-major) and all the
    reference's patches ``q`` (every ``reference_stride`` pixels; default 1, every position), pixels in
    [0, 1]. Exact nearest neighbour by brute force in float32: squared distances by matrix products in
    chunks of ``chunk`` generated by ``reference_chunk`` reference patches (about 32 MiB of distances at a
    time, whatever the image sizes); the winner's distance is then recomputed directly, free of the
    cancellation error of the product form.

    With ``max_distance`` only distances below it are wanted (as for :func:`copy_rate`), and the search
    is pruned without changing them: since the RMS distance is at least the difference of the two
    patches' mean values (Jensen), only reference patches whose mean is within ``max_distance`` of the
    generated patch's mean can be nearer than ``max_distance``; patches are sorted by their mean and each
    chunk of generated patches is compared with that window of reference patches only (typically a
    tenth of them on natural images). Distances at or above ``max_distance`` are then returned as ``inf``.

    Returns:
        ``(n_patches,)`` float64 array, in the row-major order of the generated patches.
    """
    # 1. check the arguments
    import torch

    for k, v in (
        ("patch", patch),
        ("stride", stride),
        ("reference_stride", reference_stride),
        ("chunk", chunk),
        ("reference_chunk", reference_chunk),
    ):
        if int(v) != v or v < 1:
            raise ValueError(f"{k} must be a positive integer, got {v}")
    if max_distance is not None and not max_distance >= 0:
        raise ValueError(f"max_distance must be non-negative or None, got {max_distance}")
    # 2. patches of both images (sorted by mean when pruning)
    gen = _patches(to_float_rgb(generated), patch, stride)
    ref = _patches(to_float_rgb(reference), patch, reference_stride)
    dim = gen.shape[1]
    if max_distance is not None:  # sort both by patch mean, so each generated chunk meets a window of references
        gen_key, order = gen.mean(1).sort()
        gen = gen[order]
        ref_key, ref_order = ref.mean(1).sort()
        ref = ref[ref_order]
        slack = max_distance + 1e-5  # float32 rounding of the means
    else:
        gen, ref = gen.contiguous(), ref.contiguous()
    # 3. nearest reference patch per generated patch, chunk by chunk
    ref_sq = torch.linalg.vector_norm(ref, dim=1) ** 2
    out = np.full(gen.shape[0], np.inf, dtype=np.float64)
    with torch.no_grad():
        for a in range(0, gen.shape[0], chunk):
            g = gen[a : a + chunk]
            lo, hi = 0, ref.shape[0]
            if max_distance is not None:
                lo = int(torch.searchsorted(ref_key, gen_key[a : a + chunk].min() - slack))
                hi = int(torch.searchsorted(ref_key, gen_key[a : a + chunk].max() + slack, right=True))
                if lo >= hi:
                    continue
            best = torch.full((g.shape[0],), float("inf"))
            best_idx = torch.zeros(g.shape[0], dtype=torch.long)
            for b in range(lo, hi, reference_chunk):
                e = min(b + reference_chunk, hi)
                # |q|^2 - 2 p.q: the squared distance minus |p|^2, which is constant along a row
                d2 = torch.addmm(ref_sq[b:e][None, :], g, ref[b:e].T, alpha=-2.0)
                val, idx = d2.min(1)
                better = val < best
                best = torch.where(better, val, best)
                best_idx = torch.where(better, idx + b, best_idx)
            out[a : a + g.shape[0]] = ((g - ref[best_idx]) ** 2).sum(1).double().numpy()
    # 4. RMS distances (inf beyond max_distance)
    out = np.sqrt(out / dim)
    if max_distance is not None:
        out[out >= max_distance] = np.inf
        unsorted = np.empty_like(out)
        unsorted[order.numpy()] = out
        out = unsorted
    return out


def copy_rate(
    generated: ImageLike,
    reference: ImageLike,
    patch: int = 8,
    stride: int = 4,
    threshold: float = COPY_THRESHOLD,
    *,
    reference_stride: int = 1,
) -> float:
    """Share of a generated image's patches that are near-verbatim copies of a reference patch.

    .. math::
        \\mathrm{copy}(G, R) = \\frac{1}{|P_G|} \\sum_{p \\in P_G} \\left[ d(p) < \\tau \\right]

    with :math:`d(p)` the per-pixel RMS distance (pixels in [0, 1]) from patch :math:`p` to its nearest
    reference patch (:func:`nearest_patch_distances`). Defaults: 8x8 patches every 4 pixels in the
    generated image against every 8x8 patch of the reference; :math:`\\tau` = 0.02, about 5/255 per pixel
    (JPEG- or resampling-level noise; see :data:`COPY_THRESHOLD`). 1.0 for the reference itself or any
    crop of it; near 0 for an unrelated textured image, but flat regions match flat reference patches
    whatever the picture, so compare with an unrelated-image baseline. Non-decreasing in ``threshold``.

    For patch-based generators (``generation.backends.patch``) use windows larger than the generator's
    own patch (``patch=32, stride=16`` against its 15-pixel patches): such generators reassemble reference
    patches by design, so small windows are copies by construction; what matters is whether whole regions
    larger than a patch come back verbatim (a shifted copy of the reference scores about 0.75 there).

    Example:
        >>> ref = np.random.default_rng(0).random((32, 32, 3))
        >>> copy_rate(ref[4:20, 8:28], ref), copy_rate(1.0 - ref, ref)
        (1.0, 0.0)
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be non-negative, got {threshold}")
    d = nearest_patch_distances(
        generated, reference, patch=patch, stride=stride, reference_stride=reference_stride, max_distance=threshold
    )
    return float(np.mean(d < threshold))


@dataclass
class CopyRate:
    """Mean copy rate over (generated, reference) pairs; per-image values in :attr:`values`.

    See :func:`copy_rate`. A pixel-space metric: no model, so its name carries no encoder.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> ref = rng.random((24, 24, 3))
        >>> m = CopyRate()
        >>> m.update(ref[2:18, 3:19], ref); m.update(rng.random((16, 16, 3)), ref)
        >>> m.compute(), m.values
        (0.5, [1.0, 0.0])
    """

    patch: int = 8
    stride: int = 4
    threshold: float = COPY_THRESHOLD
    reference_stride: int = 1
    higher_is_better: bool = field(default=False, init=False)
    values: list[float] = field(default_factory=list, init=False)

    def __post_init__(self):
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be non-negative, got {self.threshold}")
        for k in ("patch", "stride", "reference_stride"):
            v = getattr(self, k)
            if int(v) != v or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v}")

    @property
    def name(self) -> str:
        """``copy_rate[<patch>px]``: the window size changes what counts as a copy, so it is in the id."""
        return f"copy_rate[{self.patch}px]"

    def update(self, generated: ImageLike | Sequence[ImageLike], reference: ImageLike) -> None:
        """Add one value per generated image (one image, or a list of variations of ``reference``)."""
        gens = list(generated) if isinstance(generated, (list, tuple)) else [generated]
        for g in gens:
            self.values.append(
                copy_rate(g, reference, self.patch, self.stride, self.threshold, reference_stride=self.reference_stride)
            )

    def compute(self) -> float:
        if not self.values:
            raise ValueError("no images: call update() first")
        return float(np.mean(self.values))

    def reset(self) -> None:
        self.values = []
