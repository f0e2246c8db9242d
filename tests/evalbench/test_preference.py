"""text_preference: margins, wins, clustered bootstrap, against independent references."""

import numpy as np
import pytest
from scipy.stats import bootstrap

from evalbench.metrics.preference import TextPreference, cluster_mean_ci, preference_margin, win


def unit(rng, n, d=16):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_margin_matches_explicit_loop():
    rng = np.random.default_rng(0)
    q, liked, neg = unit(rng, 7), unit(rng, 5), unit(rng, 9)
    ref = [np.mean([float(np.dot(a, b)) for b in liked]) - np.mean([float(np.dot(a, b)) for b in neg]) for a in q]
    np.testing.assert_allclose(preference_margin(q, liked, neg), ref, atol=1e-12)


def test_identical_rewrite_is_a_tie():
    rng = np.random.default_rng(1)
    q, liked, neg = unit(rng, 3), unit(rng, 4), unit(rng, 4)
    lift = preference_margin(q, liked, neg) - preference_margin(q, liked, neg)
    assert list(win(lift)) == [0.5, 0.5, 0.5]
    assert list(win(np.array([0.2, -0.1, 0.0]))) == [1.0, 0.0, 0.5]


def test_empty_targets_rejected():
    with pytest.raises(ValueError, match="at least one embedding"):
        preference_margin(np.ones((1, 2)), np.zeros((0, 2)), np.ones((1, 2)))


def test_cluster_ci_is_bootstrap_over_user_means():
    rng = np.random.default_rng(2)
    users = np.repeat(np.arange(30), rng.integers(2, 6, size=30))
    values = rng.normal(size=users.size) + users * 0.01
    mean, lo, hi = cluster_mean_ci(values, users, seed=5)
    per = np.array([values[users == u].mean() for u in range(30)])
    assert mean == pytest.approx(per.mean())
    ref = bootstrap(
        (per,), np.mean, n_resamples=2000, method="percentile", random_state=np.random.default_rng(5)
    ).confidence_interval
    assert (lo, hi) == pytest.approx((ref.low, ref.high))
    assert lo < mean < hi


def test_metric_class_accumulates():
    m = TextPreference("minilm")
    assert m.name == "text_preference[minilm]" and m.higher_is_better
    m.update([0.1, -0.1], ["a", "a"])
    m.update([0.2, 0.3], ["b", "b"])
    out = m.compute()
    assert out["win_rate"] == pytest.approx(0.75) and out["n_users"] == 2 and out["n_units"] == 4
    with pytest.raises(ValueError, match="same length"):
        m.update([0.1], ["a", "b"])
