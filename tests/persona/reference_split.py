"""The split algorithm as it was before it read columns (issue 19): the reference the scalable one must equal.

A frozen copy of ``persona.data.splits.make_split`` at 49faea0 (loading every interaction as a record), kept
only to check that the split read from columns draws exactly the same roles, histories, targets and negatives."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.records import Interaction
from workbench.store.datasets import dataset_meta, load_interactions, load_items, resolve_dataset
from workbench.store.workspace import Workspace, WorkspaceError

NEGATIVE_SAMPLING = ("popularity", "popularity+time", "uniform")


@dataclass
class SplitParams:
    """Split settings, validated on construction."""

    seed: int = 0
    heldout_frac: float = 0.2
    coldstart_frac: float = 0.05
    k: int = 5
    hidden_frac: float = 0.5
    min_interactions: int = 10
    negatives_per_like: int = 3
    negative_sampling: str = "popularity"
    popularity_window: int = 10

    def __post_init__(self):
        if not 0 <= self.heldout_frac < 1:
            raise ValueError(f"heldout_frac must be in [0, 1), got {self.heldout_frac}")
        if not 0 <= self.coldstart_frac < 1 or self.heldout_frac + self.coldstart_frac >= 1:
            raise ValueError(
                f"coldstart_frac must be in [0, 1) with heldout_frac + coldstart_frac < 1, "
                f"got {self.coldstart_frac} (+ {self.heldout_frac})"
            )
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not 0 < self.hidden_frac < 1:
            raise ValueError(f"hidden_frac must be in (0, 1), got {self.hidden_frac}")
        if self.min_interactions < max(2, self.k + 1):
            raise ValueError(
                f"min_interactions must be >= max(2, k + 1) = {max(2, self.k + 1)}, got {self.min_interactions}"
            )
        if self.negatives_per_like < 0:
            raise ValueError(f"negatives_per_like must be >= 0, got {self.negatives_per_like}")
        if self.negative_sampling not in NEGATIVE_SAMPLING:
            raise ValueError(
                f"negative_sampling must be one of {', '.join(NEGATIVE_SAMPLING)}, got {self.negative_sampling!r}"
            )
        if (
            isinstance(self.popularity_window, bool)
            or not isinstance(self.popularity_window, int)
            or self.popularity_window < 1
        ):
            raise ValueError(f"popularity_window must be a whole number >= 1, got {self.popularity_window!r}")


def _stored_params(params: dict[str, Any]) -> dict[str, Any]:
    """A stored split's parameters with the fields added since it was made at their old meaning
    (splits made before popularity matching drew uniform negatives)."""
    return {"negative_sampling": "uniform", "popularity_window": 10, **params}


def _label(value: float | None, like: float | None, dislike: float | None) -> str:
    if like is None or value is None:
        return "liked"
    if value >= like:
        return "liked"
    if dislike is not None and value <= dislike:
        return "disliked"
    return "neutral"


def reference_split(
    ws: Workspace, dataset: str | None = None, params: SplitParams | None = None, *, name: str | None = None
) -> dict[str, Any]:
    """Split a stored dataset's users and store the split (one transaction). Returns its summary
    (:func:`workbench.store.splits.split_summary`).

    Re-running with the same name and parameters returns the stored split unchanged; the same name
    with other parameters is an error (nothing is overwritten).
    """
    p = params or SplitParams()
    dataset_id = resolve_dataset(ws, dataset)
    # 2. Every user's role (one seeded generator draws the roles, then each evaluated user's items in turn)
    rng = np.random.default_rng(p.seed)
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for x in load_interactions(ws, dataset_id):
        by_user[x.user_id].append(x)
    roles = _draw_roles(by_user, p, rng)
    # 3. Each evaluated user's visible history, hidden targets and unseen negatives
    meta = dataset_meta(ws, dataset_id)
    like, dislike = meta.get("like_threshold"), meta.get("dislike_threshold")
    items = load_items(ws, dataset_id)
    by_kind = _items_by_kind(items)
    features = (
        _matching_features(by_kind, by_user, roles, p.negative_sampling) if p.negative_sampling != "uniform" else {}
    )
    visible_rows, hidden_rows = [], []
    for u in sorted(u for u, role in roles.items() if role != "train"):
        xs = _in_time_order(by_user[u], rng)
        cut = len(xs) - max(1, int(round(p.hidden_frac * len(xs)))) if roles[u] == "heldout" else p.k
        vis_items = {x.item_id for x in xs[:cut]}
        hidden_items = _hidden_labels(xs[cut:], vis_items, like, dislike)
        visible_rows += [(u, iid, "visible", None) for iid in sorted(vis_items)]
        hidden_rows += [(u, iid, "hidden", lab) for iid, lab in sorted(hidden_items.items())]
        liked_ids = sorted(i for i, lab in hidden_items.items() if lab == "liked")
        negs = _unseen_negatives(liked_ids, {x.item_id for x in xs}, items, by_kind, features, p, rng)
        hidden_rows += [(u, iid, "hidden", "unseen") for iid in sorted(negs)]
    return roles, visible_rows + hidden_rows


def _draw_roles(by_user: dict[str, list[Interaction]], p: SplitParams, rng: np.random.Generator) -> dict[str, str]:
    """``{user_id: role}``: held-out and cold-start users drawn from those with at least
    ``p.min_interactions`` distinct items, the rest train users.

    Raises:
        WorkspaceError: when too few users are eligible for the fractions asked.
    """
    users = sorted(by_user)
    eligible = [u for u in users if len({x.item_id for x in by_user[u]}) >= p.min_interactions]
    order = rng.permutation(len(eligible))
    n_held = int(round(p.heldout_frac * len(users)))
    n_cold = int(round(p.coldstart_frac * len(users)))
    if n_held + n_cold > len(eligible):
        raise WorkspaceError(
            f"only {len(eligible)} users have >= {p.min_interactions} interactions; cannot hold out "
            f"{n_held} + {n_cold}. Lower --heldout/--coldstart or --min-interactions."
        )
    held = {eligible[i] for i in order[:n_held]}
    cold = {eligible[i] for i in order[n_held : n_held + n_cold]}
    return {u: "heldout" if u in held else "coldstart" if u in cold else "train" for u in users}


def _items_by_kind(items: dict[str, Any]) -> dict[str, np.ndarray]:
    """The item ids of each kind, sorted (an object array per kind, for the negative pools)."""
    by_kind: dict[str, list[str]] = defaultdict(list)
    for iid, it in items.items():
        by_kind[it.kind].append(iid)
    return {k: np.array(sorted(v), dtype=object) for k, v in by_kind.items()}


def _in_time_order(xs: list[Interaction], rng: np.random.Generator) -> list[Interaction]:
    """A user's interactions by time, unknown times first, ties (and unknown times) in a seeded random order."""
    tie = rng.permutation(len(xs))
    stamps = [x.timestamp if x.timestamp is not None else -1.0 for x in xs]
    return [x for _, _, x in sorted(zip(stamps, tie, xs), key=lambda t: (t[0], t[1]))]


def _hidden_labels(
    hidden: list[Interaction], visible_items: set[str], like: float | None, dislike: float | None
) -> dict[str, str]:
    """``{item_id: label}`` of a user's hidden interactions, one entry per item: an item seen visibly is never
    also a hidden target, and an item hidden several times is ``liked`` if any of them is."""
    out: dict[str, str] = {}
    for x in hidden:
        if x.item_id in visible_items:
            continue
        lab = _label(x.value, like, dislike)
        out[x.item_id] = "liked" if "liked" in (out.get(x.item_id), lab) else lab
    return out


def _unseen_negatives(
    liked_ids: list[str],
    seen: set[str],
    items: dict[str, Any],
    by_kind: dict[str, np.ndarray],
    features: dict[str, np.ndarray],
    p: SplitParams,
    rng: np.random.Generator,
) -> list[str]:
    """``p.negatives_per_like`` items the user never saw per hidden like, of the liked items' kinds: uniform, or
    popularity-matched within each kind (:func:`_matched_negatives`)."""
    liked_kinds = sorted({items[i].kind for i in liked_ids})
    n_neg = p.negatives_per_like * len(liked_ids)
    if not n_neg or not liked_kinds:
        return []
    if p.negative_sampling == "uniform":
        pool = np.concatenate([by_kind[k] for k in liked_kinds])
        pool = pool[~np.isin(pool, list(seen))]
        return rng.choice(pool, size=min(n_neg, len(pool)), replace=False).tolist()
    negs: list[str] = []
    for kind in liked_kinds:
        pool = by_kind[kind][~np.isin(by_kind[kind], list(seen))]
        negs += _matched_negatives(
            [i for i in liked_ids if items[i].kind == kind],
            pool,
            features,
            p.negatives_per_like,
            p.popularity_window,
            rng,
        )
    return negs


def _matching_features(
    by_kind: dict[str, np.ndarray], by_user: dict[str, list], roles: dict[str, str], mode: str
) -> dict[str, np.ndarray]:
    """Each item's position for matching, within its kind: the rank of its popularity (training users'
    interactions; ties share their mean rank) over the kind's size, and for ``popularity+time`` also the
    rank of when it first appears (its earliest interaction by anyone; items never seen last)."""
    from scipy.stats import rankdata

    popularity: dict[str, int] = defaultdict(int)
    first: dict[str, float] = {}
    for u, xs in by_user.items():
        for x in xs:
            if roles[u] == "train":
                popularity[x.item_id] += 1
            if x.timestamp is not None:
                first[x.item_id] = min(first.get(x.item_id, x.timestamp), x.timestamp)
    out: dict[str, np.ndarray] = {}
    for ids in by_kind.values():
        n = max(len(ids), 1)
        cols = [rankdata([popularity.get(i, 0) for i in ids]) / n]
        if mode == "popularity+time":
            cols.append(rankdata([first.get(i, np.inf) for i in ids]) / n)
        for i, f in zip(ids.tolist(), np.stack(cols, 1)):
            out[i] = f
    return out


def _matched_negatives(
    liked: list[str],
    pool: np.ndarray,
    features: dict[str, np.ndarray],
    per_like: int,
    window: int,
    rng: np.random.Generator,
) -> list[str]:
    """``per_like`` items of ``pool`` (the unseen items) for each liked item, drawn at random without
    replacement from the ``2 * window`` still free items nearest to it (L1 distance of :func:`_matching_features`;
    ties in random order)."""
    if not len(pool):
        return []
    pool = pool[rng.permutation(len(pool))]  # equally near items (ties) are then drawn at random, not by id
    f = np.stack([features[i] for i in pool.tolist()])
    taken = np.zeros(len(pool), dtype=bool)
    out: list[str] = []
    for item in liked:
        d = np.abs(f - features[item]).sum(1)
        order = np.argsort(d, kind="stable")
        free = order[~taken[order]][: 2 * window]
        pick = rng.choice(free, size=min(per_like, free.size), replace=False) if free.size else np.array([], dtype=int)
        taken[pick] = True
        out += pool[pick].tolist()
    return out
