"""Preference metrics: does personalisation move a prompt towards what the user goes on to like?

``text_preference[<encoder>]`` is the embedded, text-only analogue of ZIPP's "CLIPScore against the
user's preferences". For a held-out user :math:`u` with hidden liked items :math:`L_u` and hidden
negatives :math:`N_u` (the unseen items the split drew for them, popularity-matched by default), and
unit-normalised text embeddings :math:`e(\\cdot)`,

.. math::
    \\mathrm{pref}_u(x) = \\frac{1}{|L_u|}\\sum_{i\\in L_u} e(x)\\cdot e(i) - \\frac{1}{|N_u|}\\sum_{j\\in N_u} e(x)\\cdot e(j)

For a prompt :math:`p` and its rewrite :math:`r`: lift :math:`= \\mathrm{pref}_u(r) - \\mathrm{pref}_u(p)`, and
win :math:`= 1` if lift > 0, :math:`\\tfrac12` on a tie, else 0. The win rate against the generic
prompt weights users equally (mean of per-user means); its 95% CI is a percentile bootstrap over users
(``scipy.stats.bootstrap``), since prompts of one user are not independent.

Beating the generic prompt proves little: a cue that helps anyone (a popular genre) wins too. The
**personal win rate** asks whether the user's *own* rewrite beats the rewrites the same system made for
other users (its partners :math:`V_u`), all scored on :math:`u`'s own hidden items:

.. math::
    \\mathrm{personal}_{u,p} = \\frac{1}{|V_u|}\\sum_{v \\in V_u} \\mathrm{win}\\big(\\mathrm{pref}_u(r_{u,p}) - \\mathrm{pref}_u(r_{v,p})\\big)

averaged per user, then over users (0.5: the rewrite is no more this user's than anyone's), with a
percentile-bootstrap CI over users and a Wilcoxon signed-rank test on the per-user mean margins
:math:`\\mathrm{pref}_u(r_{u,p}) - \\overline{\\mathrm{pref}_u(r_{v,p})}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TIE_EPS = 1e-9


def preference_margin(queries: np.ndarray, liked: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """``pref(x)`` for each row of ``queries`` (all arrays unit-normalised, shape ``(n, d)``), in float64:
    BLAS sums the rows of one product in different orders (blocks and a remainder), which in float32 moves
    equal rows apart by ~1e-8, more than the tie tolerance; in float64 equal inputs tie."""
    if liked.shape[0] == 0 or negatives.shape[0] == 0:
        raise ValueError("liked and negatives must each hold at least one embedding")
    q = np.asarray(queries, dtype=np.float64)
    return q @ np.asarray(liked, dtype=np.float64).mean(axis=0) - q @ np.asarray(negatives, dtype=np.float64).mean(axis=0)


def win(lift: np.ndarray, tie_eps: float = TIE_EPS) -> np.ndarray:
    """1 where lift > 0, 0.5 on a tie (|lift| <= ``tie_eps``, default 1e-9), 0 otherwise."""
    lift = np.asarray(lift, dtype=float)
    return np.where(np.abs(lift) <= tie_eps, 0.5, (lift > 0).astype(float))


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


def cluster_wilcoxon(differences, clusters) -> float:
    """Two-sided Wilcoxon signed-rank p of the per-cluster mean ``differences`` (1.0 when none differs
    from 0, NaN without data)."""
    from scipy.stats import wilcoxon

    differences, clusters = np.asarray(differences, dtype=float), np.asarray(clusters)
    if differences.size == 0:
        return float("nan")
    _, inv = np.unique(clusters, return_inverse=True)
    per = np.bincount(inv, weights=differences) / np.bincount(inv)
    per = np.where(np.abs(per) <= TIE_EPS, 0.0, per)
    return 1.0 if not np.any(per) else float(wilcoxon(per, alternative="two-sided").pvalue)


def personal_win(own: np.ndarray, partners: np.ndarray, tie_eps: float = TIE_EPS) -> np.ndarray:
    """Per unit, the share of partners the own output beats (ties count 1/2).

    Args:
        own: ``(n,)`` the own output's preference for each unit.
        partners: ``(n, K)`` the partners' outputs' preference under the same user.
        tie_eps: Differences at most this large are ties (image embeddings of the same image computed in
            different batches differ by ~1e-7, so image runs pass 1e-6).

    >>> personal_win(np.array([0.3, 0.1]), np.array([[0.1, 0.2, 0.3], [0.5, 0.0, 0.1]])).tolist()
    [0.8333333333333334, 0.5]
    """
    own, partners = np.asarray(own, dtype=float), np.asarray(partners, dtype=float)
    if partners.ndim != 2 or partners.shape[0] != own.shape[0] or partners.shape[1] == 0:
        raise ValueError(f"partners must be (n, K>0) for {own.shape[0]} units, got shape {partners.shape}")
    return win(own[:, None] - partners, tie_eps).mean(axis=1)


@dataclass
class PersonalWinRate:
    """Accumulate per-unit personal wins and margins; compute the personal win rate with its CI and test.

    Example:
        >>> m = PersonalWinRate("minilm")
        >>> m.update(personal=[1.0, 0.5, 0.75, 1.0], margin=[0.2, 0.0, 0.1, 0.3], users=["a", "a", "b", "b"])
        >>> out = m.compute(); out["personal_win_rate"], out["n_users"]
        (0.8125, 2)
    """

    encoder: str = "minilm"
    higher_is_better: bool = True
    values: list[float] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    users: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"personal_win_rate[{self.encoder}]"

    def update(self, personal, margin, users) -> None:
        personal, margin = list(np.asarray(personal, dtype=float)), list(np.asarray(margin, dtype=float))
        if not len(personal) == len(margin) == len(users):
            raise ValueError(f"personal, margin and users must have one length, got {len(personal)}, {len(margin)}, "
                             f"{len(users)}")
        self.values += personal
        self.margins += margin
        self.users += list(users)

    def compute(self, *, n_resamples: int = 2000, seed: int = 0) -> dict[str, float]:
        values, margins, users = np.array(self.values), np.array(self.margins), np.array(self.users)
        m, lo, hi = cluster_mean_ci(values, users, n_resamples=n_resamples, seed=seed)
        return {"personal_win_rate": m, "personal_ci": [lo, hi], "wilcoxon_p": cluster_wilcoxon(margins, users),
                "n_users": int(np.unique(users).size), "n_units": int(values.size)}
