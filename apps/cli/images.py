"""``pwb generate`` (images from stored persona rewrites) and ``pwb variations`` (the patch generator)."""

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
    from evalbench.flows.draw import draw_from_rewrites

    ident = _identity(identity, identity_consent)
    if backend != "patch" and not model:
        raise click.UsageError("--model is required with --backend diffusers / diffusers-pipeline "
                               "(a diffusers id or folder, or random:sdxl-tiny)")
    if backend == "patch" and (ip_adapter or identity_adapter or identity):
        raise click.UsageError("--ip-adapter / --identity apply to the diffusers backends, not to --backend patch")
    with workspace(db) as ws:
        out = draw_from_rewrites(
            ws, backend=backend, model=model, baseline=baseline, negative_prompt=negative_prompt, pool=pool,
            ip_adapter=ip_adapter, identity_adapter=identity_adapter, face_provider=face_provider, scheduler=scheduler,
            dtype=dtype, device=device, steps=steps, height=height, width=width, batch_size=batch_size, out_dir=out_dir,
            split=split, encoder=encoder, rewriter=rewriter, rewriter_model=rewriter_model, prompts=prompts,
            roles=parse_roles(roles), users=list(user_ids) or None, max_users=max_users or None,
            max_prompts=max_prompts or None, seed=seed, references=list(references),
            reference_scale=_scale(reference_scale), identity=ident, guidance=guidance, guidance_scale=guidance_scale,
            schedule=schedule, guidance_options=parse_params(guidance_options, "--guidance-option"))
    rows = out["rows"]
    if as_json:
        return emit(rows, True)
    import os

    for r in rows:  # shorter paths on screen when under the working directory
        rel = os.path.relpath(r["image"])
        r["image"] = rel if not rel.startswith("..") else r["image"]
    click.echo(table(rows, [("user", "user"), ("prompt", "prompt"), ("persona", "persona"), ("unet_evals", "UNet evals"), ("seconds", "s/image"),
                            ("image", "image")]))
    click.echo(f"\n{len(rows)} image(s) by {out['model']} ({backend}{'' if backend == 'patch' else ', ' + guidance}); "
               "provenance is in each PNG "
               "(`pwb` keys) and the workspace's generations table.")


def _shape(size: str | None) -> tuple[int, int] | None:
    """``--size 256x384`` -> ``(256, 384)``."""
    if not size:
        return None
    try:
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected HxW such as 256x384, got {size!r}", param_hint="--size") from None
    return h, w


@click.command()
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
    from evalbench.flows.variations import patch_variations

    if num < 1:
        raise click.BadParameter("must be at least 1", param_hint="--num")
    if not prompt and not references:
        raise click.UsageError("give reference images, or --prompt to pick one from --pool")
    out = patch_variations(references, prompt=prompt, pool=pool, num=num, shape=_shape(size), preset=preset,
                           tileable=tileable, patch_size=patch_size, steps=steps, seed=seed, out_dir=out_dir)
    if as_json:
        return emit({"reference": out["reference"], "preset": out["preset"], "variations": out["variations"]}, True)
    if out["picked"]:
        click.echo(f"reference from the pool: {out['picked']}")
    click.echo(table(out["variations"], [("image", "image"), ("seed", "seed"), ("size", "size"), ("scales", "scales"),
                                         ("seconds", "seconds"), ("copy_rate", "copy_rate[32px]")]))
    click.echo(f"\n{num} variation(s), preset {out['preset']}; copy_rate[32px] is the share of 32-px windows copied "
               "verbatim from the reference (a shifted copy scores about 0.75).")
