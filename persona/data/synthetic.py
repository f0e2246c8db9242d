"""A synthetic community with planted personas and demographics, any size, ground truth kept.

Each of ``n_personas`` personas prefers a few visual tags; each user draws a persona with a
probability that depends on their demographic group (a planted, known bias), then interacts with
items whose tags match the persona more often and rates them higher. ``User.ground_truth`` keeps the
persona and its preferred tags, so recovery tests can score miners against the truth.
"""

from __future__ import annotations

import numpy as np

from workbench.dataset import DatasetBundle
from workbench.records import Interaction, Item, User

TAGS = (
    "watercolor",
    "cyberpunk",
    "minimalist",
    "vintage film",
    "anime",
    "baroque",
    "street photography",
    "wildlife",
    "outer space",
    "cats",
    "dogs",
    "architecture",
    "food",
    "fantasy",
    "surrealism",
    "neon",
    "pastel colors",
    "film noir",
    "ocean",
    "mountains",
    "retro futurism",
    "botanical",
    "portraiture",
    "abstract geometry",
)
GENDERS = ("female", "male", "non-binary")
GENDER_P = (0.48, 0.48, 0.04)
AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_P = (0.2, 0.3, 0.2, 0.15, 0.15)


def generate_community(
    n_users: int = 500,
    n_items: int = 400,
    *,
    n_personas: int = 6,
    tags_per_persona: int = 3,
    interactions_per_user: float = 30.0,
    bias_strength: float = 1.0,
    seed: int = 0,
    name: str | None = None,
) -> DatasetBundle:
    """Generate a community.

    Args:
        n_users: Number of users (>= 1).
        n_items: Number of items (>= 10).
        n_personas: Planted personas (1 .. 24 // tags_per_persona... any >= 1; tags may repeat across personas).
        tags_per_persona: Preferred tags per persona.
        interactions_per_user: Mean interactions per user (Poisson, at least 5, at most ``n_items``).
        bias_strength: How strongly demographics predict the persona (0 = independent).
        seed: Random seed; the same arguments give the same community.
        name: Dataset id (default ``synthetic-s{seed}``).
    """
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    if n_items < 10:
        raise ValueError(f"n_items must be >= 10, got {n_items}")
    if n_personas < 1:
        raise ValueError(f"n_personas must be >= 1, got {n_personas}")
    if not 1 <= tags_per_persona <= len(TAGS):
        raise ValueError(f"tags_per_persona must be in [1, {len(TAGS)}], got {tags_per_persona}")
    if interactions_per_user <= 0:
        raise ValueError(f"interactions_per_user must be > 0, got {interactions_per_user}")
    rng = np.random.default_rng(seed)
    n_tags = len(TAGS)

    # 1. Personas: preferred tag sets.
    prefs = np.stack([rng.choice(n_tags, tags_per_persona, replace=False) for _ in range(n_personas)])
    pref_mask = np.zeros((n_personas, n_tags), dtype=bool)
    np.put_along_axis(pref_mask, prefs, True, axis=1)

    # 2. Items: 2-3 tags each; affinity = share of an item's tags a persona prefers.
    n_item_tags = rng.integers(2, 4, size=n_items)
    item_tags = [rng.choice(n_tags, k, replace=False) for k in n_item_tags]
    item_mask = np.zeros((n_items, n_tags), dtype=bool)
    for i, t in enumerate(item_tags):
        item_mask[i, t] = True
    affinity = (pref_mask.astype(float) @ item_mask.T.astype(float)) / n_item_tags  # (personas, items)

    # 3. Users: demographics, then a persona whose odds depend on the demographic group.
    gender = rng.choice(len(GENDERS), n_users, p=GENDER_P)
    age = rng.choice(len(AGE_GROUPS), n_users, p=AGE_P)
    group_logits = rng.normal(0.0, bias_strength, size=(len(GENDERS), len(AGE_GROUPS), n_personas))
    logits = group_logits[gender, age]
    gumbel = rng.gumbel(size=logits.shape)
    persona = np.argmax(logits + gumbel, axis=1)

    # 4. Interactions: Gumbel top-k over items with logits 4 * affinity (sampling without replacement).
    counts = np.clip(rng.poisson(interactions_per_user, n_users), 5, n_items)
    users, inters = [], []
    t0 = 1.6e9
    chunk = 2048
    for start in range(0, n_users, chunk):
        idx = np.arange(start, min(start + chunk, n_users))
        scores = 4.0 * affinity[persona[idx]] + rng.gumbel(size=(len(idx), n_items))
        order = np.argsort(-scores, axis=1)
        for row, u in enumerate(idx):
            chosen = order[row, : counts[u]]
            aff = affinity[persona[u], chosen]
            ratings = np.clip(np.rint(1.5 + 3.5 * aff + rng.normal(0, 0.7, len(chosen))), 1, 5)
            stamps = np.sort(t0 + rng.uniform(0, 3.0e7, len(chosen)))
            uid = f"u{u}"
            p = int(persona[u])
            users.append(
                User(
                    uid,
                    {"gender": GENDERS[gender[u]], "age_group": AGE_GROUPS[age[u]]},
                    ground_truth={"persona": f"p{p}", "liked_tags": [TAGS[t] for t in prefs[p]]},
                )
            )
            inters.extend(
                Interaction(uid, f"i{i}", "rating", float(r), float(s)) for i, r, s in zip(chosen, ratings, stamps)
            )
    items = []
    for i, t in enumerate(item_tags):
        names = tuple(TAGS[j] for j in sorted(t))
        items.append(Item(f"i{i}", "image", f"image {i}", "An image featuring " + ", ".join(names) + ".", None, names))
    return DatasetBundle(
        name or f"synthetic-s{seed}",
        "synthetic",
        users,
        items,
        inters,
        meta={
            "demographics": ["gender", "age_group"],
            "like_threshold": 4.0,
            "dislike_threshold": 2.0,
            "licence": "generated (no licence needed)",
            "item_noun": "images",
            "personas": {f"p{k}": [TAGS[t] for t in prefs[k]] for k in range(n_personas)},
        },
        params={
            "n_users": n_users,
            "n_items": n_items,
            "n_personas": n_personas,
            "tags_per_persona": tags_per_persona,
            "interactions_per_user": interactions_per_user,
            "bias_strength": bias_strength,
            "seed": seed,
        },
    )
