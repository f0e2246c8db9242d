"""``pwb generate``: images for users from their stored persona rewrites (diffusers or the patch generator)."""

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


def _identity(identity: str | None, subject: str | None):
    """The ``--identity`` reference with today's consent of ``--identity-consent`` (checked here, before any
    model loads), or ``None``."""
    if identity is None:
        return None
    import datetime

    from workbench.consent import Consent, IdentityReference

    try:
        consent = Consent(subject=subject, granted_at=datetime.date.today().isoformat()) if subject else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--identity-consent") from exc
    ident = IdentityReference(image=identity, consent=consent)
    ident.require_consent(field="--identity")
    return ident


def _scale(text: str):
    """``--reference-scale``: a number, or a block preset's name."""
    try:
        return float(text)
    except ValueError:
        return text


@click.command()
@split_option
@encoder_option
@click.option(
    "--rewriter", default="template", show_default=True, help="Whose rewrites to draw (the `pwb rewrite --backend`)."
)
@click.option("--rewriter-model", default=None, help="Rewriter model label [default: the only one stored].")
@click.option("--prompts", default="parti36", show_default=True, help="Prompt set of the stored rewrites.")
@click.option("--roles", default="heldout", show_default=True, help="Comma-separated user roles to draw for.")
@click.option("--user", "user_ids", multiple=True, help="Draw for this user id (repeatable) instead of --roles.")
@click.option("--max-users", default=4, show_default=True, type=int, help="At most this many users (0: all).")
@click.option(
    "--max-prompts", default=2, show_default=True, type=int, help="At most this many prompts per user (0: all)."
)
@click.option(
    "--backend",
    default="diffusers",
    show_default=True,
    type=click.Choice(["diffusers", "diffusers-pipeline", "patch"]),
    help="diffusers: our per-sample loop; diffusers-pipeline: diffusers' stock pipeline (cfg only); "
    "patch: the training-free patch generator (draws from --reference images or a --pool; no weights).",
)
@click.option(
    "--model",
    default=None,
    help="Diffusers model id or folder (e.g. stabilityai/stable-diffusion-xl-base-1.0), "
    "or random:sd15-tiny / random:sdxl-tiny / random:sdxl-full for random weights [required for diffusers]; "
    "patch:fast, patch:reference or patch:auto for --backend patch.",
)
@click.option(
    "--pool",
    default=None,
    help="Patch backend: image folder (or 'samples') to pick each user's reference "
    "from by similarity to their rewritten prompt, when no --reference is given.",
)
@click.option(
    "--guidance",
    default="cfg",
    show_default=True,
    help="Guidance rule: cfg, interval, apg, cfgpp, cfg_zero_star, beta_cfg, adaptive, pag.",
)
@click.option("--guidance-scale", default=None, type=float, help="The rule's scale [default: the rule's own].")
@click.option("--schedule", default=None, help="Scale schedule: constant, linear, cosine, beta (e.g. beta:a=2,b=2).")
@click.option(
    "-g",
    "--guidance-option",
    "guidance_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Rule option, repeatable (e.g. -g start=0.2 -g stop=0.8 for interval, -g threshold=0.99).",
)
@click.option("--negative-prompt", default=None, help="Negative prompt where the rewrite has none.")
@click.option(
    "--ip-adapter",
    default=None,
    help="IP-Adapter weights: ID_OR_FOLDER:SUBFOLDER/FILE "
    "(h94/IP-Adapter:sdxl_models/ip-adapter_sdxl.safetensors) or a file path.",
)
@click.option(
    "--reference",
    "references",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Reference image for every user (repeatable; needs --ip-adapter).",
)
@click.option(
    "--reference-scale",
    default="0.6",
    show_default=True,
    help="IP-Adapter scale: a number, or a block preset (style, layout, style+layout).",
)
@click.option(
    "--identity",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Face image to inject (needs --identity-consent).",
)
@click.option(
    "--identity-consent",
    default=None,
    metavar="SUBJECT",
    help="Record that SUBJECT, the person pictured, agreed to identity injection (today's date).",
)
@click.option("--identity-adapter", default=None, help="FaceID-style adapter weights, same forms as --ip-adapter.")
@click.option(
    "--face-provider", default="dlib", show_default=True, help="Face embedder: dlib (here), arcface (insightface)."
)
@click.option(
    "--scheduler", default="ddim", show_default=True, help="ddim, default (the model's), euler, dpm++, unipc, ..."
)
@click.option("--steps", default=None, type=int, help="[default: 30 for diffusers, 10 per scale for patch]")
@click.option("--height", default=None, type=int, help="[default: the model's native size]")
@click.option("--width", default=None, type=int)
@click.option("--batch-size", default=4, show_default=True, type=int, help="Conditions per UNet batch.")
@click.option(
    "--baseline",
    is_flag=True,
    help="Also draw each user's original (no-persona) prompt with the same seed: "
    "the side-by-side pairs the dashboard shows and collects human labels on.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default=None, help="cuda, cpu, ... [default: CUDA when available].")
@click.option("--dtype", default=None, type=click.Choice(["float32", "float16", "bfloat16"]), help="[default: float32]")
@click.option(
    "--out", "out_dir", default=None, type=click.Path(), help="Image folder [default: <workspace dir>/images]."
)
@db_option
@json_option
@friendly_errors
def generate(
    roles,
    user_ids,
    max_users,
    max_prompts,
    references,
    reference_scale,
    identity,
    identity_consent,
    guidance_options,
    **opts,
):
    """Draw images for users from their stored persona rewrites (diffusers, per-sample guidance and adapters)."""
    from evalbench.flows.draw import draw_from_rewrites

    ident = _identity(identity, identity_consent)
    backend, db, as_json = opts["backend"], opts.pop("db"), opts.pop("as_json")
    if backend != "patch" and not opts["model"]:
        raise click.UsageError(
            "--model is required with --backend diffusers / diffusers-pipeline "
            "(a diffusers id or folder, or random:sdxl-tiny)"
        )
    if backend == "patch" and (opts["ip_adapter"] or opts["identity_adapter"] or identity):
        raise click.UsageError("--ip-adapter / --identity apply to the diffusers backends, not to --backend patch")
    with workspace(db) as ws:
        out = draw_from_rewrites(
            ws,
            **opts,
            roles=parse_roles(roles),
            users=list(user_ids) or None,
            max_users=max_users or None,
            max_prompts=max_prompts or None,
            references=list(references),
            reference_scale=_scale(reference_scale),
            identity=ident,
            guidance_options=parse_params(guidance_options, "--guidance-option"),
        )
    if as_json:
        return emit(out["rows"], True)
    _show_drawn(out, backend, opts["guidance"])


def _show_drawn(out: dict, backend: str, guidance: str) -> None:
    """The drawn images as a table, then what drew them and where their provenance is."""
    import os

    rows = out["rows"]
    for r in rows:  # shorter paths on screen when under the working directory
        rel = os.path.relpath(r["image"])
        r["image"] = rel if not rel.startswith("..") else r["image"]
    click.echo(
        table(
            rows,
            [
                ("user", "user"),
                ("prompt", "prompt"),
                ("persona", "persona"),
                ("unet_evals", "UNet evals"),
                ("seconds", "s/image"),
                ("image", "image"),
            ],
        )
    )
    click.echo(
        f"\n{len(rows)} image(s) by {out['model']} ({backend}{'' if backend == 'patch' else ', ' + guidance}); "
        "provenance is in each PNG "
        "(`pwb` keys) and the workspace's generations table."
    )
