"""New images from reference images with the training-free patch generator (no weights, any machine):
``pwb variations``. The reference is given, or retrieved from a pool by similarity to a prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def patch_variations(
    references: list[str] | tuple[str, ...] = (),
    *,
    prompt: str | None = None,
    pool: str = "samples",
    num: int = 4,
    shape: tuple[int, int] | None = None,
    preset: str | None = None,
    tileable: bool = False,
    patch_size: int = 15,
    steps: int = 10,
    seed: int = 0,
    out_dir: str | Path = "variations",
    progress: bool = True,
    signing_dir: str | Path = ".pwb",
) -> dict[str, Any]:
    """Draw ``num`` variations (seeds ``seed``, ``seed + 1``, ...) into ``out_dir`` as PNGs.

    Args:
        references: reference image files; with ``prompt`` instead, the ``pool`` image (a folder, or
            ``samples`` for scikit-image's) whose caption best matches it.
        shape: ``(height, width)`` of the output (retargeting) [default: the first reference's].
        preset: ``fast`` (strided patches, top-8 search), ``reference`` (the authors' sampler: every patch,
            exact; ``paper`` names it too) or ``auto`` (exact under a budget, top-16 beyond) [default: reference
            with CUDA, else fast].
        signing_dir: the folder whose ``signing/`` holds the chain every PNG is signed with (the default
            workspace's folder); each is also watermarked with its ``v-`` id from 256 x 256 pixels up.

    Returns:
        ``{"reference": the references (or the picked pool image's caption and similarity), "picked": that
        caption line or ``None``, "preset", "variations": [{image, seed, seconds, size, scales, copy_rate}]}``;
        ``copy_rate`` is the share of 32-px windows copied verbatim from the first reference.
    """
    import torch

    from evalbench.metrics.single_image import copy_rate
    from generation.backends.patch import PatchDiffusion, fit_reference, preset_config
    from workbench.progress import progress_bar

    if num < 1:
        raise ValueError("num: must be at least 1")
    refs, picked = _references(references, prompt, pool)
    preset = preset or ("reference" if torch.cuda.is_available() else "fast")
    preset = "reference" if preset == "paper" else preset
    cfg = preset_config(preset, patch_size=patch_size, steps=steps, tileable=tileable)
    fitted = [fit_reference(r, shape) for r in refs]
    gen = PatchDiffusion(fitted, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in progress_bar(range(num), desc="variations", leave=False, disable=not progress):
        s = gen.sample(shape, seed=seed + i)
        path = out / f"variation-s{seed + i}.png"
        _save(s.image, path, preset=preset, seed=seed + i, signing_dir=signing_dir)
        cr = copy_rate(s.image, fitted[0], patch=32, stride=16) if min(s.image.size) >= 32 else None
        rows.append(
            {
                "image": str(path),
                "seed": seed + i,
                "seconds": round(s.seconds, 2),
                "size": f"{s.image.height}x{s.image.width}",
                "scales": len(s.scales),
                "copy_rate": cr,
            }
        )
    return {"reference": picked or [str(r) for r in refs], "picked": picked, "preset": preset, "variations": rows}


def _save(image, path: Path, *, preset: str, seed: int, signing_dir: str | Path) -> None:
    """One variation as a PNG signed with content credentials and watermarked with its id (``v-`` and its
    pixels' hash: a variation has no generation row)."""
    import hashlib

    from workbench.images import save_marked

    vid = "v-" + hashlib.sha256(image.tobytes()).hexdigest()[:16]
    meta = {"seed": seed, "preset": preset, "software": "persona-workbench"}
    save_marked(
        image,
        path,
        {"generation_id": vid},
        generator="patch",
        model=f"patch:{preset}",
        signing_dir=signing_dir,
        metadata=meta,
    )


def _references(references, prompt: str | None, pool: str) -> tuple[list[Any], str | None]:
    """``(reference images, the picked pool image's description or None)``."""
    if prompt:
        from generation.retrieval import ReferenceRetriever, sample_pool

        ((best, sim),) = ReferenceRetriever(sample_pool() if pool == "samples" else pool).rank(prompt, 1)
        return [best.image], f"{best.caption} (similarity {sim:.2f}, caption-minilm)"
    if references:
        return list(references), None
    raise ValueError("references: give reference images, or a prompt to pick one from the pool")
