"""``pwb variations``: new images from reference images with the training-free patch generator."""

from __future__ import annotations

import click

from apps.cli.common import emit, friendly_errors, json_option, table


def _shape(size: str | None) -> tuple[int, int] | None:
    """``--size 256x384`` -> ``(256, 384)``."""
    if not size:
        return None
    try:
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected HxW such as 256x384, got {size!r}", param_hint="--size") from None
    return h, w


def _signing_dir() -> str:
    """The workspace folder (``PWB_DB``'s, else ``.pwb``): where the signing chain lives."""
    import os
    from pathlib import Path

    db = os.environ.get("PWB_DB")
    return str(Path(db).parent) if db and db != ":memory:" else ".pwb"


@click.command()
@click.argument("references", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--prompt", default=None, help="Pick the reference from --pool by similarity to this prompt instead.")
@click.option(
    "--pool", default="samples", show_default=True, help="Image folder (or 'samples': scikit-image's) for --prompt."
)
@click.option("-n", "--num", default=4, show_default=True, type=int, help="How many variations.")
@click.option(
    "--size",
    default=None,
    metavar="HxW",
    help="Output size, e.g. 256x384 (retargeting) [default: the first reference's].",
)
@click.option(
    "--preset",
    default=None,
    type=click.Choice(["fast", "reference", "auto", "paper"]),
    help="fast: strided patches, top-8 search (CPU); reference: the authors' sampler, every patch, exact (paper: "
    "the same); auto: exact under a budget, top-16 beyond [default: fast on CPU, reference on GPU].",
)
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
    out = patch_variations(
        references,
        prompt=prompt,
        pool=pool,
        num=num,
        shape=_shape(size),
        preset=preset,
        tileable=tileable,
        patch_size=patch_size,
        steps=steps,
        seed=seed,
        out_dir=out_dir,
        signing_dir=_signing_dir(),
    )
    if as_json:
        return emit({"reference": out["reference"], "preset": out["preset"], "variations": out["variations"]}, True)
    if out["picked"]:
        click.echo(f"reference from the pool: {out['picked']}")
    click.echo(
        table(
            out["variations"],
            [
                ("image", "image"),
                ("seed", "seed"),
                ("size", "size"),
                ("scales", "scales"),
                ("seconds", "seconds"),
                ("copy_rate", "copy_rate[32px]"),
            ],
        )
    )
    click.echo(
        f"\n{num} variation(s), preset {out['preset']}; copy_rate[32px] is the share of 32-px windows copied "
        "verbatim from the reference (a shifted copy scores about 0.75)."
    )
