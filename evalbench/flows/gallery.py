"""A per-user gallery from the training-free patch generator: for a few held-out users, the pool image
that best matches their persona-rewritten prompt, and new variations of it.

Used by ``pwb demo`` (scikit-image's public-domain samples as the default pool; any folder of images,
e.g. face-rating or DreamBench images, with ``--gallery-data``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.store.workspace import Workspace


def user_gallery(
    ws: Workspace,
    split: str,
    *,
    encoder: str,
    prompts: str,
    pool: Any = "samples",
    users: int = 3,
    variations: int = 2,
    size: int = 128,
    out: str | Path | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Draw ``variations`` images for each of ``users`` held-out users and write a grid PNG.

    Returns ``{"path": grid png, "rows": [{user, prompt, reference, similarity, images, copy_rate}], "seconds"}``.
    """
    import time

    from evalbench.metrics.single_image import copy_rate
    from generation.conditions import UserCondition, conditions_from_rewrites
    from generation.pipeline import generate, images_dir
    from generation.retrieval import ReferenceRetriever, sample_pool

    t0 = time.perf_counter()
    every = conditions_from_rewrites(
        ws, split=split, encoder=encoder, prompts=prompts, max_users=users, max_prompts=max(users, 1)
    )
    by_user: dict[str, list] = {}
    for c in every:
        by_user.setdefault(c.user_id, []).append(c)
    # user i draws for prompt i (a spread of subjects), from the best pool match not shown yet
    conds = [cs[i % len(cs)] for i, cs in enumerate(by_user.values())]
    retriever = ReferenceRetriever(sample_pool() if pool == "samples" else pool)
    rows, todo, used = [], [], set()
    for c in conds:
        ranked = retriever.rank(c.prompt, len(retriever.pool))
        best, sim = next(((p, s) for p, s in ranked if p.caption not in used), ranked[0])
        used.add(best.caption)
        rows.append(
            {
                "user": c.user_id,
                "prompt": c.prompt,
                "reference": best.caption,
                "similarity": sim,
                "reference_image": best.image,
            }
        )
        for v in range(variations):
            todo.append(
                UserCondition(
                    c.user_id,
                    c.prompt,
                    references=[best.image],
                    seed=seed + v,
                    persona_id=c.persona_id,
                    prompt_id=c.prompt_id,
                )
            )
    gens = generate(todo, backend="patch", workspace=ws, height=size, width=size, progress=progress)
    for i, row in enumerate(rows):
        mine = gens[i * variations : (i + 1) * variations]
        row["images"] = [g.image_path for g in mine]
        ref = _square(row.pop("reference_image"), size)
        row["copy_rate"] = max(copy_rate(g.image, ref, patch=32, stride=16) for g in mine)
        row["_pixels"] = (ref, [g.image for g in mine])
    path = Path(out) if out else images_dir(ws, None).parent / "gallery.png"
    _grid(rows, size, path, gens, images_dir(ws, None).parent)
    for row in rows:
        row.pop("_pixels")
    return {"path": str(path), "rows": rows, "seconds": time.perf_counter() - t0}


def _square(image, size: int):
    from workbench.images import load_image

    return load_image(image).resize((size, size))


def _grid(rows: list[dict], size: int, path: Path, gens: list, signing_dir: Path) -> None:
    """The grid PNG, signed: its manifest lists the generations it shows (no watermark: no one row is it)."""
    from PIL import Image, ImageDraw

    n = 1 + max(len(r["_pixels"][1]) for r in rows)
    pad, label = 4, 30
    grid = Image.new("RGB", (n * (size + pad) + pad, len(rows) * (size + pad + label) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for i, row in enumerate(rows):
        y = pad + i * (size + pad + label)
        draw.text((pad, y), f"{row['user']}: {row['prompt'][:70]}", fill="black")
        draw.text((pad, y + 14), f"reference: {row['reference'][:40]}", fill="gray")
        ref, outs = row["_pixels"]
        for j, im in enumerate([ref, *outs]):
            grid.paste(im.resize((size, size)), (pad + j * (size + pad), y + label))
    from workbench.images import save_marked

    ids = {"kind": "gallery", "generation_ids": [g.generation_id for g in gens]}
    model = str(gens[0].model) if gens else "patch"
    save_marked(grid, path, ids, generator="patch", model=model, signing_dir=signing_dir, watermark=False)
