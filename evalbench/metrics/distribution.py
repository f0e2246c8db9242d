"""Distribution metrics on image embeddings: kernel MMD, CMMD, and image-space preference.

Two questions about a held-out user's generations (ZIPP-style persona-driven personalisation):

* ``cmmd[<encoder>]`` (:func:`mmd2_unbiased`, :func:`cmmd`, :class:`CMMD`, lower is better): how far the
  distribution of the generations is from the distribution of the user's reference images, as the
  CMMD of Jayasumana et al. 2024 ("Rethinking FID: Towards a Better Evaluation Metric for Image
  Generation", arXiv 2401.09603): the squared maximum mean discrepancy with a Gaussian RBF kernel
  (:math:`\\sigma = 10`) on unit-normalised image embeddings, times 1000. Per user, then averaged over
  users (or pooled over all users).
* ``image_preference[<encoder>]`` (:class:`ImagePreference`, higher is better): the image analogue of
  ``text_preference``: mean cosine similarity of a generation to the user's hidden liked images minus
  that to the hidden negatives (:func:`evalbench.metrics.preference.preference_margin`), averaged over a
  user's generations, then over users.

The paper computes CMMD on CLIP ViT-L/14@336px embeddings. The default encoder here is the embedded
EfficientNet-Lite0 stand-in (see :mod:`workbench.encoders.image`), and a metric computed with it
is named ``cmmd[effnet-lite0]``: a stand-in, **not** CLIP, so its values are not comparable with
published CMMD numbers. A CLIP model id as encoder gives e.g. ``cmmd[clip-vit-large-patch14-336]``.
Injected objects and functions are named by ``encoder_name``, their ``label`` or their ``__name__``.

Images, everywhere in this module: what the encoder accepts (for :class:`ImageEncoder`: file paths, PIL
images, ``HxWx3`` uint8 arrays). A 2-D float array ``(n, d)`` is taken instead as precomputed embeddings
(rows are unit-normalised here); they are assumed to come from the metric's encoder, so give
``encoder_name`` when they were computed elsewhere, so that the metric's name says what was used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Union

import numpy as np

from evalbench.metrics.preference import cluster_mean_ci, preference_margin

ImageLike = Union[str, os.PathLike, "PIL.Image.Image", np.ndarray]  # noqa: F821
Images = Union[Sequence[ImageLike], np.ndarray]  # noqa: UP007 (ImageLike holds a string annotation)
EncodeFn = Callable[[Sequence[ImageLike]], np.ndarray]
KernelFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: CMMD's RBF bandwidth and reporting scale, as in the paper and its released code
#: (google-research/cmmd ``distance.py``: ``_SIGMA = 10``, ``_SCALE = 1000``).
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0

#: Rows of the first argument per Gram-matrix block (bounds memory for large pooled sets:
#: 2048 x n float64 values at a time).
_BLOCK = 2048


# -- kernel MMD -----------------------------------------------------------------------------------


def _as_2d(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n, d), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} holds non-finite values")
    return x


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``||a_i - b_j||^2`` as ``|a|^2 + |b|^2 - 2 a.b`` in float64, clipped at 0 (rounding)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def median_bandwidth(x: np.ndarray, y: np.ndarray) -> float:
    """The median heuristic (Gretton et al. 2012): the median Euclidean distance between distinct pairs
    of the pooled sample; 1.0 if that median is 0 (all points equal)."""
    z = np.concatenate([_as_2d(x, "x"), _as_2d(y, "y")])
    iu = np.triu_indices(z.shape[0], k=1)
    med = float(np.median(np.sqrt(_sq_dists(z, z)[iu]))) if iu[0].size else 0.0
    return med if med > 0 else 1.0


def _kernel_fn(kernel: str | KernelFn, bandwidth: float | str, x, y) -> KernelFn:
    if callable(kernel):
        return kernel
    if kernel != "rbf":
        raise ValueError(f"kernel must be 'rbf' or a function (a, b) -> Gram matrix, got {kernel!r}")
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth must be a positive number or 'median', got {bandwidth!r}")
        bandwidth = median_bandwidth(x, y)
    if not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a positive number or 'median', got {bandwidth}")
    gamma = 1.0 / (2.0 * float(bandwidth) ** 2)
    return lambda a, b: np.exp(-gamma * _sq_dists(a, b))


def _kernel_sum(a: np.ndarray, b: np.ndarray, k: KernelFn, *, skip_diagonal: bool) -> float:
    """``sum_{i,j} k(a_i, b_j)`` in row blocks; ``skip_diagonal`` (a is b) leaves out ``i == j``."""
    total = 0.0
    for s in range(0, a.shape[0], _BLOCK):
        g = np.asarray(k(a[s : s + _BLOCK], b), dtype=np.float64)
        total += float(g.sum())
        if skip_diagonal:
            total -= float(np.trace(g, offset=s))
    return total


def _mmd2(x, y, kernel, bandwidth, *, unbiased: bool) -> float:
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    m, n = x.shape[0], y.shape[0]
    least = 2 if unbiased else 1
    if m < least or n < least:
        raise ValueError(
            f"the {'unbiased' if unbiased else 'biased'} MMD estimate needs at least {least} "
            f"samples in each set, got {m} and {n}"
        )
    k = _kernel_fn(kernel, bandwidth, x, y)
    kxy = _kernel_sum(x, y, k, skip_diagonal=False) / (m * n)
    if unbiased:
        kxx = _kernel_sum(x, x, k, skip_diagonal=True) / (m * (m - 1))
        kyy = _kernel_sum(y, y, k, skip_diagonal=True) / (n * (n - 1))
    else:
        kxx = _kernel_sum(x, x, k, skip_diagonal=False) / (m * m)
        kyy = _kernel_sum(y, y, k, skip_diagonal=False) / (n * n)
    return float(kxx + kyy - 2.0 * kxy)


def mmd2_unbiased(
    x: np.ndarray, y: np.ndarray, kernel: str | KernelFn = "rbf", bandwidth: float | str = "median"
) -> float:
    """Unbiased estimate of the squared maximum mean discrepancy (Gretton et al. 2012, JMLR 13, Lemma 6).

    .. math::
        \\mathrm{MMD}_u^2(X, Y) = \\frac{1}{m(m-1)} \\sum_{i \\ne j} k(x_i, x_j)
            + \\frac{1}{n(n-1)} \\sum_{i \\ne j} k(y_i, y_j) - \\frac{2}{mn} \\sum_{i=1}^{m}\\sum_{j=1}^{n} k(x_i, y_j)

    with the Gaussian RBF kernel :math:`k(a, b) = \\exp\\left(-\\lVert a - b \\rVert^2 / (2\\sigma^2)\\right)`.
    A U-statistic: unbiased for the population :math:`\\mathrm{MMD}^2`, so it scatters around 0 (and can
    be slightly negative) when both samples come from one distribution. Computed in float64, in row
    blocks of the Gram matrices.

    Args:
        x: ``(m, d)`` sample, ``m >= 2``.
        y: ``(n, d)`` sample, ``n >= 2``.
        kernel: ``"rbf"`` or a function ``(a, b) -> (len(a), len(b))`` Gram matrix (then ``bandwidth`` is
            ignored).
        bandwidth: :math:`\\sigma` of the RBF kernel, or ``"median"`` (default): the median distance between
            distinct points of the pooled sample (:func:`median_bandwidth`), Gretton et al.'s heuristic
            for data of unknown scale. CMMD fixes :math:`\\sigma = 10` (:func:`cmmd`).

    Example:
        >>> x = np.array([[0.0, 0.0], [1.0, 0.0]])
        >>> round(mmd2_unbiased(x, x + 3.0, bandwidth=1.0), 6)  # 2 exp(-1/2) - 2 * (mean cross term, ~4e-4)
        1.212184
    """
    return _mmd2(x, y, kernel, bandwidth, unbiased=True)


def mmd2_biased(
    x: np.ndarray, y: np.ndarray, kernel: str | KernelFn = "rbf", bandwidth: float | str = "median"
) -> float:
    """The biased (V-statistic, "minimum variance") estimate of :math:`\\mathrm{MMD}^2`: Gretton et al.
    2012, Eq. 5, means over the full Gram matrices, diagonals included; never negative. With the RBF
    kernel (:math:`k(a, a) = 1`) it exceeds :func:`mmd2_unbiased` by
    :math:`(1 - \\bar k_{XX})/m + (1 - \\bar k_{YY})/n`, with :math:`\\bar k` the mean off-diagonal kernel
    value within a sample. Arguments as in :func:`mmd2_unbiased`; each sample needs one point.
    """
    return _mmd2(x, y, kernel, bandwidth, unbiased=False)


def cmmd(
    reference_embeddings: np.ndarray,
    generated_embeddings: np.ndarray,
    sigma: float = CMMD_SIGMA,
    scale: float = CMMD_SCALE,
    *,
    estimator: str = "unbiased",
) -> float:
    """CMMD (Jayasumana et al. 2024, arXiv 2401.09603) between reference and generated embeddings.

    .. math::
        \\mathrm{CMMD}(R, G) = 1000 \\cdot \\mathrm{MMD}_u^2(\\hat R, \\hat G),
        \\qquad k(a, b) = \\exp\\left(-\\frac{\\lVert a - b \\rVert^2}{2\\sigma^2}\\right),\\ \\sigma = 10

    where :math:`\\hat R, \\hat G` are the embeddings with rows scaled to unit length (the paper's CLIP
    embeddings are unit-normalised) and :math:`\\mathrm{MMD}_u^2` is :func:`mmd2_unbiased`, the unbiased
    estimator the paper writes down. Lower is better; 0 in expectation for samples of one distribution
    (single estimates can be slightly negative).

    What is implemented, exactly: rows normalised to unit length; :math:`\\sigma` = ``sigma`` (default 10,
    the paper's); the U-statistic with the diagonals of the within-sample Gram matrices left out; times
    ``scale`` (default 1000, the paper's reporting scale). The paper's released code (google-research
    ``cmmd/distance.py``) computes the biased, minimum-variance estimator instead (means over full
    Gram matrices, diagonals included), noting that the two nearly agree for large sets; they differ
    by :math:`1000\\,[(1 - \\bar k_{RR})/m + (1 - \\bar k_{GG})/n]` (see :func:`mmd2_biased`), which is not
    negligible for the few images of one user. ``estimator="biased"`` reproduces the released code.

    Args:
        reference_embeddings: ``(m, d)`` reference-image embeddings (``m >= 2``).
        generated_embeddings: ``(n, d)`` generated-image embeddings (``n >= 2``), same encoder.
        sigma: RBF bandwidth; the paper's 10 is for unit-norm embeddings (distances at most 2), where the
            kernel is nearly linear in the squared distance.
        scale: Multiplier of the reported value.
        estimator: ``"unbiased"`` (default, the paper's formula) or ``"biased"`` (the released code's).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r, g, r2 = rng.normal(size=(50, 8)), rng.normal(size=(50, 8)) + 0.5, rng.normal(size=(50, 8))
        >>> round(cmmd(r, g), 3), round(cmmd(r, r2), 3), round(cmmd(r, g, estimator="biased"), 3)
        (1.808, -0.127, 2.175)

    Not a distance between sets: a set against itself is not two independent samples, and the unbiased
    estimate is then :math:`-2000\\,(1 - \\bar k_{RR})/m < 0` (-0.402 for ``cmmd(r, r)`` above).
    """
    if estimator not in ("unbiased", "biased"):
        raise ValueError(f"estimator must be 'unbiased' or 'biased', got {estimator!r}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    r = _unit_rows(_as_2d(reference_embeddings, "reference_embeddings"))
    g = _unit_rows(_as_2d(generated_embeddings, "generated_embeddings"))
    return float(scale) * _mmd2(r, g, "rbf", float(sigma), unbiased=estimator == "unbiased")


# -- encoders -------------------------------------------------------------------------------------


# the same name / object / function resolution as the single-image metrics (one implementation)
from evalbench.metrics.single_image import _resolve_encoder  # noqa: E402


def _embed(encode: EncodeFn, images: Images, what: str) -> np.ndarray:
    """Unit-norm float64 ``(n, d)``: a 2-D float array is taken as embeddings, anything else is encoded."""
    if isinstance(images, np.ndarray) and images.ndim == 2:
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(
                f"{what}: a 2-D array is taken as (n, d) embeddings and must be float, got dtype "
                f"{images.dtype}; pass images as a list"
            )
        return _unit_rows(_as_2d(images, what))
    images = list(images)
    if not images:
        return np.zeros((0, 0))
    emb = np.asarray(encode(images), dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(images):
        raise ValueError(f"encoder must return (n, d) embeddings for n={len(images)} {what}, got shape {emb.shape}")
    return _unit_rows(emb)


def _new_group(existing, group):
    if group is not None:
        return group
    group = f"group{len(existing)}"
    while group in existing:
        group += "_"
    return group


# -- CMMD -----------------------------------------------------------------------------------------


class CMMD:
    """CMMD (:func:`cmmd`) between each user's reference images and the images generated for them.

    Per user :math:`u` with references :math:`R_u` and generations :math:`G_u`, :meth:`compute` returns
    the unweighted mean over users of :math:`\\mathrm{CMMD}(R_u, G_u)` (each held-out user counts once),
    the per-user values in :attr:`per_group`; with ``pooled=True`` it returns instead one
    :math:`\\mathrm{CMMD}(\\bigcup_u R_u, \\bigcup_u G_u)` over everything seen, under the id
    ``cmmd_pooled[<encoder>]``. Lower is better.

    A user's generations accumulate over calls. Their references are a set: a reference passed again in
    a later call for the same user (the usual pattern, the user's references with each prompt's
    generations) counts once (exact duplicate embeddings within a user are dropped, since a repeated point
    would bias the within-reference term of the U-statistic upwards).

    Args:
        encoder: ``None`` or a name (``"effnet-lite0"``, the default stand-in, not CLIP; or a CLIP model id
            or directory, see :class:`~workbench.encoders.image.ImageEncoder`; loaded on first
            use), an object with ``encode(images)``, or a function ``images -> (n, d)`` embeddings.
        encoder_name: Label in the metric's id; default the encoder's name, ``label`` or ``__name__``.
        pooled: Pool all users' references and generations into one CMMD instead of averaging per user.
        sigma, scale, estimator: As in :func:`cmmd` (defaults: 10, 1000, ``"unbiased"``).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> m = CMMD(encoder_name="toy")
        >>> m.update(rng.normal(size=(20, 4)), rng.normal(size=(20, 4)), group="ann")
        >>> m.update(rng.normal(size=(20, 4)), rng.normal(size=(20, 4)) + 1.0, group="bob")
        >>> m.name, m.higher_is_better
        ('cmmd[toy]', False)
        >>> round(m.compute(), 3), {u: round(v, 2) for u, v in m.per_group.items()}
        (2.723, {'ann': 0.28, 'bob': 5.17})
    """

    higher_is_better = False

    def __init__(
        self,
        encoder: None | str | EncodeFn = None,
        *,
        encoder_name: str | None = None,
        pooled: bool = False,
        sigma: float = CMMD_SIGMA,
        scale: float = CMMD_SCALE,
        estimator: str = "unbiased",
    ):
        if estimator not in ("unbiased", "biased"):
            raise ValueError(f"estimator must be 'unbiased' or 'biased', got {estimator!r}")
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be positive, got {sigma}")
        self._encode, self.encoder = _resolve_encoder(encoder, encoder_name)
        self.pooled, self.sigma, self.scale, self.estimator = bool(pooled), float(sigma), float(scale), estimator
        self._refs: dict[str, np.ndarray] = {}
        self._gens: dict[str, list[np.ndarray]] = {}
        self.per_group: dict[str, float] = {}

    @property
    def name(self) -> str:
        return f"{'cmmd_pooled' if self.pooled else 'cmmd'}[{self.encoder}]"

    def update(self, references: Images, generations: Images, group: str | None = None) -> None:
        """Add one user's references (a set) and generations (accumulated).

        Args:
            references: The user's reference images, or their ``(m, d)`` embeddings.
            generations: Images generated for the user, or their ``(n, d)`` embeddings.
            group: The user; ``None``: this call is a user of its own.
        """
        group = _new_group(self._gens, group)
        refs = _embed(self._encode, references, "references")
        gens = _embed(self._encode, generations, "generations")
        if refs.size and gens.size and refs.shape[1] != gens.shape[1]:
            raise ValueError(
                f"references and generations have different dimensions: {refs.shape[1]} and {gens.shape[1]}"
            )
        old = self._refs.get(group)
        if old is not None and refs.size:
            refs = np.concatenate([old, refs]) if old.size else refs
        elif old is not None:
            refs = old
        if refs.size:
            _, first = np.unique(refs, axis=0, return_index=True)
            refs = refs[np.sort(first)]
        self._refs[group] = refs
        self._gens.setdefault(group, []).append(gens)

    def _pair(self, group):
        gens = [g for g in self._gens[group] if g.size]
        return self._refs[group], (np.concatenate(gens) if gens else np.zeros((0, 0)))

    def compute(self) -> float:
        """Mean over users of per-user CMMD (or the pooled CMMD); each user needs two references and two
        generations (the pooled form, two in all)."""
        if not self._gens:
            raise ValueError("no users: call update() first")
        kw = dict(sigma=self.sigma, scale=self.scale, estimator=self.estimator)
        if self.pooled:
            pairs = [self._pair(g) for g in self._gens]
            refs = [r for r, _ in pairs if r.size]
            gens = [g for _, g in pairs if g.size]
            if not refs or not gens:
                raise ValueError("pooled CMMD needs references and generations; none were given")
            refs = np.concatenate(refs)
            _, first = np.unique(refs, axis=0, return_index=True)
            return cmmd(refs[np.sort(first)], np.concatenate(gens), **kw)
        per = {}
        for g in self._gens:
            refs, gens = self._pair(g)
            if refs.shape[0] < 2 or gens.shape[0] < 2:
                raise ValueError(
                    f"user {g!r} has {refs.shape[0]} distinct reference(s) and {gens.shape[0]} "
                    "generation(s); CMMD needs at least two of each per user"
                )
            per[g] = cmmd(refs, gens, **kw)
        self.per_group = per
        return float(np.mean(list(per.values())))

    def confidence_interval(
        self, *, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
    ) -> tuple[float, float, float]:
        """``(mean, low, high)``: the per-user mean and its percentile-bootstrap CI over users
        (:func:`~evalbench.metrics.preference.cluster_mean_ci`); per-user mode only."""
        if self.pooled:
            raise ValueError("a pooled CMMD is one number; use pooled=False for a CI over users")
        self.compute()
        users = list(self.per_group)
        return cluster_mean_ci(
            np.array([self.per_group[u] for u in users]),
            np.arange(len(users)),
            n_resamples=n_resamples,
            seed=seed,
            confidence=confidence,
        )

    def reset(self) -> None:
        self._refs, self._gens, self.per_group = {}, {}, {}


# -- image preference -----------------------------------------------------------------------------


class ImagePreference:
    """Image-space preference margin of a user's generations, averaged per user and then over users.

    For a held-out user :math:`u` with hidden liked images :math:`L_u`, hidden negatives :math:`N_u` and
    unit-normalised image embeddings :math:`e(\\cdot)`, a generation :math:`x` scores

    .. math::
        \\mathrm{pref}_u(x) = \\frac{1}{|L_u|}\\sum_{i\\in L_u} e(x)\\cdot e(i)
            - \\frac{1}{|N_u|}\\sum_{j\\in N_u} e(x)\\cdot e(j)

    (:func:`~evalbench.metrics.preference.preference_margin`, as for ``text_preference``). A user's score
    is the mean over their generations; :meth:`compute` is the unweighted mean over users, per-user
    values in :attr:`per_group`. Higher is better; in [-2, 2]. Each call scores its generations against
    the liked and negative images given in that call.

    Args:
        encoder: As in :class:`CMMD` (default the ``effnet-lite0`` stand-in, not CLIP).
        encoder_name: Label in the metric's id ``image_preference[<encoder>]``.

    Example:
        >>> m = ImagePreference(encoder_name="toy")
        >>> liked, neg = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
        >>> m.update(np.array([[1.0, 0.0], [1.0, 1.0]]), liked, neg, group="ann")  # margins 1, 0
        >>> m.update(np.array([[0.0, 2.0]]), liked, neg, group="bob")  # margin -1
        >>> m.name, m.compute(), m.per_group
        ('image_preference[toy]', -0.25, {'ann': 0.5, 'bob': -1.0})
    """

    higher_is_better = True

    def __init__(self, encoder: None | str | EncodeFn = None, *, encoder_name: str | None = None):
        self._encode, self.encoder = _resolve_encoder(encoder, encoder_name)
        self.margins: list[float] = []
        self.users: list = []
        self.per_group: dict = {}

    @property
    def name(self) -> str:
        return f"image_preference[{self.encoder}]"

    def update(
        self, generations: Images, liked_images: Images, negative_images: Images, group: str | None = None
    ) -> None:
        """Score ``generations`` against one user's hidden liked and negative images.

        Args:
            generations: Images generated for the user, or their ``(n, d)`` embeddings.
            liked_images: The user's hidden liked images (or embeddings), at least one.
            negative_images: The user's hidden negatives (disliked or unseen; or embeddings), at least one.
            group: The user; ``None``: this call is a user of its own.
        """
        group = _new_group(set(self.users), group)
        gens = _embed(self._encode, generations, "generations")
        liked = _embed(self._encode, liked_images, "liked_images")
        neg = _embed(self._encode, negative_images, "negative_images")
        if gens.shape[0] == 0:
            return
        dims = {a.shape[1] for a in (gens, liked, neg) if a.size}
        if len(dims) > 1:
            raise ValueError(f"generations, liked and negative embeddings differ in dimension: {sorted(dims)}")
        margins = preference_margin(gens, liked, neg)
        self.margins += [float(v) for v in margins]
        self.users += [group] * len(margins)

    def compute(self) -> float:
        """Mean over users of each user's mean margin."""
        if not self.margins:
            raise ValueError("no generations: call update() first")
        per: dict = {}
        for u, v in zip(self.users, self.margins):
            per.setdefault(u, []).append(v)
        self.per_group = {u: float(np.mean(v)) for u, v in per.items()}
        return float(np.mean(list(self.per_group.values())))

    def confidence_interval(
        self, *, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
    ) -> tuple[float, float, float]:
        """``(mean, low, high)``: :meth:`compute`'s value and its percentile-bootstrap CI over users."""
        if not self.margins:
            raise ValueError("no generations: call update() first")
        codes: dict = {}
        clusters = np.array([codes.setdefault(u, len(codes)) for u in self.users])
        return cluster_mean_ci(
            np.array(self.margins), clusters, n_resamples=n_resamples, seed=seed, confidence=confidence
        )

    def reset(self) -> None:
        self.margins, self.users, self.per_group = [], [], {}
