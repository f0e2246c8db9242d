"""Image benchmark runs: a generator draws for each held-out user from references picked by a rule, and
the images are scored against the user's hidden liked and disliked images.

Systems (``references``):

- ``liked``: the user's own visible liked images (the persona in pixels, the IP-Adapter analogue);
- ``popular``: the images most liked by the training users (the no-persona baseline);
- ``shuffled``: another held-out user's liked images (the control: personal or just "liked images"?).

Per unit (user, variation): ``image_preference[<encoder>]`` (mean cosine to the user's hidden liked images
minus to hidden negatives, :class:`evalbench.metrics.distribution.ImagePreference`'s formula) and
``copy_rate[32px]`` against the references; per user, ``diversity[<encoder>]`` of the variations. Users
are written one per transaction (with each image's embedding), so a killed run resumes.

Then the **personal win rate** (``image_preference[<encoder>].personal``): each user's image against the
images the same system drew for every other held-out user (same variation), all scored on the user's own
hidden faces, as :func:`evalbench.metrics.preference.personal_win` does for text. For ``liked`` that is
"images from my references against images from another user's"; ``popular`` draws the same images for
everyone, so it scores exactly 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np

REFERENCE_RULES = ("liked", "popular", "shuffled")
#: preference differences this small are ties: one image's embedding moves by ~1e-7 between batches
IMAGE_TIE_EPS = 1e-6


def run_image_bench(
    ws,
    split_id: str,
    system: dict[str, Any],
    *,
    seed: int = 0,
    max_users: int | None = None,
    variations: int = 2,
    size: int = 96,
    n_refs: int = 3,
    encoder: str = "effnet-lite0",
    progress: bool = False,
) -> dict[str, Any]:
    """Score one image system on the split's held-out users (resumable)."""

    from workbench.encoders.image import load_image_encoder
    from workbench.images import load_image
    from workbench.store.datasets import dataset_meta, load_items
    from workbench.store.splits import hidden_targets, split_dataset, split_users, visible_interactions

    # 1. the held-out users and the reference rule
    rule = system.get("references", "liked")
    if rule not in REFERENCE_RULES:
        raise ValueError(f"image system {system['name']!r}: references must be one of {', '.join(REFERENCE_RULES)}")
    dataset_id = split_dataset(ws, split_id)
    items = load_items(ws, dataset_id)
    like = dataset_meta(ws, dataset_id).get("like_threshold")
    users = sorted(split_users(ws, split_id, ("heldout",)))
    if max_users:
        users = users[:max_users]
    if not users:
        raise ValueError(f"split {split_id!r} has no held-out users")
    # 2. each user's visible liked images, the popular ones and each user's donor
    vis = visible_interactions(ws, split_id, None)
    liked: dict[str, list[tuple[float, str]]] = {}
    counts: dict[str, int] = {}
    train = set(split_users(ws, split_id, ("train",)))
    for x in vis:
        if (
            like is not None
            and x.value is not None
            and x.value >= like
            and items.get(x.item_id)
            and items[x.item_id].image_uri
        ):
            liked.setdefault(x.user_id, []).append((-x.value, x.item_id))
            if x.user_id in train:
                counts[x.item_id] = counts.get(x.item_id, 0) + 1
    popular = [i for i, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:n_refs]
    perm = np.random.default_rng(seed).permutation(len(users))
    donor = {users[perm[i]]: users[perm[(i + 1) % len(users)]] for i in range(len(users))}

    def refs_for(u: str) -> list[str]:
        if rule == "popular":
            return popular
        src = donor[u] if rule == "shuffled" else u
        return [i for _, i in sorted(liked.get(src, []))[:n_refs]]

    # 3. the run's config, hidden targets and scoring
    enc = load_image_encoder(encoder)
    config = {
        "kind": "image",
        "system": system["name"],
        "references": rule,
        "split": split_id,
        "seed": seed,
        "users": users,
        "variations": variations,
        "size": size,
        "n_refs": n_refs,
        "encoder": encoder,
        "generator": "patch:fast",
    }
    targets = hidden_targets(ws, split_id, users)
    metric = f"image_preference[{enc.label}]"

    def hidden(u: str) -> tuple[list[str], list[str]]:
        t = targets.get(u, {})
        hl = [items[i].image_uri for i in t.get("liked", []) if items.get(i) and items[i].image_uri]
        hn = [
            items[i].image_uri
            for i in t.get("disliked", []) + t.get("unseen", [])
            if items.get(i) and items[i].image_uri
        ]
        return hl, hn

    def score(run_id: str, u: str, ids: list[str]):
        hl, hn = hidden(u)
        refs = [items[i].image_uri for i in refs_for(u)]
        if not hl or not hn or not refs:
            return "no hidden liked images" if not hl else "no hidden negatives" if not hn else "no reference images"
        ref_images = [load_image(r).resize((size, size)) for r in refs]
        return _draw_and_score(run_id, ids, ref_images, hl, hn, enc, metric, seed=seed, size=size)

    # 4. draw and score every user (resumable)
    run_id = _run_groups(ws, "imagebench", config, users, variations, score, f"image bench {system['name']}", progress)
    _personal_pass(ws, run_id, users, variations, hidden, enc, metric, seed)
    return {"run_id": run_id, "system": system["name"], "status": "completed", "metric": metric}


def _personal_pass(ws, run_id: str, users: list[str], variations: int, hidden, enc, metric: str, seed: int) -> None:
    """The personal win rate of a finished image run, from the stored image embeddings: each unit's image
    against the other users' images of the same variation, on the unit's user's hidden images. Written once
    (a resumed run that has them skips this)."""
    from evalbench.metrics.preference import personal_win, preference_margin
    from workbench.records import Score
    from workbench.store.runs import has_scores, unit_embeddings, write_scores

    if has_scores(ws, run_id, f"{metric}.personal"):
        return
    emb = unit_embeddings(ws, run_id, enc.model_id)
    scores = []
    for k in range(variations):
        have = [u for u in users if f"{u}|v{k}" in emb]
        if len(have) < 2:
            continue
        e = np.asarray([emb[f"{u}|v{k}"] for u in have], dtype=np.float32)
        for j, u in enumerate(have):
            hl, hn = hidden(u)
            pref = preference_margin(e, enc.encode(hl), enc.encode(hn))
            others = np.delete(pref, j)
            unit = f"{u}|v{k}"
            scores += [
                Score(
                    run_id,
                    unit,
                    f"{metric}.personal",
                    float(personal_win(pref[j : j + 1], others[None, :], tie_eps=IMAGE_TIE_EPS)[0]),
                    enc.model_id,
                ),
                Score(run_id, unit, f"{metric}.personal_margin", float(pref[j] - others.mean()), enc.model_id),
            ]
    write_scores(ws, scores)


def _run_groups(
    ws, kind: str, config: dict[str, Any], keys: list[str], variations: int, score, desc: str, progress: bool
) -> str:
    """The resumable run both image benches share: one run per config, units ``<key>|v<k>``, each key's
    units written in one transaction; ``score(run_id, key, ids)`` returns score rows or a skip reason."""
    from workbench.progress import progress_bar
    from workbench.store.runs import done_units, finish_run, start_run, write_units

    run_id, _ = start_run(ws, kind, config, len(keys) * variations)
    done = done_units(ws, run_id)
    bar = progress_bar(total=len(keys) * variations, initial=len(done), desc=desc, unit="image", disable=not progress)
    try:
        for key in keys:
            ids = [f"{key}|v{k}" for k in range(variations)]
            if all(i in done for i in ids):
                continue
            out = score(run_id, key, ids)
            if isinstance(out, str):
                write_units(ws, run_id, [(i, "skipped", out) for i in ids], [])
            else:
                scores, embeddings = out
                write_units(ws, run_id, [(i, "scored", None) for i in ids], scores, embeddings)
            bar.update(len(ids))
        bar.close()
    except BaseException as exc:
        finish_run(ws, run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finish_run(ws, run_id)
    return run_id


def _draw_and_score(
    run_id: str, ids: list[str], refs: list, positives: list, negatives: list, enc, metric: str, *, seed: int, size: int
) -> list:
    """One variation per unit id from ``refs`` with the CPU patch preset, scored: ``metric`` = mean cosine
    to ``positives`` minus to ``negatives``, copy rate against the references, diversity of the set.
    Returns ``(score rows, [(unit id, encoder model, image embedding)])``."""
    from evalbench.metrics.preference import preference_margin
    from evalbench.metrics.single_image import copy_rate, pairwise_diversity
    from generation.backends.patch import PatchConfig, PatchDiffusion
    from workbench.records import Score

    gen = PatchDiffusion(refs, PatchConfig.fast())
    samples = [gen.sample((size, size), seed=seed + k) for k in range(len(ids))]
    imgs = [smp.image for smp in samples]
    e = enc.encode(imgs)
    margin = preference_margin(e, enc.encode(positives), enc.encode(negatives))
    div = pairwise_diversity(e) if len(imgs) > 1 else float("nan")
    scores = []
    for k, unit in enumerate(ids):
        cr = max(copy_rate(imgs[k], r, patch=32, stride=16) for r in refs)
        scores += [
            Score(run_id, unit, metric, float(margin[k]), enc.model_id),
            Score(run_id, unit, "copy_rate[32px]", cr, "pixels"),
            Score(run_id, unit, f"diversity[{enc.label}]", float(div), enc.model_id),
            Score(run_id, unit, "cost.seconds_per_image", float(samples[k].seconds), "wall clock"),
        ]
    return scores, [(unit, enc.model_id, e[k].tolist()) for k, unit in enumerate(ids)]


def image_units(ws, run_id: str) -> dict[str, np.ndarray]:
    """Per-unit primary score (image preference), copy rate and diversity of an image bench run."""
    from workbench.store.runs import image_unit_scores

    rows = image_unit_scores(ws, run_id)
    if not rows:
        return {
            "user": np.array([]),
            "unit": np.array([]),
            "score": np.array([]),
            "copy": np.array([]),
            "diversity": np.array([]),
            "latency": np.array([]),
            "metric": "",
            "personal": np.array([]),
            "personal_margin": np.array([]),
        }

    def col(vals):
        return np.array([np.nan if v is None else v for v in vals], float)

    c = list(zip(*rows))
    return {
        "user": np.array(c[0]),
        "unit": np.array(c[1]),
        "score": col(c[2]),
        "copy": col(c[3]),
        "diversity": col(c[4]),
        "latency": col(c[5]),
        "metric": c[6][0],
        "personal": col(c[7]),
        "personal_margin": col(c[8]),
    }


def load_dreambench(path) -> dict[str, dict[str, Any]]:
    """``{subject: {"class": ..., "photos": [paths]}}`` from a DreamBench folder (30 subject folders and
    ``prompts_and_classes.txt``)."""
    from pathlib import Path

    root = Path(path)
    spec = root / "prompts_and_classes.txt"
    if not spec.is_file():
        raise FileNotFoundError(f"{root} is not a DreamBench folder: prompts_and_classes.txt is missing")
    classes: dict[str, str] = {}
    for line in spec.read_text("utf-8").splitlines():
        name, sep, cls = line.partition(",")
        if sep and name.strip() and name.strip() != "subject_name" and (root / name.strip()).is_dir():
            classes[name.strip()] = cls.strip()
    out = {}
    for name, cls in sorted(classes.items()):
        photos = sorted(str(p) for p in (root / name).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if len(photos) >= 2:
            out[name] = {"class": cls, "photos": photos}
    if not out:
        raise ValueError(f"no DreamBench subjects with at least two photos under {root}")
    return out


def run_reference_bench(
    ws,
    data_path,
    system: dict[str, Any],
    *,
    seed: int = 0,
    variations: int = 2,
    size: int = 96,
    encoder: str = "effnet-lite0",
    max_subjects: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Reference fidelity on DreamBench: draw from a subject's first ``n_refs`` photos (or, for the
    ``shuffled`` control, another subject's), score against the subject's *other* photos.

    ``reference_alignment[<encoder>]``: mean cosine of a generation to the subject's held-out photos minus
    to other subjects' photos (subject fidelity beyond the copied pixels); plus ``copy_rate[32px]``
    against the references and ``diversity[<encoder>]`` between the variations. Units: ``subject|v<k>``.
    """

    from workbench.encoders.image import load_image_encoder
    from workbench.images import load_image

    subjects = load_dreambench(data_path)
    names = list(subjects)[:max_subjects] if max_subjects else list(subjects)
    n_refs = int(system.get("n_refs", 1))
    rule = system.get("references", "own")
    if rule not in ("own", "shuffled"):
        raise ValueError(f"reference system {system['name']!r}: references must be own or shuffled")
    donor = {n: names[(i + 1) % len(names)] for i, n in enumerate(names)}
    enc = load_image_encoder(encoder)
    metric = f"reference_alignment[{enc.label}]"
    config = {
        "kind": "reference",
        "system": system["name"],
        "references": rule,
        "n_refs": n_refs,
        "subjects": names,
        "seed": seed,
        "variations": variations,
        "size": size,
        "encoder": encoder,
        "generator": "patch:fast",
    }

    def score(run_id: str, n: str, ids: list[str]):
        own = subjects[n]["photos"]
        held = own[n_refs:] or own[-1:]
        src = subjects[donor[n]]["photos"] if rule == "shuffled" else own
        refs = [load_image(p).resize((size, size)) for p in src[:n_refs]]
        others = [p for m in names if m != n for p in subjects[m]["photos"][:1]]
        return _draw_and_score(run_id, ids, refs, held, others, enc, metric, seed=seed, size=size)

    run_id = _run_groups(
        ws, "refbench", config, names, variations, score, f"reference bench {system['name']}", progress
    )
    return {
        "run_id": run_id,
        "system": system["name"],
        "status": "completed",
        "metric": metric,
        "classes": {n: subjects[n]["class"] for n in names},
    }
