"""Demographic bias: per-group scores, worst-group gap, and population-reweighted (IPF / raking) scores.

Held-out users are not a sample of the population the results are meant to speak for (MovieLens-100k
is 71% male). Following ZIPP, we report the overall score raw and reweighted to population marginals,
and the per-group scores with the gap between the best and the worst group.

**Raking** (iterative proportional fitting, Deming & Stephan 1940). Unit :math:`i` has a category
:math:`a_i` for each attribute :math:`a` (gender, age bucket) and a base weight :math:`b_i` (1 by
default); the population shares are :math:`T_{a,c}` (each attribute's shares normalised to sum to 1).
Starting from :math:`w^{(0)} = b`, one sweep visits each attribute in turn and rescales

.. math::
    w_i \\leftarrow w_i \\, \\frac{T_{a, a_i}}{\\hat P_a(a_i)}, \\qquad
    \\hat P_a(c) = \\frac{\\sum_{j: a_j = c} w_j}{\\sum_j w_j}

so that attribute's weighted marginal equals its target; sweeps repeat until
:math:`\\max_{a,c} |\\hat P_a(c) - T_{a,c}| \\le` ``tol``. Weights are returned with mean 1. Raking
matches the marginals only (not the joint distribution); among all weightings that do, it is the one
closest to the base weights in Kullback-Leibler divergence, and for a 2x2 table it keeps the sample's
odds ratio.

**Scores.** With per-user scores :math:`s_i` (e.g. a user's mean win rate),

.. math::
    \\bar s = \\frac1n \\sum_i s_i, \\qquad \\bar s_w = \\frac{\\sum_i w_i s_i}{\\sum_i w_i}, \\qquad
    \\Delta\\% = 100\\,\\frac{\\bar s_w - \\bar s}{|\\bar s|}

and per attribute the group means :math:`m_g`, the worst-group gap :math:`\\max_g m_g - \\min_g m_g`,
and the disparity ratio :math:`\\min_g m_g / \\max_g m_g` (in [0, 1], 1 = parity; defined only for
non-negative scores such as win rates, ``nan`` otherwise).

ZIPP (arXiv 2606.08841) reports raw vs IPF-reweighted subgroup scores with |delta| %. Deming, W. E. and
Stephan, F. F. (1940), "On a least squares adjustment of a sampled frequency table when the expected marginal
totals are known", Ann. Math. Statist. 11(4), 427-444.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalbench.metrics.preference import cluster_mean_ci

SOURCE_KEYS = ("title", "publisher", "table", "url", "year")


# --------------------------------------------------------------------------------------------------
# Population targets
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    """Population marginals with their citation.

    Attributes:
        marginals: ``{attribute: {category: share}}``, each attribute's shares summing to 1.
        source: The citation (``title``, ``publisher``, ``table``, ``url``, ``year``).
        notes: How the shares were derived from the cited table.
        counts: The values as written in the file (counts or shares), before normalising.
        name: The bundled name or the file path.
    """

    marginals: dict[str, dict[str, float]]
    source: dict[str, Any]
    notes: str = ""
    counts: dict[str, dict[str, float]] = field(default_factory=dict)
    name: str = ""


def _normalise_shares(targets: Mapping[str, Mapping[Any, Any]], where: str = "targets") -> dict[str, dict[str, float]]:
    """Validate ``{attribute: {category: share or count}}`` and scale each attribute to sum to 1."""
    if not isinstance(targets, Mapping) or not targets:
        raise ValueError(f"{where}: expected a non-empty mapping {{attribute: {{category: share}}}}, got {targets!r}")
    out: dict[str, dict[str, float]] = {}
    for attr, cats in targets.items():
        if not isinstance(cats, Mapping) or not cats:
            raise ValueError(f"{where}: attribute {attr!r} needs a non-empty mapping {{category: share}}, got {cats!r}")
        shares: dict[str, float] = {}
        for cat, v in cats.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{where}: share of {attr}={cat!r} must be a finite number, got {v!r}")
            if v < 0:
                raise ValueError(f"{where}: share of {attr}={cat!r} must be >= 0, got {v}")
            shares[str(cat)] = float(v)
        total = sum(shares.values())
        if total <= 0:
            raise ValueError(f"{where}: shares of attribute {attr!r} sum to 0; at least one must be positive")
        out[str(attr)] = {c: v / total for c, v in shares.items()}
    return out


def _as_marginals(targets: Targets | Mapping[str, Mapping[Any, Any]]) -> dict[str, dict[str, float]]:
    return targets.marginals if isinstance(targets, Targets) else _normalise_shares(targets)


def load_targets(path_or_name: str | os.PathLike) -> Targets:
    """Population marginals from a YAML file, or a bundled table by name (``"us_census_2020"``).

    The file holds ``source`` (a mapping with ``title``, ``publisher``, ``table``, ``url``, ``year``),
    ``marginals`` (``{attribute: {category: share or count}}``; each attribute is normalised to sum to 1)
    and optionally ``notes``. Bundled tables live in ``evalbench/tasks/targets/<name>.yaml``.

    Example:
        >>> t = load_targets("us_census_2020")
        >>> sorted(t.marginals), round(sum(t.marginals["age"].values()), 12), t.source["year"]
        (['age', 'gender'], 1.0, 2020)
    """
    import yaml

    name = os.fspath(path_or_name)
    if isinstance(path_or_name, os.PathLike) or os.path.sep in name or name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no targets file {name!r}")
        text = path.read_text("utf-8")
    else:
        from importlib import resources

        res = resources.files("evalbench.tasks.targets").joinpath(f"{name}.yaml")
        if not res.is_file():
            shipped = sorted(
                p.name[:-5] for p in resources.files("evalbench.tasks.targets").iterdir() if p.name.endswith(".yaml")
            )
            raise ValueError(f"no bundled targets {name!r}; shipped: {', '.join(shipped)}, or pass a YAML path")
        text = res.read_text("utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"targets {name!r}: expected a YAML mapping with `source` and `marginals`")
    source = data.get("source")
    if not isinstance(source, dict):
        raise ValueError(
            f"targets {name!r}: `source` is required, a mapping with {', '.join(SOURCE_KEYS)} "
            "(cite the population table the shares come from)"
        )
    missing = [k for k in SOURCE_KEYS if source.get(k) in (None, "")]
    if missing:
        raise ValueError(f"targets {name!r}: `source` lacks {', '.join(missing)}")
    if "marginals" not in data:
        raise ValueError(f"targets {name!r}: `marginals` is required ({{attribute: {{category: share or count}}}})")
    marginals = _normalise_shares(data["marginals"], where=f"targets {name!r}")
    counts = {str(a): {str(c): float(v) for c, v in cats.items()} for a, cats in data["marginals"].items()}
    return Targets(marginals, dict(source), str(data.get("notes") or ""), counts, name)


# --------------------------------------------------------------------------------------------------
# Raking
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IPFResult:
    """Raking weights and convergence diagnostics (``np.asarray(result)`` gives the weights).

    Attributes:
        weights: One weight per unit, mean 1 (units dropped as unmatched have weight 0).
        iterations: Full sweeps over the attributes (0 when the sample already matched).
        max_error: :math:`\\max_{a,c} |\\hat P_a(c) - T_{a,c}|` after the last sweep.
        converged: ``max_error <= tol``.
    """

    weights: np.ndarray
    iterations: int
    max_error: float
    converged: bool

    def __array__(self, dtype=None, copy=None):
        return self.weights if dtype is None else self.weights.astype(dtype)


def _check_groups(groups: Mapping[str, Sequence[Any]], n: int | None = None) -> dict[str, np.ndarray]:
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError("groups must be a non-empty mapping {attribute: per-unit categories}")
    out = {str(a): np.asarray([str(c) for c in v], dtype=object) for a, v in groups.items()}
    lengths = {a: v.size for a, v in out.items()}
    if n is None:
        n = next(iter(lengths.values()))
    bad = {a: m for a, m in lengths.items() if m != n}
    if bad:
        raise ValueError(f"every attribute needs one category per unit ({n}); got {bad}")
    return out


def ipf_weights(
    groups: Mapping[str, Sequence[Any]],
    targets: Targets | Mapping[str, Mapping[Any, float]],
    *,
    base_weights: Sequence[float] | None = None,
    max_iter: int = 1000,
    tol: float = 1e-10,
    drop_unmatched: bool = False,
) -> IPFResult:
    """Rake per-unit weights so each attribute's weighted marginal equals its population share.

    Args:
        groups: ``{attribute: per-unit category}``; categories are compared as strings. Attributes
            without a target (e.g. occupation) are not raked.
        targets: ``{attribute: {category: share or count}}`` or a :class:`Targets`; each attribute is
            normalised to sum to 1. A category with share 0 gets weight 0.
        base_weights: Non-negative starting weights (default 1 for every unit).
        max_iter: Maximum sweeps; a :class:`RuntimeWarning` is issued when they run out.
        tol: Convergence threshold on the largest absolute share error.
        drop_unmatched: Give weight 0 to units whose category has no target (e.g. ``"unknown"``)
            instead of raising.

    Returns:
        :class:`IPFResult` with weights of mean 1 over all units.

    Example:
        >>> r = ipf_weights({"gender": ["M", "M", "M", "F"]}, {"gender": {"M": 0.5, "F": 0.5}})
        >>> r.weights.round(4).tolist(), r.iterations, r.converged
        ([0.6667, 0.6667, 0.6667, 2.0], 1, True)
    """
    # Our own few lines of numpy rather than the `ipfn` package: ipfn fits a table of cell counts held
    # in a pandas DataFrame / ndarray, while we need one weight per unit (users carry several
    # attributes, some not raked, and optional base weights), diagnostics and our error messages.
    # The tests use ipfn as the independent reference on the same cell tables.

    # 1. Check inputs
    g = _check_groups(groups)
    n = next(iter(g.values())).size
    if n == 0:
        raise ValueError("no units to weight")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    marg = _as_marginals(targets)
    unknown = [a for a in marg if a not in g]
    if unknown:
        raise ValueError(f"unknown attribute {unknown[0]!r} in targets; the units have: {', '.join(g)}")
    w = _start_weights(base_weights, n)
    # 2. Encode categories; units in a category without a target are an error or dropped
    codes, shares = _encode_targets(g, marg, w, drop_unmatched)
    # 3. Rake: one sweep scales each attribute's marginal onto its target in turn
    it, err = _rake(w, codes, shares, tol, max_iter)
    converged = err <= tol
    if not converged:
        warnings.warn(
            f"IPF did not converge in {max_iter} sweeps (largest share error {err:.3g} > tol {tol:g}); "
            "the targets may be incompatible with the sample's empty cells",
            RuntimeWarning,
            stacklevel=2,
        )
    return IPFResult(w * (n / w.sum()), it, err, bool(converged))


def _start_weights(base_weights: Sequence[float] | None, n: int) -> np.ndarray:
    """The weights raking starts from (a copy): ``base_weights``, checked, or 1 for every unit."""
    if base_weights is None:
        return np.ones(n)
    w = np.asarray(base_weights, dtype=float).copy()
    if w.shape != (n,):
        raise ValueError(f"base_weights must have one weight per unit ({n}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("base_weights must be finite and >= 0")
    return w


def _encode_targets(
    g: dict[str, np.ndarray], marg: dict[str, dict[str, float]], w: np.ndarray, drop_unmatched: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(per attribute the units' category codes, -1 for none; per attribute the target shares)``. Units
    whose category has no target are an error, or with ``drop_unmatched`` get weight 0 in ``w``; a target
    category without units is an error (its share cannot be matched)."""
    codes, shares = {}, {}
    for a, share in marg.items():
        cats = list(share)
        index = {c: k for k, c in enumerate(cats)}
        code = np.array([index.get(c, -1) for c in g[a]], dtype=int)
        if np.any(code < 0):
            extra = sorted(set(g[a][code < 0]))
            if not drop_unmatched:
                raise ValueError(
                    f"attribute {a!r}: categories {extra} occur in the sample but not in the targets "
                    f"({', '.join(cats)}); add them to the targets, map them onto target categories, "
                    "or pass drop_unmatched=True to give those units weight 0"
                )
            w[code < 0] = 0.0
        codes[a], shares[a] = code, np.array([share[c] for c in cats])
    if w.sum() <= 0:
        raise ValueError("all units have weight 0 (every unit unmatched or zero base weight)")
    for a, code in codes.items():
        present = np.bincount(code[(code >= 0) & (w > 0)], minlength=shares[a].size) > 0
        missing = [c for k, c in enumerate(marg[a]) if shares[a][k] > 0 and not present[k]]
        if missing:
            raise ValueError(
                f"attribute {a!r}: target categories {missing} have no units in the sample, so their "
                f"shares cannot be matched; merge them into neighbouring categories in both the targets "
                f"and the data (e.g. '45-54' and '55+' into '45+'), or drop them from the targets"
            )
    return codes, shares


def _share_error(w: np.ndarray, codes: dict[str, np.ndarray], shares: dict[str, np.ndarray]) -> float:
    """The largest absolute difference between a weighted category share and its target."""
    total = w.sum()
    return max(
        float(np.abs(np.bincount(c[c >= 0], weights=w[c >= 0], minlength=t.size) / total - t).max())
        for c, t in zip(codes.values(), shares.values())
    )


def _rake(
    w: np.ndarray, codes: dict[str, np.ndarray], shares: dict[str, np.ndarray], tol: float, max_iter: int
) -> tuple[int, float]:
    """Rake ``w`` in place until every share is within ``tol`` or ``max_iter`` sweeps ran; returns
    ``(sweeps, largest share error)``."""
    err, it = _share_error(w, codes, shares), 0
    while err > tol and it < max_iter:
        for a, code in codes.items():
            m = code >= 0
            got = np.bincount(code[m], weights=w[m], minlength=shares[a].size)
            factor = np.divide(shares[a] * w.sum(), got, out=np.zeros_like(got), where=got > 0)
            w[m] *= factor[code[m]]
        it += 1
        err = _share_error(w, codes, shares)
    return it, err


# --------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------


def _check_scores(scores: Sequence[float], n: int | None = None) -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"scores must be a non-empty 1-d sequence, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    if n is not None and s.size != n:
        raise ValueError(f"scores and groups must have the same length, got {s.size} and {n}")
    return s


def group_scores(
    scores: Sequence[float], groups: Mapping[str, Sequence[Any]], weights: Sequence[float] | IPFResult | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """Per attribute, per category: the (weighted) mean score, the unit count and the (weighted) share.

    Returns ``{attribute: {category: {"mean", "n", "share"}}}``; ``mean`` is ``nan`` for a group whose
    weights are all 0.

    Example:
        >>> group_scores([1.0, 0.0, 0.5], {"gender": ["F", "M", "M"]})["gender"]["M"]
        {'mean': 0.25, 'n': 2, 'share': 0.6666666666666666}
    """
    s = _check_scores(scores)
    g = _check_groups(groups, s.size)
    w = np.ones(s.size) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != s.shape or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be one non-negative weight per unit, not all 0")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for a, cats in g.items():
        out[a] = {}
        for c in sorted(set(cats)):
            m = cats == c
            wm = w[m].sum()
            out[a][c] = {
                "mean": float(np.dot(w[m], s[m]) / wm) if wm > 0 else float("nan"),
                "n": int(m.sum()),
                "share": float(wm / w.sum()),
            }
    return out


def _gap_and_ratio(means: dict[str, float]) -> tuple[float, float, str | None, str | None]:
    vals = {c: m for c, m in means.items() if not math.isnan(m)}
    if not vals:
        return float("nan"), float("nan"), None, None
    worst, best = min(vals, key=vals.get), max(vals, key=vals.get)
    lo, hi = vals[worst], vals[best]
    ratio = lo / hi if lo >= 0 and hi > 0 else float("nan")
    return hi - lo, ratio, worst, best


def reweighted_score(
    scores: Sequence[float],
    groups: Mapping[str, Sequence[Any]],
    targets: Targets | Mapping[str, Mapping[Any, float]],
    **ipf_kwargs: Any,
) -> dict[str, Any]:
    """Raw mean, IPF-reweighted mean and their relative difference (functional form of :class:`ReweightedScore`).

    ``delta_pct = 100 * (reweighted - raw) / |raw|`` (``nan`` when raw is 0); ``abs_delta_pct`` is its
    magnitude. ``ipf_kwargs`` go to :func:`ipf_weights`.

    Example:
        >>> out = reweighted_score([0.2, 0.2, 0.2, 0.8], {"gender": ["M", "M", "M", "F"]}, {"gender": {"M": 1, "F": 1}})
        >>> round(out["raw_mean"], 4), round(out["reweighted_mean"], 4), round(out["delta_pct"], 2)
        (0.35, 0.5, 42.86)
    """
    s = _check_scores(scores)
    _check_groups(groups, s.size)
    ipf = ipf_weights(groups, targets, **ipf_kwargs)
    raw = float(s.mean())
    rw = float(np.dot(ipf.weights, s) / ipf.weights.sum())
    delta = 100.0 * (rw - raw) / abs(raw) if raw != 0 else float("nan")
    return {
        "raw_mean": raw,
        "reweighted_mean": rw,
        "delta_pct": delta,
        "abs_delta_pct": abs(delta),
        "n_units": int(s.size),
        "iterations": ipf.iterations,
        "max_error": ipf.max_error,
        "converged": ipf.converged,
    }


class ReweightedScore:
    """Accumulate per-user scores and demographics; compute the raw and IPF-reweighted mean.

    Scores should be one per user (e.g. a user's mean win rate), since raking weights users.

    Example:
        >>> m = ReweightedScore({"gender": {"M": 0.5, "F": 0.5}})
        >>> m.update([0.2, 0.2], {"gender": ["M", "M"]})
        >>> m.update([0.2, 0.8], {"gender": ["M", "F"]})
        >>> out = m.compute(); round(out["reweighted_mean"], 4), round(out["delta_pct"], 2)
        (0.5, 42.86)
    """

    higher_is_better = True
    name = "reweighted_score"

    def __init__(
        self,
        targets: Targets | Mapping[str, Mapping[Any, float]],
        *,
        drop_unmatched: bool = False,
        max_iter: int = 1000,
        tol: float = 1e-10,
    ):
        self.targets = targets if isinstance(targets, Targets) else Targets(_normalise_shares(targets), {})
        self.ipf_kwargs = {"drop_unmatched": drop_unmatched, "max_iter": max_iter, "tol": tol}
        self.reset()

    def reset(self) -> None:
        self.scores: list[float] = []
        self.groups: dict[str, list[str]] = {a: [] for a in self.targets.marginals}

    def update(self, scores: Sequence[float], groups: Mapping[str, Sequence[Any]]) -> None:
        s = _check_scores(scores)
        g = _check_groups(groups, s.size)
        missing = [a for a in self.targets.marginals if a not in g]
        if missing:
            raise ValueError(f"groups lack the targeted attribute {missing[0]!r}; got {', '.join(g)}")
        self.scores += s.tolist()
        for a in self.groups:
            self.groups[a] += g[a].tolist()

    def compute(self) -> dict[str, Any]:
        if not self.scores:
            raise ValueError("compute() called before update()")
        return reweighted_score(self.scores, self.groups, self.targets, **self.ipf_kwargs)


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


@dataclass
class BiasReport:
    """Per-group scores and raw vs reweighted overall score.

    Attributes:
        overall: ``raw_mean``, ``ci_low``, ``ci_high`` (bootstrap over users), ``reweighted_mean``,
            ``delta_pct``, ``abs_delta_pct``, ``n_users``, ``n_units`` (reweighted values ``nan``
            without targets).
        attributes: Per attribute: ``groups`` (``{category: {"n", "mean", "ci_low", "ci_high", "share"}}``
            plus ``mean_reweighted``, ``share_reweighted`` and ``target_share`` with targets), ``gap``,
            ``disparity_ratio``, ``worst_group``, ``best_group``, ``raked`` and, with targets,
            ``gap_reweighted`` and ``disparity_ratio_reweighted``.
        ipf: The raking diagnostics (``None`` without targets).
        source: The targets' citation, when they came from :func:`load_targets`.
    """

    overall: dict[str, Any]
    attributes: dict[str, dict[str, Any]]
    ipf: IPFResult | None = None
    source: dict[str, Any] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per (attribute, group), for tables and the store."""
        return [
            {"attribute": a, "group": c, **vals}
            for a, rep in self.attributes.items()
            for c, vals in rep["groups"].items()
        ]


def _per_cluster(
    scores: np.ndarray, groups: dict[str, np.ndarray], cluster_ids: Sequence[Any] | None
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Collapse units to one mean score per cluster (user); attributes must be constant within a cluster."""
    if cluster_ids is None:
        return scores, groups, np.arange(scores.size)
    ids = np.asarray(cluster_ids)
    if ids.shape != scores.shape:
        raise ValueError(f"cluster_ids must have one id per unit ({scores.size}), got shape {ids.shape}")
    uniq, first, inv = np.unique(ids, return_index=True, return_inverse=True)
    per = np.bincount(inv, weights=scores) / np.bincount(inv)
    out = {}
    for a, cats in groups.items():
        rep = cats[first]
        varies = np.nonzero(rep[inv] != cats)[0]
        if varies.size:
            raise ValueError(
                f"attribute {a!r} varies within cluster {ids[varies[0]].item()!r}; demographics must be per user"
            )
        out[a] = rep
    return per, out, uniq


def bias_summary(
    scores: Sequence[float],
    groups: Mapping[str, Sequence[Any]],
    targets: Targets | Mapping[str, Mapping[Any, float]] | None = None,
    *,
    cluster_ids: Sequence[Any] | None = None,
    seed: int = 0,
    n_resamples: int = 2000,
    min_n: int = 1,
    drop_unmatched: bool = False,
    max_iter: int = 1000,
    tol: float = 1e-10,
) -> BiasReport:
    """Per-group scores, worst-group gap, disparity ratio, and raw vs IPF-reweighted overall score.

    Args:
        scores: One score per unit.
        groups: ``{attribute: per-unit category}`` (bucket ages first, e.g. with ``evalbench.leaderboard.AGE_BINS``).
        targets: Population marginals for some of the attributes (see :func:`load_targets`); without
            them only the raw scores are reported.
        cluster_ids: The user of each unit, when a user has several units (prompts): scores are first
            averaged per user, so every user counts once, as in the leaderboard.
        seed, n_resamples: Percentile bootstrap over users for the CIs (:func:`cluster_mean_ci`).
        min_n: Groups with fewer users are reported but left out of the gap and the ratio.
        drop_unmatched, max_iter, tol: Passed to :func:`ipf_weights`.

    The reweighted scores use weights held fixed at the raked values (no CI: it would need raking
    inside each bootstrap resample).

    Example:
        >>> rep = bias_summary([0.2, 0.2, 0.2, 0.8], {"gender": ["M", "M", "M", "F"]},
        ...                    {"gender": {"M": 0.5, "F": 0.5}}, n_resamples=200)
        >>> round(rep.attributes["gender"]["gap"], 2), rep.attributes["gender"]["worst_group"]
        (0.6, 'M')
        >>> o = rep.overall; round(o["raw_mean"], 2), round(o["reweighted_mean"], 2), round(o["delta_pct"], 1)
        (0.35, 0.5, 42.9)
    """
    # 1. Check inputs and collapse to users
    s = _check_scores(scores)
    g = _check_groups(groups, s.size)
    n_units = s.size
    s, g, users = _per_cluster(s, g, cluster_ids)

    # 2. Rake
    ipf = None
    if targets is not None:
        ipf = ipf_weights(g, targets, drop_unmatched=drop_unmatched, max_iter=max_iter, tol=tol)
    marg = _as_marginals(targets) if targets is not None else {}

    # 3. Overall
    mean, lo, hi = cluster_mean_ci(s, users, n_resamples=n_resamples, seed=seed)
    overall: dict[str, Any] = {
        "raw_mean": mean,
        "ci_low": lo,
        "ci_high": hi,
        "reweighted_mean": float("nan"),
        "delta_pct": float("nan"),
        "abs_delta_pct": float("nan"),
        "n_users": int(s.size),
        "n_units": int(n_units),
    }
    if ipf is not None:
        rw = float(np.dot(ipf.weights, s) / ipf.weights.sum())
        delta = 100.0 * (rw - mean) / abs(mean) if mean != 0 else float("nan")
        overall.update(reweighted_mean=rw, delta_pct=delta, abs_delta_pct=abs(delta))

    # 4. Per attribute and group
    raw = group_scores(s, g)
    weighted = group_scores(s, g, ipf.weights) if ipf is not None else None
    attributes: dict[str, dict[str, Any]] = {}
    for a, cats in g.items():
        rows: dict[str, dict[str, Any]] = {}
        for c, r in raw[a].items():
            m = cats == c
            gm, glo, ghi = cluster_mean_ci(s[m], users[m], n_resamples=n_resamples, seed=seed)
            rows[c] = {"n": r["n"], "mean": gm, "ci_low": glo, "ci_high": ghi, "share": r["share"]}
            if weighted is not None:
                rows[c].update(
                    mean_reweighted=weighted[a][c]["mean"],
                    share_reweighted=weighted[a][c]["share"],
                    target_share=marg.get(a, {}).get(c, float("nan")),
                )
        eligible = {c: v["mean"] for c, v in rows.items() if v["n"] >= min_n}
        gap, ratio, worst, best = _gap_and_ratio(eligible)
        rep = {
            "groups": rows,
            "gap": gap,
            "disparity_ratio": ratio,
            "worst_group": worst,
            "best_group": best,
            "raked": a in marg,
        }
        if weighted is not None:
            gap_w, ratio_w, _, _ = _gap_and_ratio({c: rows[c]["mean_reweighted"] for c in eligible})
            rep.update(gap_reweighted=gap_w, disparity_ratio_reweighted=ratio_w)
        attributes[a] = rep
    source = targets.source if isinstance(targets, Targets) and targets.source else None
    return BiasReport(overall, attributes, ipf, source)
