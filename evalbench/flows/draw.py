"""Images for users from their stored persona rewrites: the conditions, optional no-persona baselines, the
draw and its records, in one call (``pwb generate``)."""

from __future__ import annotations

from typing import Any


def draw_from_rewrites(
    ws,
    *,
    backend: str = "diffusers",
    model: str | None = None,
    baseline: bool = False,
    negative_prompt: str | None = None,
    pool: str | None = None,
    ip_adapter: str | None = None,
    identity_adapter: str | None = None,
    face_provider: str = "dlib",
    scheduler: str = "ddim",
    dtype: str | None = None,
    device: str | None = None,
    steps: int | None = None,
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 4,
    out_dir: str | None = None,
    progress: bool = True,
    **select: Any,
) -> dict[str, Any]:
    """Draw one image per stored rewrite that ``select`` picks, and with ``baseline`` its no-persona twin.

    Args:
        backend: ``diffusers`` (our per-sample loop), ``diffusers-pipeline`` or ``patch``.
        model: the diffusers id or folder (``random:sdxl-tiny`` ...), ``patch:fast`` / ``patch:reference`` / ``patch:auto``.
        pool: the patch generator's reference pool (an image folder or ``samples``).
        ip_adapter, identity_adapter, face_provider, scheduler, dtype, device: diffusers settings (``dtype``
            by name: ``float16``, ...); ``face_provider`` only applies with an ``identity_adapter``.
        **select: :func:`generation.conditions.conditions_from_rewrites`' arguments (split, encoder,
            rewriter, prompts, roles, users, max_users, max_prompts, seed, references, identity, guidance ...).

    Returns:
        ``{"rows": [{user, prompt, persona, unet_evals, seconds, identity_sim, image}], "model": the
        generator's model label}``, one row per image in drawing order.
    """
    # 1. the backend's settings
    from generation.conditions import baseline_conditions, conditions_from_rewrites
    from generation.pipeline import generate

    if backend == "patch":
        extra: dict[str, Any] = {"pool": pool}
    else:
        extra = {
            "ip_adapter": ip_adapter,
            "identity_adapter": identity_adapter,
            "scheduler": scheduler,
            "torch_dtype": _torch_dtype(dtype),
        }
    if identity_adapter:
        extra["face_provider"] = face_provider
    # 2. the conditions (and their no-persona baselines), then draw them
    conds = conditions_from_rewrites(ws, negative_prompt=negative_prompt, **select)
    if baseline:
        conds = conds + baseline_conditions(ws, conds, negative_prompt=negative_prompt)
    gens = generate(
        conds,
        backend=backend,
        model=model,
        workspace=ws,
        out_dir=out_dir,
        steps=steps,
        height=height,
        width=width,
        batch_size=batch_size,
        progress=progress,
        device=device,
        **extra,
    )
    # 3. one row per image, in drawing order
    rows = [
        {
            "user": g.user_id,
            "prompt": c.prompt_id.split("/", 1)[-1],
            "persona": c.persona_id is not None,
            "unet_evals": g.unet_evals,
            "seconds": round(g.latency_s, 3),
            "identity_sim": g.identity_similarity,
            "image": g.image_path,
        }
        for g, c in zip(gens, conds)
    ]
    return {"rows": rows, "model": gens[0].model}


def _torch_dtype(name: str | None):
    """``"float16"`` -> ``torch.float16``; ``None`` stays ``None`` (the backend's default)."""
    if not name:
        return None
    import torch

    return getattr(torch, name)
