"""User splits: train, held-out and cold-start users, and each evaluated user's visible/hidden items.

* **train** users: all interactions visible (the persona miner learns from them).
* **held-out** users: interactions ordered by time (ties and missing times in a seeded random order);
  the last ``hidden_frac`` become the hidden future, the rest the visible history.
* **cold-start** users: only the first ``k`` interactions stay visible.

Hidden interactions are labelled ``liked`` (value >= the dataset's like threshold, or any interaction
when it has none), ``disliked`` (value <= the dislike threshold) or ``neutral``. For each evaluated
user, ``negatives_per_like`` unseen items per liked item (of the same kinds) are sampled as ``unseen``
negatives. Hidden rows are used only for scoring.

Unseen negatives are **popularity-matched** by default (``negative_sampling="popularity"``): each hidden
like draws its negatives at random from the ``2 * popularity_window`` unseen items nearest to it in
popularity (the rank of the number of training users' interactions, within the item's kind). Hidden
likes are far more popular than random items (on MovieLens-100k a median of 120 training interactions
against 18), so with uniform negatives any popular cue "wins" for everyone; matched negatives leave the
metric to what sets a user apart. Coarse matching is not enough: with ten popularity-quantile bins the
same three blockbuster titles for everyone still beat the generic prompt for 61% of users' prompts
(measured on MovieLens-100k), because a bin of the most popular items spans a 3x range of popularity.
``"popularity+time"`` also matches when an item first appears (its earliest interaction): on a growing
site (a Stack Exchange dump), a user's future items are also the newer ones, so an old item is an easy
negative and a cue naming the site's current topics wins for everyone. ``"uniform"`` keeps the old behaviour.

The defaults (20% of users held out, half of their history hidden, three negatives per like) are chosen
for power: see the README's *Power* section, and :func:`evalbench.references.history_ceiling` for the
check that a split can show a personal effect at all.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from workbench.records import Interaction
from workbench.store.datasets import (
    dataset_meta,
    item_activity,
    load_interactions,
    load_items,
    resolve_dataset,
    user_item_counts,
)
from workbench.store.splits import split_record, split_summary, write_split
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


def make_split(
    ws: Workspace, dataset: str | None = None, params: SplitParams | None = None, *, name: str | None = None
) -> dict[str, Any]:
    """Split a stored dataset's users and store the split (one transaction). Returns its summary
    (:func:`workbench.store.splits.split_summary`).

    Re-running with the same name and parameters returns the stored split unchanged; the same name
    with other parameters is an error (nothing is overwritten).
    """
    # 1. A split of this name is returned when its settings are these, else refused
    p = params or SplitParams()
    dataset_id = resolve_dataset(ws, dataset)
    split_id = name or f"{dataset_id}/s{p.seed}"
    stored = split_record(ws, split_id)
    if stored is not None:
        if stored[0] == dataset_id and _stored_params(stored[1]) == asdict(p):
            return split_summary(ws, split_id)
        raise WorkspaceError(f"split {split_id!r} already exists with other settings; pass another --name")
    # 2. Every user's role (one seeded generator draws the roles, then each evaluated user's items in turn);
    # the roles need only each user's number of distinct items, so only evaluated users' interactions are read
    rng = np.random.default_rng(p.seed)
    with ws.memory_limit():  # the counts aggregate every interaction: DuckDB's share bounded
        users, n_items = user_item_counts(ws, dataset_id)
    roles = _draw_roles(users, n_items, p, rng)
    evaluated = [u for u in users if roles[u] != "train"]
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    with ws.memory_limit():
        for x in load_interactions(ws, dataset_id, evaluated):
            by_user[x.user_id].append(x)
    # 3. Each evaluated user's visible history, hidden targets and unseen negatives
    meta = dataset_meta(ws, dataset_id)
    like, dislike = meta.get("like_threshold"), meta.get("dislike_threshold")
    items = load_items(ws, dataset_id)
    by_kind = _items_by_kind(items)
    features = (
        _matching_features(by_kind, item_activity(ws, dataset_id), by_user, p.negative_sampling)
        if p.negative_sampling != "uniform"
        else {}
    )
    pools = _Pools(by_kind, features)
    visible_rows, hidden_rows = [], []
    from workbench.progress import progress_bar

    for u in progress_bar(evaluated, desc="splitting users", unit="user", disable=len(evaluated) < 20_000):
        xs = _in_time_order(by_user[u], rng)
        cut = len(xs) - max(1, int(round(p.hidden_frac * len(xs)))) if roles[u] == "heldout" else p.k
        vis_items = {x.item_id for x in xs[:cut]}
        hidden_items = _hidden_labels(xs[cut:], vis_items, like, dislike)
        visible_rows += [(u, iid, "visible", None) for iid in sorted(vis_items)]
        hidden_rows += [(u, iid, "hidden", lab) for iid, lab in sorted(hidden_items.items())]
        liked_ids = sorted(i for i, lab in hidden_items.items() if lab == "liked")
        negs = _unseen_negatives(liked_ids, {x.item_id for x in xs}, items, pools, p, rng)
        hidden_rows += [(u, iid, "hidden", "unseen") for iid in sorted(negs)]
    # 4. Store it in one transaction
    write_split(ws, split_id, dataset_id, p.seed, asdict(p), roles, visible_rows + hidden_rows)
    return split_summary(ws, split_id)


def _draw_roles(users: list[str], n_items: list[int], p: SplitParams, rng: np.random.Generator) -> dict[str, str]:
    """``{user_id: role}`` for ``users`` (sorted, each with its number of distinct items): held-out and cold-start
    users drawn from those with at least ``p.min_interactions`` distinct items, the rest train users.

    Raises:
        WorkspaceError: when too few users are eligible for the fractions asked.
    """
    eligible = [u for u, n in zip(users, n_items) if n >= p.min_interactions]
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


class _Pools:
    """Each kind's item ids (sorted, as in ``by_kind``) with their matching features as one matrix, so a user's
    pool of unseen items and its features are array slices rather than a lookup per item."""

    def __init__(self, by_kind: dict[str, np.ndarray], features: dict[str, np.ndarray]):
        self.by_kind = by_kind
        self.features = {
            k: (np.stack([features[i] for i in ids.tolist()]) if features and len(ids) else None)
            for k, ids in by_kind.items()
        }
        self.position = {k: {i: n for n, i in enumerate(ids.tolist())} for k, ids in by_kind.items()}

    def unseen(self, kind: str, seen: set[str]) -> np.ndarray:
        """Positions (in the kind's ids) of its items not in ``seen``, in id order."""
        pos = self.position[kind]
        mask = np.ones(len(self.by_kind[kind]), dtype=bool)
        mask[[pos[i] for i in seen if i in pos]] = False
        return np.flatnonzero(mask)


def _unseen_negatives(
    liked_ids: list[str], seen: set[str], items: dict[str, Any], pools: _Pools, p: SplitParams, rng: np.random.Generator
) -> list[str]:
    """``p.negatives_per_like`` items the user never saw per hidden like, of the liked items' kinds: uniform, or
    popularity-matched within each kind (:func:`_matched_negatives`)."""
    liked_kinds = sorted({items[i].kind for i in liked_ids})
    n_neg = p.negatives_per_like * len(liked_ids)
    if not n_neg or not liked_kinds:
        return []
    if p.negative_sampling == "uniform":
        pool = np.concatenate([pools.by_kind[k][pools.unseen(k, seen)] for k in liked_kinds])
        return rng.choice(pool, size=min(n_neg, len(pool)), replace=False).tolist()
    negs: list[str] = []
    for kind in liked_kinds:
        free = pools.unseen(kind, seen)
        liked = [i for i in liked_ids if items[i].kind == kind]
        f = pools.features[kind]
        negs += _matched_negatives(
            [f[pools.position[kind][i]] for i in liked],
            pools.by_kind[kind][free],
            f[free],
            p.negatives_per_like,
            p.popularity_window,
            rng,
        )
    return negs


def _matching_features(
    by_kind: dict[str, np.ndarray], activity: dict[str, tuple[int, float | None]], evaluated: dict[str, list], mode: str
) -> dict[str, np.ndarray]:
    """Each item's position for matching, within its kind: the rank of its popularity (training users'
    interactions: every interaction, ``activity``, less the evaluated users'; ties share their mean rank) over the
    kind's size, and for ``popularity+time`` also the rank of when it first appears (its earliest interaction by
    anyone; items never seen last)."""
    from scipy.stats import rankdata

    popularity = {i: n for i, (n, _) in activity.items()}
    for xs in evaluated.values():
        for x in xs:
            popularity[x.item_id] -= 1
    first = {i: t for i, (_, t) in activity.items() if t is not None}
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
    liked: list[np.ndarray], pool: np.ndarray, f: np.ndarray, per_like: int, window: int, rng: np.random.Generator
) -> list[str]:
    """``per_like`` items of ``pool`` (the unseen items, ``f`` their features) for each liked item (``liked``: their
    features), drawn at random without replacement from the ``2 * window`` still free items nearest to it (L1
    distance of :func:`_matching_features`; ties in random order).

    The nearest free items are the first ``2 * window`` of a stable sort of the distances; only the items within
    the ``2 * window``-th smallest free distance are sorted (the same items, in the same order, at a fraction of
    a full sort's cost on a large catalogue)."""
    if not len(pool):
        return []
    perm = rng.permutation(len(pool))  # equally near items (ties) are then drawn at random, not by id
    pool, f = pool[perm], f[perm]
    taken = np.zeros(len(pool), dtype=bool)
    out: list[str] = []
    k = 2 * window
    for target in liked:
        d = np.abs(f - target).sum(1)
        free_idx = np.flatnonzero(~taken)
        if free_idx.size > k:
            kth = np.partition(d[free_idx], k - 1)[k - 1]
            free_idx = free_idx[d[free_idx] <= kth]
        near = free_idx[np.lexsort((free_idx, d[free_idx]))][:k]
        pick = rng.choice(near, size=min(per_like, near.size), replace=False) if near.size else np.array([], dtype=int)
        taken[pick] = True
        out += pool[pick].tolist()
    return out
