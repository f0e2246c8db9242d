"""``pwb data``: import datasets, list them, split their users."""

from __future__ import annotations

import click

from apps.cli.common import db_option, emit, friendly_errors, json_option, table, workspace


@click.group()
def data():
    """Import datasets and split their users."""


@data.group("import")
def data_import():
    """Import a dataset into the workspace (one transaction: a failed import changes nothing)."""


def _store(db, bundle, as_json):
    """Write a loaded bundle and print its summary (with examples of what ``--lenient`` skipped)."""
    from workbench.store.datasets import write_dataset

    with workspace(db) as ws:
        summary = write_dataset(ws, bundle)
    if bundle.problems.skipped:
        summary["examples_of_skipped"] = bundle.problems.examples
    emit(summary, as_json)


def import_options(fn):
    fn = click.option("--name", default=None, help="Dataset id in the workspace.")(fn)
    fn = click.option("--lenient", is_flag=True, help="Skip and count malformed rows instead of failing.")(fn)
    return db_option(json_option(fn))


@data_import.command("movielens")
@click.option(
    "--path",
    default=None,
    type=click.Path(),
    help="RecBole wheel or folder with ml-100k.* [default: fetch the recbole==1.2.1 wheel].",
)
@click.option("--cache-dir", default=None, type=click.Path(), help="Where the wheel is cached [env PWB_CACHE].")
@import_options
@friendly_errors
def import_movielens(path, cache_dir, name, lenient, db, as_json):
    """MovieLens-100k (GroupLens research terms) from the RecBole wheel."""
    from persona.data.movielens import load_movielens

    _store(db, load_movielens(path, name=name or "ml-100k", lenient=lenient, cache=cache_dir), as_json)


@data_import.command("stackexchange")
@click.argument("path", type=click.Path())
@import_options
@friendly_errors
def import_stackexchange(path, name, lenient, db, as_json):
    """A Stack Exchange dump folder (Users.xml, Posts.xml, Comments.xml)."""
    from persona.data.stackexchange import load_stackexchange

    _store(db, load_stackexchange(path, name=name, lenient=lenient), as_json)


@data_import.command("faces")
@click.argument("path", type=click.Path())
@import_options
@friendly_errors
def import_faces(path, name, lenient, db, as_json):
    """Face ratings in the London Set layout (ratings.csv[.gz], faces.csv, images/)."""
    from persona.data.faces import load_faces

    _store(db, load_faces(path, name=name, lenient=lenient), as_json)


@data_import.command("synthetic")
@click.option("--users", "n_users", default=500, show_default=True, type=int)
@click.option("--items", "n_items", default=400, show_default=True, type=int)
@click.option("--personas", "n_personas", default=6, show_default=True, type=int)
@click.option(
    "--interactions", "per_user", default=30.0, show_default=True, type=float, help="Mean interactions per user."
)
@click.option(
    "--bias", "bias", default=1.0, show_default=True, type=float, help="How strongly demographics predict personas."
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--name", default=None, help="Dataset id [default synthetic-s<seed>].")
@db_option
@json_option
@friendly_errors
def import_synthetic(n_users, n_items, n_personas, per_user, bias, seed, name, db, as_json):
    """A synthetic community with planted personas and demographics (ground truth kept)."""
    from persona.data.synthetic import generate_community

    _store(
        db,
        generate_community(
            n_users,
            n_items,
            n_personas=n_personas,
            interactions_per_user=per_user,
            bias_strength=bias,
            seed=seed,
            name=name,
        ),
        as_json,
    )


@data_import.command("table")
@click.argument("source", required=False)
@click.option("--users-file", default=None, help="Optional users table (one row per user).")
@click.option("--items-file", default=None, help="Optional items table (one row per item).")
@click.option("--user-col", default="user_id", show_default=True)
@click.option("--item-col", default="item_id", show_default=True)
@click.option("--value-col", default=None, help="Rating/engagement column.")
@click.option("--timestamp-col", default=None, help="Epoch seconds or ISO dates.")
@click.option("--kind-col", default=None)
@click.option("--kind", default="interaction", show_default=True, help="Kind of rows without a --kind-col value.")
@click.option("--text-col", default=None)
@click.option("--item-title-col", default=None)
@click.option("--item-text-col", default=None)
@click.option("--item-tags-col", default=None, help="'|'-separated categories.")
@click.option("--item-image-col", default=None)
@click.option("--user-attrs", default="", help="Comma-separated demographic columns, e.g. age,gender.")
@click.option("--like-threshold", default=None, type=float, help="Value at or above which an interaction is a like.")
@click.option("--dislike-threshold", default=None, type=float)
@click.option("--hf-split", default="train", show_default=True, help="Split of a datasets dataset.")
@click.option("--delimiter", default=None, help="Field separator of CSV/TSV files [default: tab for .tsv, else comma].")
@click.option("--into", default=None, metavar="DATASET", help="Add to this stored dataset instead of making one.")
@click.option("--add-new", is_flag=True, help="With --into: add users/items the dataset lacks [default: an error].")
@click.option("--overwrite", is_flag=True, help="With --into: replace stored values the file contradicts.")
@import_options
@friendly_errors
def import_table(
    source,
    users_file,
    items_file,
    user_col,
    item_col,
    value_col,
    timestamp_col,
    kind_col,
    kind,
    text_col,
    item_title_col,
    item_text_col,
    item_tags_col,
    item_image_col,
    user_attrs,
    like_threshold,
    dislike_threshold,
    hf_split,
    delimiter,
    into,
    add_new,
    overwrite,
    name,
    lenient,
    db,
    as_json,
):
    """Your own logs: SOURCE is a CSV/TSV/Parquet file, a saved `datasets` folder, or hf:NAME.

    With --into DATASET, adds the file's interactions (SOURCE, optional), users' attribute columns
    (--user-attrs, inline or --users-file) and items' columns to a stored dataset, in one transaction."""
    from persona.data.table import ColumnMapping, load_table

    mapping = ColumnMapping(
        user=user_col,
        item=item_col,
        value=value_col,
        timestamp=timestamp_col,
        kind=kind_col,
        default_kind=kind,
        text=text_col,
        item_title=item_title_col,
        item_text=item_text_col,
        item_tags=item_tags_col,
        item_image=item_image_col,
        user_attributes=user_attrs,
    )
    if into is not None:
        if name or like_threshold is not None or dislike_threshold is not None:
            raise click.UsageError("--name and the thresholds make a new dataset; --into keeps the dataset's own.")
        return _add_into(
            into, source, mapping, users_file, items_file, lenient, hf_split, delimiter, add_new, overwrite, db, as_json
        )
    if source is None:
        raise click.UsageError("Missing argument 'SOURCE' (the table of interactions).")
    _store(
        db,
        load_table(
            source,
            mapping,
            users=users_file,
            items=items_file,
            name=name,
            lenient=lenient,
            split=hf_split,
            like_threshold=like_threshold,
            dislike_threshold=dislike_threshold,
            delimiter=delimiter,
        ),
        as_json,
    )


def _add_into(into, source, mapping, users, items, lenient, split, delimiter, add_new, overwrite, db, as_json):
    """``--into``: read the files, merge them into the stored dataset, print what was added."""
    from persona.data.additions import add_to_dataset, describe_addition, read_addition
    from workbench.store.datasets import resolve_dataset

    with workspace(db) as ws:
        resolve_dataset(ws, into)  # a misspelt name fails before the files are read
        addition = read_addition(
            source, mapping, users=users, items=items, lenient=lenient, split=split, delimiter=delimiter
        )
        summary = add_to_dataset(ws, into, addition, add_new=add_new, overwrite=overwrite)
    emit(summary, as_json, describe_addition(summary))


@data.command("list")
@db_option
@json_option
@friendly_errors
def data_list(db, as_json):
    """Datasets and splits in the workspace."""
    from workbench.store.datasets import list_datasets
    from workbench.store.splits import list_splits

    with workspace(db, read_only=True) as ws:
        rows, splits = list_datasets(ws), list_splits(ws)
    if as_json:
        return emit({"datasets": rows, "splits": splits}, True)
    click.echo(
        table(
            rows,
            [
                ("dataset_id", "dataset"),
                ("source", "source"),
                ("n_users", "users"),
                ("n_items", "items"),
                ("n_interactions", "interactions"),
            ],
        )
    )
    if splits:
        click.echo("\n" + table(splits, [("split_id", "split"), ("dataset_id", "dataset"), ("seed", "seed")]))


@data.command("split")
@click.option("--dataset", default=None, help="Dataset id [default: the only dataset].")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--heldout", default=0.2, show_default=True, type=float, help="Share of users held out for scoring.")
@click.option("--coldstart", default=0.05, show_default=True, type=float, help="Share of cold-start users.")
@click.option("--k", default=5, show_default=True, type=int, help="Visible interactions of a cold-start user.")
@click.option(
    "--hidden", default=0.5, show_default=True, type=float, help="Share of a held-out user's interactions hidden."
)
@click.option("--min-interactions", default=10, show_default=True, type=int, help="Fewer: train-only user.")
@click.option("--negatives", default=3, show_default=True, type=int, help="Unseen negatives per hidden like.")
@click.option(
    "--negative-sampling",
    default="popularity",
    show_default=True,
    type=click.Choice(["popularity", "popularity+time", "uniform"]),
    help="popularity: each like's negatives are unseen items of about its popularity, so popular cues win nothing "
    "by themselves; popularity+time: also of about its age (growing sites); uniform: any unseen item.",
)
@click.option("--name", default=None, help="Split id [default <dataset>/s<seed>].")
@db_option
@json_option
@friendly_errors
def data_split(
    dataset, seed, heldout, coldstart, k, hidden, min_interactions, negatives, negative_sampling, name, db, as_json
):
    """Split users into train, held-out and cold-start users."""
    from persona.data.splits import SplitParams, make_split

    params = SplitParams(
        seed=seed,
        heldout_frac=heldout,
        coldstart_frac=coldstart,
        k=k,
        hidden_frac=hidden,
        min_interactions=min_interactions,
        negatives_per_like=negatives,
        negative_sampling=negative_sampling,
    )
    with workspace(db) as ws:
        emit(make_split(ws, dataset, params, name=name), as_json)
