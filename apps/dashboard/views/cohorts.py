"""Cohorts and bias: a run's scores per demographic group, raw vs IPF-reweighted, worst group and gap."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from apps.dashboard.common import empty, load
from evalbench.task_report import MIN_GROUP


def pick_run() -> str:
    """A run to break down (task runs first)."""
    runs = load("run_options")
    if runs is None:
        st.stop()
    if not runs:
        empty("No bench or task runs yet: run one, e.g. `pwb bench run synthetic_recovery`, or `pwb demo`.")
    labels = {r["run_id"]: r["label"] for r in runs}
    return st.selectbox("Run", list(labels), format_func=labels.get, key="cohorts_run")


def overall_section(rep: dict) -> None:
    """Raw vs IPF-reweighted overall score (the personal win rate for text runs) per system."""
    st.subheader("Overall: raw vs IPF-reweighted")
    st.dataframe(rep["overall"].dropna(axis=1, how="all"), hide_index=True, width="stretch")
    if rep["has_ipf"]:
        src = rep.get("targets") or {}
        st.caption(
            f"IPF: users raked to population targets ({src.get('title', 'task targets')}, "
            f"{src.get('year', '')}); delta % = (IPF - raw) / raw."
        )
    elif rep["kind"] == "task":
        st.caption(
            "This task has no population targets, so there is no IPF-reweighted score "
            "(add `bias.targets` to the task spec)."
        )
    else:
        st.caption("Bench runs report raw scores; IPF-reweighted scores come with task runs that have targets.")


def worst_section(rep: dict) -> None:
    """Worst and best group, gap and disparity ratio per system and attribute."""
    st.subheader("Worst group and gap")
    if rep["worst"].empty:
        st.info(f"No attribute has groups of at least {MIN_GROUP} users, so there is no worst-group gap.")
        return
    st.dataframe(rep["worst"].dropna(axis=1, how="all"), hide_index=True, width="stretch")
    st.caption(
        f"Gap: best minus worst group score among groups of at least {MIN_GROUP} users; disparity ratio: worst / best."
    )


def group_chart(rows: pd.DataFrame, attribute: str, label: str = "personal win rate") -> alt.LayerChart:
    """Grouped bars of the per-group score with their 95% CIs, one colour per system."""
    base = alt.Chart(rows).encode(
        x=alt.X("group:N", title=attribute, sort=sorted(rows["group"].unique()), axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("system:N"),
    )
    bars = base.mark_bar().encode(
        y=alt.Y("score:Q", title=label, scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("system:N", legend=alt.Legend(orient="top", title=None, labelLimit=400)),
        tooltip=["system", "group", "users", "score", "ci_low", "ci_high"],
    )
    ci = base.mark_rule(color="black", strokeWidth=1.5).encode(y="ci_low:Q", y2="ci_high:Q")
    half = alt.Chart(pd.DataFrame({"y": [0.5]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="y:Q")
    return (bars + ci + half).properties(height=340)


def groups_section(rep: dict) -> None:
    """Per-group table and chart for one attribute."""
    st.subheader("Per group")
    groups = rep["groups"]
    attribute = st.radio("Attribute", rep["attributes"], horizontal=True, key="cohorts_attribute")
    rows = groups[groups["attribute"] == attribute]
    systems = list(dict.fromkeys(rows["system"]))
    chosen = st.multiselect("Systems", systems, default=systems, key=f"cohorts_systems_{attribute}")
    rows = rows[rows["system"].isin(chosen)]
    if rows.empty:
        st.info("Pick at least one system.")
        return
    label = rep.get("value_label", "personal win rate")
    st.altair_chart(group_chart(rows, attribute, label), width="stretch")
    if label == "personal win rate":
        st.caption(
            "Bars: personal win rate per group (a user's own rewrite against the other held-out users' "
            "rewrites, on that user's hidden items); black lines: 95% CIs over users; dashed: 0.5 (nothing "
            "personal)."
        )
    else:
        st.caption(
            "Bars: win rate against the no-persona baseline per group; black lines: 95% CIs over users; "
            "dashed: 0.5 (no better than the baseline)."
        )
    table = rows.assign(
        CI=[
            f"[{lo:.3f}, {hi:.3f}]" if pd.notna(lo) and pd.notna(hi) else "-"
            for lo, hi in zip(rows["ci_low"], rows["ci_high"])
        ]
    ).drop(columns=["ci_low", "ci_high"])
    st.dataframe(table.dropna(axis=1, how="all"), hide_index=True, width="stretch")


st.title("Cohorts and bias")
run_id = pick_run()
report = load("cohort_report", run_id)
if report is None:
    st.stop()
if report["groups"].empty:
    overall_section(report)
    empty(
        "This run has no per-group scores: its task lists no `bias.attributes`, or its dataset has no "
        "demographic attributes for its users."
    )
overall_section(report)
worst_section(report)
groups_section(report)
