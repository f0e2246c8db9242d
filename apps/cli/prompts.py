"""``pwb prompts``: bring your own prompt sets (txt, csv/tsv, json, jsonl, a datasets name) and list them."""

from __future__ import annotations

import click

from apps.cli.common import db_option, emit, friendly_errors, json_option, table, workspace


@click.group()
def prompts():
    """Import prompt sets and list the stored ones (then use them by name: --prompts NAME)."""


@prompts.command("import")
@click.argument("source")
@click.option("--name", default=None, help="Name to store the set under [default: the file's stem].")
@click.option("--id-column", default="prompt_id", show_default=True, help="Column (or JSON field) of the ids.")
@click.option("--prompt-column", default="prompt", show_default=True, help="Column (or JSON field) of the prompts.")
@click.option("--split", "ds_split", default="train", show_default=True, help="Split of an hf: dataset.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Keep only the first N prompts.")
@db_option
@json_option
@friendly_errors
def prompts_import(source, name, id_column, prompt_column, ds_split, limit, db, as_json):
    """Store the prompts of SOURCE: a .txt (one a line), .csv/.tsv, .json or .jsonl file, or hf:DATASET."""
    from workbench.prompt_files import PromptColumns
    from workbench.store.prompts import import_prompt_set

    with workspace(db) as ws:
        res = import_prompt_set(
            ws,
            source,
            name=name,
            columns=PromptColumns(id=id_column, prompt=prompt_column),
            split=ds_split,
            limit=limit,
        )
    emit(res, as_json)


@prompts.command("list")
@db_option
@json_option
@friendly_errors
def prompts_list(db, as_json):
    """The prompt sets stored in the workspace, with their sizes, and the bundled ones."""
    from workbench.store.prompts import list_prompt_sets

    with workspace(db, read_only=True) as ws:
        rows = list_prompt_sets(ws)
    if as_json:
        emit(rows, True)
    else:
        click.echo(table(rows, [("prompt_set", "prompt set"), ("prompts", "prompts"), ("source", "source")]))
