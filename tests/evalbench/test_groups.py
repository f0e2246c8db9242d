"""Per-group breakdowns: text values as they are, ages in fixed bins, numeric attributes in quantile bins
(or at given edges), and bins specs that name their field when wrong."""

import re

import numpy as np
import pytest

from evalbench.groups import AGE_BINS, MAX_CATEGORIES, UNKNOWN, assign_groups, no_groups_note, parse_bins
from workbench.errors import WorkbenchError

LABEL = re.compile(r"^\[(-?[\d.e+]+), (-?[\d.e+]+)([)\]])$")


def _members(labels, order):
    return {g: sorted(u for u, lab in labels.items() if lab == g) for g in order}


def test_quantiles_of_1_to_100_are_four_bins_of_25():
    rng = np.random.default_rng(0)
    values = {f"u{v}": int(v) for v in rng.permutation(np.arange(1, 101))}  # any order in, the same bins out
    labels, order = assign_groups(values, "reputation")
    assert order == ["[1, 26)", "[26, 51)", "[51, 76)", "[76, 100]"]
    assert [len(m) for m in _members(labels, order).values()] == [25, 25, 25, 25]
    assert labels["u25"] == "[1, 26)" and labels["u26"] == "[26, 51)" and labels["u100"] == "[76, 100]"


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("q", [2, 4, 5, 10])
def test_quantile_bins_partition_tied_skewed_values(seed, q):
    """Reputation-like values (many ties at 1, a long tail): no empty or duplicate bin, ties together, bins
    ordered and disjoint, each value inside its label's interval, at most q bins, the input order irrelevant."""
    rng = np.random.default_rng(seed)
    raw = np.where(rng.random(300) < 0.4, 1, np.round(np.exp(rng.normal(3, 2, 300)))).astype(int)
    values = {f"u{i}": int(v) for i, v in enumerate(raw)}
    labels, order = assign_groups(values, "reputation", parse_bins([f"reputation=quantiles:{q}"])["reputation"])
    groups = _members(labels, order)
    assert len(order) == len(set(order)) <= q and all(groups.values())
    assert set(labels.values()) == set(order)
    spans = [(min(values[u] for u in m), max(values[u] for u in m)) for m in groups.values()]
    assert all(hi < lo_next for (_, hi), (lo_next, _) in zip(spans, spans[1:]))  # ties never split
    for g, members in groups.items():
        lo, hi, close = LABEL.match(g).groups()
        for u in members:
            assert float(lo) <= values[u] and (values[u] <= float(hi) if close == "]" else values[u] < float(hi))
    shuffled = dict(sorted(values.items(), key=lambda kv: rng.random()))
    assert assign_groups(shuffled, "reputation", parse_bins([f"reputation=quantiles:{q}"])["reputation"]) == (
        labels,
        order,
    )


def test_ages_keep_their_fixed_bins_and_missing_values_are_unknown_last():
    ages = {"a": 10, "b": 18, "c": 24, "d": 25, "e": 60, "f": "33", "g": None, "h": float("nan"), "i": 250}
    ages.update({f"x{k}": 30 + k for k in range(20)})  # many distinct ages: still the fixed bins, not quantiles
    labels, order = assign_groups(ages, "age")
    expected = {"a": "<18", "b": "18-24", "c": "18-24", "d": "25-34", "e": "55+", "f": "25-34", "i": "55+"}
    assert {u: labels[u] for u in expected} == expected and labels["g"] == labels["h"] == UNKNOWN
    assert order == [lab for _, _, lab in AGE_BINS if lab in set(labels.values())] + [UNKNOWN]


def test_explicit_edges_bin_ages_and_any_number():
    labels, order = assign_groups(
        {"a": 10, "b": 18, "c": 30, "d": 50, "e": 77}, "age", parse_bins(["age=18,25,35,50"])["age"]
    )
    assert labels == {"a": "<18", "b": "[18, 25)", "c": "[25, 35)", "d": ">=50", "e": ">=50"}
    assert order == ["<18", "[18, 25)", "[25, 35)", ">=50"]  # [35, 50) has nobody: not listed


def test_few_numbers_and_text_are_grouped_by_value():
    nine = {f"u{k}": k % MAX_CATEGORIES for k in range(40)} | {"u99": 10}
    assert all(LABEL.match(g) for g in assign_groups(nine, "level")[1])  # more than MAX_CATEGORIES: binned
    eight = {f"u{k}": [1, 2, 10, 3, 5, 8, 13, 21][k % 8] for k in range(40)}
    labels, order = assign_groups(eight, "level")
    assert len(set(eight.values())) == MAX_CATEGORIES and labels["u2"] == "10"
    assert order == ["1", "2", "3", "5", "8", "10", "13", "21"]  # by value as numbers, not as text
    labels, order = assign_groups({"a": "male", "b": "female", "c": ""}, "gender")
    assert labels == {"a": "male", "b": "female", "c": UNKNOWN} and order == ["female", "male", UNKNOWN]
    many_words = {f"u{k}": f"job{k}" for k in range(20)}
    assert len(assign_groups(many_words, "occupation")[1]) == 20  # text is never binned


def test_values_spec_turns_binning_off():
    values = {f"u{k}": k for k in range(20)}
    labels, order = assign_groups(values, "reputation", parse_bins({"reputation": "values"})["reputation"])
    assert labels["u3"] == "3" and len(order) == 20


@pytest.mark.parametrize(
    "specs, words",
    [
        (["age"], ["--bins 'age'", "quantiles", "age=18,25,35,50"]),
        (["x=quantiles:1"], ["--bins x", "at least 2"]),
        (["x=30,20"], ["--bins x", "must increase"]),
        (["x=a,b"], ["--bins x", "EDGE,EDGE"]),
        (["x=1", "x=2"], ["--bins x", "twice"]),
        ({"x": [3, 1]}, ["bias.bins.x", "must increase"]),
    ],
)
def test_bad_bins_name_the_field_and_the_fix(specs, words):
    field = "bias.bins" if isinstance(specs, dict) else "--bins"
    with pytest.raises(WorkbenchError) as e:
        parse_bins(specs, field)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_binning_text_is_refused_naming_the_attribute():
    with pytest.raises(WorkbenchError, match=r"--bins gender: attribute 'gender' is not numeric \(e.g. 'male'\)"):
        assign_groups({"a": "male", "b": "female"}, "gender", parse_bins(["gender=quantiles"])["gender"])


def test_yaml_bins_accept_lists_and_strings():
    bins = parse_bins({"age": [18, 30], "reputation": "quantiles:3"}, "bias.bins")
    assert bins["age"].edges == (18.0, 30.0) and bins["reputation"].q == 3 and bins["age"].field == "bias.bins.age"


def test_the_no_groups_note_says_why_and_what_to_do():
    none = no_groups_note("se", {"u1": {}, "u2": {"x": None}}, [], "fix it")
    assert "dataset se has no user attributes (demographics)" in none
    assert "pwb data import table" in none and "--users-file" in none and "--user-attrs" in none
    undeclared = no_groups_note("se", {"u1": {"reputation": 3}}, [], "fix it")
    assert "declares no demographics (its users carry reputation); fix it" in undeclared
    absent = no_groups_note("d", {"u1": {"gender": "f"}}, ["age"], "fix it")
    assert "no user of dataset d has a value for age (its users carry gender)" in absent
    assert no_groups_note("d", {"u1": {"gender": "f"}}, ["gender", "age"], "fix it") is None
    task = no_groups_note("d", {"u1": {"gender": "f"}}, [], "list one", unasked="the task lists no bias.attributes")
    assert task == "no group breakdown: the task lists no bias.attributes (its users carry gender); list one"
