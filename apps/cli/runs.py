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
    """Human labels (persona image vs its no-persona baseline): from the dashboard, or labelled elsewhere and imported."""


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


@labels.command("export")
@click.option(
    "--format",
    "fmt_",
    type=click.Choice(["label-studio", "csv"]),
    default="label-studio",
    show_default=True,
    help="label-studio: a JSON task list plus the labelling interface as OUT.xml; csv: one row a pair to fill in.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="File to write the tasks to.")
@click.option("--image-prefix", default=None, help="A URL the images are served under (file names appended).")
@db_option
@json_option
@friendly_errors
def labels_export(fmt_, out, image_prefix, db, as_json):
    """Every persona-vs-baseline image pair as a blind labelling task (the persona side is never written)."""
    from evalbench.label_exchange import export_tasks

    with workspace(db, read_only=True) as ws:
        emit(export_tasks(ws, fmt_, out, image_prefix=image_prefix), as_json)


@labels.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--annotator", default=None, help="Annotator of rows that name none.")
@db_option
@json_option
@friendly_errors
def labels_import(file, annotator, db, as_json):
    """Labels from a Label Studio JSON export or the filled-in CSV (importing a file twice adds nothing)."""
    from evalbench.label_exchange import import_labels

    with workspace(db) as ws:
        emit(import_labels(ws, file, annotator=annotator), as_json)
