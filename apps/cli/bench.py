"""``pwb bench``: score systems on held-out users, report, compare two runs, check a split's power."""

from __future__ import annotations

import json

import click

from apps.cli.common import db_option, emit, encoder_option, fmt, friendly_errors, json_option, split_option, workspace
from apps.cli.leaderboards import bench_run_text, print_group_tables, print_leaderboard, task_tables


@click.group()
def bench():
    """Benchmark systems on held-out users."""


@bench.command("run")
@click.argument("task", required=False)
@split_option
@encoder_option
@click.option("--backend", default="template", show_default=True)
@click.option("--model", default=None, help="Rewriter model label [default: the only one stored].")
@click.option("--prompts", default="parti36", show_default=True)
@click.option(
    "--text-encoder",
    default="minilm",
    show_default=True,
    help="Metric text encoder: minilm (embedded stand-in) or a sentence-transformers id/path.",
)
@click.option(
    "--control",
    type=click.Choice(["none", "shuffled"]),
    default="none",
    show_default=True,
    help="shuffled: score each user with another user's rewrites.",
)
@click.option(
    "--reference",
    type=click.Choice(["history", "popularity"]),
    default=None,
    help="A reference row instead of a system: the history ceiling (own visible likes, no prompt) or the "
    "popularity control (the same popular titles for everyone).",
)
@click.option(
    "--partners",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Personal win rate: compare with every other held-out user (0) or with this many.",
)
@click.option(
    "--max-users",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Only the first this many held-out users (0: all); rewrite them with `pwb rewrite --max-users`.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--data", "data_path", default=None, type=click.Path(), help="Data folder for tasks that read one (faces, ...)."
)
@click.option(
    "--executor",
    default="local",
    show_default=True,
    type=click.Choice(["local", "process", "ray"]),
    help="Where work units run: in process, a local worker pool, or a Ray cluster (same scores).",
)
@click.option("--workers", default=None, type=int, help="Pool size / CPUs for a local Ray cluster.")
@db_option
@json_option
@friendly_errors
def bench_run(
    task,
    split,
    encoder,
    backend,
    model,
    prompts,
    text_encoder,
    control,
    reference,
    partners,
    max_users,
    seed,
    data_path,
    executor,
    workers,
    db,
    as_json,
):
    """Score one system, or with TASK (movielens_text, synthetic_recovery, or a YAML file) every system of a
    task against its baseline; an interrupted run of the same config resumes."""
    if task:
        return _run_task(task, data_path, executor, workers, db, as_json)
    from evalbench.runner import BenchConfig, run_bench

    cfg = BenchConfig(
        split=split,
        encoder=encoder,
        backend=backend,
        model=model,
        prompts=prompts,
        text_encoder=text_encoder,
        control=control,
        seed=seed,
        partners=partners,
        reference=reference or "",
        max_users=max_users,
    )
    with workspace(db) as ws:
        out = run_bench(ws, cfg, progress=True, executor=executor, workers=workers)
    emit(out, as_json, bench_run_text(out))


def _run_task(task, data_path, executor, workers, db, as_json) -> None:
    """``pwb bench run TASK``: the task file is read (and checked) before the workspace opens."""
    from evalbench.flows.reports import run_task_report
    from evalbench.task_spec import load_task

    spec = load_task(task, data_path=data_path)
    with workspace(db) as ws:
        rep = run_task_report(ws, spec, progress=True, executor=executor, workers=workers)
    if as_json:
        return emit(rep, True)
    click.echo(f"\n{rep['task']}: split {rep['split']}, prompts {rep['prompts']}, run {rep['run_id']}")
    click.echo(task_tables(rep))
    click.echo(f"\nFull report: pwb bench report {rep['run_id']} --format html --out report.html")


@bench.command("report")
@click.argument("run_ids", nargs=-1)
@click.option("--groups", is_flag=True, help="Also break each run down by demographic group.")
@click.option(
    "--bins",
    multiple=True,
    metavar="ATTR=SPEC",
    help="Groups of a numeric attribute (repeatable; implies --groups; one not declared demographic is added): "
    "ATTR=quantiles[:N] (N quantile bins over the users reported, 4 by default), ATTR=EDGE,EDGE,... (e.g. "
    "age=18,25,35,50) or ATTR=values (one group per value). Default: ages in fixed bins, a numeric attribute "
    "with more than 8 values in 4 quantile bins, any other by value.",
)
@click.option(
    "--format",
    "fmt_",
    default="table",
    show_default=True,
    type=click.Choice(["table", "md", "html", "json"]),
    help="For a task run: md (with PNG plots beside --out), html (one file, plots inlined) or json.",
)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write the report here [default: stdout].")
@db_option
@json_option
@friendly_errors
def bench_report(run_ids, groups, bins, fmt_, out, db, as_json):
    """Leaderboard of bench runs (default: all completed), or a task run's full report (--format md/html/json)."""
    from evalbench.flows.reports import runs_report
    from evalbench.groups import parse_bins
    from workbench.errors import WorkbenchError

    with workspace(db, read_only=True) as ws:
        try:
            rep = runs_report(ws, run_ids, groups=groups, bins=parse_bins(bins))
        except WorkbenchError as exc:
            if exc.field != "run_ids":
                raise
            raise click.UsageError(exc.message) from exc
    if "task" in rep:
        return _write_task_report(rep["task"], "json" if as_json else fmt_, out)
    rows, by_group = rep["leaderboard"], rep["groups"]
    if as_json or fmt_ == "json":
        return emit({"leaderboard": rows, "groups": by_group, "group_notes": rep["group_notes"]}, True)
    if not rows:
        click.echo("No completed bench runs yet: `pwb bench run`.")
        return
    print_leaderboard(rows)
    if not any(r.get("reference") == "history" for r in rows):
        click.echo(
            "\nNo history ceiling yet, so no 'of ceiling' share: `pwb bench run --reference history` (and "
            "`--reference popularity` for the popularity control)."
        )
    print_group_tables(by_group, rep["group_notes"])


def _write_task_report(rep: dict, fmt_: str, out: str | None) -> None:
    """A task run's report as json, html, md (PNG plots in a folder beside ``out``) or terminal tables."""
    from pathlib import Path

    from evalbench.task_render import render_html, render_markdown

    if fmt_ == "json":
        text = json.dumps(rep, indent=2, default=str)
    elif fmt_ == "html":
        text = render_html(rep)
    elif fmt_ == "md":
        text = render_markdown(rep, Path(out).with_suffix("") if out else None)
    else:
        text = task_tables(rep).lstrip("\n")
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}")
    else:
        click.echo(text)


@bench.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@db_option
@json_option
@friendly_errors
def bench_compare(run_a, run_b, db, as_json):
    """Paired comparison of two bench runs on their shared units: A's win rate over B with a bootstrap CI and
    Wilcoxon / sign tests over users."""
    from evalbench.task_report import compare_runs

    with workspace(db, read_only=True) as ws:
        res = compare_runs(ws, run_a, run_b)
    if as_json:
        return emit(res, True)
    click.echo(
        f"A = {res['a']['system']} ({run_a})\nB = {res['b']['system']} ({run_b})\n{res['units']} shared units, "
        f"{res['n_clusters']} users\n"
    )
    click.echo(
        f"A beats B on {fmt(res['win_rate'])} of units [{fmt(res['win_rate_ci_low'])}, {fmt(res['win_rate_ci_high'])}]; "
        f"mean difference {fmt(res['mean_difference'])} [{fmt(res['mean_difference_ci_low'])}, "
        f"{fmt(res['mean_difference_ci_high'])}]"
    )
    click.echo(
        f"users better/worse/tied: {res['n_better']}/{res['n_worse']}/{res['n_tied']}; Wilcoxon p = "
        f"{res['wilcoxon_p']:.4g}, sign test p = {res['sign_test_p']:.4g}"
    )


@bench.command("power")
@split_option
@click.option(
    "--text-encoder", default="minilm", show_default=True, help="Metric text encoder (minilm, mpnet, or an id/path)."
)
@click.option("--partners", default=0, show_default=True, type=int, help="0: every other held-out user.")
@click.option("--seed", default=0, show_default=True, type=int)
@db_option
@json_option
@friendly_errors
def bench_power(split, text_encoder, partners, seed, db, as_json):
    """Can this split show a personal effect? The history ceiling (own visible likes against the other
    held-out users', no prompt, no system) with its CI, the smallest personal win rate it can detect and the
    users a system at half the ceiling's margin needs. Run it before scoring any system."""
    from evalbench.power import split_power

    with workspace(db) as ws:
        out = split_power(ws, split, text_encoder=text_encoder, partners=partners, seed=seed, progress=True)
    if as_json:
        return emit(out, True)
    lo, hi = out["ceiling_ci"]
    click.echo(
        f"split {out['split']}: {out['scored_users']} of {out['heldout_users']} held-out users scored, "
        f"median {out['median_hidden_likes']:g} hidden likes, {out['median_hidden_negatives']:g} unseen negatives and "
        f"{out['median_hidden_dislikes']:g} dislikes each\n"
        f"history ceiling ({out['metric']}): {out['ceiling']:.3f} [{lo:.3f}, {hi:.3f}], per-user sd {out['ceiling_sd']:.3f}\n"
        f"smallest detectable personal win rate: {out['min_detectable']:.3f}\n"
        f"half the ceiling's margin: {out['target_half_ceiling']:.3f}, needs {out['users_needed_for_target']:.0f} "
        "users for 80% power"
    )
