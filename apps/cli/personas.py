"""``pwb personas``: mine, show, evaluate and group personas (the cold-start commands are :mod:`apps.cli.coldstart`)."""

from __future__ import annotations

import click

from apps.cli.common import (
    db_option,
    emit,
    encoder_option,
    friendly_errors,
    interval,
    json_option,
    param_option,
    parse_list,
    parse_params,
    split_option,
    table,
    workspace,
)


@click.group()
def personas():
    """Mine and inspect personas."""


def show_card(card, n_evidence: int = 10) -> None:
    """A persona card for the terminal: summary, known attributes, traits, the top evidence."""
    click.echo(f"{card.user_id} ({card.model_version})\n{card.summary}\n")
    if card.demographics:
        click.echo("known: " + ", ".join(f"{k}={v}" for k, v in card.demographics.items()) + "\n")
    rows = [{"kind": t.get("kind", "interest"), "share": "", "distinctiveness": "", **t} for t in card.traits]
    click.echo(
        table(
            rows,
            [
                ("name", "trait"),
                ("kind", "kind"),
                ("weight", "weight"),
                ("share", "share"),
                ("distinctiveness", "distinctiveness"),
            ],
        )
    )
    more = len(card.evidence) - n_evidence
    click.echo(
        "\nevidence:\n"
        + table(
            [e.__dict__ for e in card.evidence[:n_evidence]],
            [("item_id", "item"), ("weight", "weight"), ("snippet", "snippet")],
        )
    )
    if more > 0:
        click.echo(f"... and {more} more within the token budget (--json shows all)")


def emit_card(card, as_json: bool) -> None:
    from dataclasses import asdict

    if as_json:
        return emit(asdict(card), True)
    show_card(card)


@personas.command("mine")
@split_option
@encoder_option
@param_option
@click.option("--force", is_flag=True, help="Re-mine users that already have a persona (and retrain).")
@click.option(
    "--time-budget",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Graph encoders: stop training when fitting (item features plus training) has taken this long, keeping "
    "the model trained so far; the output says how many steps ran and the --max-steps that repeat them.",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Graph encoders: stop training after this many steps (deterministic, unlike --time-budget).",
)
@click.option(
    "--executor",
    default="local",
    show_default=True,
    type=click.Choice(["local", "process", "ray"]),
    help="Graph encoders: where users are inferred, in batches: in process, a local worker pool, or a Ray cluster "
    "(the same cards on each).",
)
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Worker processes / Ray workers.")
@click.option(
    "--address",
    default=None,
    metavar="ADDRESS",
    help="With --executor ray: a running cluster ('auto', or ray://HOST:PORT) [default: start a local one].",
)
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="Graph encoders: users per inference batch [default 2048]; tfidf: users per write [default 256].",
)
@db_option
@json_option
@friendly_errors
def personas_mine(
    split, encoder, params, force, time_budget, max_steps, executor, workers, address, batch_size, db, as_json
):
    """Mine a persona for every user of a split (graph encoders keep a checkpoint in models/ beside the workspace).

    Graph encoders print their plan (epochs x steps) before training and a time estimate after the first steps,
    then infer users in batches (on --executor) and store the cards in one bulk insert.
    """
    from persona.mining import mine_personas

    kwargs = parse_params(params)
    for name, value, flag in (("time_budget", time_budget, "--time-budget"), ("max_steps", max_steps, "--max-steps")):
        if value is None:
            continue
        if encoder == "tfidf":
            raise click.UsageError(f"{flag} applies to the trained graph encoders (gat, gat-noalign, sage), not tfidf")
        kwargs[name] = int(value) if float(value).is_integer() else value  # 60, not 60.0, in the persona set name
    if address and executor != "ray":
        raise click.UsageError("--address names a Ray cluster: pass it with --executor ray")
    with workspace(db) as ws:
        out = mine_personas(
            ws,
            split,
            encoder,
            force=force,
            progress=True,
            encoder_kwargs=kwargs,
            executor=executor,
            workers=workers,
            address=address,
            batch_size=batch_size,
        )
    if not as_json and isinstance(out.get("seconds"), dict):  # one line each: where the time and memory went
        out["seconds"] = ", ".join(f"{k} {v:.1f}" for k, v in out["seconds"].items())
        out["peak_gib"] = ", ".join(f"{k} {v:.1f}" for k, v in out["peak_gib"].items())
    emit(out, as_json)


@personas.command("show")
@click.argument("user")
@split_option
@encoder_option
@db_option
@json_option
@friendly_errors
def personas_show(user, split, encoder, db, as_json):
    """Show USER's persona with its evidence."""
    from persona.mining import get_persona

    with workspace(db, read_only=True) as ws:
        card = get_persona(ws, user, split, encoder)
    emit_card(card, as_json)


@personas.command("eval")
@split_option
@click.option(
    "--scorers",
    default="popularity,tfidf,mf,sage,gat-noalign,gat",
    show_default=True,
    help="Comma-separated link scorers.",
)
@click.option("--negatives", default=9, show_default=True, type=int, help="N in the 1-vs-N hit rate.")
@click.option("--gat-epochs", default=20, show_default=True, type=int, help="Epochs of the graph encoders.")
@click.option("--seed", default=0, show_default=True, type=int)
@db_option
@json_option
@friendly_errors
def personas_eval(split, scorers, negatives, gat_epochs, seed, db, as_json):
    """Held-out link AUC and 1-vs-N hit rate per encoder, with bootstrap CIs (stored as runs)."""
    from evalbench.link_prediction import run_link_eval

    with workspace(db) as ws:
        rows = run_link_eval(
            ws, split, parse_list(scorers), n_negatives=negatives, seed=seed, gat_epochs=gat_epochs, progress=True
        )
    if as_json:
        return emit(rows, True)
    for r in rows:
        r["auc_ci"] = interval(r["auc_low"], r["auc_high"])
        r["hit_ci"] = interval(r["hit_low"], r["hit_high"])
    click.echo(
        table(
            rows,
            [
                ("scorer", "scorer"),
                ("auc", "link AUC"),
                ("auc_ci", "95% CI"),
                ("hit_rate", f"hit@1 of {1 + negatives}"),
                ("hit_ci", "95% CI"),
                ("n_users", "users"),
                ("seconds", "seconds"),
            ],
        )
    )


@personas.command("cohort")
@click.argument("name")
@click.option(
    "--where", required=True, help="SQL condition over the columns `pwb personas cohort NAME --where 1=0` lists."
)
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
    show_card(out["card"])


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
