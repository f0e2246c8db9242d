"""Personas: find a user, read their persona card, its attention-ranked evidence and the rewrites it produced."""

from __future__ import annotations

import streamlit as st

from apps.dashboard.common import empty, load


def pick_set() -> dict:
    """The (split, encoder) whose personas to browse."""
    sets = load("persona_sets")
    if sets is None:
        st.stop()
    if not sets:
        empty("No personas yet: mine some with `pwb personas mine --split SPLIT --encoder tfidf`, or run `pwb demo`.")
    labels = [f"{s['encoder']} · {s['split_id']} ({s['users']} personas)" for s in sets]
    index = st.selectbox("Encoder and split", range(len(sets)), format_func=labels.__getitem__, key="personas_set")
    return sets[index]


def pick_user(split_id: str, encoder: str) -> str:
    """A user, filtered by the text typed into "Find user"."""
    users = load("persona_users", split_id, encoder) or []
    query = st.text_input("Find user", key="personas_query", placeholder="user id, e.g. u0 (empty: all)").strip()
    matches = [u for u in users if query.lower() in u.lower()] if query else users
    if not matches:
        st.warning(f"No user matching {query!r} has a {encoder} persona in split {split_id}.")
        st.stop()
    exact = [u for u in matches if u == query]
    index = matches.index(exact[0]) if exact else 0
    st.caption(f"{len(matches)} of {len(users)} personas match." if query else f"{len(users)} personas.")
    return st.selectbox("User", matches, index=index, key=f"personas_user_{split_id}_{encoder}_{query}")


def card_section(card: dict) -> None:
    """Summary, demographics and traits."""
    st.subheader(f"Persona of {card['user_id']}")
    st.markdown(card["summary"] or "_(no summary)_")
    if card["demographics"]:
        st.caption("Known: " + ", ".join(f"{k} {v}" for k, v in card["demographics"].items()))
    if card["model_version"]:
        st.caption(f"Model: `{card['model_version']}`")
    st.markdown("**Traits**")
    if card["traits"].empty:
        st.caption("No traits stored for this persona.")
    else:
        st.dataframe(
            card["traits"],
            hide_index=True,
            width="stretch",
            column_config={"weight": st.column_config.NumberColumn("weight", format="%.3f")},
        )


def evidence_section(card: dict) -> None:
    """The items the encoder attended to most, with their weights."""
    st.markdown("**Evidence** (attention-ranked)")
    ev = card["evidence"]
    if ev.empty:
        st.caption("This persona has no stored evidence.")
        return
    top = float(ev["weight"].abs().max() or 1.0)
    st.dataframe(
        ev,
        hide_index=True,
        width="stretch",
        column_config={
            "weight": st.column_config.ProgressColumn("weight", format="%.3f", min_value=0.0, max_value=top)
        },
    )


def rewrites_section(card: dict, split_id: str, encoder: str) -> None:
    """Prompts rewritten for this persona."""
    st.subheader("Rewrites")
    rw = card["rewrites"]
    if rw.empty:
        st.info(
            f"No rewrites for this persona yet: `pwb rewrite --prompts PROMPTS.tsv --split {split_id} "
            f"--encoder {encoder}`."
        )
        return
    sets = list(dict.fromkeys(rw["prompt set"]))
    chosen = st.selectbox("Prompt set", sets, key="personas_prompt_set") if len(sets) > 1 else sets[0]
    st.dataframe(rw[rw["prompt set"] == chosen].drop(columns=["prompt set"]), hide_index=True, width="stretch")


st.title("Personas")
persona_set = pick_set()
user = pick_user(persona_set["split_id"], persona_set["encoder"])
detail = load("persona_detail", persona_set["split_id"], persona_set["encoder"], user)
if detail is None:
    empty(f"No persona for {user!r} any more (the workspace changed?): press Reload data.")
left, right = st.columns([2, 3])
with left:
    card_section(detail)
with right:
    evidence_section(detail)
rewrites_section(detail, persona_set["split_id"], persona_set["encoder"])
