"""``pwb personas coldstart`` and ``pwb personas coldstart-curve``: personas for new users from the trained model."""

from __future__ import annotations

import click

from apps.cli.common import (
    db_option,
    emit,
    friendly_errors,
    graph_encoder_option,
    interval,
    json_option,
    param_option,
    parse_list,
    parse_params,
    split_option,
    table,
    workspace,
)
from apps.cli.personas import emit_card


@click.command("coldstart")
@split_option
@graph_encoder_option
@param_option
@click.option("--items", default="", help="Comma-separated ids of items the new user liked.")
@click.option("--attr", "attrs", multiple=True, metavar="KEY=VALUE", help="Declared attribute, repeatable.")
@click.option(
    "--answers",
    "answers",
    multiple=True,
    metavar="QUESTION=OPTION[,OPTION]",
    help="Intake-survey answers, repeatable (see --show-survey).",
)
@click.option("--show-survey", is_flag=True, help="Print the default intake survey and exit.")
@db_option
@json_option
@friendly_errors
def personas_coldstart(split, encoder, params, items, attrs, answers, show_survey, db, as_json):
    """Persona for a NEW user from a few items or survey answers, in one pass of the trained model."""
    from evalbench.flows.coldstart import load_coldstart, read_coldstart

    with workspace(db, read_only=True) as ws:
        source = read_coldstart(ws, split, encoder, parse_params(params))
    if show_survey:
        return _show_survey(source.survey(), as_json)
    if not source.trained:
        raise click.ClickException(
            f"No trained {encoder} model for split {source.split_id!r} with these settings: run "
            f"`pwb personas mine --split {source.split_id} --encoder {encoder}` first."
        )
    model = load_coldstart(source)
    attributes = parse_params(attrs, "--attr")
    if answers:
        chosen = {q: list(parse_list(str(v))) for q, v in parse_params(answers, "--answers").items()}
        card = model.maker.from_survey("new-user", model.survey, chosen, attributes)
    else:
        ids = parse_list(items)
        if not ids:
            raise click.ClickException("pass --items or --answers (see --show-survey)")
        liked, unknown = model.interactions("new-user", [(i, "like", None) for i in ids])
        if unknown:
            raise click.ClickException(f"--items: unknown item ids {', '.join(unknown[:5])}")
        card = model.maker.persona("new-user", liked, attributes)
    emit_card(card, as_json)


def _show_survey(survey, as_json: bool) -> None:
    rows = [
        {"question": q.qid, "text": q.text, "option": o.label, "items": ", ".join(o.items)}
        for q in survey.questions
        for o in q.options
    ]
    if as_json:
        return emit(rows, True)
    click.echo(table(rows, [("question", "question"), ("text", "text"), ("option", "option"), ("items", "items")]))


@click.command("coldstart-curve")
@split_option
@graph_encoder_option
@param_option
@click.option("--ks", default="1,3,5,10", show_default=True, help="Numbers of known interactions.")
@click.option("--prompts", default="parti36", show_default=True, help="Prompt set for the persona lift.")
@click.option("--seed", default=0, show_default=True, type=int)
@db_option
@json_option
@friendly_errors
def personas_coldstart_curve(split, encoder, params, ks, prompts, seed, db, as_json):
    """Held-out users as new users with k interactions: link AUC and persona lift versus k."""
    from evalbench.flows.coldstart import coldstart_curve

    with workspace(db) as ws:
        rows = coldstart_curve(
            ws,
            split,
            encoder,
            ks=tuple(int(k) for k in ks.split(",")),
            prompts=prompts,
            encoder_kwargs=parse_params(params),
            seed=seed,
            progress=True,
        )
    if as_json:
        return emit(rows, True)
    for r in rows:
        for m in ("link_auc", "lift", "win_rate"):
            r[f"{m}_ci"] = interval(r[m + "_low"], r[m + "_high"])
    click.echo(
        table(
            rows,
            [
                ("k", "k"),
                ("users", "users"),
                ("link_auc", "link AUC"),
                ("link_auc_ci", "95% CI"),
                ("lift", "lift"),
                ("lift_ci", "95% CI"),
                ("win_rate", "win rate"),
                ("win_rate_ci", "95% CI"),
            ],
        )
    )
