"""``pwb demo``: the whole loop on MovieLens-100k (:func:`evalbench.flows.demo.run_demo`), printed."""

from __future__ import annotations

import click

from apps.cli.common import friendly_errors, parse_list, parse_params, table, workspace
from apps.cli.leaderboards import group_table, print_leaderboard

DEMO_DB = ".pwb/demo.duckdb"


def _llm_choice(ctx, param, value: str) -> str:
    """``--llm``: the template is always run, so it cannot be the LLM compared with it."""
    if value == "template":
        raise click.BadParameter("the template is always run; name an LLM backend, or 'none'", ctx, param)
    return value


@click.command()
@click.option("--db", envvar="PWB_DEMO_DB", default=DEMO_DB, show_default=True, help="Workspace for the demo.")
@click.option("--prompts", default="parti12", show_default=True)
@click.option(
    "--encoders",
    default="gat,tfidf",
    show_default=True,
    help="Comma-separated persona encoders to compare (the first also gets the shuffled control).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--llm",
    "llm",
    default="auto",
    show_default=True,
    callback=_llm_choice,
    help="LLM rewriter compared with the template: 'auto' (the embedded SmolLM2 when installed), 'none', "
    "or a backend name (embedded, transformers, openai, vllm; give its model with --llm-model).",
)
@click.option("--llm-model", default=None, help="Model for --llm (GGUF path, model id or served name).")
@click.option(
    "--llm-prompts",
    default="parti6",
    show_default=True,
    help="Prompt set of the LLM comparison (an LLM on 2 CPU cores writes about a rewrite a second).",
)
@click.option(
    "--llm-users",
    default=40,
    show_default=True,
    type=click.IntRange(min=2),
    help="The LLM comparison's held-out users (the first ones by id; partners among them).",
)
@click.option(
    "--llm-option", "llm_options", multiple=True, metavar="KEY=VALUE", help="LLM backend option (repeatable)."
)
@click.option(
    "--gallery/--no-gallery",
    default=True,
    show_default=True,
    help="End with a patch-generator gallery: variations of the pool image best matching each of 3 users' rewrites.",
)
@click.option(
    "--gallery-data",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Image folder for the gallery pool (face-rating or DreamBench images) [default: scikit-image samples].",
)
@friendly_errors
def demo(db, prompts, encoders, seed, llm, llm_model, llm_prompts, llm_users, llm_options, gallery, gallery_data):
    """The whole loop on MovieLens-100k: import, split, mine, rewrite, bench, the personal leaderboard.

    Then the LLM comparison: the first encoder's personas rewritten by the LLM and by the template on
    --llm-prompts for --llm-users held-out users, each benchmarked (the LLM also against its shuffled control).
    """
    from evalbench.flows.demo import run_demo

    names = parse_list(encoders)
    if not names:
        raise click.BadParameter("name at least one encoder", param_hint="--encoders")
    with workspace(db) as ws:
        out = run_demo(
            ws,
            prompts=prompts,
            encoders=names,
            seed=seed,
            llm=llm,
            llm_model=llm_model,
            llm_prompts=llm_prompts,
            llm_users=llm_users,
            llm_options=parse_params(llm_options, "--llm-option"),
            gallery=gallery,
            gallery_data=gallery_data,
            on_step=lambda label: click.echo(f"==> {label}", err=True),
        )
    _print_demo(out, db, prompts, names[0], llm_prompts, gallery_data)


def _print_demo(out: dict, db: str, prompts: str, first: str, llm_prompts: str, gallery_data: str | None) -> None:
    """The demo's tables: the personal leaderboard, the LLM beside the template, groups, the gallery, timings."""
    n_users = max((r["n_users"] for r in out["rows"]), default=0)
    click.echo(
        f"\nPersona Workbench demo: MovieLens-100k, split {out['split']}, prompt set {prompts}, "
        f"{n_users} held-out users\n"
    )
    print_leaderboard(out["rows"])
    if out["llm_rows"]:
        click.echo(
            f"\nLLM rewriter beside the template: {first} personas, prompt set {llm_prompts}, the first "
            f"{out['llm_users']} held-out users (partners among them)\n"
        )
        print_leaderboard(out["llm_rows"], legend=False)
    if out["note"]:
        click.echo(f"\nnote: {out['note']}")
    click.echo(f"\n{out['main_system']} by gender and age:")
    click.echo(group_table([g for g in out["groups"] if g["attribute"] in ("gender", "age")]))
    g = out["gallery"]
    if g:
        click.echo(f"\nGallery ({first} personas, training-free patch generator, no weights): {g['path']}")
        click.echo(
            table(
                g["rows"],
                [
                    ("user", "user"),
                    ("reference", "best pool match [caption-minilm]"),
                    ("copy_rate", "copy_rate[32px]"),
                    ("prompt", "rewritten prompt"),
                ],
            )
        )
        click.echo(
            f"\nReview and label the images: pwb dashboard --db {db}\n"
            f"Serve cold-start personas:    pwb keys create my-app --db {db} && pwb serve --db {db}"
        )
    click.echo(
        f"\nworkspace: {db}   total {out['seconds']:.1f} s "
        f"({', '.join(f'{label} {sec:.1f}s' for label, sec in out['steps'])})"
    )
    click.echo(
        "MovieLens-100k: GroupLens research terms, non-commercial, not redistributed. "
        "Prompts: PartiPrompts (Apache-2.0)."
        + (" Gallery images: scikit-image samples (public domain / CC0)." if g and not gallery_data else "")
    )
