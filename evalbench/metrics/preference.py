"""Preference metrics: does personalisation move a prompt towards what the user goes on to like?

``text_preference[<encoder>]`` is the embedded, text-only analogue of ZIPP's "CLIPScore against the
user's preferences". For a held-out user :math:`u` with hidden liked items :math:`L_u` and hidden
negatives :math:`N_u` (disliked and unseen), and unit-normalised text embeddings :math:`e(\\cdot)`,

.. math::
    \\mathrm{pref}_u(x) = \\frac{1}{|L_u|}\\sum_{i\\in L_u} e(x)\\cdot e(i) - \\frac{1}{|N_u|}\\sum_{j\\in N_u} e(x)\\cdot e(j)

For a prompt :math:`p` and its rewrite :math:`r`: lift :math:`= \\mathrm{pref}_u(r) - \\mathrm{pref}_u(p)`, and
win :math:`= 1` if lift > 0, :math:`\\tfrac12` on a tie, else 0. The win rate against the generic
prompt weights users equally (mean of per-user means); its 95% CI is a percentile bootstrap over users
(``scipy.stats.bootstrap``), since prompts of one user are not independent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TIE_EPS = 1e-9


def preference_margin(queries: np.ndarray, liked: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """``pref(x)`` for each row of ``queries`` (all arrays unit-normalised, shape ``(n, d)``)."""
    if liked.shape[0] == 0 or negatives.shape[0] == 0:
        raise ValueError("liked and negatives must each hold at least one embedding")
    return queries @ liked.mean(axis=0) - queries @ negatives.mean(axis=0)


def win(lift: np.ndarray) -> np.ndarray:
    """1 where lift > 0, 0.5 on a tie (|lift| <= 1e-9), 0 otherwise."""
    lift = np.asarray(lift, dtype=float)
    return np.where(np.abs(lift) <= TIE_EPS, 0.5, (lift > 0).astype(float))


def cluster_mean_ci(values: np.ndarray, clusters: np.ndarray, *, n_resamples: int = 2000, seed: int = 0,
                    confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-cluster means and its percentile-bootstrap CI over clusters.

    Returns ``(mean, low, high)``; the CI is ``(nan, nan)`` with fewer than two clusters.
    """
    from scipy.stats import bootstrap

    values, clusters = np.asarray(values, dtype=float), np.asarray(clusters)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    _, inv = np.unique(clusters, return_inverse=True)
    per = np.bincount(inv, weights=values) / np.bincount(inv)
    mean = float(per.mean())
    if per.size < 2 or np.all(per == per[0]):
        return mean, (mean if per.size >= 2 else float("nan")), (mean if per.size >= 2 else float("nan"))
    res = bootstrap((per,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
                    random_state=np.random.default_rng(seed))
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass
class TextPreference:
    """Accumulate per-unit lifts and compute the win rate against the generic prompt.

    Example:
        >>> m = TextPreference("minilm")
        >>> m.update(lift=[0.1, -0.2, 0.3, 0.05], users=["a", "a", "b", "b"])
        >>> out = m.compute(); out["win_rate"], round(out["lift"], 3)
        (0.75, 0.062)
    """

    encoder: str = "minilm"
    higher_is_better: bool = True
    lifts: list[float] = field(default_factory=list)
    users: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"text_preference[{self.encoder}]"

    def update(self, lift, users) -> None:
        lift = list(np.asarray(lift, dtype=float))
        if len(lift) != len(users):
            raise ValueError(f"lift and users must have the same length, got {len(lift)} and {len(users)}")
        self.lifts += lift
        self.users += list(users)

    def compute(self, *, n_resamples: int = 2000, seed: int = 0) -> dict[str, float]:
        lifts, users = np.array(self.lifts), np.array(self.users)
        w, lo, hi = cluster_mean_ci(win(lifts), users, n_resamples=n_resamples, seed=seed)
        lm, llo, lhi = cluster_mean_ci(lifts, users, n_resamples=n_resamples, seed=seed)
        return {"win_rate": w, "ci_low": lo, "ci_high": hi, "lift": lm, "lift_ci_low": llo, "lift_ci_high": lhi,
                "n_users": int(np.unique(users).size), "n_units": int(lifts.size)}
