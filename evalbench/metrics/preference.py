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
from typing import Any

import numpy as np

TIE_EPS = 1e-9


def preference_margin(queries: np.ndarray, liked: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """``pref(x)`` for each row of ``queries`` (all arrays unit-normalised, shape ``(n, d)``), in float64:
    BLAS sums the rows of one product in different orders (blocks and a remainder), which in float32 moves
    equal rows apart by ~1e-8, more than the tie tolerance; in float64 equal inputs tie."""
    if liked.shape[0] == 0 or negatives.shape[0] == 0:
        raise ValueError("liked and negatives must each hold at least one embedding")
    q = np.asarray(queries, dtype=np.float64)
    return q @ np.asarray(liked, dtype=np.float64).mean(axis=0) - q @ np.asarray(negatives, dtype=np.float64).mean(
        axis=0
    )


def win(lift: np.ndarray, tie_eps: float = TIE_EPS) -> np.ndarray:
    """1 where lift > 0, 0.5 on a tie (|lift| <= ``tie_eps``, default 1e-9), 0 otherwise."""
    lift = np.asarray(lift, dtype=float)
    return np.where(np.abs(lift) <= tie_eps, 0.5, (lift > 0).astype(float))


def cluster_mean_ci(
    values: np.ndarray,
    clusters: np.ndarray,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    statistic=np.mean,
) -> tuple[float, float, float]:
    """Mean (or another ``statistic``, e.g. ``np.median``) of per-cluster means and its percentile-bootstrap
    CI over clusters.

    Returns ``(mean, low, high)``; the CI is ``(nan, nan)`` with fewer than two clusters.
    """
    from scipy.stats import bootstrap

    values, clusters = np.asarray(values, dtype=float), np.asarray(clusters)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    _, inv = np.unique(clusters, return_inverse=True)
    per = np.bincount(inv, weights=values) / np.bincount(inv)
    mean = float(statistic(per))
    if per.size < 2 or np.all(per == per[0]):
        return mean, (mean if per.size >= 2 else float("nan")), (mean if per.size >= 2 else float("nan"))
    res = bootstrap(
        (per,),
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


#: how a metric's unit values become its result: ``mean`` of the per-user means (users weighted equally),
#: ``median`` of them; both with a percentile-bootstrap CI over users
AGGREGATIONS = ("mean", "median")


def _user_ci(
    values, users, *, seed: int, n_resamples: int = 2000, statistic=np.mean
) -> tuple[float, float, float, int]:
    """``(statistic of the per-user means, CI low, CI high, users)`` of the non-NaN ``values``."""
    values, users = np.asarray(values, dtype=float), np.asarray(users)
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan"), float("nan"), float("nan"), 0
    m, lo, hi = cluster_mean_ci(values[keep], users[keep], n_resamples=n_resamples, seed=seed, statistic=statistic)
    return m, lo, hi, int(np.unique(users[keep]).size)


def _column(values, n: int, what: str) -> list[float]:
    """``values`` as floats (NaN for ``None``: a unit without that score), checked to hold ``n`` of them."""
    out = [np.nan if v is None else float(v) for v in (values if values is not None else [None] * n)]
    if len(out) != n:
        raise ValueError(f"{what} and users must have the same length, got {len(out)} and {n}")
    return out


@dataclass
class TextPreference:
    """The text-preference measure of a bench run: the rewrite against the generic prompt (win rate, lift)
    and against the partners' rewrites (the personal win rate), from per-unit values.

    Per unit the runner stores :attr:`fields` under ``text_preference[<encoder>].<field>``; :meth:`update`
    takes the ones :meth:`compute` reads (:attr:`inputs`), NaN where a unit has none (the history ceiling
    has no generic prompt; users without hidden dislikes have no ``personal_dislikes``).

    Example:
        >>> m = TextPreference("minilm")
        >>> m.update(lift=[0.1, -0.2, 0.3, 0.05], users=["a", "a", "b", "b"])
        >>> out = m.compute(); out["win_rate"], round(out["lift"], 3)
        (0.75, 0.062)
    """

    encoder: str = "minilm"
    aggregation: str = "mean"
    higher_is_better: bool = True
    lifts: list[float] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    personal: list[float] = field(default_factory=list)
    personal_margins: list[float] = field(default_factory=list)
    personal_dislikes: list[float] = field(default_factory=list)

    fields = ("generic", "rewritten", "lift", "win", "personal", "personal_margin", "personal_dislikes")
    inputs = ("lift", "personal", "personal_margin", "personal_dislikes")
    aggregations = ("mean",)

    @property
    def name(self) -> str:
        return f"text_preference[{self.encoder}]"

    def update(self, lift, users, *, personal=None, personal_margin=None, personal_dislikes=None) -> None:
        n = len(users)
        self.lifts += _column(lift, n, "lift")
        self.personal += _column(personal, n, "personal")
        self.personal_margins += _column(personal_margin, n, "personal_margin")
        self.personal_dislikes += _column(personal_dislikes, n, "personal_dislikes")
        self.users += list(users)

    def compute(self, *, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
        """Personal win rate (negatives: the hidden unseen items; then the hidden dislikes only) with CIs and
        the Wilcoxon p of the per-user margins; the win rate and lift against the generic prompt with CIs."""
        users, lifts = np.array(self.users, dtype=object), np.array(self.lifts)
        wins = np.where(np.isnan(lifts), np.nan, win(lifts))
        margins = np.array(self.personal_margins)
        keep = ~np.isnan(margins)
        pw, plo, phi, _ = _user_ci(self.personal, users, seed=seed, n_resamples=n_resamples)
        dw, dlo, dhi, n_d = _user_ci(self.personal_dislikes, users, seed=seed, n_resamples=n_resamples)
        w, lo, hi, _ = _user_ci(wins, users, seed=seed, n_resamples=n_resamples)
        lm, llo, lhi, _ = _user_ci(lifts, users, seed=seed, n_resamples=n_resamples)
        return {
            "personal_win_rate": pw,
            "personal_ci": [plo, phi],
            "personal_wilcoxon_p": cluster_wilcoxon(margins[keep], users[keep]),
            "personal_dislikes": dw,
            "personal_dislikes_ci": [dlo, dhi],
            "personal_dislikes_users": n_d,
            "win_rate": w,
            "ci_low": lo,
            "ci_high": hi,
            "lift": lm,
            "lift_ci_low": llo,
            "lift_ci_high": lhi,
            "n_users": int(np.unique(users).size),
            "n_units": int(users.size),
        }


@dataclass
class RewriteSpread:
    """How far a user's rewrite is from the rewrites the same system made for the user's partners (same
    prompt): ``1 - mean cosine``, per unit. 0 when everyone gets the same prompt (the popularity control);
    a persona system must spread its rewrites to be personal at all, though spread alone proves nothing.

    Example:
        >>> m = RewriteSpread("minilm")
        >>> m.update(spread=[0.2, 0.4, 0.1, 0.1], users=["a", "a", "b", "b"])
        >>> round(m.compute(n_resamples=200)["value"], 3)
        0.2
    """

    encoder: str = "minilm"
    aggregation: str = "mean"
    higher_is_better: bool = True
    values: list[float] = field(default_factory=list)
    users: list[str] = field(default_factory=list)

    fields = ("spread",)
    inputs = ("spread",)
    aggregations = AGGREGATIONS

    @property
    def name(self) -> str:
        return f"rewrite_spread[{self.encoder}]"

    @staticmethod
    def score_unit(own: np.ndarray, partners: np.ndarray) -> dict[str, float]:
        """The unit's :attr:`fields` from the unit-normalised embeddings of its own rewrite ``(d,)`` and of
        its partners' rewrites ``(K, d)``."""
        cos = np.asarray(partners, dtype=np.float64) @ np.asarray(own, dtype=np.float64)
        return {"spread": float(1.0 - cos.mean())}

    def update(self, spread, users) -> None:
        self.values += _column(spread, len(users), "spread")
        self.users += list(users)

    def compute(self, *, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
        """The :attr:`aggregation` of the per-user mean spreads with its CI, users and units."""
        statistic = np.median if self.aggregation == "median" else np.mean
        m, lo, hi, n = _user_ci(
            self.values, np.array(self.users, dtype=object), seed=seed, n_resamples=n_resamples, statistic=statistic
        )
        return {"value": m, "ci": [lo, hi], "n_users": n, "n_units": int(np.sum(~np.isnan(self.values)))}


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
            raise ValueError(
                f"personal, margin and users must have one length, got {len(personal)}, {len(margin)}, {len(users)}"
            )
        self.values += personal
        self.margins += margin
        self.users += list(users)

    def compute(self, *, n_resamples: int = 2000, seed: int = 0) -> dict[str, float]:
        values, margins, users = np.array(self.values), np.array(self.margins), np.array(self.users)
        m, lo, hi = cluster_mean_ci(values, users, n_resamples=n_resamples, seed=seed)
        return {
            "personal_win_rate": m,
            "personal_ci": [lo, hi],
            "wilcoxon_p": cluster_wilcoxon(margins, users),
            "n_users": int(np.unique(users).size),
            "n_units": int(values.size),
        }
