"""Demographic bias: IPF raking against hand-worked tables and the independent `ipfn` package, group gaps,
raw vs reweighted scores, and the bundled population targets."""

import math
import warnings

import numpy as np
import pytest

from evalbench.metrics.bias import (
    BiasReport,
    IPFResult,
    ReweightedScore,
    Targets,
    bias_summary,
    group_scores,
    ipf_weights,
    load_targets,
    reweighted_score,
)
from evalbench.metrics.preference import cluster_mean_ci


def units_from_table(table: dict[tuple[str, str], int]) -> dict[str, list[str]]:
    """Per-unit (gender, age) categories from a table of cell counts."""
    gender, age = [], []
    for (g, a), count in table.items():
        gender += [g] * count
        age += [a] * count
    return {"gender": gender, "age": age}


def cell_totals(groups: dict[str, list[str]], weights: np.ndarray, attrs=("gender", "age")) -> dict[tuple, float]:
    out: dict[tuple, float] = {}
    for i, w in enumerate(weights):
        key = tuple(groups[a][i] for a in attrs)
        out[key] = out.get(key, 0.0) + float(w)
    return out


def weighted_shares(cats, weights) -> dict[str, float]:
    cats, weights = np.asarray(cats), np.asarray(weights, dtype=float)
    return {c: float(weights[cats == c].sum() / weights.sum()) for c in np.unique(cats)}


# --------------------------------------------------------------------------------------------------
# IPF: hand-worked examples
# --------------------------------------------------------------------------------------------------


def test_one_sweep_when_the_second_margin_already_fits():
    # Sample 40 M / 60 F, age 50/50 within each sex (independent): raking sex to 50/50 leaves age at
    # 50/50, so one sweep is exact. M units get 0.5/0.4 = 1.25, F units 0.5/0.6 = 5/6 (mean already 1).
    groups = units_from_table({("M", "young"): 20, ("M", "old"): 20, ("F", "young"): 30, ("F", "old"): 30})
    r = ipf_weights(groups, {"gender": {"M": 0.5, "F": 0.5}, "age": {"young": 0.5, "old": 0.5}})
    expected = np.where(np.array(groups["gender"]) == "M", 1.25, 5 / 6)
    np.testing.assert_allclose(r.weights, expected, atol=1e-12)
    assert r.iterations == 1 and r.converged and r.max_error < 1e-12


def test_independent_table_closed_form():
    # An independent sample table n_ga = N p_g q_a is raked to N T_g T_a in one sweep (2x3 table),
    # so a unit in cell (g, a) gets weight T_g T_a / (p_g q_a).
    p, q = {"M": 0.25, "F": 0.75}, {"18-24": 0.2, "25-34": 0.5, "55+": 0.3}
    table = {(g, a): round(200 * p[g] * q[a]) for g in p for a in q}  # 10, 25, 15 / 30, 75, 45
    groups = units_from_table(table)
    T = {"gender": {"M": 0.4, "F": 0.6}, "age": {"18-24": 0.3, "25-34": 0.3, "55+": 0.4}}
    r = ipf_weights(groups, T)
    expected = [T["gender"][g] * T["age"][a] / (p[g] * q[a]) for g, a in zip(groups["gender"], groups["age"])]
    np.testing.assert_allclose(r.weights, expected, atol=1e-12)
    assert r.iterations == 1


def test_two_by_two_keeps_the_odds_ratio():
    # Seed table [[30, 10], [20, 40]] (rows M/F, cols young/old), odds ratio 30*40/(10*20) = 6, raked to
    # all margins 50. IPF keeps the odds ratio (Deming-Stephan; Bishop, Fienberg & Holland 3.5), so the
    # fitted table is [[x, 50-x], [50-x, x]] with x^2/(50-x)^2 = 6: x = 50 sqrt(6) / (1 + sqrt(6)).
    # The seed is not independent, so this takes several sweeps.
    table = {("M", "young"): 30, ("M", "old"): 10, ("F", "young"): 20, ("F", "old"): 40}
    groups = units_from_table(table)
    r = ipf_weights(groups, {"gender": {"M": 1, "F": 1}, "age": {"young": 1, "old": 1}})
    x = 50 * math.sqrt(6) / (1 + math.sqrt(6))
    fitted = cell_totals(groups, r.weights)
    expected = {("M", "young"): x, ("M", "old"): 50 - x, ("F", "young"): 50 - x, ("F", "old"): x}
    for cell, value in expected.items():
        assert fitted[cell] == pytest.approx(value, abs=1e-8)
    assert r.iterations > 3 and r.converged


def test_random_tables_keep_cross_ratios_and_match_margins():
    # The IPF fit of a full table keeps every 2x2 cross-product ratio of the seed (its log-linear
    # interaction terms) while matching the margins: an independent characterisation of the solution.
    rng = np.random.default_rng(3)
    ages = ["<18", "18-24", "25-34", "35-44", "45-54", "55+"]
    seed = rng.integers(3, 30, size=(2, 6))
    table = {(g, a): int(seed[i, j]) for i, g in enumerate("MF") for j, a in enumerate(ages)}
    groups = units_from_table(table)
    tg, ta = rng.dirichlet(np.ones(2)), rng.dirichlet(np.ones(6))
    r = ipf_weights(groups, {"gender": dict(zip("MF", tg)), "age": dict(zip(ages, ta))})
    fit = np.array([[cell_totals(groups, r.weights)[(g, a)] for a in ages] for g in "MF"])
    n = seed.sum()
    np.testing.assert_allclose(fit.sum(axis=1), n * tg, rtol=1e-9)
    np.testing.assert_allclose(fit.sum(axis=0), n * ta, rtol=1e-9)
    log_cross = lambda m: np.log(m[0, 1:] * m[1, 0]) - np.log(m[0, 0] * m[1, 1:])  # noqa: E731
    np.testing.assert_allclose(log_cross(fit), log_cross(seed.astype(float)), atol=1e-8)


# --------------------------------------------------------------------------------------------------
# IPF: against the independent ipfn package
# --------------------------------------------------------------------------------------------------


def random_sample(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    ages = ["<18", "18-24", "25-34", "35-44", "45-54", "55+"]
    occupations = ["student", "engineer", "artist", "other"]
    groups = {
        "gender": list(rng.choice(["M", "F"], n, p=[0.7, 0.3])),
        "age": list(rng.choice(ages, n, p=[0.05, 0.2, 0.35, 0.2, 0.12, 0.08])),
        "occupation": list(rng.choice(occupations, n)),
    }
    targets = {
        "gender": dict(zip(["M", "F"], rng.dirichlet(np.ones(2)))),
        "age": dict(zip(ages, rng.dirichlet(np.ones(6)))),
        "occupation": dict(zip(occupations, rng.dirichlet(np.ones(4)))),
    }
    return groups, targets


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # ipfn 1.4.4 on pandas 3
@pytest.mark.parametrize(
    "seed,attrs", [(0, ("gender", "age")), (1, ("gender", "age", "occupation")), (2, ("gender", "age"))]
)
def test_matches_ipfn_on_random_data(seed, attrs):
    ipfn_module = pytest.importorskip(
        "ipfn.ipfn", reason="the reference `ipfn` package is not installed (pip install -c constraints.txt ipfn==1.4.4)"
    )
    import pandas as pd

    groups, targets = random_sample(seed)
    groups = {a: groups[a] for a in attrs}
    targets = {a: targets[a] for a in attrs}
    r = ipf_weights(groups, targets, tol=1e-13, max_iter=10000)
    n = len(groups["gender"])

    df = pd.DataFrame(groups).assign(total=1.0).groupby(list(attrs), as_index=False)["total"].sum()
    aggregates = [pd.Series({c: n * s for c, s in targets[a].items()}).rename_axis(a) for a in attrs]
    fitted, ok = ipfn_module.ipfn(
        df, aggregates, [[a] for a in attrs], convergence_rate=1e-14, max_iteration=10000, rate_tolerance=0.0, verbose=1
    ).iteration()
    assert ok == 1 and r.converged

    ours = cell_totals(groups, r.weights, attrs)
    assert len(ours) == len(fitted)
    for row in fitted.itertuples(index=False):
        row = row._asdict()
        assert ours[tuple(row[a] for a in attrs)] == pytest.approx(row["total"], abs=1e-6)


# --------------------------------------------------------------------------------------------------
# IPF: properties and errors
# --------------------------------------------------------------------------------------------------


def test_weighted_marginals_match_targets_and_weights_have_mean_one():
    groups, targets = random_sample(4)
    r = ipf_weights(groups, targets)
    assert r.converged and r.max_error <= 1e-10
    assert r.weights.mean() == pytest.approx(1.0, abs=1e-12) and np.all(r.weights > 0)
    for a, share in targets.items():
        total = sum(share.values())
        got = weighted_shares(groups[a], r.weights)
        for c, s in share.items():
            assert got[c] == pytest.approx(s / total, abs=1e-9)
    np.testing.assert_array_equal(np.asarray(r), r.weights)


def test_sample_already_matching_gets_unit_weights():
    groups = units_from_table({("M", "young"): 3, ("M", "old"): 1, ("F", "young"): 3, ("F", "old"): 1})
    r = ipf_weights(groups, {"gender": {"M": 50, "F": 50}, "age": {"young": 0.75, "old": 0.25}})
    np.testing.assert_allclose(r.weights, 1.0, atol=1e-15)
    assert r.iterations == 0 and r.max_error == 0.0 and r.converged


def test_base_weights_and_untargeted_attributes():
    groups = {"gender": ["M", "M", "F", "F"], "occupation": ["a", "b", "a", "b"]}
    r = ipf_weights(groups, {"gender": {"M": 0.5, "F": 0.5}}, base_weights=[1, 3, 1, 1])
    # M units keep their 1:3 ratio and hold half the weight; weights sum to 4
    np.testing.assert_allclose(r.weights, [0.5, 1.5, 1.0, 1.0], atol=1e-12)


def test_non_convergence_warns():
    table = {("M", "young"): 30, ("M", "old"): 10, ("F", "young"): 20, ("F", "old"): 40}
    with pytest.warns(RuntimeWarning, match="did not converge in 1 sweeps"):
        r = ipf_weights(
            units_from_table(table), {"gender": {"M": 1, "F": 1}, "age": {"young": 1, "old": 1}}, max_iter=1
        )
    assert not r.converged and r.iterations == 1 and r.max_error > 0.01


def test_error_messages():
    groups = {"gender": ["M", "F", "M"], "age": ["18-24", "18-24", "25-34"]}
    with pytest.raises(ValueError, match=r"attribute 'age': target categories \['55\+'\] have no units.*merge"):
        ipf_weights(groups, {"age": {"18-24": 1, "25-34": 1, "55+": 1}})
    with pytest.raises(ValueError, match="unknown attribute 'sex' in targets; the units have: gender, age"):
        ipf_weights(groups, {"sex": {"M": 1, "F": 1}})
    with pytest.raises(ValueError, match=r"share of gender='F' must be >= 0, got -0.1"):
        ipf_weights(groups, {"gender": {"M": 1.1, "F": -0.1}})
    with pytest.raises(
        ValueError,
        match=r"attribute 'age': categories \['25-34'\] occur in the sample but not in "
        r"the targets.*drop_unmatched=True",
    ):
        ipf_weights(groups, {"age": {"18-24": 1}})
    with pytest.raises(ValueError, match="one category per unit"):
        ipf_weights({"gender": ["M", "F"], "age": ["18-24"]}, {"gender": {"M": 1, "F": 1}})
    with pytest.raises(ValueError, match="shares of attribute 'gender' sum to 0"):
        ipf_weights(groups, {"gender": {"M": 0, "F": 0}})


def test_drop_unmatched_gives_weight_zero():
    # the 3 matched units share the total weight 4: M 2 * 1 and F 1 * 2 (50/50), "unknown" 0
    groups = {"gender": ["M", "M", "F", "unknown"]}
    r = ipf_weights(groups, {"gender": {"M": 0.5, "F": 0.5}}, drop_unmatched=True)
    np.testing.assert_allclose(r.weights, [1.0, 1.0, 2.0, 0.0], atol=1e-12)
    assert r.weights.mean() == pytest.approx(1.0)


def test_zero_target_share_zeroes_the_category():
    r = ipf_weights({"gender": ["M", "F", "F"]}, {"gender": {"M": 0, "F": 1}})
    np.testing.assert_allclose(r.weights, [0.0, 1.5, 1.5], atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------


def test_group_scores_weighted_and_raw():
    scores = [1.0, 0.0, 0.5, 0.25]
    groups = {"gender": ["F", "M", "M", "F"]}
    raw = group_scores(scores, groups)["gender"]
    assert raw["F"] == {"mean": 0.625, "n": 2, "share": 0.5}
    w = group_scores(scores, groups, weights=[3, 1, 1, 1])["gender"]
    assert w["F"]["mean"] == pytest.approx((3 * 1.0 + 0.25) / 4) and w["F"]["share"] == pytest.approx(4 / 6)


def test_delta_when_a_low_scoring_group_is_oversampled():
    # 3 M users at 0.2, 1 F user at 0.8; population 50/50. Raw mean (0.6 + 0.8) / 4 = 0.35; reweighted
    # 0.5 * 0.2 + 0.5 * 0.8 = 0.5; delta = 100 * 0.15 / 0.35 = +42.857% (reweighting raises the score).
    out = reweighted_score([0.2, 0.2, 0.2, 0.8], {"gender": ["M", "M", "M", "F"]}, {"gender": {"M": 1, "F": 1}})
    assert out["raw_mean"] == pytest.approx(0.35) and out["reweighted_mean"] == pytest.approx(0.5)
    assert out["delta_pct"] == pytest.approx(300 / 7) and out["abs_delta_pct"] == pytest.approx(300 / 7)


def test_delta_when_a_high_scoring_group_is_oversampled():
    # 3 M users at 0.9, 1 F user at 0.1; population 40% M / 60% F. Raw (2.7 + 0.1) / 4 = 0.7;
    # reweighted 0.4 * 0.9 + 0.6 * 0.1 = 0.42; delta = 100 * (0.42 - 0.7) / 0.7 = -40%.
    out = reweighted_score([0.9, 0.9, 0.9, 0.1], {"gender": ["M", "M", "M", "F"]}, {"gender": {"M": 0.4, "F": 0.6}})
    assert out["reweighted_mean"] == pytest.approx(0.42) and out["delta_pct"] == pytest.approx(-40.0)
    assert out["abs_delta_pct"] == pytest.approx(40.0)
    # negative scores: delta is relative to |raw|, so raising a negative mean is still a positive delta
    neg = reweighted_score([-1.0, -1.0, -1.0, 0.0], {"g": ["a", "a", "a", "b"]}, {"g": {"a": 1, "b": 1}})
    assert neg["raw_mean"] == pytest.approx(-0.75) and neg["delta_pct"] == pytest.approx(100 * 0.25 / 0.75)


def test_reweighted_score_class_accumulates_like_the_functional_form():
    groups, targets = random_sample(5)
    scores = np.random.default_rng(5).uniform(size=400)
    m = ReweightedScore(targets)
    assert m.higher_is_better is True
    for lo, hi in [(0, 150), (150, 400)]:
        m.update(scores[lo:hi], {a: v[lo:hi] for a, v in groups.items()})
    got, ref = m.compute(), reweighted_score(scores, groups, targets)
    assert got == pytest.approx(ref) and got["converged"]
    m.reset()
    with pytest.raises(ValueError, match="before update"):
        m.compute()
    with pytest.raises(ValueError, match="lack the targeted attribute 'age'"):
        m.update([0.1], {"gender": ["M"]})


def test_gap_and_disparity_ratio_on_a_toy():
    scores = [0.9, 0.7, 0.3, 0.5, 0.6, 0.6]
    groups = {"age": ["18-24", "18-24", "25-34", "25-34", "55+", "55+"]}  # means 0.8, 0.4, 0.6
    rep = bias_summary(scores, groups, n_resamples=200)
    age = rep.attributes["age"]
    assert age["gap"] == pytest.approx(0.4) and age["disparity_ratio"] == pytest.approx(0.5)
    assert age["worst_group"] == "25-34" and age["best_group"] == "18-24" and not age["raked"]
    assert age["groups"]["55+"]["mean"] == pytest.approx(0.6) and age["groups"]["55+"]["n"] == 2
    assert math.isnan(rep.overall["reweighted_mean"]) and rep.ipf is None
    # min_n leaves small groups out of the gap
    rep = bias_summary(scores + [0.0], {"age": groups["age"] + ["<18"]}, n_resamples=200, min_n=2)
    assert rep.attributes["age"]["gap"] == pytest.approx(0.4)
    # the ratio is for non-negative scores only
    rep = bias_summary([-0.5, 0.5], {"g": ["a", "b"]}, n_resamples=200)
    assert rep.attributes["g"]["gap"] == pytest.approx(1.0) and math.isnan(rep.attributes["g"]["disparity_ratio"])


def test_bias_summary_with_targets_and_clusters():
    # units are prompts; users u1..u4 with 2, 1, 3, 2 prompts; per-user means 0.2, 0.2, 0.2, 0.8
    scores = [0.1, 0.3, 0.2, 0.0, 0.2, 0.4, 0.7, 0.9]
    users = ["u1", "u1", "u2", "u3", "u3", "u3", "u4", "u4"]
    gender = {"u1": "M", "u2": "M", "u3": "M", "u4": "F"}
    occupation = {"u1": "student", "u2": "artist", "u3": "student", "u4": "artist"}
    groups = {"gender": [gender[u] for u in users], "occupation": [occupation[u] for u in users]}
    rep = bias_summary(scores, groups, {"gender": {"M": 0.5, "F": 0.5}}, cluster_ids=users, n_resamples=500, seed=1)
    assert isinstance(rep, BiasReport) and isinstance(rep.ipf, IPFResult)
    o = rep.overall
    assert (o["n_users"], o["n_units"]) == (4, 8)
    assert o["raw_mean"] == pytest.approx(0.35) and o["reweighted_mean"] == pytest.approx(0.5)
    assert o["delta_pct"] == pytest.approx(300 / 7)
    mean, lo, hi = cluster_mean_ci([0.2, 0.2, 0.2, 0.8], ["u1", "u2", "u3", "u4"], n_resamples=500, seed=1)
    assert (o["ci_low"], o["ci_high"]) == pytest.approx((lo, hi))
    g = rep.attributes["gender"]
    assert g["raked"] and g["groups"]["F"]["target_share"] == 0.5 and g["groups"]["M"]["share"] == 0.75
    assert g["groups"]["M"]["share_reweighted"] == pytest.approx(0.5)
    # occupation is not raked, but its reweighted group means use the gender weights (M 2/3, F 2)
    occ = rep.attributes["occupation"]
    assert not occ["raked"] and math.isnan(occ["groups"]["artist"]["target_share"])
    assert occ["groups"]["artist"]["mean_reweighted"] == pytest.approx((2 / 3 * 0.2 + 2 * 0.8) / (2 / 3 + 2))
    assert occ["gap_reweighted"] == pytest.approx(occ["groups"]["artist"]["mean_reweighted"] - 0.2)
    rows = rep.rows()
    assert {(r["attribute"], r["group"]) for r in rows} == {
        ("gender", "M"),
        ("gender", "F"),
        ("occupation", "student"),
        ("occupation", "artist"),
    }
    with pytest.raises(ValueError, match="attribute 'gender' varies within cluster 'u1'"):
        bias_summary([0.1, 0.2], {"gender": ["M", "F"]}, cluster_ids=["u1", "u1"])


def test_bias_summary_unmatched_categories():
    scores, groups = [0.2, 0.4, 0.6], {"gender": ["M", "F", "unknown"]}
    with pytest.raises(ValueError, match=r"categories \['unknown'\] occur in the sample"):
        bias_summary(scores, groups, {"gender": {"M": 1, "F": 1}})
    rep = bias_summary(scores, groups, {"gender": {"M": 1, "F": 1}}, drop_unmatched=True, n_resamples=200)
    assert rep.overall["reweighted_mean"] == pytest.approx(0.3)
    assert math.isnan(rep.attributes["gender"]["groups"]["unknown"]["mean_reweighted"])


# --------------------------------------------------------------------------------------------------
# Targets files
# --------------------------------------------------------------------------------------------------


def test_bundled_us_census_2020():
    from evalbench.leaderboard import AGE_BINS

    t = load_targets("us_census_2020")
    assert isinstance(t, Targets)
    for key in ("title", "publisher", "table", "url", "year"):
        assert t.source[key]
    assert t.source["table"] == "DECENNIALDP2020.DP1" and t.source["year"] == 2020
    assert set(t.marginals) == {"gender", "age"}
    assert set(t.marginals["gender"]) == {"M", "F"}
    assert list(t.marginals["age"]) == [label for _, _, label in AGE_BINS]
    for shares in t.marginals.values():
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-12)
        assert all(s > 0 for s in shares.values())
    # both attributes count the same population: the 2020 Census resident total
    assert sum(t.counts["gender"].values()) == sum(t.counts["age"].values()) == 331_449_281
    assert t.marginals["gender"]["F"] == pytest.approx(0.509168, abs=1e-6)
    assert "18 years and over" in t.notes  # the bucket arithmetic is written down


def test_bundled_targets_rake_a_movielens_like_sample():
    t = load_targets("us_census_2020")
    rng = np.random.default_rng(7)
    n = 943
    groups = {
        "gender": list(rng.choice(["M", "F"], n, p=[0.71, 0.29])),
        "age": list(rng.choice(list(t.marginals["age"]), n, p=[0.03, 0.23, 0.37, 0.19, 0.12, 0.06])),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = ipf_weights(groups, t)
    assert r.converged
    assert weighted_shares(groups["gender"], r.weights)["F"] == pytest.approx(t.marginals["gender"]["F"], abs=1e-9)


def test_load_targets_errors(tmp_path):
    source = "source: {title: T, publisher: P, table: X1, url: 'https://example.org', year: 2020}\n"
    good = tmp_path / "good.yaml"
    good.write_text(source + "marginals:\n  gender: {M: 30, F: 70}\n")
    t = load_targets(good)
    assert t.marginals["gender"] == pytest.approx({"M": 0.3, "F": 0.7}) and t.counts["gender"]["F"] == 70.0
    assert load_targets(str(good)).marginals == t.marginals

    no_source = tmp_path / "no_source.yaml"
    no_source.write_text("marginals:\n  gender: {M: 1, F: 1}\n")
    with pytest.raises(ValueError, match="`source` is required"):
        load_targets(no_source)
    partial = tmp_path / "partial.yaml"
    partial.write_text("source: {title: T, publisher: P, year: 2020}\nmarginals:\n  gender: {M: 1}\n")
    with pytest.raises(ValueError, match="`source` lacks table, url"):
        load_targets(partial)
    negative = tmp_path / "negative.yaml"
    negative.write_text(source + "marginals:\n  age: {'<18': -5, '18-24': 10}\n")
    with pytest.raises(ValueError, match=r"share of age='<18' must be >= 0, got -5"):
        load_targets(negative)
    text = tmp_path / "text.yaml"
    text.write_text(source + "marginals:\n  age: {'<18': lots}\n")
    with pytest.raises(ValueError, match=r"share of age='<18' must be a finite number, got 'lots'"):
        load_targets(text)
    no_marginals = tmp_path / "no_marginals.yaml"
    no_marginals.write_text(source)
    with pytest.raises(ValueError, match="`marginals` is required"):
        load_targets(no_marginals)
    with pytest.raises(ValueError, match="no bundled targets 'us_census_2021'; shipped: us_census_2020"):
        load_targets("us_census_2021")
    with pytest.raises(FileNotFoundError):
        load_targets(tmp_path / "missing.yaml")
