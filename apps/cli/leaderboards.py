"""Leaderboards for the terminal: bench runs (``pwb bench report``, ``pwb demo``) and task reports."""

from __future__ import annotations

import click

from apps.cli.common import interval, table

#: the task table's columns in the terminal (the md/html/json reports carry every column)
TASK_COLUMNS = (
    "system",
    "personal",
    "personal CI",
    "vs dislikes",
    "of ceiling",
    "personal p",
    "vs generic",
    "generic CI",
    "lift x100",
    "worst gap",
    "cost",
    "users",
)

LEADERBOARD_LEGEND = (
    "personal: how often a user's own rewrite beats the rewrites the same system made for every other held-out "
    "user (same prompt), all scored on that user's hidden likes against hidden negatives (0.5 = nothing personal); "
    "vs dislikes: the same with hidden dislikes as the only negatives; of ceiling: (personal - 0.5) / (history "
    "ceiling - 0.5); vs generic: win rate over the generic prompt. CIs: 95% bootstrap over users."
)


def task_tables(rep: dict) -> str:
    """A task report's leaderboards for the terminal: one per text encoder, personal win rate first."""
    from evalbench.task_render import PERSONAL_LEGEND, leaderboard_rows, tagged_name

    out = []
    for te in rep.get("text_encoders") or [None]:
        rows = leaderboard_rows(rep, te)
        if not rows:
            continue
        metric = next((s["metric"] for s in rep["systems"] if s.get("text_encoder") == te), "") if te else ""
        cols = [c for c in (TASK_COLUMNS if te else rows[0]) if c in rows[0]]
        if "prompts" not in cols:  # the prompt set in the name where it is not the task's
            rows = [{**r, "system": tagged_name(rep, r)} for r in rows]
        out.append((f"\n{metric}\n" if metric else "\n") + table(rows, [(c, c) for c in cols]))
    if out and rep.get("text_encoders"):
        out.append("\n" + PERSONAL_LEGEND)
    notes = list(rep.get("dropped_notes") or [])
    if rep.get("groups_note") and rep.get("attributes_requested"):
        notes.append(rep["groups_note"])
    return "\n".join(out + (["\n" + "\n".join(notes)] if notes else []))


def leaderboard_table(rows: list[dict]) -> str:
    """The personal leaderboard: each system with its prompt set, the personal win rate first (own persona's
    rewrite against other users' for the same user), its share of the history ceiling, then the win rate
    against the generic prompt."""
    out = []
    for r in rows:
        ref = bool(r.get("reference"))
        out.append(
            {
                **r,
                "personal": r["personal_win_rate"],
                "personal_ci_s": interval(*r["personal_ci"]),
                "dislikes": r["personal_dislikes"],
                "share": "-" if ref or r["ceiling_share"] != r["ceiling_share"] else f"{100 * r['ceiling_share']:.0f}%",
                "ci": interval(r["ci_low"], r["ci_high"]),
                "lift_x100": r["lift"] * 100,
            }
        )
        if out[-1]["win_rate"] != out[-1]["win_rate"]:  # the history ceiling has no generic comparison
            out[-1].update(win_rate="-", ci="-", lift_x100="-")
    columns = [
        ("system", "system"),
        ("prompts", "prompts"),
        ("personal", "personal"),
        ("personal_ci_s", "95% CI"),
        ("dislikes", "vs dislikes"),
        ("share", "of ceiling"),
        ("win_rate", "vs generic"),
        ("ci", "95% CI"),
        ("lift_x100", "lift x100"),
        ("n_users", "users"),
        ("n_units", "units"),
        ("run_id", "run"),
    ]
    if len({r["split"] for r in rows}) > 1:
        columns.insert(2, ("split", "split"))
    return table(out, columns)


def coverage_lines(rows: list[dict]) -> list[str]:
    """``users_scored: 59 of 61 held-out, every run; 2 not scored: no hidden liked items``: how many held-out
    users the runs scored, one line for the runs that share the count (:func:`evalbench.runner.coverage_text`)."""
    from evalbench.runner import coverage_text

    runs_of: dict[str, list[str]] = {}
    for r in rows:
        if "n_users_heldout" in r:
            runs_of.setdefault(coverage_text(r), []).append(r["run_id"])
    out = []
    for text, ids in runs_of.items():
        held, sep, rest = text.partition(";")
        which = "" if len(rows) == 1 else ", every run" if len(runs_of) == 1 else f" ({', '.join(ids)})"
        out.append(f"users_scored: {held}{which}{sep}{rest}")
    return out


def print_leaderboard(rows: list[dict], legend: bool = True) -> None:
    click.echo(leaderboard_table(rows))
    lines = coverage_lines(rows)
    if lines:
        click.echo("\n" + "\n".join(lines))
    if not legend:
        return
    metrics = sorted({r["metric"] for r in rows})
    click.echo(
        f"\nmetric: {', '.join(metrics)}. {LEADERBOARD_LEGEND} [minilm] = embedded MiniLM text encoder, "
        "[mpnet] = all-mpnet-base-v2 (stand-ins, not CLIP)."
    )


def group_table(groups: list[dict]) -> str:
    """Per-group rows of one system: the personal win rate with its CI, then the generic win rate."""
    shown = [dict(g, personal_ci_s=interval(*g["personal_ci"])) for g in groups]
    return table(
        shown,
        [
            ("attribute", "attribute"),
            ("group", "group"),
            ("personal_win_rate", "personal"),
            ("personal_ci_s", "95% CI"),
            ("win_rate", "vs generic"),
            ("n_users", "users"),
        ],
    )


def print_group_tables(by_group: dict[str, list[dict]], notes: dict[str, str]) -> None:
    """``pwb bench report --groups``: each run's per-group rows (:func:`group_table`), then why a run has none
    (one line for the runs that share the reason)."""
    for run_id, grows in by_group.items():
        click.echo(f"\n{run_id} by group:")
        click.echo(group_table(grows))
    runs_of: dict[str, list[str]] = {}
    for run_id, note in notes.items():
        runs_of.setdefault(note, []).append(run_id)
    for note, ids in runs_of.items():
        click.echo(f"\n{'run' if len(ids) == 1 else 'runs'} {', '.join(ids)}: {note}")


def bench_run_text(out: dict) -> str:
    """``pwb bench run``'s lines: the run, then how many held-out users it scored (and why not the others)."""
    from evalbench.runner import coverage_text

    shown = {k: v for k, v in out.items() if k not in ("n_users_heldout", "n_users_dropped", "dropped_reasons")}
    lines = [f"{k}: {v}" for k, v in shown.items()]
    if "n_users_heldout" in out:
        lines.append(f"users_scored: {coverage_text(out)}")
    return "\n".join(lines)
