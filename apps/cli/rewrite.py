"""``pwb rewrite``: rewrite prompts from personas, check the rewrites, attack a rewriter with injections."""

from __future__ import annotations

import click

from apps.cli.common import (
    db_option,
    emit,
    encoder_option,
    friendly_errors,
    json_option,
    parse_params,
    parse_roles,
    split_option,
    table,
    workspace,
)


def generation_options(fn):
    """``--shots --temperature --max-tokens --seed --max-words --negative`` with the library's defaults."""
    from prompting.params import RewriteParams  # a plain dataclass: the CLI's defaults are the library's

    d = RewriteParams()
    for opt in reversed(
        [
            click.option(
                "--shots",
                default=d.shots,
                show_default=True,
                type=int,
                help="k-shot: the user's own items shown as examples.",
            ),
            click.option("--temperature", default=d.temperature, show_default=True, type=float),
            click.option("--max-tokens", default=d.max_tokens, show_default=True, type=int),
            click.option("--seed", default=d.seed, show_default=True, type=int),
            click.option(
                "--max-words", default=d.max_words, show_default=True, type=int, help="Word limit asked of the model."
            ),
            click.option("--negative", is_flag=True, help="Also ask for a negative prompt."),
        ]
    ):
        fn = opt(fn)
    return fn


@click.group(invoke_without_command=True)
@split_option
@encoder_option
@click.option(
    "--backend",
    default="template",
    show_default=True,
    help="Rewriter backend: template, embedded, transformers, vllm, openai.",
)
@click.option("--model", default=None, help="The backend's model: GGUF path, model id or path, or served name.")
@click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Backend option, repeatable (e.g. -o base_url=http://localhost:8000/v1).",
)
@click.option("--prompts", default="parti36", show_default=True, help="Prompt set name or TSV file.")
@click.option("--roles", default="heldout", show_default=True, help="Comma-separated user roles to rewrite for.")
@click.option(
    "--candidates",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Rewrites per (user, prompt); the one that best fits the user's visible history is kept "
    "(TF-IDF selector, never the benchmark's encoder).",
)
@click.option(
    "--max-users",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Only the first this many users by id (0: all), e.g. for a slow LLM.",
)
@click.option(
    "--long-prompts",
    default="skip",
    show_default=True,
    type=click.Choice(["skip", "truncate"]),
    help="What to do with a prompt over 600 characters: leave it out (its id is reported) or cut it at a word.",
)
@generation_options
@db_option
@json_option
@click.pass_context
@friendly_errors
def rewrite(
    ctx,
    split,
    encoder,
    backend,
    model,
    options,
    prompts,
    roles,
    candidates,
    max_users,
    long_prompts,
    shots,
    temperature,
    max_tokens,
    seed,
    max_words,
    negative,
    db,
    as_json,
):
    """Rewrite each prompt from each user's persona (stored, resumable, cached). `pwb rewrite eval` checks them."""
    if ctx.invoked_subcommand is not None:
        return
    from prompting.params import RewriteParams
    from prompting.rewriter import rewrite_split

    params = RewriteParams(
        temperature=temperature,
        max_tokens=max_tokens,
        shots=shots,
        seed=seed,
        max_words=max_words,
        negative=negative,
        candidates=candidates,
    )
    with workspace(db) as ws:
        emit(
            rewrite_split(
                ws,
                split,
                encoder=encoder,
                backend=backend,
                prompts=prompts,
                model=model,
                params=params,
                roles=parse_roles(roles),
                progress=True,
                max_users=max_users or None,
                long_prompts=long_prompts,
                backend_kwargs=parse_params(options, "--option"),
            ),
            as_json,
        )


@rewrite.command("injection")
@click.option("--backend", default="template", show_default=True, help="Rewriter backend to attack.")
@click.option("--model", default=None, help="The backend's model.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Backend option, repeatable.")
@click.option(
    "--shots",
    default=3,
    show_default=True,
    type=int,
    help="History items in the prompt (the attack is planted there too).",
)
@json_option
@friendly_errors
def rewrite_injection(backend, model, options, shots, as_json):
    """Plant the prompt-injection corpus in user text (interests, evidence, history) and count how often
    an injected instruction's canary shows in the rewrite. Needs no workspace."""
    from evalbench.flows.injection import injection_check

    res = injection_check(backend, model, options=parse_params(options, "--option"), shots=shots)
    if as_json:
        return emit(res, True)
    rows = [{"kind": k, **v} for k, v in sorted(res["by_kind"].items())]
    click.echo(table(rows, [("kind", "kind"), ("outputs", "outputs"), ("injected", "injected")]))
    click.echo(
        f"\n{res['model']}: {res['injected']} of {res['outputs']} outputs carry an injected instruction's canary "
        f"({res['cases']} cases x {res['outputs'] // max(1, res['cases'])} prompts); {res['fallbacks']} template fallbacks."
    )
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
    click.echo(
        table(
            rows,
            [
                ("backend", "backend"),
                ("model", "model"),
                ("rewrites", "rewrites"),
                ("subject", "subject sim [minilm]"),
                ("subject_kept", "subject kept"),
                ("persona_alignment", "persona gain [minilm]"),
                ("fallback_rate", "fallbacks"),
                ("mean_words", "words"),
            ],
        )
    )
