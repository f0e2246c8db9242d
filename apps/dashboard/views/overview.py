"""Overview: the runs in the workspace, the leaderboards with their CIs, and the human-preference table."""

from __future__ import annotations

import streamlit as st

from apps.dashboard.common import load


def runs_section() -> None:
    """Every run, newest first."""
    st.header("Runs")
    runs = load("runs_table")
    if runs is None:
        return
    if runs.empty:
        st.info("No runs yet: run a benchmark, e.g. `pwb bench run synthetic_recovery`, or `pwb demo`.")
        return
    st.dataframe(runs, hide_index=True, width="stretch")


def task_section() -> None:
    """The leaderboard of one task run (the newest by default)."""
    tasks = load("task_runs") or []
    if not tasks:
        return
    st.subheader("Task runs")
    labels = {t["run_id"]: f"{t['task']} · {t['run_id']} · {t['status']}" for t in tasks}
    run_id = st.selectbox("Task run", list(labels), format_func=labels.get, key="overview_task")
    board = load("task_leaderboard", run_id)
    if board is not None:
        st.dataframe(board, hide_index=True, width="stretch")
        st.caption(
            "Personal win rate first: how often a user's own rewrite beats the rewrites the same system made "
            "for the other held-out users, on that user's hidden items (0.5 = nothing personal); vs dislikes: "
            "the same against hidden dislikes only; of ceiling: share of the history ceiling's margin. Then "
            "the win rate and lift (x100) over the generic prompt, raw vs IPF-reweighted personal win rate "
            "where the task has population targets, worst gap between groups. 95% bootstrap CIs over users."
        )


def bench_section() -> None:
    """Every completed bench run by personal win rate."""
    st.subheader("Bench runs")
    board = load("bench_leaderboard")
    if board is None:
        return
    if board.empty:
        st.info("No completed bench runs with scores yet: `pwb bench run <task>`.")
        return
    st.dataframe(board, hide_index=True, width="stretch")
    st.caption(
        "Personal: share of units where a user's own rewrite beats the other held-out users' rewrites of "
        "the same prompt on that user's hidden items (per user, then averaged; 0.5 = nothing personal); "
        "vs generic: share where the rewrite beats the generic prompt. CIs: 95% bootstrap over users."
    )


def human_section() -> None:
    """Human preference from the labels collected on the Generations page."""
    st.header("Human preference")
    table = load("human_preference_table", labels=True)
    if table is None:
        return
    if table.empty:
        st.info("No labels yet: compare images on the Generations page (Prefer A / Prefer B / Flag).")
        return
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption(
        "Human preference: share of non-flagged labels that chose the persona image over its no-persona "
        "baseline (sides were shown blind), 95% bootstrap CI over users, two-sided sign test against 0.5."
    )


st.title("Overview")
runs_section()
st.header("Leaderboard")
task_section()
bench_section()
human_section()
