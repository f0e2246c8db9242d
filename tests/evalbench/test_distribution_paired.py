"""Distribution and paired-comparison metrics: MMD against a brute-force double loop, CMMD against the
paper's formula and the released code's estimator written out in numpy, the per-user CMMD and image
preference against manual computations, paired tests against direct scipy calls on per-cluster means,
bootstrap coverage on synthetic data, names carrying the encoder, and the registry."""

import doctest
import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist

from evalbench.metrics import METRICS, paired
from evalbench.metrics import distribution as dist
from evalbench.metrics.distribution import CMMD, ImagePreference, cmmd, median_bandwidth, mmd2_biased, mmd2_unbiased
from evalbench.metrics.paired import PairedComparison, bootstrap_coverage, paired_comparison


def unit(rng, n, d=16, shift=0.0):
    x = rng.normal(size=(n, d)) + shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rbf(a, b, sigma):
    return math.exp(-float(np.sum((a - b) ** 2)) / (2.0 * sigma**2))


def mmd2_loop(x, y, sigma, unbiased=True):
    """The U-statistic (or V-statistic) of Gretton et al. 2012, term by term."""
    m, n = len(x), len(y)
    kxx = sum(rbf(x[i], x[j], sigma) for i in range(m) for j in range(m) if i != j or not unbiased)
    kyy = sum(rbf(y[i], y[j], sigma) for i in range(n) for j in range(n) if i != j or not unbiased)
    kxy = sum(rbf(x[i], y[j], sigma) for i in range(m) for j in range(n))
    if unbiased:
        return kxx / (m * (m - 1)) + kyy / (n * (n - 1)) - 2 * kxy / (m * n)
    return kxx / m**2 + kyy / n**2 - 2 * kxy / (m * n)


# -- MMD ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_mmd2_unbiased_matches_double_loop(seed):
    rng = np.random.default_rng(seed)
    m, n, d = rng.integers(2, 9), rng.integers(2, 9), rng.integers(1, 6)
    x, y = rng.normal(size=(m, d)), rng.normal(size=(n, d)) * 1.5 + 0.3
    for sigma in (0.5, 1.0, 3.0):
        assert mmd2_unbiased(x, y, bandwidth=sigma) == pytest.approx(mmd2_loop(x, y, sigma), rel=1e-10, abs=1e-12)
        assert mmd2_biased(x, y, bandwidth=sigma) == pytest.approx(
            mmd2_loop(x, y, sigma, unbiased=False), rel=1e-10, abs=1e-12
        )
    med = float(np.median(pdist(np.concatenate([x, y]))))
    assert median_bandwidth(x, y) == pytest.approx(med, rel=1e-12)
    assert mmd2_unbiased(x, y) == pytest.approx(mmd2_loop(x, y, med), rel=1e-10, abs=1e-12)


def test_mmd2_in_row_blocks_and_custom_kernel(monkeypatch):
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(11, 3)), rng.normal(size=(7, 3))
    whole = mmd2_unbiased(x, y, bandwidth=2.0)
    monkeypatch.setattr(dist, "_BLOCK", 3)  # diagonal handling across blocks
    assert mmd2_unbiased(x, y, bandwidth=2.0) == pytest.approx(whole, rel=1e-12)
    linear = mmd2_unbiased(x, y, kernel=lambda a, b: a @ b.T)  # unbiased ||mean x - mean y||^2
    sx, sy = x.sum(0), y.sum(0)
    expected = (sx @ sx - np.sum(x * x)) / (11 * 10) + (sy @ sy - np.sum(y * y)) / (7 * 6) - 2 * (sx @ sy) / (11 * 7)
    assert linear == pytest.approx(expected, rel=1e-10)


def test_biased_minus_unbiased_is_the_diagonal_term():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(6, 4))
    s = 1.7
    kxx = np.mean([rbf(x[i], x[j], s) for i in range(9) for j in range(9) if i != j])
    kyy = np.mean([rbf(y[i], y[j], s) for i in range(6) for j in range(6) if i != j])
    gap = mmd2_biased(x, y, bandwidth=s) - mmd2_unbiased(x, y, bandwidth=s)
    assert gap == pytest.approx((1 - kxx) / 9 + (1 - kyy) / 6, rel=1e-10)


def test_mmd2_near_zero_for_one_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(11)
    same = [mmd2_unbiased(rng.normal(size=(150, 5)), rng.normal(size=(150, 5))) for _ in range(8)]
    shifted = [mmd2_unbiased(rng.normal(size=(150, 5)), rng.normal(size=(150, 5)) + 1.0) for _ in range(8)]
    assert max(abs(v) for v in same) < 0.01
    assert abs(np.mean(same)) < 0.003
    assert min(same) < 0  # unbiased: it scatters around 0
    assert min(shifted) > 0.1 > 10 * max(abs(v) for v in same)


def test_mmd2_rejects_bad_input():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="at least 2"):
        mmd2_unbiased(x, np.zeros((1, 2)), bandwidth=1.0)
    with pytest.raises(ValueError, match="same dimension"):
        mmd2_unbiased(x, np.zeros((3, 4)), bandwidth=1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd2_unbiased(x, x, bandwidth=0.0)
    with pytest.raises(ValueError, match="kernel"):
        mmd2_unbiased(x, x, kernel="laplace")


# -- CMMD -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_cmmd_is_1000_times_unbiased_mmd2_with_sigma_10_on_unit_vectors(seed):
    rng = np.random.default_rng(20 + seed)
    r, g = unit(rng, 7, 12), unit(rng, 5, 12, shift=0.4)
    assert cmmd(r, g) == pytest.approx(1000 * mmd2_unbiased(r, g, bandwidth=10.0), rel=1e-10)
    assert cmmd(r, g) == pytest.approx(1000 * mmd2_loop(r, g, 10.0), rel=1e-8)
    # rows are unit-normalised first, as the paper's CLIP embeddings are
    assert cmmd(3.0 * r, 0.2 * g) == pytest.approx(cmmd(r, g), rel=1e-10)
    assert cmmd(r, g, sigma=2.0, scale=1.0) == pytest.approx(mmd2_loop(r, g, 2.0), rel=1e-8)


def test_cmmd_biased_matches_released_code_formula():
    """google-research cmmd/distance.py: scale * (mean K_xx + mean K_yy - 2 mean K_xy), full matrices."""
    rng = np.random.default_rng(5)
    x, y = unit(rng, 8, 6), unit(rng, 10, 6, shift=0.3)

    def gram(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * 10.0**2))

    expected = 1000 * (gram(x, x).mean() + gram(y, y).mean() - 2 * gram(x, y).mean())
    assert cmmd(x, y, estimator="biased") == pytest.approx(expected, rel=1e-9)
    assert cmmd(x, y, estimator="biased") > cmmd(x, y)
    with pytest.raises(ValueError, match="estimator"):
        cmmd(x, y, estimator="v")


def _manual_user_cmmd(refs, gens):
    return 1000 * mmd2_loop(
        refs / np.linalg.norm(refs, axis=1, keepdims=True), gens / np.linalg.norm(gens, axis=1, keepdims=True), 10.0
    )


def test_cmmd_class_per_user_mean_and_pooled():
    rng = np.random.default_rng(8)
    data = {u: (rng.normal(size=(4, 6)) + k, rng.normal(size=(6, 6)) + k + 0.5) for k, u in enumerate("abc")}
    per_user, pooled = CMMD(encoder_name="arrays"), CMMD(encoder_name="arrays", pooled=True)
    for m in (per_user, pooled):
        for u, (refs, gens) in data.items():  # references repeated with each chunk of generations
            m.update(refs, gens[:3], group=u)
            m.update(refs, gens[3:], group=u)
    manual = {u: _manual_user_cmmd(r, g) for u, (r, g) in data.items()}
    assert per_user.compute() == pytest.approx(np.mean(list(manual.values())), rel=1e-8)
    assert per_user.per_group == pytest.approx(manual, rel=1e-8)
    all_r = np.concatenate([r for r, _ in data.values()])
    all_g = np.concatenate([g for _, g in data.values()])
    assert pooled.compute() == pytest.approx(_manual_user_cmmd(all_r, all_g), rel=1e-8)
    assert (per_user.name, pooled.name) == ("cmmd[arrays]", "cmmd_pooled[arrays]")
    mean, lo, hi = per_user.confidence_interval(n_resamples=200)
    assert mean == pytest.approx(per_user.compute()) and lo <= mean <= hi


def test_cmmd_class_needs_two_of_each_per_user():
    m = CMMD(encoder_name="arrays")
    m.update(np.ones((3, 2)), np.eye(2), group="u")  # three copies of one reference: one distinct
    with pytest.raises(ValueError, match="'u' has 1 distinct reference"):
        m.compute()
    with pytest.raises(ValueError, match="update"):
        CMMD(encoder_name="x").compute()


def tiny_encoder(images):
    """Mean colour and the mean of each half image: a 6-d embedding of HxWx3 uint8 images."""
    out = []
    for im in images:
        f = np.asarray(im, dtype=np.float64) / 255.0
        h = f.shape[0] // 2
        out.append(np.concatenate([f[:h].mean((0, 1)), f[h:].mean((0, 1))]) + 0.01)
    return np.stack(out)


def test_cmmd_with_injected_encoder_on_images():
    rng = np.random.default_rng(9)
    refs = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(4)]
    gens = [rng.integers(0, 128, (8, 8, 3), dtype=np.uint8) for _ in range(5)]
    m = CMMD(tiny_encoder)
    m.update(refs, gens, group="u1")
    assert m.name == "cmmd[tiny_encoder]"
    assert m.compute() == pytest.approx(_manual_user_cmmd(tiny_encoder(refs), tiny_encoder(gens)), rel=1e-8)
    with pytest.raises(ValueError, match="must be float"):
        m.update(np.zeros((8, 8), np.uint8), gens)


class LabelledEncoder:
    label = "toy-vit"

    def encode(self, images):
        return tiny_encoder(images)


def test_ids_carry_the_encoder_and_direction():
    # names only: the default stand-in and CLIP ids are loaded on first use, never here
    assert CMMD().name == "cmmd[effnet-lite0]"
    assert ImagePreference().name == "image_preference[effnet-lite0]"
    assert CMMD("openai/clip-vit-large-patch14-336").name == "cmmd[clip-vit-large-patch14-336]"
    assert ImagePreference(LabelledEncoder()).name == "image_preference[toy-vit]"
    assert ImagePreference(tiny_encoder, encoder_name="mine").name == "image_preference[mine]"
    assert CMMD.higher_is_better is False and ImagePreference.higher_is_better is True
    with pytest.raises(TypeError, match="encoder must be"):
        CMMD(42)


# -- image preference -----------------------------------------------------------------------------


def test_image_preference_matches_manual_cosines():
    rng = np.random.default_rng(12)
    m = ImagePreference(encoder_name="arrays")
    users = {}
    for u, n_calls in (("ann", 2), ("bob", 1), ("cy", 3)):
        users[u] = []
        for _ in range(n_calls):
            gens = rng.normal(size=(rng.integers(1, 5), 8)) * 2.0  # not unit length: normalised inside
            liked, neg = rng.normal(size=(3, 8)), rng.normal(size=(4, 8))
            m.update(gens, liked, neg, group=u)
            for g in gens:
                cos = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))  # noqa: E731
                users[u].append(np.mean([cos(g, li) for li in liked]) - np.mean([cos(g, ne) for ne in neg]))
    per = {u: np.mean(v) for u, v in users.items()}
    assert m.compute() == pytest.approx(np.mean(list(per.values())), rel=1e-10)
    assert m.per_group == pytest.approx(per, rel=1e-10)
    mean, lo, hi = m.confidence_interval(n_resamples=200)
    assert mean == pytest.approx(m.compute()) and lo <= mean <= hi


def test_image_preference_with_injected_encoder_on_images():
    rng = np.random.default_rng(13)
    imgs = [rng.integers(0, 256, (6, 6, 3), dtype=np.uint8) for _ in range(7)]
    m = ImagePreference(tiny_encoder)
    m.update(imgs[:2], imgs[2:4], imgs[4:], group="u")
    e = tiny_encoder(imgs)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    expected = np.mean(e[:2] @ e[2:4].T, axis=1) - np.mean(e[:2] @ e[4:].T, axis=1)
    assert m.compute() == pytest.approx(expected.mean(), rel=1e-10)
    with pytest.raises(ValueError, match="at least one"):
        m.update(imgs[:1], [], imgs[4:], group="u")


# -- paired comparison ----------------------------------------------------------------------------


def _per_cluster(values, clusters):
    labels = sorted(set(clusters))
    return np.array([np.mean([v for v, c in zip(values, clusters) if c == lab]) for lab in labels])


def test_paired_comparison_on_constructed_data():
    # user a: 2 wins of 2; user b: 1 win, 1 tie, 1 loss (mean difference 0); user c: 0 of 1
    # -> win rate (1 + 0.5 + 0) / 3; clusters better / worse / tied: a / c / b
    system = [0.9, 0.8, 0.5, 0.4, 0.1, 0.2]
    baseline = [0.1, 0.3, 0.2, 0.4, 0.4, 0.6]
    clusters = ["a", "a", "b", "b", "b", "c"]
    r = paired_comparison(system, baseline, clusters, n_resamples=1000, seed=3)
    assert isinstance(r, PairedComparison)
    assert r.win_rate == pytest.approx(0.5)
    assert r.mean_difference == pytest.approx(np.mean([0.65, 0.0, -0.4]))
    assert (r.n_better, r.n_worse, r.n_tied, r.n_clusters, r.n_units) == (1, 1, 1, 3, 6)
    # percentile bootstrap over the three per-user win rates, computed independently
    boot = stats.bootstrap(
        (np.array([1.0, 0.5, 0.0]),),
        np.mean,
        n_resamples=1000,
        method="percentile",
        random_state=np.random.default_rng(3),
    )
    assert (r.win_rate_ci_low, r.win_rate_ci_high) == pytest.approx(
        (boot.confidence_interval.low, boot.confidence_interval.high)
    )
    assert 0.0 <= r.win_rate_ci_low <= r.win_rate <= r.win_rate_ci_high <= 1.0
    assert r.mean_difference_ci_low <= r.mean_difference <= r.mean_difference_ci_high
    assert set(r.as_dict()) >= {"win_rate", "wilcoxon_p", "sign_test_p", "n_clusters"}


@pytest.mark.parametrize("seed", range(3))
def test_paired_tests_match_direct_scipy_calls(seed):
    rng = np.random.default_rng(40 + seed)
    clusters = np.repeat(np.arange(25), rng.integers(1, 6, size=25)).astype(str)
    baseline = rng.normal(size=clusters.size)
    system = baseline + 0.3 + rng.normal(size=clusters.size)
    r = paired_comparison(system, baseline, clusters, n_resamples=300)
    d = _per_cluster(system - baseline, list(clusters))
    w = stats.wilcoxon(d, alternative="two-sided")
    assert r.wilcoxon_p == pytest.approx(w.pvalue, rel=1e-9)
    assert r.wilcoxon_statistic == pytest.approx(w.statistic)
    k = int((d > 0).sum())
    assert r.sign_test_p == pytest.approx(stats.binomtest(k, d.size, 0.5).pvalue, rel=1e-9)
    assert r.mean_difference == pytest.approx(d.mean(), rel=1e-10)
    wins = np.where(system > baseline, 1.0, 0.0)
    assert r.win_rate == pytest.approx(_per_cluster(wins, list(clusters)).mean(), rel=1e-10)
    # the other direction: lower is better swaps wins and losses
    flipped = paired_comparison(system, baseline, clusters, n_resamples=300, higher_is_better=False)
    assert flipped.win_rate == pytest.approx(1 - r.win_rate)
    assert (flipped.n_better, flipped.n_worse) == (r.n_worse, r.n_better)
    assert flipped.wilcoxon_p == pytest.approx(r.wilcoxon_p)


def test_identical_system_and_baseline():
    rng = np.random.default_rng(1)
    x = rng.normal(size=12)
    r = paired_comparison(x, x.copy(), np.repeat(["u", "v", "w", "z"], 3))
    assert r.win_rate == 0.5 and (r.win_rate_ci_low, r.win_rate_ci_high) == (0.5, 0.5)
    assert r.mean_difference == 0.0
    assert r.wilcoxon_p == 1.0 and r.sign_test_p == 1.0
    assert (r.n_better, r.n_worse, r.n_tied) == (0, 0, 4)


def test_paired_comparison_rejects_bad_input():
    with pytest.raises(ValueError, match="one length"):
        paired_comparison([1.0, 2.0], [1.0], ["a", "b"])
    with pytest.raises(ValueError, match="finite"):
        paired_comparison([np.nan], [1.0], ["a"])
    with pytest.raises(ValueError, match="confidence"):
        paired_comparison([1.0], [0.0], ["a"], confidence=95)


def test_bootstrap_coverage_with_known_effect():
    # 80 users, 3 units each: over 40 seeds this ranged 0.91-0.965 (mean 0.94; 4,000 trials: 0.942)
    cov = bootstrap_coverage(0.3, n_clusters=80, units_per_cluster=3, n_trials=200, seed=0)
    assert 0.90 <= cov <= 0.99
    assert bootstrap_coverage(0.3, n_clusters=80, units_per_cluster=3, n_trials=200, seed=0) == cov
    with pytest.raises(ValueError, match="n_clusters >= 2"):
        bootstrap_coverage(0.0, 1, 3, 10, 0)


# -- registry and docs ----------------------------------------------------------------------------


def test_registry_resolves():
    assert METRICS.get("cmmd") is CMMD
    assert METRICS.get("image_preference") is ImagePreference
    for name in ("cmmd", "image_preference"):
        assert isinstance(METRICS.get(name).higher_is_better, bool)


@pytest.mark.parametrize("module", [dist, paired])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0


def test_default_stand_in_encoder_end_to_end():
    """The default ``effnet-lite0`` stand-in, loaded on first use, on scikit-image's sample pictures."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    data = pytest.importorskip("skimage.data")
    from workbench.encoders.image import load_image_encoder

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared CPU machine: two torch threads wait on each other under load
    try:
        refs = [data.astronaut(), data.coffee()]
        gens = [data.chelsea(), data.rocket(), data.astronaut()[::-1]]
        m, p = CMMD(), ImagePreference()
        m.update(refs, gens, group="u")
        p.update(gens, refs[:1], refs[1:], group="u")
        e = load_image_encoder("effnet-lite0")
        r, g = e.encode(refs).astype(np.float64), e.encode(gens).astype(np.float64)
        assert m.name == "cmmd[effnet-lite0]" and p.name == "image_preference[effnet-lite0]"
        assert m.compute() == pytest.approx(cmmd(r, g), rel=1e-6)
        assert p.compute() == pytest.approx(np.mean(g @ r[0] - g @ r[1]), rel=1e-5, abs=1e-6)
    finally:
        torch.set_num_threads(n)
