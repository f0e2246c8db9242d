r"""Training-free single-image generator: closed-form multi-scale patch diffusion.

After Qiu, Kutulakos and Lindell, "Efficient and Training-Free Single-Image Diffusion Models"
(arXiv 2606.04299, CVPR 2026; MIT reference code at haojunqiu/efficient-SID-code, read for the method,
not copied). A reference image is treated as the finite dataset of its patches at several scales. For a
finite dataset :math:`\{y_n\}` the optimal (MMSE) denoiser of :math:`x_t = \alpha_t x + \sigma_t \epsilon`
has a closed form, a softmax-weighted mean of the data:

.. math::
    \hat x(x_t) = \sum_n w_n\, y_n, \qquad
    w = \operatorname{softmax}_n\!\Big(-\frac{\|x_t - \alpha_t y_n\|^2}{2\sigma_t^2}\Big)

so a generator exists the moment a user hands us a picture, with no training. Per step:

1. every overlapping ``P x P`` patch of the noisy image (stride ``query_stride``) is denoised against all
   reference patches of the same scale (stride ``dataset_stride``);
2. the patch estimates are folded back into an image, overlapping pixels averaged with a Gaussian window
   (``fold_rho`` on the patch's [-1, 1] coordinates);
3. except at the coarsest scale, the estimate takes its low frequencies from the finished coarser scale
   (a two-scale Laplacian blend: ``up(coarser) + fine - up(down(fine))``);
4. a deterministic DDIM step on the flow-linear schedule (:math:`\alpha_t = 1 - \sigma_t`, ``eta`` = 0)
   moves to the next noise level.

Scales are sampled coarse to fine (default 4 scales at factor 0.5, 15 x 15 patches, 10 steps: the
paper's defaults), and the finest scale is the image.

Speed. The exact denoiser is attention: with ``q = [x, 1]``, ``k = [alpha y, -alpha^2 |y|^2 / 2]``,
``v = y`` and scale ``1/sigma^2``, ``softmax(q k^T / sigma^2) v`` is the formula above (the ``|x|^2`` term is
constant per query and cancels in the softmax), so it runs as fused ``scaled_dot_product_attention`` in
query chunks that bound memory. For large references the ``topk`` path keeps only the ``k`` nearest
reference patches per query, found by a chunked exact search (optionally in a PCA subspace of
``search_dim`` dimensions, or with FAISS when installed), with the weights then computed exactly over
those candidates. The nearest neighbours under ``||x - alpha y||`` are those under ``||x/alpha - y||``, so
the search index does not depend on the step.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

METHODS = ("auto", "exact", "topk")
SEARCHES = ("auto", "torch", "faiss-flat", "faiss-ivf")
SCALE_RULES = ("within", "floor")
RESAMPLERS = ("torch-bicubic", "keys-cubic")
QUANTIZE = ("round", "truncate")
#: scores held at once per chunk (queries x reference patches), about 256 MB in float32
SCORE_BUDGET = 2**26
#: the exact CPU path leaves out patches weighing under exp(-WEIGHT_CUTOFF) of a query's largest weight (at
#: most N * 1e-13 of the total), and goes sparse when under 1 / SPARSE_SHARE of the weights are left
WEIGHT_CUTOFF = 30.0
SPARSE_SHARE = 16


@dataclass
class PatchConfig:
    """Settings of the patch generator. The defaults are the ``auto`` preset (the paper's patch size, scales,
    steps and window; the exact closed form while a scale's cost stays under ``exact_budget``, above it the 16
    nearest patches found by ``search``: at 128 px and up the finest scale is ``topk/faiss-ivf`` where faiss is
    installed, an approximation); :meth:`reference` is the authors' sampler, exact at every scale;
    :meth:`fast` the CPU preset. ``PatchDiffusion.plan`` says which search each scale uses.

    Attributes:
        patch_size: side of the square patches (15); larger patches copy larger structures.
        num_scales: pyramid depth, or ``"auto"`` (default, as the reference code): as many scales as keep
            the coarsest short side at least ``min_short_side`` (4 scales for a 256-pixel image). A number
            is reduced the same way when the image is too small for it.
        scale_factor: size ratio between adjacent scales (0.5).
        min_short_side: smallest short side of the coarsest scale (default ``ceil(1.6 * patch_size)``).
        steps: denoising steps per scale (10).
        sigma_min: smallest noise level the denoiser is evaluated at (1e-4).
        eta: fresh-noise share of each step in [0, 1] (0: deterministic DDIM).
        fold_rho: width of the Gaussian window overlapping patch estimates are averaged with (0.2).
        dataset_stride: stride over the reference's patches (1: every patch).
        query_stride: stride over the noisy image's patches (1: every patch).
        method: ``exact`` (all reference patches), ``topk`` (the ``k`` nearest), or ``auto``
            (``exact`` while queries x reference patches x patch dimension stays under ``exact_budget``).
        k: candidates per query for ``topk``.
        search_dim: ``topk`` searches in a PCA subspace of this many dimensions (``None``: the full
            patch dimension, an exact k-NN); the weights always use full patches.
        search: how ``topk`` finds candidates: ``torch`` (chunked exact k-NN), ``faiss-flat`` (exact, FAISS),
            ``faiss-ivf`` (approximate, inverted lists: sub-linear, for large references) or ``auto``
            (``faiss-ivf`` above ``ivf_min`` reference patches when faiss is installed, else exact).
        ivf_min: reference patches from which ``auto`` switches to ``faiss-ivf``.
        nprobe: inverted lists searched per query (``faiss-ivf``).
        exact_budget: ``auto`` threshold in multiply-adds per denoiser call.
        chunk: queries per chunk (bounds memory: chunk x reference patches scores at a time).
        tileable: sample on a torus, so the output tiles seamlessly.
        scale_rule: how ``num_scales="auto"`` lays out the pyramid: ``within`` (as many halvings as keep the
            coarsest short side at least ``min_short_side``: 4 scales at 256 px) or ``floor`` (the reference
            code's: one halving more, the coarsest scale then set to a short side of exactly
            ``min_short_side``: 256, 128, 64, 32, 24). Under ``floor`` the blend's low band follows the same
            rule, as in the reference.
        resampler: ``torch-bicubic`` (``F.interpolate`` bicubic, a = -0.75, edges clamped, antialiased when
            shrinking) or ``keys-cubic`` (the reference code's ResizeRight cubic: a = -0.5, edges mirrored,
            antialiased per shrinking side, sides resampled one after the other, the stronger shrink first).
        quantize: float image to 8 bits: ``round`` to the nearest level or ``truncate`` (the reference
            code's ``mul(255).byte()``).
        dtype: ``float32`` or ``bfloat16`` (the reference code's default on CUDA: images and patches in
            bfloat16, distances' products in bfloat16, norms and softmax in float32, as CUDA autocast runs
            them).
        device: ``cuda`` / ``cpu`` (default: CUDA when available).
    """

    patch_size: int = 15
    num_scales: int | str = "auto"
    scale_factor: float = 0.5
    min_short_side: int | None = None
    steps: int = 10
    sigma_min: float = 1e-4
    eta: float = 0.0
    fold_rho: float = 0.2
    dataset_stride: int = 1
    query_stride: int = 1
    method: str = "auto"
    k: int = 16
    search_dim: int | None = None
    search: str = "auto"
    ivf_min: int = 8000
    nprobe: int = 8
    exact_budget: float = 2e10
    chunk: int = 4096
    tileable: bool = False
    scale_rule: str = "within"
    resampler: str = "torch-bicubic"
    quantize: str = "round"
    dtype: str = "float32"
    device: str | None = None

    def __post_init__(self):
        def check(name, ok, want):
            if not ok:
                raise ValueError(f"PatchConfig.{name} must be {want}, got {getattr(self, name)!r}")

        check("patch_size", isinstance(self.patch_size, int) and self.patch_size >= 2, "an integer >= 2")
        check(
            "num_scales",
            self.num_scales == "auto" or (isinstance(self.num_scales, int) and self.num_scales >= 1),
            "'auto' or an integer >= 1",
        )
        check("scale_factor", 0 < self.scale_factor < 1, "in (0, 1)")
        check("steps", isinstance(self.steps, int) and self.steps >= 1, "an integer >= 1")
        check("sigma_min", 0 < self.sigma_min < 1, "in (0, 1)")
        check("eta", 0 <= self.eta <= 1, "in [0, 1]")
        check("fold_rho", self.fold_rho > 0, "> 0")
        check("dataset_stride", isinstance(self.dataset_stride, int) and self.dataset_stride >= 1, "an integer >= 1")
        check(
            "query_stride",
            isinstance(self.query_stride, int) and 1 <= self.query_stride <= self.patch_size,
            "an integer in [1, patch_size]",
        )
        check("method", self.method in METHODS, f"one of {', '.join(METHODS)}")
        check("k", isinstance(self.k, int) and self.k >= 1, "an integer >= 1")
        check(
            "search_dim",
            self.search_dim is None or (isinstance(self.search_dim, int) and self.search_dim >= 1),
            "None or an integer >= 1",
        )
        check("chunk", isinstance(self.chunk, int) and self.chunk >= 1, "an integer >= 1")
        check("search", self.search in SEARCHES, f"one of {', '.join(SEARCHES)}")
        check("scale_rule", self.scale_rule in SCALE_RULES, f"one of {', '.join(SCALE_RULES)}")
        check("resampler", self.resampler in RESAMPLERS, f"one of {', '.join(RESAMPLERS)}")
        check("quantize", self.quantize in QUANTIZE, f"one of {', '.join(QUANTIZE)}")
        check("dtype", self.dtype in ("float32", "bfloat16"), "'float32' or 'bfloat16'")
        if self.min_short_side is None:
            self.min_short_side = math.ceil(1.6 * self.patch_size)

    @classmethod
    def fast(cls, **overrides: Any) -> PatchConfig:
        """The CPU preset: every 4th query patch, every 3rd reference patch, the 8 nearest reference patches
        per query, searched in a 64-d PCA subspace (FAISS inverted lists for large references when
        faiss is installed). Measured in ``benchmarks/patch_speed.py``; the copy rate in tests."""
        base = dict(query_stride=4, dataset_stride=3, method="topk", k=8, search_dim=64)
        return cls(**{**base, **overrides})

    @classmethod
    def reference(cls, **overrides: Any) -> PatchConfig:
        """The authors' sampler (efficient-SID ``configs/uncond/pixel_exact.yaml``, in float32): every patch of
        every scale, the exact closed form at all scales; their pyramid (``scale_rule="floor"``: 5 scales at
        256 px, the coarsest 24 px on its short side), their resampler (``keys-cubic``), noise drawn for every
        scale first, their 8-bit conversion (``truncate``). ``dtype="bfloat16"`` is their CUDA default.
        Measured against their code in ``benchmarks/patch_speed.py --against``."""
        base = dict(method="exact", scale_rule="floor", resampler="keys-cubic", quantize="truncate")
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the closed-form patch denoiser -------------------------------------------------------------------


class PatchDenoiser:
    """The closed-form denoiser of a finite patch set ``y`` (``(N, D)``), exact or top-k.

    ``denoiser(x, alpha, sigma)`` maps noisy patches ``(M, D)`` to their estimates ``(M, D)``.

    Args:
        patches: reference patches, ``(N, D)``.
        method: ``exact`` or ``topk``.
        k: candidates per query (``topk``).
        search_dim: PCA dimensions for the candidate search (``None``: full dimension).
        chunk: queries per chunk.
    """

    def __init__(
        self,
        patches: torch.Tensor,
        *,
        method: str = "exact",
        k: int = 16,
        search_dim: int | None = None,
        chunk: int = 4096,
        seed: int = 0,
        search: str = "torch",
        ivf_min: int = 8000,
        nprobe: int = 8,
    ):
        import torch

        if method not in ("exact", "topk"):
            raise ValueError(f"PatchDenoiser method must be 'exact' or 'topk', got {method!r}")
        self.y = patches.contiguous()
        self.N, self.D = self.y.shape
        self.method = method
        self.chunk = max(1, min(chunk, SCORE_BUDGET // max(self.N, 1)))  # bound the chunk's score matrix
        self.k = min(k, self.N)
        self.mean = self.y.mean(0)
        self.y_norm2 = (self.y * self.y).sum(1)
        self.calls = 0
        self._faiss, kind = None, "torch"
        if method == "topk":
            if search_dim is not None and search_dim < self.D:
                g = torch.Generator(device="cpu").manual_seed(seed)
                sub = self.y[torch.randperm(self.N, generator=g)[:20000].to(self.y.device)]
                _, _, vh = torch.linalg.svd(sub - self.mean, full_matrices=False)
                self.proj = vh[:search_dim].T.contiguous()  # (D, d)
                self.keys = (self.y - self.mean) @ self.proj
            else:
                self.proj = None
                self.keys = self.y
            self.keys_norm2 = (self.keys * self.keys).sum(1)
            self._faiss, kind = _faiss_index(self.keys, search, ivf_min=ivf_min, nprobe=nprobe, seed=seed)
        self.search = "exact" if method == "exact" else kind

    def __call__(self, x: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
        import torch

        self.calls += 1
        if sigma <= 0:
            raise ValueError("the closed-form denoiser is undefined at sigma = 0 (the kernel scale is 1/sigma^2)")
        out = torch.empty_like(x)
        for start in range(0, x.shape[0], self.chunk):
            xs = x[start : start + self.chunk]
            out[start : start + len(xs)] = (
                self._exact(xs, alpha, sigma) if self.method == "exact" else self._topk(xs, alpha, sigma)
            )
        return out

    def _exact(self, x, alpha: float, sigma: float):
        import torch
        import torch.nn.functional as F

        if x.dtype == torch.bfloat16:
            # as the reference runs under CUDA autocast: products in bfloat16, norms and softmax in float32
            ay = alpha * self.y
            n2 = (ay.float() ** 2).sum(1)
            logits = (n2[None, :] - (2 * (x @ ay.T)).float()) * (-1.0 / (2.0 * sigma * sigma))
            return torch.softmax(logits, 1).to(torch.bfloat16) @ self.y
        if alpha == 0.0:  # a flat kernel (the first step from pure noise): every patch weighs the same
            return self.mean.expand_as(x).clone()
        if x.device.type == "cpu":
            return self._exact_cpu(x, alpha, sigma)
        # attention form: scores = (alpha x.y - alpha^2 |y|^2 / 2) / sigma^2 (|x|^2 cancels in the softmax)
        ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
        q = torch.cat([x, ones], 1)
        k = torch.cat([alpha * self.y, (-0.5 * alpha * alpha) * self.y_norm2[:, None]], 1)
        out = F.scaled_dot_product_attention(
            q[None, None], k[None, None], self.y[None, None], scale=1.0 / (sigma * sigma)
        )
        return out[0, 0]

    def _exact_cpu(self, x, alpha: float, sigma: float):
        """The exact estimate on CPU: the scores as one matrix product, then the weighted mean either dense or,
        when the kernel is sharp enough that few patches keep a weight above ``exp(-WEIGHT_CUTOFF)`` of the
        largest (at low noise: a handful of the N), as a sparse product over those. What it drops weighs at
        most ``N * exp(-WEIGHT_CUTOFF)`` of the total, far under float32's rounding of the sum; the fused
        attention kernel wins on CUDA but not here, where its online softmax costs more than the product."""
        import torch

        logits = torch.addmm(
            self.y_norm2[None, :],
            x,
            self.y.T,
            beta=-0.5 * alpha * alpha / (sigma * sigma),
            alpha=alpha / (sigma * sigma),
        )
        logits -= logits.amax(1, keepdim=True)
        keep = logits > -WEIGHT_CUTOFF
        counts = keep.sum(1)
        if int(counts.sum()) * SPARSE_SHARE < logits.numel():
            rows, cols = keep.nonzero(as_tuple=True)
            vals = logits[rows, cols].exp_()
            crow = torch.zeros(x.shape[0] + 1, dtype=torch.int64)
            torch.cumsum(counts, 0, out=crow[1:])
            with warnings.catch_warnings():  # torch calls its CSR tensors beta; the product is what we need
                warnings.simplefilter("ignore", UserWarning)
                weights = torch.sparse_csr_tensor(crow, cols, vals, size=logits.shape)
            total = torch.zeros(x.shape[0], dtype=vals.dtype).index_add_(0, rows, vals)
            return (weights @ self.y) / total[:, None]
        del keep
        logits.exp_()
        return (logits @ self.y) / logits.sum(1, keepdim=True)

    def _topk(self, x, alpha: float, sigma: float):
        import torch

        if alpha < 1e-6:  # flat kernel: every patch weighs the same
            return self.mean.expand_as(x).clone()
        q = x / alpha  # the same neighbours as ||x - alpha y||: ||x - alpha y||^2 = alpha^2 ||x/alpha - y||^2
        if self.proj is not None:
            q = (q - self.mean) @ self.proj
        if self._faiss is not None:
            vals, idx = self._faiss.search(q.float().cpu().numpy(), self.k)
            vals = torch.as_tensor(vals, device=x.device, dtype=x.dtype)
            idx = torch.as_tensor(idx, device=x.device)
            missing = idx < 0  # IVF found fewer than k in the lists it probed
            if bool(missing.any()):
                idx = torch.where(missing, idx[:, :1].clamp_min(0), idx)
                vals = vals.masked_fill(missing, float("inf"))
        else:
            d2 = self.keys_norm2[None, :] - 2.0 * (q @ self.keys.T)  # ||q - y||^2 - ||q||^2
            vals, idx = torch.topk(d2, self.k, dim=1, largest=False)
        cand = self.y[idx]  # (m, k, D)
        if self.proj is None:
            # full-dimension search: the k distances are already exact, up to ||q||^2, constant per
            # query, which the softmax ignores
            logits = vals * (-alpha * alpha / (2.0 * sigma * sigma))
        else:  # subspace search: exact distances over the candidates
            dot = torch.bmm(cand, x[:, :, None])[..., 0]
            logits = (2.0 * alpha * dot - alpha * alpha * self.y_norm2[idx]) / (2.0 * sigma * sigma)
        w = torch.softmax(logits, dim=1)
        return torch.bmm(w[:, None, :], cand)[:, 0]


def _faiss_index(keys, search: str, *, ivf_min: int, nprobe: int, seed: int):
    """``(index, kind)``: a FAISS index over ``keys`` for ``search`` (``None, "torch"``: search with torch). ``auto`` picks inverted
    lists (IVF, ``sqrt(N)`` lists, ``nprobe`` searched) above ``ivf_min`` keys, exact flat search below."""
    if search == "torch":
        return None, "torch"
    try:
        import faiss  # optional: `pip install faiss-cpu` (or faiss-gpu)
    except ImportError:
        if search == "auto":
            return None, "torch"
        raise ImportError(f"search={search!r} needs faiss: pip install faiss-cpu (or faiss-gpu)") from None
    data = keys.float().cpu().numpy()
    n, d = data.shape
    kind = search if search != "auto" else ("faiss-ivf" if n >= ivf_min else "faiss-flat")
    if kind == "faiss-flat":
        index = faiss.IndexFlatL2(d)
    else:
        nlist = max(1, int(n**0.5))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        rng = np.random.default_rng(seed)
        train = data[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
        index.train(train)
        index.nprobe = nprobe
    index.add(data)
    return index, kind


# -- images <-> patches -------------------------------------------------------------------------------


def gaussian_window(patch_size: int, channels: int, rho: float):
    """Separable Gaussian weights over the patch's [-1, 1] coordinates, flattened like ``F.unfold``."""
    import torch

    g = torch.linspace(-1, 1, patch_size)
    g = torch.exp(-0.5 * (g / rho) ** 2)
    return torch.outer(g, g).repeat(channels, 1, 1).reshape(-1)


def extract_patches(image: torch.Tensor, patch_size: int, stride: int = 1) -> torch.Tensor:
    """``(1, C, H, W)`` -> ``(L, C * P * P)`` patches (channel-major, as ``F.unfold`` lays them out)."""
    import torch.nn.functional as F

    return F.unfold(image, patch_size, stride=stride)[0].T.contiguous()


def patch_positions(n: int, patch_size: int, stride: int, *, wrap: bool) -> list[int]:
    """Top-left corners along one axis: every ``stride``-th, plus the last one so the edge is covered
    (``wrap``: every ``stride``-th of all ``n`` positions of the torus)."""
    if wrap:
        return list(range(0, n, stride))
    pos = list(range(0, n - patch_size + 1, stride))
    if pos[-1] != n - patch_size:
        pos.append(n - patch_size)
    return pos


def _grid(n: int, patch_size: int, stride: int, wrap: bool, device):
    import torch

    pos = torch.tensor(patch_positions(n, patch_size, stride, wrap=wrap), device=device)
    idx = pos[:, None] + torch.arange(patch_size, device=device)[None, :]
    return idx % n if wrap else idx  # (positions, P)


def denoise_image(
    x: torch.Tensor,
    denoiser: PatchDenoiser,
    alpha: float,
    sigma: float,
    *,
    patch_size: int,
    stride: int,
    window: torch.Tensor,
    tileable: bool = False,
) -> torch.Tensor:
    """Denoise the ``P x P`` patches of ``x`` (``(1, C, H, W)``) at ``stride`` and fold the estimates back.

    Overlapping estimates are averaged with ``window``. The last row and column of patches are added
    so the edges are covered; with ``tileable`` the patches wrap around the edges (a torus).
    """
    import torch

    _, C, H, W = x.shape
    P = patch_size
    rows = _grid(H, P, stride, tileable, x.device)  # (nr, P)
    cols = _grid(W, P, stride, tileable, x.device)  # (nc, P)
    nr, nc = rows.shape[0], cols.shape[0]
    r = rows[:, None, :, None].expand(nr, nc, P, P)
    c = cols[None, :, None, :].expand(nr, nc, P, P)
    q = x[0][:, r, c]  # (C, nr, nc, P, P)
    q = q.permute(1, 2, 0, 3, 4).reshape(nr * nc, C * P * P)
    est = (denoiser(q, alpha, sigma) * window).reshape(nr, nc, C, P, P).permute(2, 0, 1, 3, 4)
    wts = window.reshape(C, 1, 1, P, P).expand(C, nr, nc, P, P)
    ch = torch.arange(C, device=x.device).view(C, 1, 1, 1, 1).expand(C, nr, nc, P, P)
    rr, cc = r.expand(C, nr, nc, P, P), c.expand(C, nr, nc, P, P)
    num = torch.zeros(C, H, W, dtype=x.dtype, device=x.device)
    den = torch.zeros(C, H, W, dtype=x.dtype, device=x.device)
    num.index_put_((ch, rr, cc), est, accumulate=True)
    den.index_put_((ch, rr, cc), wts.to(x.dtype), accumulate=True)
    return (num / den.clamp_min(1e-12))[None]


# -- pyramid ------------------------------------------------------------------------------------------


def resize(
    x: torch.Tensor, size: tuple[int, int], *, circular: bool = False, resampler: str = "torch-bicubic"
) -> torch.Tensor:
    """Resize the last two dimensions to ``size`` with ``resampler`` (see :class:`PatchConfig`): ``torch-bicubic``
    (antialiased when shrinking) or ``keys-cubic``; ``circular`` resamples the periodic extension so a tileable
    image stays tileable."""
    import torch.nn.functional as F

    H, W = x.shape[-2:]
    if (H, W) == tuple(size):
        return x
    if resampler == "keys-cubic":
        return _resize_keys(x, tuple(size), circular)
    shrink = size[0] < H or size[1] < W
    if circular:
        big = x.repeat(1, 1, 3, 3)
        out = F.interpolate(big, (3 * size[0], 3 * size[1]), mode="bicubic", align_corners=False, antialias=shrink)
        return out[..., size[0] : 2 * size[0], size[1] : 2 * size[1]]
    return F.interpolate(x, size, mode="bicubic", align_corners=False, antialias=shrink)


def _keys_cubic(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (zero beyond |t| = 2)."""
    a = np.abs(t)
    return (1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1) + (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((1 < a) & (a <= 2))


@lru_cache(maxsize=256)
def keys_cubic_matrix(n_in: int, n_out: int, circular: bool = False) -> np.ndarray:
    """The ``(n_out, n_in)`` matrix of the reference code's resampler along one side (ResizeRight's cubic, as
    efficient-SID vendors it): Keys' cubic (a = -0.5) on a 6-tap window, widened by ``1 / scale`` and scaled
    when shrinking (antialiasing), each output's taps normalised to sum 1, then taps beyond the edge mirrored
    onto it, the edge sample repeated (``circular``: wrapped around instead). Written here, not imported:
    ResizeRight is not a package on the registry, and the matrix form is what lets a resize be one product."""
    scale = n_out / n_in
    shrink = scale < 1
    width = 6.0 / scale if shrink else 6.0
    out = np.arange(1, n_out + 1)
    match = (out - (n_out - n_in * scale) / 2) / scale + 0.5 * (1 - 1 / scale)
    taps = np.floor(match - width / 2)[:, None] + np.arange(np.ceil(width) + 2)[None, :] - 1
    arg = match[:, None] - taps - 1
    w = scale * _keys_cubic(scale * arg) if shrink else _keys_cubic(arg)
    total = w.sum(1)
    total[total == 0] = 1.0
    w = w / total[:, None]
    taps = taps.astype(np.int64)
    if circular:
        idx = np.mod(taps, n_in)
    else:
        mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
        idx = mirror[np.mod(taps, 2 * n_in)]
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.broadcast_to(out[:, None] - 1, idx.shape), idx), w)
    return m


def _resize_keys(x: torch.Tensor, size: tuple[int, int], circular: bool) -> torch.Tensor:
    import torch

    H, W = x.shape[-2:]
    sides = [(s / n, d) for d, (n, s) in enumerate(zip((H, W), size)) if s != n]
    for _, d in sorted(sides):  # the stronger shrink first, height first on a tie (the reference's order)
        n_in, n_out = (H, W)[d], size[d]
        m = torch.from_numpy(keys_cubic_matrix(n_in, n_out, circular)).to(device=x.device, dtype=torch.float32)
        xf = x.float()
        x = (torch.matmul(m, xf) if d == 0 else torch.matmul(xf, m.T)).to(x.dtype)
    return x


def pyramid_shapes(h: int, w: int, num_scales: int, factor: float) -> list[tuple[int, int]]:
    """Finest first: ``ceil(h * factor**l), ceil(w * factor**l)`` for ``l = 0 .. num_scales - 1``."""
    return [(math.ceil(h * factor**lvl), math.ceil(w * factor**lvl)) for lvl in range(num_scales)]


def floor_shapes(h: int, w: int, num_scales: int, factor: float, min_short_side: int) -> list[tuple[int, int]]:
    """The reference code's pyramid, finest first: :func:`pyramid_shapes`, then the coarsest scale, when its short
    side falls below ``min_short_side``, replaced by the base size scaled to a short side of exactly
    ``min_short_side`` (rounded up, at most the scale above it)."""
    shapes = pyramid_shapes(h, w, num_scales, factor)
    if num_scales > 1 and min(shapes[-1]) < min_short_side:
        ph, pw = shapes[-2]
        if min(ph, pw) < min_short_side:
            raise ValueError(
                f"{num_scales} scales of {h}x{w}: the second-coarsest scale {ph}x{pw} is already under "
                f"min_short_side={min_short_side}; use fewer scales"
            )
        short = min(h, w)
        shapes[-1] = (min(-(-h * min_short_side // short), ph), min(-(-w * min_short_side // short), pw))
    return shapes


def scale_shapes(h: int, w: int, num_scales: int, cfg: PatchConfig) -> list[tuple[int, int]]:
    """The pyramid of an ``h x w`` image under ``cfg.scale_rule`` (finest first)."""
    if cfg.scale_rule == "floor":
        return floor_shapes(h, w, num_scales, cfg.scale_factor, cfg.min_short_side)
    return pyramid_shapes(h, w, num_scales, cfg.scale_factor)


def usable_scales(sizes: Sequence[tuple[int, int]], cfg: PatchConfig) -> int:
    """How many scales every image of ``sizes`` affords. ``within``: the coarsest short side stays at least
    ``min_short_side``. ``floor`` (the reference's rule): the fewest scales whose halvings reach
    ``min_short_side`` from the smallest short side (the last one floored to it), at most what leaves the
    second-coarsest scale at least ``min_short_side``."""
    if cfg.scale_rule == "floor":
        short, mss = min(min(s) for s in sizes), cfg.min_short_side
        if mss >= short:
            return 1
        most = 2 + math.floor(math.log(short / mss) / math.log(1 / cfg.scale_factor))
        if cfg.num_scales != "auto":
            return min(cfg.num_scales, most)
        n = 1
        while mss / cfg.scale_factor ** (n - 1) < short:
            n += 1
        return min(n, most)
    n = 12 if cfg.num_scales == "auto" else cfg.num_scales
    for h, w in sizes:
        m = 1
        while m < n and min(pyramid_shapes(h, w, m + 1, cfg.scale_factor)[-1]) >= cfg.min_short_side:
            m += 1
        n = min(n, m)
    return n


def laplacian_blend(
    fine: torch.Tensor,
    coarser: torch.Tensor,
    factor: float,
    *,
    circular: bool = False,
    resampler: str = "torch-bicubic",
    low: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Keep ``fine``'s detail band (``fine`` less its round trip through ``low``, default the next scale's size),
    take the low frequencies from the finished ``coarser`` scale."""
    H, W = fine.shape[-2:]
    low = low or (math.ceil(H * factor), math.ceil(W * factor))
    kw = {"circular": circular, "resampler": resampler}
    detail = fine - resize(resize(fine, low, **kw), (H, W), **kw)
    return resize(coarser, (H, W), **kw) + detail


# -- the generator ------------------------------------------------------------------------------------


@dataclass
class PatchPlan:
    """What a :meth:`PatchDiffusion.sample` call does: the output's scales and each one's search (finest first),
    and each reference's scales."""

    scales: list[tuple[int, int]]
    methods: list[str]
    reference_scales: list[list[tuple[int, int]]]


@dataclass
class PatchSample:
    image: Any
    seconds: float
    denoiser_calls: int
    scales: list[tuple[int, int]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)


class PatchDiffusion:
    """Draw new images from the patches of one or more reference images (no training, no weights).

    Args:
        references: images (paths, PIL images or HxWx3 uint8 arrays); their patches are pooled, so
            several references (a user's liked images) act together, the IP-Adapter analogue.
        config: :class:`PatchConfig` (default: the ``auto`` preset; :meth:`PatchConfig.reference` for the authors'
            sampler, :meth:`PatchConfig.fast` on CPU).

    Example:
        >>> gen = PatchDiffusion(["liked.png"], PatchConfig.fast())       # doctest: +SKIP
        >>> gen.sample(seed=0).image.save("variation.png")                # doctest: +SKIP
        >>> gen.sample(size=(128, 384), seed=1)                           # retargeted  # doctest: +SKIP
    """

    def __init__(self, references: Sequence[Any], config: PatchConfig | None = None):
        import torch

        from workbench.images import load_image

        self.config = config or PatchConfig()
        if not references:
            raise ValueError("PatchDiffusion needs at least one reference image")
        self.device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.references = [_to_tensor(load_image(r), self.device) for r in references]
        self._denoisers: dict[tuple, PatchDenoiser] = {}

    def _ref_pyramids(self, n: int) -> list[list]:
        cfg = self.config
        out = []
        for ref in self.references:
            h, w = ref.shape[-2:]
            levels = [ref]
            for shape in scale_shapes(h, w, n, cfg)[1:]:
                levels.append(resize(levels[-1], shape, circular=cfg.tileable, resampler=cfg.resampler))
            out.append(levels)
        return out

    def _method(self, queries: int, n_patches: int, dim: int) -> str:
        cfg = self.config
        if cfg.method != "auto":
            return cfg.method
        return "exact" if queries * n_patches * dim <= cfg.exact_budget else "topk"

    def _search(self, n_patches: int) -> str:
        """The search ``topk`` uses over ``n_patches`` keys (what :func:`_faiss_index` picks)."""
        cfg = self.config
        if cfg.search != "auto":
            return cfg.search
        try:
            import faiss  # noqa: F401
        except ImportError:
            return "torch"
        return "faiss-ivf" if n_patches >= cfg.ivf_min else "faiss-flat"

    def plan(self, size: tuple[int, int] | None = None) -> PatchPlan:
        """What :meth:`sample` will do at ``size`` (default: the first reference's), without sampling: the output's
        scales and the search each uses (finest first, as :class:`PatchSample` reports them)."""
        cfg = self.config
        H, W = size or tuple(self.references[0].shape[-2:])
        if min(H, W) < cfg.patch_size:
            raise ValueError(
                f"output size {H}x{W} is smaller than the {cfg.patch_size}-pixel patch; use a larger size "
                "or a smaller PatchConfig.patch_size"
            )
        ref_sizes = [tuple(r.shape[-2:]) for r in self.references]
        for rs in ref_sizes:
            if min(rs) < cfg.patch_size:
                raise ValueError(
                    f"reference of {rs[0]}x{rs[1]} pixels is smaller than the {cfg.patch_size}-pixel patch"
                )
        n = usable_scales([(H, W), *ref_sizes], cfg)
        scales = scale_shapes(H, W, n, cfg)
        ref_scales = [scale_shapes(h, w, n, cfg) for h, w in ref_sizes]
        methods = []
        for lvl, (h, w) in enumerate(scales):
            patches = sum(
                ((rs[lvl][0] - cfg.patch_size) // cfg.dataset_stride + 1)
                * ((rs[lvl][1] - cfg.patch_size) // cfg.dataset_stride + 1)
                for rs in ref_scales
            )
            method = self._method(_n_queries(h, w, cfg), patches, 3 * cfg.patch_size**2)
            methods.append("exact" if method == "exact" else f"topk/{self._search(patches)}")
        return PatchPlan(scales, methods, ref_scales)

    def sample(self, size: tuple[int, int] | None = None, *, seed: int = 0, progress: bool = False) -> PatchSample:
        """One image of ``size`` = (height, width) (default: the first reference's size)."""
        import torch
        from PIL import Image

        from workbench.progress import progress_bar

        # 1. the plan (sizes checked), the reference pyramids, the window and the noise schedule
        cfg = self.config
        t0 = time.perf_counter()
        plan = self.plan(size)
        n, out_shapes = len(plan.scales), plan.scales
        refs = self._ref_pyramids(n)
        dtype = getattr(torch, cfg.dtype)
        window = gaussian_window(cfg.patch_size, 3, cfg.fold_rho).to(self.device, dtype)
        alphas, sigmas = flow_linear(cfg.steps, cfg.sigma_min)
        # every scale's starting noise drawn first, finest to coarsest (the reference code's order)
        g = torch.Generator(device="cpu").manual_seed(seed)
        noise = [torch.randn((1, 3, h, w), generator=g) for h, w in out_shapes]
        calls, methods = 0, []
        finished = None
        bar = progress_bar(total=n * cfg.steps, desc="patch diffusion", disable=not progress, leave=False)
        blend = {"circular": cfg.tileable, "resampler": cfg.resampler}
        # 2. denoise each level, coarsest first, blending in the finished coarser level
        for lvl in reversed(range(n)):  # coarsest first
            key = (lvl, n)
            den = self._denoisers.get(key)
            h, w = out_shapes[lvl]
            if den is None:
                patches = torch.cat([extract_patches(p[lvl], cfg.patch_size, cfg.dataset_stride) for p in refs])
                den = PatchDenoiser(
                    patches.to(dtype),
                    method="exact" if plan.methods[lvl] == "exact" else "topk",
                    k=cfg.k,
                    search_dim=cfg.search_dim,
                    chunk=cfg.chunk,
                    search=cfg.search,
                    ivf_min=cfg.ivf_min,
                    nprobe=cfg.nprobe,
                )
                self._denoisers[key] = den
            methods.append(den.method if den.method == "exact" else f"topk/{den.search}")
            low = floor_shapes(h, w, 2, cfg.scale_factor, cfg.min_short_side)[1] if cfg.scale_rule == "floor" else None
            x = (noise[lvl] * sigmas[cfg.steps]).to(self.device, dtype)
            for t in range(cfg.steps, 0, -1):
                x_hat = denoise_image(
                    x,
                    den,
                    alphas[t],
                    sigmas[t],
                    patch_size=cfg.patch_size,
                    stride=cfg.query_stride,
                    window=window,
                    tileable=cfg.tileable,
                )
                calls += 1
                eps = (x - alphas[t] * x_hat) / sigmas[t]
                if finished is not None and t != 1:
                    x_hat = laplacian_blend(x_hat, finished, cfg.scale_factor, low=low, **blend)
                if t - 1 == 0:
                    x = x_hat
                elif cfg.eta == 0:
                    x = alphas[t - 1] * x_hat + sigmas[t - 1] * eps
                else:
                    fresh = torch.randn(x.shape, generator=g).to(self.device, dtype)
                    sto = cfg.eta * sigmas[t - 1]
                    det = math.sqrt(max(sigmas[t - 1] ** 2 - sto**2, 0.0))
                    x = alphas[t - 1] * x_hat + det * eps + sto * fresh
                bar.update(1)
            finished = x
        bar.close()
        # 3. the image and what it cost
        img = to_uint8(finished[0], cfg.quantize).permute(1, 2, 0).cpu().numpy()
        return PatchSample(
            image=Image.fromarray(img),
            seconds=time.perf_counter() - t0,
            denoiser_calls=calls,
            scales=out_shapes,
            methods=list(reversed(methods)),
        )


def to_uint8(x: torch.Tensor, quantize: str = "round") -> torch.Tensor:
    """An image in [-1, 1] as 8-bit levels: ``round`` to the nearest, or ``truncate`` as the reference code
    saves it (``((x + 1) * 0.5).mul(255).clamp(0, 255).byte()``)."""
    import torch

    if quantize == "truncate":
        return ((x.float() + 1) * 0.5).mul(255).clamp(0, 255).to(torch.uint8)
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


#: preset name -> config: ``reference`` (the authors' sampler; ``paper`` names it too), ``auto``, ``fast``
PRESETS = {
    "reference": PatchConfig.reference,
    "paper": PatchConfig.reference,
    "auto": PatchConfig,
    "fast": PatchConfig.fast,
}


def preset_config(name: str, **overrides: Any) -> PatchConfig:
    """The :class:`PatchConfig` of preset ``name`` (see :data:`PRESETS`) with ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"patch preset {name!r}: use one of {', '.join(PRESETS)}")
    return PRESETS[name](**overrides)


def fit_reference(image, size: tuple[int, int] | None):
    """Bring a reference down to the output's scale: when its short side exceeds the output's, resize it
    so the short sides match (aspect kept). Objects then keep their size in pixels, as in the reference."""
    from PIL import Image

    from workbench.images import load_image

    img = load_image(image)
    if size is None:
        return img
    short = min(size)
    w, h = img.size
    if min(w, h) <= short:
        return img
    f = short / min(w, h)
    return img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.BICUBIC)


def flow_linear(steps: int, sigma_min: float) -> tuple[list[float], list[float]]:
    """Flow-linear schedule, index 0 the clean terminal ``(1, 0)``, 1..steps the evaluation points with
    ``alpha`` falling linearly from ``1 - sigma_min`` to 0 and ``sigma = 1 - alpha``."""
    import torch

    # in float32 as torch.linspace gives them (the reference code's values, so the same seed gives its image)
    alphas = torch.linspace(1 - sigma_min, 0.0, steps, dtype=torch.float32) if steps > 1 else torch.zeros(1)
    return [1.0, *alphas.tolist()], [0.0, *(1 - alphas).tolist()]


def _n_queries(h: int, w: int, cfg: PatchConfig) -> int:
    s, P = cfg.query_stride, cfg.patch_size
    return (math.ceil(max(h - P, 0) / s) + 1) * (math.ceil(max(w - P, 0) / s) + 1)


def _to_tensor(image, device: str):
    import numpy as np
    import torch

    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 * 2.0 - 1.0  # the reference's float steps
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous().to(device)


class PatchBackend:
    """``generate()`` backend drawing each user's image from their reference images (no weights, any device).

    A condition's ``references`` are the patches' source (several references are pooled); a condition
    without references takes the best match for its prompt from ``pool`` (see
    :mod:`generation.retrieval`). Prompts, guidance and identity fields do not apply to this generator.

    Args:
        model: ``patch:reference`` (the authors' sampler, exact everywhere; ``patch:paper`` is the same),
            ``patch:auto`` (exact under a budget, top-16 beyond) or ``patch:fast`` (the CPU preset); ``patch``
            or none: ``patch:fast`` on CPU, ``patch:reference`` on a GPU.
        config: a :class:`PatchConfig` (overrides ``model``'s preset).
        pool: image pool for conditions without references (folder, mapping or list; ``"samples"`` for
            scikit-image's sample images).
        retrieval_encoder: ``caption-minilm`` (stand-in) or ``clip:<model id or path>``.
        device: ``cuda`` / ``cpu``.
    """

    name = "patch"

    def __init__(
        self,
        model: str | None = None,
        *,
        config: PatchConfig | None = None,
        pool: Any = None,
        retrieval_encoder: str = "caption-minilm",
        device: str | None = None,
        **unused: Any,
    ):
        import torch

        bad = sorted(k for k, v in unused.items() if v not in (None, "ddim", "default", "dlib"))
        if bad:
            raise ValueError(f"the patch backend takes no {', '.join(bad)} (those are diffusers options)")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        preset = (model or "patch").lower()
        if preset == "patch":
            preset = "patch:reference" if device.startswith("cuda") else "patch:fast"
        name = preset.split(":", 1)[1] if preset.startswith("patch:") else ""
        if name not in PRESETS:
            raise ValueError(
                f"patch backend model {model!r}: use patch:reference (alias patch:paper), patch:auto or patch:fast"
            )
        self.model = "patch:" + ("reference" if name == "paper" else name)
        self.config = config or preset_config(name, device=device)
        self.device = device
        self.pool, self.retrieval_encoder = pool, retrieval_encoder
        self._retriever = None
        self._gens: dict[tuple, PatchDiffusion] = {}
        self.face_embedder = None

    def describe(self) -> dict[str, Any]:
        return {
            "generator": "closed-form multi-scale patch diffusion (arXiv 2606.04299)",
            "device": self.device,
            "patch_config": self.config.to_dict(),
            "retrieval": self.retrieval_encoder if self.pool is not None else None,
        }

    def _references(self, c) -> list[Any]:
        if c.references:
            return [r.image for r in c.references]
        if self.pool is None:
            raise ValueError(
                f"user {c.user_id!r} has no reference images: the patch generator draws from references "
                "(pass references, or a pool to retrieve them from by prompt: --pool FOLDER|samples)"
            )
        if self._retriever is None:
            from ..retrieval import ReferenceRetriever, sample_pool

            self._retriever = ReferenceRetriever(
                sample_pool() if self.pool == "samples" else self.pool, self.retrieval_encoder
            )
        return [self._retriever.rank(c.prompt, 1)[0][0].image]

    def generate(
        self,
        conditions,
        *,
        steps: int | None = None,
        height: int | None = None,
        width: int | None = None,
        batch_size: int = 1,
        progress: bool = True,
    ):
        import torch

        from ..conditions import _image_digest
        from .diffusers_sd import SampleOutput, _rss_peak

        cfg = self.config if steps is None else PatchConfig(**{**self.config.to_dict(), "steps": steps})
        outs = []
        size = (height, width) if height and width else None
        for c in conditions:
            refs = [fit_reference(r, size) for r in self._references(c)]
            key = (tuple(_image_digest(r) for r in refs), cfg.steps)
            gen = self._gens.get(key)
            if gen is None:
                gen = self._gens[key] = PatchDiffusion(refs, cfg)
            if self.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            s = gen.sample(size, seed=c.seed, progress=progress)
            peak = float(torch.cuda.max_memory_allocated()) if self.device.startswith("cuda") else _rss_peak()
            outs.append(
                SampleOutput(
                    image=s.image,
                    unet_evals=0,
                    latency_s=s.seconds,
                    peak_mem=peak,
                    params={
                        "steps": cfg.steps,
                        "denoiser_calls": s.denoiser_calls,
                        "scales": s.scales,
                        "methods": s.methods,
                        "references": len(refs),
                    },
                )
            )
        return outs
