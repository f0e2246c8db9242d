"""Single-image metrics: Fréchet distance against eigendecomposition and closed forms, diversity against a
double loop, copy rate against a brute-force numpy nearest-neighbour search, the EfficientNet-Lite0
single-image FD on real pictures, names carrying the encoder, and the registry."""

import doctest

import numpy as np
import pytest

from evalbench.metrics import METRICS
from evalbench.metrics import single_image as si
from evalbench.metrics.single_image import (
    CopyRate,
    Diversity,
    EffNetEarlyFeatures,
    SingleImageFD,
    copy_rate,
    frechet_distance,
    nearest_patch_distances,
    pairwise_diversity,
    single_image_fd,
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One torch thread for these tests: on the shared 2-core machine, with other processes busy, torch's
    two threads wait on each other (an EfficientNet forward pass went from 30 ms to 2 s)."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _random_spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or 2 * d))
    return a @ a.T / a.shape[1]


def _fd_reference(mu1, c1, mu2, c2):
    """tr((C1 C2)^1/2) = tr((C1^1/2 C2 C1^1/2)^1/2), the latter symmetric: eigendecompositions only."""
    w, v = np.linalg.eigh(c1)
    s1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = s1 @ c2 @ s1
    tr = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * tr)


# -- Fréchet distance -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_frechet_distance_diagonal_closed_form(seed):
    rng = np.random.default_rng(seed)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_frechet_distance_random_spd_against_eigendecomposition(seed):
    rng = np.random.default_rng(100 + seed)
    d = 8
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    c1, c2 = _random_spd(rng, d), _random_spd(rng, d)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(_fd_reference(mu1, c1, mu2, c2), rel=1e-7)


def test_frechet_distance_near_singular_covariances_are_finite():
    rng = np.random.default_rng(7)
    d = 10
    c1, c2 = _random_spd(rng, d, rank=3), _random_spd(rng, d, rank=4)  # rank-deficient
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    fd = frechet_distance(mu1, c1, mu2, c2)
    assert np.isfinite(fd)
    assert fd == pytest.approx(_fd_reference(mu1, c1, mu2, c2), rel=1e-3, abs=1e-3)


def test_frechet_distance_identical_is_zero_and_shapes_checked():
    rng = np.random.default_rng(1)
    c, mu = _random_spd(rng, 12), rng.normal(size=12)
    assert frechet_distance(mu, c, mu, c) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(mu, c, mu, c) >= 0.0
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(mu, c, mu[:3], c)


def test_single_image_fd_matches_numpy_with_injected_feature_map():
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    gen = np.clip(rng.random((18, 16, 3)) * 0.5 + 0.2, 0, 1)

    def pixels(image):
        return si.to_float_rgb(image).reshape(-1, 3)

    fr, fg = ref.reshape(-1, 3) / 255.0, gen.reshape(-1, 3)
    expected = _fd_reference(fr.mean(0), np.cov(fr.T), fg.mean(0), np.cov(fg.T))
    assert single_image_fd(ref, gen, pixels) == pytest.approx(expected, rel=1e-5)
    assert single_image_fd(ref, ref, pixels) == pytest.approx(0.0, abs=1e-9)

    m = SingleImageFD(pixels)
    assert m.name == "single_image_fd[pixels]" and m.higher_is_better is False
    m.update(ref, [gen, ref])
    m.update(gen, gen)
    assert m.values == pytest.approx([expected, 0.0, 0.0], rel=1e-5, abs=1e-9)
    assert m.compute() == pytest.approx(expected / 3, rel=1e-5)
    assert SingleImageFD(pixels, encoder_name="tiny").name == "single_image_fd[tiny]"


# -- diversity ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_pairwise_diversity_against_double_loop(seed):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(rng.integers(2, 9), 5)) * rng.uniform(0.1, 10, size=(1, 1))
    total, pairs = 0.0, 0
    for i in range(len(f)):
        for j in range(i + 1, len(f)):
            total += 1 - f[i] @ f[j] / (np.linalg.norm(f[i]) * np.linalg.norm(f[j]))
            pairs += 1
    assert pairwise_diversity(f) == pytest.approx(total / pairs, rel=1e-12, abs=1e-12)


def test_pairwise_diversity_edge_cases():
    f = np.tile(np.array([[0.3, -1.0, 2.0]]), (4, 1))
    assert pairwise_diversity(f) == pytest.approx(0.0, abs=1e-12)
    assert pairwise_diversity(f * np.array([[1], [2], [5], [0.1]])) == pytest.approx(0.0, abs=1e-12)  # scale-free
    assert pairwise_diversity(np.eye(3)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n >= 2"):
        pairwise_diversity(f[:1])


def _tiny_encoder(images):
    """Mean colour and a coarse 2x2 layout: 15-d features, deterministic, no model."""
    out = []
    for im in images:
        x = si.to_float_rgb(im)
        h, w = x.shape[0] // 2, x.shape[1] // 2
        quads = [x[:h, :w], x[:h, w:], x[h:, :w], x[h:, w:]]
        out.append(np.concatenate([x.mean((0, 1))] + [q.mean((0, 1)) for q in quads]))
    return np.stack(out)


def test_diversity_groups_and_injected_encoder():
    rng = np.random.default_rng(3)
    a, b, c = (rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3))
    m = Diversity(_tiny_encoder)
    assert m.name == "diversity[_tiny_encoder]" and m.higher_is_better is True
    m.update([a, b], group="ref1")
    m.update([c], group="ref1")  # adds to ref1
    m.update([a, a, a], group="ref2")  # identical images
    out = m.compute()
    g1 = pairwise_diversity(_tiny_encoder([a, b, c]))
    assert m.per_group["ref1"] == pytest.approx(g1)
    assert m.per_group["ref2"] == pytest.approx(0.0, abs=1e-12)
    assert out == pytest.approx(g1 / 2)

    m2 = Diversity(_tiny_encoder, encoder_name="tiny")
    m2.update([a, b])
    m2.update([a, c])  # group=None: each call is its own group
    assert m2.name == "diversity[tiny]"
    assert m2.compute() == pytest.approx(
        np.mean([pairwise_diversity(_tiny_encoder([a, b])), pairwise_diversity(_tiny_encoder([a, c]))])
    )
    assert len(m2.per_group) == 2

    m3 = Diversity(_tiny_encoder)
    m3.update([a], group="lonely")
    with pytest.raises(ValueError, match="'lonely' has 1 image"):
        m3.compute()


def test_diversity_default_name_is_the_stand_in_and_lpips_is_refused():
    assert Diversity().name == "diversity[effnet-lite0]"  # construction loads nothing
    with pytest.raises(ImportError, match="pip install lpips") as e:
        Diversity("lpips")
    assert "torchvision" in str(e.value)


# -- copy rate ------------------------------------------------------------------------------------


def _brute_force_nearest(gen, ref, patch, stride, ref_stride=1):
    gen, ref = si.to_float_rgb(gen).astype(np.float64), si.to_float_rgb(ref).astype(np.float64)
    refs = np.array(
        [
            ref[i : i + patch, j : j + patch].ravel()
            for i in range(0, ref.shape[0] - patch + 1, ref_stride)
            for j in range(0, ref.shape[1] - patch + 1, ref_stride)
        ]
    )
    out = []
    for i in range(0, gen.shape[0] - patch + 1, stride):
        for j in range(0, gen.shape[1] - patch + 1, stride):
            p = gen[i : i + patch, j : j + patch].ravel()
            out.append(np.sqrt(np.min(np.mean((refs - p) ** 2, axis=1))))
    return np.array(out)


@pytest.mark.parametrize("seed", range(3))
def test_nearest_patch_distances_chunked_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    ref = rng.random((15, 17, 3))
    gen = ref[1:13, 2:15].copy()
    gen[:6] += rng.normal(0, 0.03, gen[:6].shape)  # top half: small perturbations of the reference
    gen[6:] = rng.random(gen[6:].shape)  # bottom half: unrelated
    gen = np.clip(gen, 0, 1)
    expected = _brute_force_nearest(gen, ref, patch=4, stride=2)
    got = nearest_patch_distances(gen, ref, patch=4, stride=2, chunk=3, reference_chunk=7)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.allclose(nearest_patch_distances(gen, ref, patch=4, stride=2), got, atol=1e-6)  # unchunked
    ordered = np.unique(expected)
    k = len(ordered) // 2
    tau = float(ordered[k - 1] + ordered[k]) / 2  # halfway between two distances: no float32 ties at the boundary
    pruned = nearest_patch_distances(gen, ref, patch=4, stride=2, max_distance=tau, chunk=3, reference_chunk=7)
    below = expected < tau
    assert 0 < below.sum() < below.size
    np.testing.assert_allclose(pruned[below], expected[below], rtol=1e-4, atol=1e-5)
    assert np.all(np.isinf(pruned[~below]))
    assert copy_rate(gen, ref, patch=4, stride=2, threshold=tau) == pytest.approx(below.mean())


def test_copy_rate_self_crop_noise_and_input_kinds():
    from PIL import Image

    rng = np.random.default_rng(4)
    ref = (rng.random((48, 56, 3)) * 255).astype(np.uint8)
    assert copy_rate(ref, ref) == 1.0
    assert copy_rate(ref[5:37, 11:50], ref) == 1.0  # any crop, any offset
    assert copy_rate(Image.fromarray(ref[3:40, 2:30]), ref / 255.0) == 1.0  # PIL and float inputs
    noise = rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)
    assert copy_rate(noise, ref) == 0.0
    # a copy with half of it replaced: about half the patches (those straddling the seam are not copies)
    half = ref.copy()
    half[24:] = noise[24:]
    assert 0.3 < copy_rate(half, ref) < 0.6
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        copy_rate(ref * 2.0, ref)
    with pytest.raises(ValueError, match="smaller than"):
        copy_rate(ref[:4, :4], ref)


def test_copy_rate_is_monotone_in_threshold():
    rng = np.random.default_rng(5)
    ref = rng.random((32, 32, 3))
    gen = np.clip(ref + rng.normal(0, rng.uniform(0, 0.1, (32, 1, 1)), ref.shape), 0, 1)  # noise grows row by row
    rates = [copy_rate(gen, ref, threshold=t) for t in (0.0, 0.01, 0.02, 0.04, 0.06, 0.1, 0.5)]
    assert rates[0] == 0.0 and rates[-1] == 1.0
    assert all(a <= b for a, b in zip(rates, rates[1:]))
    assert len(set(rates)) > 3


def test_copy_rate_class():
    rng = np.random.default_rng(6)
    ref = rng.random((24, 24, 3))
    m = CopyRate()
    assert m.name == "copy_rate[8px]" and m.higher_is_better is False and CopyRate.higher_is_better is False
    m.update([ref, ref[4:20, 4:20]], ref)
    m.update(rng.random((24, 24, 3)), ref)
    assert m.values == [1.0, 1.0, 0.0]
    assert m.compute() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="threshold must be non-negative"):
        CopyRate(threshold=-1)


# -- EfficientNet-Lite0 stand-in on real pictures ------------------------------------------------


@pytest.fixture(scope="module")
def pictures():
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the sample pictures")
    from PIL import Image

    def small(x):
        return np.asarray(Image.fromarray(x).resize((192, 192), Image.BILINEAR))

    astronaut, coffee = small(data.astronaut()), small(data.coffee())
    noisy = np.clip(astronaut + np.random.default_rng(0).normal(0, 6, astronaut.shape), 0, 255).astype(np.uint8)
    return astronaut, noisy, coffee


def test_effnet_single_image_fd_on_sample_pictures(pictures):
    astronaut, noisy, coffee = pictures
    m = SingleImageFD()
    assert m.name == "single_image_fd[effnet-lite0]" and "sifid" not in m.name.lower()
    m.update(astronaut, [noisy, coffee, astronaut])
    near, far, same = m.values
    assert same == pytest.approx(0.0, abs=1e-6)
    assert 0 < near < far


def test_effnet_feature_map_layer_and_size_cap():
    fn = EffNetEarlyFeatures(max_side=64)
    f = fn(np.random.default_rng(0).integers(0, 256, (50, 100, 3), dtype=np.uint8))  # capped to 32x64
    assert f.shape == (8 * 16, 24)  # stem + 3 blocks: 24 channels at 1/4 resolution
    assert EffNetEarlyFeatures(blocks=5)(np.zeros((32, 32, 3), np.uint8)).shape == (4 * 4, 40)
    assert SingleImageFD(EffNetEarlyFeatures(blocks=5)).name == "single_image_fd[effnet-lite0-b5]"
    with pytest.raises(ValueError, match="blocks"):
        EffNetEarlyFeatures(blocks=17)


def test_effnet_diversity_on_sample_pictures(pictures):
    astronaut, noisy, coffee = pictures
    m = Diversity()
    m.update([astronaut, astronaut], group="same")
    m.update([astronaut, coffee], group="different")
    m.compute()
    assert m.per_group["same"] == pytest.approx(0.0, abs=1e-6)
    assert m.per_group["different"] > 0.1


# -- registry and docs ----------------------------------------------------------------------------


def test_registry_resolves_the_three_metrics():
    assert METRICS.get("diversity") is Diversity
    assert METRICS.get("single_image_fd") is SingleImageFD
    assert METRICS.get("copy_rate") is CopyRate
    for name in ("diversity", "single_image_fd", "copy_rate"):
        assert isinstance(METRICS.get(name).higher_is_better, bool)


def test_docstring_examples_run():
    result = doctest.testmod(si, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0
