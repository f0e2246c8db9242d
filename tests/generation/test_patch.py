"""The training-free patch generator: the closed-form denoiser against brute force, and sampler invariants."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from generation.backends.patch import (  # noqa: E402
    PatchConfig,
    PatchDenoiser,
    PatchDiffusion,
    denoise_image,
    extract_patches,
    gaussian_window,
)


def brute_force(x, y, alpha, sigma):
    """numpy: softmax over -||x - alpha y||^2 / (2 sigma^2), weighted mean of y (float64)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d2 = ((x[:, None, :] - alpha * y[None, :, :]) ** 2).sum(-1)
    logits = -d2 / (2 * sigma**2)
    w = np.exp(logits - logits.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    return w @ y


@pytest.mark.parametrize("alpha, sigma", [(0.0, 1.0), (0.3, 0.7), (0.8, 0.2), (0.95, 0.05)])
def test_chunked_fused_exact_denoiser_equals_brute_force(alpha, sigma):
    g = torch.Generator().manual_seed(0)
    y = torch.rand(60, 12, generator=g) * 2 - 1
    x = alpha * y[torch.randint(0, 60, (9,), generator=g)] + sigma * torch.randn(9, 12, generator=g)
    den = PatchDenoiser(y, method="exact", chunk=4)  # 9 queries in chunks of 4
    out = den(x, alpha, sigma)
    assert np.allclose(out.numpy(), brute_force(x, y, alpha, sigma), atol=1e-5)


@pytest.mark.parametrize("search_dim", [None, 5])
def test_topk_with_every_candidate_equals_exact(search_dim):
    g = torch.Generator().manual_seed(1)
    y = torch.rand(40, 10, generator=g)
    x = 0.6 * y[:7] + 0.3 * torch.randn(7, 10, generator=g)
    exact = PatchDenoiser(y, method="exact")(x, 0.6, 0.3)
    topk = PatchDenoiser(y, method="topk", k=40, search_dim=search_dim, chunk=3)(x, 0.6, 0.3)
    assert torch.allclose(exact, topk, atol=1e-5)
    # few candidates at low noise: the weight sits on the nearest patches anyway
    few = PatchDenoiser(y, method="topk", k=3)(0.99 * y[:7] + 1e-3, 0.99, 0.01)
    assert torch.allclose(few, PatchDenoiser(y, method="exact")(0.99 * y[:7] + 1e-3, 0.99, 0.01), atol=1e-4)


def test_faiss_search_equals_the_torch_search():
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(4)
    y = torch.rand(500, 12, generator=g)
    x = 0.7 * y[:40] + 0.2 * torch.randn(40, 12, generator=g)
    ref = PatchDenoiser(y, method="topk", k=6, search="torch")(x, 0.7, 0.2)
    flat = PatchDenoiser(y, method="topk", k=6, search="faiss-flat")
    assert flat.search == "faiss-flat"
    assert torch.allclose(flat(x, 0.7, 0.2), ref, atol=1e-5)
    ivf = PatchDenoiser(y, method="topk", k=6, search="faiss-ivf", nprobe=22)  # all 22 lists: exact
    assert torch.allclose(ivf(x, 0.7, 0.2), ref, atol=1e-5)


@pytest.mark.parametrize("method", ["exact", "topk"])
def test_sigma_to_zero_returns_the_nearest_patch(method):
    g = torch.Generator().manual_seed(2)
    y = torch.rand(50, 8, generator=g)
    j = torch.tensor([3, 17, 42])
    x = y[j] + 0.01 * torch.randn(3, 8, generator=g)  # alpha = 1: a slightly perturbed data patch
    out = PatchDenoiser(y, method=method, k=4)(x, 1.0 - 1e-4, 1e-4)
    assert torch.allclose(out, y[j], atol=1e-6)
    with pytest.raises(ValueError, match="sigma = 0"):
        PatchDenoiser(y)(x, 1.0, 0.0)


@pytest.mark.parametrize("stride, tileable", [(1, False), (4, False), (3, True)])
def test_folding_a_clean_image_through_its_own_patches_returns_it(stride, tileable):
    g = torch.Generator().manual_seed(3)
    img = torch.rand(1, 3, 23, 29, generator=g) * 2 - 1
    P = 7
    source = torch.nn.functional.pad(img, (0, P - 1, 0, P - 1), mode="circular") if tileable else img
    den = PatchDenoiser(extract_patches(source, P), method="exact")
    out = denoise_image(
        img, den, 1.0 - 1e-4, 1e-4, patch_size=P, stride=stride, window=gaussian_window(P, 3, 0.2), tileable=tileable
    )
    assert out.shape == img.shape
    assert torch.allclose(out, img, atol=1e-3)


def _reference(seed=0, size=48):
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
    return Image.fromarray(np.kron(base, np.ones((8, 8, 1), dtype=np.uint8)))  # blocky, so patches repeat


SMALL = dict(patch_size=7, steps=4, num_scales=2)


def test_same_seed_same_image_and_seeds_differ():
    gen = PatchDiffusion([_reference()], PatchConfig(**SMALL))
    a, b, c = gen.sample(seed=5), gen.sample(seed=5), gen.sample(seed=6)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert a.denoiser_calls == 2 * 4 and len(a.scales) == 2


def test_retargeting_and_several_references():
    gen = PatchDiffusion([_reference(0), _reference(1, 40)], PatchConfig(**SMALL))
    out = gen.sample(size=(32, 80), seed=0)
    assert out.image.size == (80, 32)
    den = next(iter(gen._denoisers.values()))
    assert den.N == sum((s - 6) ** 2 for s in (48, 40)) or den.N > 0


def _smooth_reference(seed=0, size=64):
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 255, (size // 6, size // 6, 3), dtype=np.uint8))
    return small.resize((size, size), Image.BICUBIC)


def test_tileable_output_wraps_without_a_seam():
    """The wrap-around boundary looks like any other boundary between adjacent rows (columns)."""
    cfg = PatchConfig(**SMALL, tileable=True)
    img = np.asarray(PatchDiffusion([_smooth_reference(2)], cfg).sample(seed=1).image, dtype=float)
    for axis in (0, 1):
        inner = np.abs(np.diff(img, axis=axis)).mean(axis=(1 - axis, 2))  # one value per boundary
        seam = np.abs(np.take(img, 0, axis=axis) - np.take(img, -1, axis=axis)).mean()
        assert seam <= np.percentile(inner, 95), (axis, seam, np.percentile(inner, 95))


def test_fast_preset_and_auto_method():
    cfg = PatchConfig.fast(patch_size=7, steps=3, num_scales=2)
    assert (cfg.method, cfg.query_stride, cfg.dataset_stride) == ("topk", 4, 3)
    out = PatchDiffusion([_reference()], cfg).sample(seed=0)
    assert all(m.startswith("topk/") for m in out.methods)
    auto = PatchDiffusion([_reference()], PatchConfig(**SMALL)).sample(seed=0)
    assert auto.methods == ["exact", "exact"]  # tiny: under the exact budget


def test_bad_settings_and_inputs_are_clear():
    with pytest.raises(ValueError, match="PatchConfig.query_stride"):
        PatchConfig(query_stride=0)
    with pytest.raises(ValueError, match="PatchConfig.method"):
        PatchConfig(method="approx")
    with pytest.raises(ValueError, match="smaller than the 15-pixel patch"):
        PatchDiffusion([_reference(0, 8)]).sample()
    with pytest.raises(ValueError, match="at least one reference"):
        PatchDiffusion([])


def test_variations_are_new_arrangements_not_copies():
    """Regions larger than the generator's patch do not come back verbatim (copy rate at 32-px windows
    under the documented 0.25), while a shifted copy of the reference scores far above it."""
    skimage = pytest.importorskip("skimage")
    from PIL import Image

    from evalbench.metrics.single_image import copy_rate

    ref = Image.fromarray(skimage.data.chelsea()[:, 50:350]).resize((128, 128), Image.BICUBIC)
    out = PatchDiffusion([ref], PatchConfig.fast()).sample(seed=0).image
    assert copy_rate(out, ref, patch=32, stride=16) < 0.25
    shifted = Image.fromarray(np.roll(np.asarray(ref), (20, 30), axis=(0, 1)))
    assert copy_rate(shifted, ref, patch=32, stride=16) > 0.5


def test_patch_backend_through_generate(tmp_path):
    pytest.importorskip("skimage")
    from generation.conditions import UserCondition
    from generation.pipeline import generate
    from workbench.images import read_provenance

    conds = [
        UserCondition("u1", "any prompt", references=[_reference(0, 48)], seed=1),
        UserCondition("u2", "a cup of coffee in a cafe", seed=2),
    ]  # no reference: retrieved from the pool
    gens = generate(
        conds, backend="patch", out_dir=tmp_path, pool="samples", steps=3, progress=False, height=48, width=64
    )
    assert [g.image.size for g in gens] == [(64, 48), (64, 48)]
    assert gens[0].unet_evals == 0 and gens[0].params["denoiser_calls"] > 0 and gens[0].model == "patch:fast"
    meta = read_provenance(gens[1].image_path)
    assert meta["backend"] == "patch" and meta["params"]["patch_config"]["query_stride"] == 4
    with pytest.raises(ValueError, match="no reference images"):
        generate([UserCondition("u", "x")], backend="patch", save=False, steps=2)
    with pytest.raises(ValueError, match="takes no ip_adapter"):
        generate(conds, backend="patch", ip_adapter="h94/IP-Adapter:x/y.safetensors")
