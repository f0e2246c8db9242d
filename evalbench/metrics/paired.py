"""Paired comparison of a system against a baseline on the same units, clustered by user.

Units (prompts, generations) of one held-out user are not independent, so every interval and test here
works on clusters: per cluster (user) :math:`c` with units :math:`i \\in c` and per-unit scores
:math:`s_i` (system) and :math:`b_i` (baseline) on the same unit, :math:`d_i = s_i - b_i`,

.. math::
    \\mathrm{win}_i = \\begin{cases} 1 & d_i > 0 \\\\ \\tfrac12 & |d_i| \\le 10^{-9} \\\\ 0 & d_i < 0 \\end{cases}
    \\qquad
    \\mathrm{WR} = \\frac{1}{C}\\sum_c \\frac{1}{|c|}\\sum_{i\\in c} \\mathrm{win}_i,
    \\qquad
    \\bar d = \\frac{1}{C}\\sum_c \\bar d_c,\\ \\ \\bar d_c = \\frac{1}{|c|}\\sum_{i\\in c} d_i

(signs flipped for lower-is-better scores), with percentile-bootstrap CIs over clusters
(:func:`~evalbench.metrics.preference.cluster_mean_ci`), and two paired tests on the per-cluster mean
differences :math:`\\bar d_c`: the Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`, two-sided,
scipy's defaults) and the sign test (:func:`scipy.stats.binomtest` on the clusters that improved among
those that changed, :math:`p = 1/2`, two-sided).

:func:`bootstrap_coverage` checks, by simulation, that the cluster bootstrap CI covers a known mean at
about its nominal rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from evalbench.metrics.preference import TIE_EPS, cluster_mean_ci, win

#: Bootstrap resamples per simulated trial in :func:`bootstrap_coverage` (2000 for reported CIs), for a
#: quarter of the cost. Measured on 4,000 trials (same data, effect 0.3, 3 units per cluster, unit
#: standard deviations): coverage 0.926 with 500 resamples and 0.929 with 2000 at 20 clusters, 0.937 and
#: 0.939 at 40, 0.942 and 0.944 at 80: a difference far below the Monte Carlo error of a 200-trial
#: estimate (about 0.015).
COVERAGE_RESAMPLES = 500


@dataclass
class PairedComparison:
    """Result of :func:`paired_comparison`. CIs are percentile-bootstrap intervals over clusters;
    counts of better/worse/tied refer to clusters (by the sign of their mean difference)."""

    win_rate: float
    """Mean over clusters of the per-cluster share of units where the system beats the baseline (ties 1/2)."""
    win_rate_ci_low: float
    win_rate_ci_high: float
    mean_difference: float
    """Mean over clusters of the per-cluster mean of ``system - baseline`` (raw sign, whatever the direction)."""
    mean_difference_ci_low: float
    mean_difference_ci_high: float
    wilcoxon_statistic: float
    """scipy's statistic (the smaller of the signed-rank sums for two-sided); 0 when all differences are 0."""
    wilcoxon_p: float
    """Two-sided Wilcoxon signed-rank p-value on per-cluster mean differences; 1.0 when all are 0."""
    sign_test_p: float
    """Two-sided exact binomial p-value of ``n_better`` among ``n_better + n_worse``; 1.0 when both are 0."""
    n_better: int
    n_worse: int
    n_tied: int
    n_clusters: int
    n_units: int
    confidence: float

    def as_dict(self) -> dict:
        return asdict(self)


def _per_cluster_mean(values: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    _, inv = np.unique(clusters, return_inverse=True)
    return np.bincount(inv, weights=values) / np.bincount(inv)


def paired_comparison(
    system,
    baseline,
    clusters,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    higher_is_better: bool = True,
) -> PairedComparison:
    """Win rate, mean difference and paired tests of ``system`` against ``baseline`` on the same units.

    Args:
        system: Per-unit scores of the system, shape ``(n,)``.
        baseline: Per-unit scores of the baseline on the same units, in the same order.
        clusters: Per-unit cluster (user) labels; CIs resample clusters and tests use per-cluster means.
        n_resamples: Bootstrap resamples for each CI.
        seed: Seed of the bootstrap.
        confidence: CI level.
        higher_is_better: Direction of the score; ``False`` (e.g. CMMD) counts a lower score as a win.

    Example:
        >>> r = paired_comparison([0.3, 0.2, 0.5, 0.1], [0.1, 0.2, 0.4, 0.3], ["a", "a", "b", "b"])
        >>> r.win_rate, round(r.mean_difference, 3), r.n_better, r.n_worse, r.n_clusters
        (0.625, 0.025, 1, 1, 2)
    """
    # 1. Check inputs
    s, b = np.asarray(system, dtype=float), np.asarray(baseline, dtype=float)
    clusters = np.asarray(clusters)
    if s.ndim != 1 or b.shape != s.shape or clusters.shape != s.shape:
        raise ValueError(
            f"system, baseline and clusters must be 1-D of one length, got shapes {s.shape}, "
            f"{b.shape}, {clusters.shape}"
        )
    if s.size == 0:
        raise ValueError("no units to compare")
    if not (np.isfinite(s).all() and np.isfinite(b).all()):
        raise ValueError("system and baseline scores must be finite")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")

    # 2. Per-unit differences and wins (direction-aware), CIs over clusters
    diff = s - b
    wins = win(diff if higher_is_better else -diff)
    wr, wlo, whi = cluster_mean_ci(wins, clusters, n_resamples=n_resamples, seed=seed, confidence=confidence)
    md, dlo, dhi = cluster_mean_ci(diff, clusters, n_resamples=n_resamples, seed=seed, confidence=confidence)

    # 3. Paired tests on per-cluster mean differences
    from scipy.stats import binomtest, wilcoxon

    per = _per_cluster_mean(diff, clusters)
    per = np.where(np.abs(per) <= TIE_EPS, 0.0, per)
    signed = per if higher_is_better else -per
    n_better, n_worse = int((signed > 0).sum()), int((signed < 0).sum())
    if n_better + n_worse == 0:  # no cluster changed: no evidence of a difference
        w_stat, w_p, sign_p = 0.0, 1.0, 1.0
    else:
        res = wilcoxon(per, alternative="two-sided")
        w_stat, w_p = float(res.statistic), float(res.pvalue)
        sign_p = float(binomtest(n_better, n_better + n_worse, 0.5, alternative="two-sided").pvalue)

    return PairedComparison(
        win_rate=wr,
        win_rate_ci_low=wlo,
        win_rate_ci_high=whi,
        mean_difference=md,
        mean_difference_ci_low=dlo,
        mean_difference_ci_high=dhi,
        wilcoxon_statistic=w_stat,
        wilcoxon_p=w_p,
        sign_test_p=sign_p,
        n_better=n_better,
        n_worse=n_worse,
        n_tied=int(per.size - n_better - n_worse),
        n_clusters=int(per.size),
        n_units=int(s.size),
        confidence=float(confidence),
    )


def bootstrap_coverage(
    effect: float,
    n_clusters: int,
    units_per_cluster: int,
    n_trials: int,
    seed: int = 0,
    *,
    cluster_sd: float = 1.0,
    unit_sd: float = 1.0,
    confidence: float = 0.95,
    n_resamples: int = COVERAGE_RESAMPLES,
) -> float:
    """Share of simulated trials whose cluster-bootstrap CI contains the known mean.

    Each trial draws ``n_clusters`` clusters with true means :math:`\\mu_c = \\text{effect} + \\sigma_c z_c`
    and ``units_per_cluster`` units :math:`x_{ci} = \\mu_c + \\sigma_u \\varepsilon_{ci}` (all :math:`z,
    \\varepsilon` standard normal), and asks whether the CI of
    :func:`~evalbench.metrics.preference.cluster_mean_ci` (mean of cluster means, percentile bootstrap
    over clusters) contains ``effect``, the population mean of cluster means. A well-calibrated interval
    covers at about ``confidence``; the percentile bootstrap runs under it with few clusters (its
    intervals are too narrow by a factor of about :math:`\\sqrt{(C-1)/C}`, and normal tails are
    estimated from few points). Measured at 95% on 4,000 trials (defaults otherwise): 0.89 with 10
    clusters, 0.93 with 20, 0.94 with 40 and 80.

    Args:
        effect: The true mean.
        n_clusters: Clusters (users) per trial, at least 2.
        units_per_cluster: Units per cluster, at least 1.
        n_trials: Simulated trials; the estimate's Monte Carlo standard error is about
            :math:`\\sqrt{0.95 \\cdot 0.05 / n}` (0.015 at 200 trials).
        seed: Seeds both the data and the bootstraps (each trial's bootstrap gets its own seed).
        cluster_sd, unit_sd: :math:`\\sigma_c` and :math:`\\sigma_u`.
        confidence: CI level.
        n_resamples: Bootstrap resamples per trial; default :data:`COVERAGE_RESAMPLES` (500) to keep the
            simulation fast, rather than the 2000 used for reported CIs.

    Example:
        >>> bootstrap_coverage(0.3, n_clusters=40, units_per_cluster=3, n_trials=20, seed=0)
        0.95
    """
    if n_clusters < 2 or units_per_cluster < 1 or n_trials < 1:
        raise ValueError(
            f"need n_clusters >= 2, units_per_cluster >= 1 and n_trials >= 1, got {n_clusters}, "
            f"{units_per_cluster}, {n_trials}"
        )
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(n_clusters), units_per_cluster)
    hits = 0
    for _t in range(n_trials):
        mu = effect + cluster_sd * rng.standard_normal(n_clusters)
        x = np.repeat(mu, units_per_cluster) + unit_sd * rng.standard_normal(clusters.size)
        _, lo, hi = cluster_mean_ci(
            x, clusters, n_resamples=n_resamples, seed=int(rng.integers(2**31)), confidence=confidence
        )
        hits += bool(lo <= effect <= hi)
    return hits / n_trials
