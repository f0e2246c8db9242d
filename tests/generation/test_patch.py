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


@pytest.mark.parametrize("alpha, sigma", [(0.0, 1.0), (0.5, 0.5), (0.9, 0.1), (0.99, 0.01)])
def test_exact_cpu_path_dense_and_sparse_equals_brute_force(alpha, sigma):
    """The CPU exact path (dense at high noise, sparse over the patches that keep a weight at low noise)
    against float64 numpy, on patches with repeats (ties) and a spread of distances."""
    g = torch.Generator().manual_seed(3)
    y = torch.rand(400, 27, generator=g) * 2 - 1
    y[200:260] = y[:60]  # repeated patches
    x = alpha * y[torch.randint(0, 400, (50,), generator=g)] + sigma * torch.randn(50, 27, generator=g)
    den = PatchDenoiser(y, method="exact", chunk=16)
    out = den(x, alpha, sigma)
    assert np.allclose(out.numpy(), brute_force(x, y, alpha, sigma), atol=2e-5)


def test_keys_cubic_resampler_matches_pillow_away_from_the_edges():
    """The reference code's cubic (a = -0.5, antialiased when shrinking) against Pillow's BICUBIC, which uses
    the same kernel and pixel-centre convention but renormalises at the edges instead of mirroring."""
    from PIL import Image

    from generation.backends.patch import keys_cubic_matrix

    rng = np.random.default_rng(0)
    for n_in, n_out in [(64, 32), (96, 48), (32, 64), (128, 64)]:
        row = rng.random(n_in).astype(np.float32)
        ours = keys_cubic_matrix(n_in, n_out) @ row
        pil = np.asarray(Image.fromarray(row[None, :], mode="F").resize((n_out, 1), Image.BICUBIC))[0]
        edge = int(np.ceil(4 * max(1, n_in / n_out)))  # outputs whose taps reach past the edge
        assert np.allclose(ours[edge:-edge], pil[edge:-edge], atol=1e-5), (n_in, n_out)
        m = keys_cubic_matrix(n_in, n_out)
        assert np.allclose(m.sum(1), 1.0)  # mirrored taps keep each output a weighted mean


def test_reference_pyramid_is_the_authors_rule():
    """The floor rule's scales (the reference code's documented examples) and its blend band."""
    from generation.backends.patch import floor_shapes, scale_shapes, usable_scales

    cfg = PatchConfig.reference()
    for (h, w), want in {
        (256, 256): [(256, 256), (128, 128), (64, 64), (32, 32), (24, 24)],
        (250, 380): [(250, 380), (125, 190), (63, 95), (32, 48), (24, 37)],
        (64, 64): [(64, 64), (32, 32), (24, 24)],
        (48, 48): [(48, 48), (24, 24)],
    }.items():
        assert scale_shapes(h, w, usable_scales([(h, w)], cfg), cfg) == want
    assert floor_shapes(32, 48, 2, 0.5, 24)[1] == (24, 36)  # the blend's band from 32x48, as the reference
    with pytest.raises(ValueError, match="second-coarsest"):
        floor_shapes(64, 64, 4, 0.5, 24)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_each_preset_uses_the_searches_its_docs_say(size):
    """What the README and the presets' docstrings say each preset runs at each scale (finest first)."""
    import importlib.util

    from PIL import Image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8))
    faiss = importlib.util.find_spec("faiss") is not None
    ivf, flat = ("topk/faiss-ivf", "topk/faiss-flat") if faiss else ("topk/torch", "topk/torch")
    reference = PatchDiffusion([img], PatchConfig.reference(device="cpu")).plan()
    assert reference.methods == ["exact"] * {64: 3, 128: 4, 256: 5}[size]
    assert min(reference.scales[-1]) == 24
    auto = PatchDiffusion([img], PatchConfig(device="cpu")).plan()
    assert (
        auto.methods == {64: ["exact", "exact"], 128: [ivf, "exact", "exact"], 256: [ivf, ivf, "exact", "exact"]}[size]
    )
    fast = PatchDiffusion([img], PatchConfig.fast(device="cpu")).plan()
    assert fast.methods == {64: [flat, flat], 128: [flat, flat, flat], 256: [flat] * 4}[size]


def test_plan_is_what_sample_does():
    from generation.backends.patch import PatchBackend

    gen = PatchDiffusion([_reference(0, 48)], PatchConfig.reference(patch_size=7, steps=2, device="cpu"))
    plan, out = gen.plan(), gen.sample(seed=0)
    assert (plan.scales, plan.methods) == (out.scales, out.methods)
    assert PatchBackend("patch:paper", device="cpu").model == "patch:reference"
    assert PatchBackend("patch:auto", device="cpu").config.method == "auto"
    with pytest.raises(ValueError, match="patch:reference"):
        PatchBackend("patch:exact", device="cpu")


def test_bfloat16_denoiser_is_the_float32_one_to_bfloat16_precision():
    """dtype="bfloat16" (the reference's CUDA default): products in bfloat16, norms and softmax in float32."""
    g = torch.Generator().manual_seed(5)
    y = torch.rand(300, 27, generator=g) * 2 - 1
    x = 0.6 * y[:40] + 0.4 * torch.randn(40, 27, generator=g)
    out = PatchDenoiser(y.bfloat16(), method="exact")(x.bfloat16(), 0.6, 0.4)
    assert out.dtype == torch.bfloat16
    assert np.abs(out.float().numpy() - brute_force(x, y, 0.6, 0.4)).max() < 0.05
    cfg = PatchConfig.reference(patch_size=7, steps=2, dtype="bfloat16", device="cpu")
    assert PatchDiffusion([_reference(0, 48)], cfg).sample(seed=0).image.size == (48, 48)
