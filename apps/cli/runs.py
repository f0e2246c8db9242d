"""``pwb runs`` (recorded runs) and ``pwb labels`` (the human labels collected in the dashboard)."""

from __future__ import annotations

import click

from apps.cli.common import db_option, emit, friendly_errors, interval, json_option, table, workspace


@click.group()
def runs():
    """Inspect recorded runs."""


@runs.command("list")
@click.option("--kind", default=None, help="Only runs of this kind (bench, ...).")
@db_option
@json_option
@friendly_errors
def runs_list(kind, db, as_json):
    """Runs with their status, progress and code version."""
    from workbench.store.runs import list_runs

    with workspace(db, read_only=True) as ws:
        rows = list_runs(ws, kind)
    if as_json:
        return emit(rows, True)
    for r in rows:
        r["system"] = r["config"].get("system", "")
        r["progress"] = f"{r['units_done']}/{r['n_units']}"
    click.echo(
        table(
            rows,
            [
                ("run_id", "run"),
                ("kind", "kind"),
                ("system", "system"),
                ("status", "status"),
                ("progress", "units"),
                ("started_at", "started"),
                ("code_version", "code"),
            ],
        )
    )


@click.group()
def labels():
    """Human labels collected in the dashboard (persona image vs its no-persona baseline)."""


@labels.command("report")
@db_option
@json_option
@friendly_errors
def labels_report(db, as_json):
    """Human preference per system: share of labels preferring the persona image, CI, sign test."""
    from evalbench.labels import human_preference

    with workspace(db, read_only=True) as ws:
        rows = human_preference(ws)
    if as_json:
        return emit(rows, True)
    if not rows:
        return click.echo("no labels yet: label pairs on the dashboard's Generations page (`pwb dashboard`)")
    for r in rows:
        r["ci"] = interval(r["ci_low"], r["ci_high"])
    click.echo(
        table(
            rows,
            [
                ("system", "system"),
                ("win_rate", "prefer persona"),
                ("ci", "95% CI (users)"),
                ("sign_test_p", "sign test p"),
                ("judged", "judged"),
                ("flags", "flags"),
                ("users", "users"),
            ],
        )
    )
