"""Entry point: ``generate(conditions, backend=..., model=...) -> list[Generation]``.

Images are saved content-addressed (``<images dir>/<sha[:2]>/<sha>.png``) with provenance in the PNG's
text chunks (prompt, user, persona id, model, seed, guidance, condition id), and, with a workspace, one
``conditions`` row per condition and one ``generations`` row per image (latency, peak memory, UNet
evaluations, image hash).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.images import file_sha256, save_content_addressed
from workbench.registry import Registry

from .conditions import Generation, UserCondition

if TYPE_CHECKING:
    from workbench.store.workspace import Workspace

BACKENDS = Registry(
    "generation backend",
    {
        "diffusers": "generation.backends.diffusers_sd:DiffusersBackend",
        "diffusers-pipeline": "generation.backends.stock:StockPipelineBackend",
        "patch": "generation.backends.patch:PatchBackend",
    },
)


def get_backend(name: str, **kwargs: Any):
    """Build a generation backend by name (``diffusers``, ``diffusers-pipeline``, ``patch``)."""
    return BACKENDS.get(name, field="backend")(**kwargs)


def images_dir(ws: Workspace | None, out_dir: str | Path | None) -> Path:
    """``out_dir`` if given, else ``<workspace dir>/images`` (``.pwb/images`` for an in-memory one)."""
    if out_dir is not None:
        return Path(out_dir)
    if ws is not None and str(ws.path) != ":memory:":
        return Path(str(ws.path)).parent / "images"
    return Path(".pwb") / "images"


def generate(
    conditions: list[UserCondition],
    *,
    backend: Any = "diffusers",
    model: Any = None,
    workspace: Workspace | None = None,
    out_dir: str | Path | None = None,
    save: bool = True,
    steps: int | None = None,
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 4,
    progress: bool = True,
    provenance: bool = True,
    signing_dir: str | Path | None = None,
    **backend_kwargs: Any,
) -> list[Generation]:
    """Draw one image per condition.

    Args:
        conditions: one :class:`UserCondition` per image (different users, prompts, references,
            guidance rules and seeds may share a batch).
        backend: a backend name (``diffusers``: our loop; ``diffusers-pipeline``: diffusers' stock
            pipeline, one condition at a time) or a backend object from :func:`get_backend`.
        model: diffusers model id or folder, or ``random:<sd15|sdxl>-<tiny|full>`` (required with the
            diffusers backends); ``patch:fast`` / ``patch:reference`` / ``patch:auto`` for the patch generator (optional).
        workspace: where ``conditions`` and ``generations`` rows go (optional).
        out_dir: image folder (default ``<workspace dir>/images``).
        save: write PNGs (content-addressed, with provenance) and rows.
        steps, height, width, batch_size, progress: sampling settings (``steps`` default: 30 for diffusers,
            the patch generator's 10 per scale).
        provenance: sign every saved image with C2PA content credentials and, from 256 x 256 pixels up,
            watermark it with its generation's id (:mod:`workbench.provenance`; ``pwb verify`` reads both).
        signing_dir: the folder whose ``signing/`` holds the local signing chain (default: the workspace's
            folder, ``.pwb`` without one; never the images folder, which may be handed on).
        **backend_kwargs: ``ip_adapter``, ``identity_adapter``, ``face_provider``, ``scheduler``,
            ``device``, ``torch_dtype`` for a backend built by name.

    Returns:
        One :class:`Generation` per condition, in order.
    """
    # 1. Check inputs
    conditions = list(conditions)
    if not conditions:
        raise ValueError("no conditions to generate: pass at least one UserCondition")
    for i, c in enumerate(conditions):
        if not isinstance(c, UserCondition):
            raise TypeError(f"conditions[{i}] must be a UserCondition, got {type(c).__name__}")
        c.check_consent()  # every identity reference, before anything is drawn
    marker = None
    if save:
        from workbench.images import ensure_writable

        ensure_writable(images_dir(workspace, out_dir))  # before drawing, not after
        if provenance:
            from workbench.provenance import marker_for

            marker = marker_for(signing_dir if signing_dir is not None else images_dir(workspace, None).parent)
    if isinstance(backend, str):
        if model is None and backend != "patch":
            raise ValueError(
                "generate() needs model= (a diffusers id or folder, or random:sdxl-tiny) with a backend name"
            )
        backend = get_backend(backend, model=model, **backend_kwargs)
    elif backend_kwargs:
        raise ValueError(f"backend options {sorted(backend_kwargs)} only apply when the backend is given by name")
    # 2. Draw
    outputs = backend.generate(
        conditions, steps=steps, height=height, width=width, batch_size=batch_size, progress=progress
    )
    # 3. Identity similarity where an identity reference was given
    sims: list[float | None] = [None] * len(conditions)
    idx = [i for i, c in enumerate(conditions) if c.identity is not None]
    if idx:
        from workbench.encoders.face import identity_similarity

        for i in idx:
            sims[i] = identity_similarity([outputs[i].image], conditions[i].identity.image, backend.face_embedder)[0]
    # 4. Records
    desc = backend.describe()
    gens = []
    root = images_dir(workspace, out_dir)
    for c, o, sim in zip(conditions, outputs, sims):
        params = {
            "steps": steps or o.params.get("steps"),
            "height": o.image.height,
            "width": o.image.width,
            **desc,
            **o.params,
        }
        g = Generation(
            condition_id=c.condition_id,
            user_id=c.user_id,
            image=o.image,
            backend=backend.name,
            model=backend.model,
            params=params,
            latency_s=o.latency_s,
            peak_mem=o.peak_mem,
            unet_evals=o.unet_evals,
            identity_similarity=sim,
        )
        if save:
            meta = {
                "condition_id": g.condition_id,
                "user_id": c.user_id,
                "persona_id": c.persona_id,
                "prompt_id": c.prompt_id,
                "prompt": c.prompt,
                "negative_prompt": c.negative_prompt,
                "seed": c.seed,
                "model": g.model,
                "backend": g.backend,
                "guidance": params.get("guidance"),
                "params": params,
                "references": c.reference_labels(),
                "software": "persona-workbench",
            }
            t_save = time.perf_counter()
            path, sha = save_content_addressed(o.image, root, meta, _marking(marker, c, g))
            g.image_path = str(path)
            g.generation_id = generation_id(g, sha)
            g.params["image_sha256"] = sha
            g.params["file_sha256"] = file_sha256(path)
            g.params["provenance"] = _provenance_kind(marker, o.image)
            g.save_s = time.perf_counter() - t_save
        gens.append(g)
    if save and workspace is not None:
        from workbench.store.generations import save_generation_rows

        save_generation_rows(workspace, record_rows(conditions, gens))
    return gens


def generation_id(g: Generation, sha: str) -> str:
    """A generation's id: its condition, backend, model and image content hash."""
    return "g-" + hashlib.sha256(f"{g.condition_id}|{g.backend}|{g.model}|{sha}".encode()).hexdigest()[:16]


def _marking(marker, c: UserCondition, g: Generation):
    """The ``mark(png, sha)`` callback of :func:`workbench.images.save_content_addressed` for one image: ids
    only in the manifest (no prompt or persona text), the watermark from the generation id."""
    if marker is None:
        return None

    def mark(png: bytes, sha: str) -> bytes:
        ids = {
            "generation_id": generation_id(g, sha),
            "condition_id": c.condition_id,
            "user_id": c.user_id,
            "persona_id": c.persona_id,
            "prompt_id": c.prompt_id,
        }
        return marker.mark(png, ids, generator=g.backend, model=str(g.model))

    return mark


def _provenance_kind(marker, image) -> str:
    """``c2pa+watermark``, ``c2pa`` (under 256 x 256 pixels: no room for the watermark) or ``none``."""
    from workbench.provenance import MIN_WATERMARK_PIXELS

    if marker is None:
        return "none"
    return "c2pa+watermark" if image.width * image.height >= MIN_WATERMARK_PIXELS else "c2pa"


def record_rows(conditions: list[UserCondition], gens: list[Generation]) -> list[tuple[str, dict[str, Any]]]:
    """The ``conditions`` and ``generations`` rows for ``gens``, as ``(table, row)`` pairs (what
    :func:`generate` stores with :func:`workbench.store.generations.save_generation_rows`, and what the API
    journals while the workspace is busy)."""
    from workbench.store.workspace import dumps

    out: list[tuple[str, dict[str, Any]]] = []
    for c, g in zip(conditions, gens):
        d = c.describe()
        out.append(
            (
                "conditions",
                {
                    "condition_id": g.condition_id,
                    "user_id": c.user_id,
                    "prompt": c.prompt,
                    "negative_prompt": c.negative_prompt,
                    "reference_images": c.reference_labels(),
                    "identity": None,
                    "guidance": dumps(d["guidance"]),
                    "seed": c.seed,
                    "persona_id": c.persona_id,
                    "prompt_id": c.prompt_id,
                    "reference_scale": dumps(c.reference_scale),
                    "identity_consent": dumps(d["identity"]["consent"]) if d["identity"] else None,
                },
            )
        )
        out.append(
            (
                "generations",
                {
                    "generation_id": g.generation_id,
                    "condition_id": g.condition_id,
                    "image_path": g.image_path,
                    "backend": g.backend,
                    "model": g.model,
                    "params": dumps(g.params),
                    "latency_s": g.latency_s,
                    "peak_mem": g.peak_mem,
                    "user_id": g.user_id,
                    "unet_evals": g.unet_evals,
                    "image_sha256": g.params.get("image_sha256"),
                    "identity_similarity": g.identity_similarity,
                },
            )
        )
    return out
