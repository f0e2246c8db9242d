"""Generations: each persona image beside its no-persona baseline, labelled blind as A / B.

Which side shows the persona image is fixed per pair by a hash (:mod:`evalbench.labels`), and the page
does not say which until the annotator has labelled the pair. Labels are written through the gate's
one writer and show up at once (the label caches are cleared after each write).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from apps.dashboard.common import annotator, empty, load, write_label
from workbench.store.workspace import WorkspaceError

ALL_PROMPTS = "(all prompts)"
IMAGE_WIDTH = 256
CHOICE_TEXT = {"a": "A", "b": "B", "flag": "a flag"}


def on_label(pair_id: str, choice: str) -> None:
    """Button callback: store the label, remember the outcome for this session's rerun."""
    results = st.session_state.setdefault("label_results", {})
    try:
        results[pair_id] = write_label(pair_id, choice)
    except (WorkspaceError, ValueError) as exc:
        results[pair_id] = {"error": str(exc)}
    st.session_state["label_toast"] = pair_id


def pick_pairs() -> list[dict[str, Any]]:
    """User and prompt selectors; the pairs they select."""
    users = load("pair_users")
    if users is None:
        st.stop()
    if not users:
        empty(
            "No generations with baselines yet: run `pwb generate --baseline ...` (images drawn for each user's "
            "rewritten prompt and, with `--baseline`, for the original prompt too)."
        )
    left, mid, right = st.columns([1, 2, 1], vertical_alignment="bottom")
    user = left.selectbox("User", users, key="gen_user")
    prompts = {p["prompt_id"]: p["prompt"] for p in (load("pair_prompts", user) or [])}
    options = [ALL_PROMPTS, *prompts]
    prompt_id = mid.selectbox(
        "Prompt",
        options,
        key=f"gen_prompt_{user}",
        format_func=lambda p: p if p == ALL_PROMPTS else f"{p}: {prompts[p]}",
    )
    unlabelled = right.toggle("Only pairs I have not labelled", key="gen_unlabelled")
    pairs = load("pairs_for", user, None if prompt_id == ALL_PROMPTS else prompt_id) or []
    if unlabelled:
        mine = load("labels_by_pair", tuple(p["pair_id"] for p in pairs), labels=True) or {}
        pairs = [p for p in pairs if not any(lab["annotator"] == annotator() for lab in mine.get(p["pair_id"], []))]
    return pairs


def image_column(pair: dict[str, Any], side: str) -> None:
    """One side of the pair: the image (or why it is missing) and its Prefer button."""
    letter = side.upper()
    path = pair[f"{side}_path"]
    if path:
        st.image(path, caption=letter, width=IMAGE_WIDTH)
    else:
        st.warning(f"Image {letter} is missing: `{pair[f'{side}_image']}` (moved or deleted?).")
    st.button(
        f"Prefer {letter}",
        key=f"prefer_{side}_{pair['pair_id']}",
        on_click=on_label,
        args=(pair["pair_id"], side),
        type="primary",
        icon=":material/thumb_up:",
        width=IMAGE_WIDTH,
    )


def labels_summary(labels: list[dict[str, Any]]) -> str:
    """``2 labels so far: A 1 · B 0 · flagged 1 (by ann, bob)``."""
    counts = {c: sum(lab["choice"] == c for lab in labels) for c in ("a", "b", "flag")}
    noun = "label" if len(labels) == 1 else "labels"
    who = ", ".join(dict.fromkeys(str(lab["annotator"] or "anonymous") for lab in labels))
    return f"{len(labels)} {noun} so far: A {counts['a']} · B {counts['b']} · flagged {counts['flag']} (by {who})"


def outcome(pair: dict[str, Any], labels: list[dict[str, Any]]) -> None:
    """This session's confirmation, then the labels so far (and the persona side once you have labelled)."""
    result = st.session_state.get("label_results", {}).get(pair["pair_id"])
    if result and "error" in result:
        st.error(f"The label was not stored: {result['error']}")
    elif result:
        side = result["system_side"].upper()
        st.success(
            f"Label saved: {CHOICE_TEXT[result['choice']]}. The persona image was **{side}** "
            f"({result['system']}); the other is the no-persona baseline.",
            icon=":material/check_circle:",
        )
        if result.get("pending"):
            st.info(
                "Another process is writing the workspace: the label is kept in its journal and goes into "
                "the tables as soon as the workspace is free."
            )
    if labels:
        st.caption(labels_summary(labels))
        mine = [lab for lab in labels if lab["annotator"] == annotator()]
        if mine and not result:
            st.caption(
                f"You labelled this pair ({CHOICE_TEXT[mine[0]['choice']]}); "
                f"the persona image is {mine[0]['system_side'].upper()}."
            )
    else:
        st.caption("No labels yet for this pair.")


def pair_card(pair: dict[str, Any], labels: list[dict[str, Any]]) -> None:
    """The prompt, images A and B side by side with their buttons, a Flag button and the labels so far."""
    with st.container(border=True):
        st.markdown(f"#### “{pair['baseline_prompt']}”")
        st.caption(f"user `{pair['user_id']}` · prompt `{pair['prompt_id']}` · system `{pair['system']}`")
        col_a, col_b, col_info = st.columns([1, 1, 1.2], gap="medium")
        with col_a:
            image_column(pair, "a")
        with col_b:
            image_column(pair, "b")
        with col_info:
            st.markdown("**Which image fits this user's persona better?**")
            st.caption(
                "One image was drawn from the persona's rewritten prompt, the other from the original "
                "prompt; sides are shuffled per pair and revealed after you label."
            )
            st.button(
                "Flag",
                key=f"flag_{pair['pair_id']}",
                on_click=on_label,
                args=(pair["pair_id"], "flag"),
                icon=":material/flag:",
                help="Something is wrong with this pair (broken image, unsafe, ...).",
            )
            outcome(pair, labels)


def toast() -> None:
    """A toast for the label just stored (once)."""
    pair_id = st.session_state.pop("label_toast", None)
    result = st.session_state.get("label_results", {}).get(pair_id) if pair_id else None
    if result and "error" not in result:
        st.toast(f"Label saved ({CHOICE_TEXT[result['choice']]}) as {annotator()}", icon=":material/check:")


st.title("Generations")
st.caption(f"Blind A/B review of persona images against their no-persona baselines, labelled as **{annotator()}**.")
selected = pick_pairs()
toast()
if not selected:
    empty("Nothing to label here: every pair of this selection has your label. Pick another user or prompt.")
given = load("labels_by_pair", tuple(p["pair_id"] for p in selected), labels=True) or {}
for item in selected:
    pair_card(item, given.get(item["pair_id"], []))
