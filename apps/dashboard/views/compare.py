"""Compare runs: two bench runs paired on their shared units (win rate, mean difference, Wilcoxon, sign test)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps.dashboard.common import empty, load
from apps.dashboard.data import fci, fnum


def pick_runs() -> tuple[dict, dict]:
    """Two bench runs, A and B (the two newest by default)."""
    runs = load("bench_runs")
    if runs is None:
        st.stop()
    if len(runs) < 2:
        empty("Comparing needs two bench runs with scores: run `pwb bench run <task>` (a task runs several systems).")
    labels = {r["run_id"]: r["label"] for r in runs}
    ids = list(labels)
    left, right = st.columns(2)
    a = left.selectbox("Run A", ids, index=0, format_func=labels.get, key="compare_a")
    b = right.selectbox("Run B", ids, index=1, format_func=labels.get, key="compare_b")
    by_id = {r["run_id"]: r for r in runs}
    return by_id[a], by_id[b]


def show(res: dict) -> None:
    """Headline numbers as metrics, then the full table."""
    st.subheader(f"{res['a']['system']} (A) vs {res['b']['system']} (B)")
    pct = round(100 * res["confidence"])
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(
        "A wins (share of units)",
        f"{res['win_rate']:.3f}",
        help=f"{pct}% CI {fci(res['win_rate_ci_low'], res['win_rate_ci_high'])}",
    )
    c1.caption(f"{pct}% CI {fci(res['win_rate_ci_low'], res['win_rate_ci_high'])}")
    c2.metric("Mean difference (A - B)", f"{res['mean_difference']:+.4f}")
    c2.caption(f"{pct}% CI {fci(res['mean_difference_ci_low'], res['mean_difference_ci_high'], 4)}")
    c3.metric("Wilcoxon p", f"{res['wilcoxon_p']:.2g}")
    c3.caption(f"sign test p {res['sign_test_p']:.2g}")
    c4.metric("Users A better / worse / tied", f"{res['n_better']} / {res['n_worse']} / {res['n_tied']}")
    c4.caption(f"{res['units']} shared units, {res['n_clusters']} users")
    rows = [
        ("run A", res["a"]["run_id"]),
        ("run B", res["b"]["run_id"]),
        ("shared units", res["units"]),
        ("users (clusters)", res["n_clusters"]),
        ("win rate (A over B)", fnum(res["win_rate"])),
        ("win rate CI", fci(res["win_rate_ci_low"], res["win_rate_ci_high"])),
        ("mean difference", fnum(res["mean_difference"], 4)),
        ("mean difference CI", fci(res["mean_difference_ci_low"], res["mean_difference_ci_high"], 4)),
        ("Wilcoxon statistic", fnum(res["wilcoxon_statistic"], 2)),
        ("Wilcoxon p", fnum(res["wilcoxon_p"], 6)),
        ("sign test p", fnum(res["sign_test_p"], 6)),
        ("users A better", res["n_better"]),
        ("users A worse", res["n_worse"]),
        ("users tied", res["n_tied"]),
        ("confidence", res["confidence"]),
    ]
    st.dataframe(
        pd.DataFrame({"quantity": [r[0] for r in rows], "value": [str(r[1]) for r in rows]}),
        hide_index=True,
        width="stretch",
        height="content",
    )
    st.caption(
        "Paired on the units both runs scored: per user, the share of prompts where A's rewritten prompt "
        "scores higher than B's (ties count 1/2) and the mean score difference, averaged over users; "
        "percentile-bootstrap CIs over users; Wilcoxon signed-rank and sign tests on per-user differences."
    )


st.title("Compare runs")
run_a, run_b = pick_runs()
if run_a["run_id"] == run_b["run_id"]:
    empty("Pick two different runs.")
if run_a["split"] != run_b["split"]:
    st.warning(f"The runs use different splits ({run_a['split']} vs {run_b['split']}): they may share no units.")
result = load("comparison", run_a["run_id"], run_b["run_id"])
if result is not None:
    show(result)
