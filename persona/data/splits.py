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

from evalbench.store.datasets import dataset_meta, load_interactions, load_items, resolve_dataset
from evalbench.store.workspace import Workspace, WorkspaceError, dumps, loads

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
            raise ValueError(f"coldstart_frac must be in [0, 1) with heldout_frac + coldstart_frac < 1, "
                             f"got {self.coldstart_frac} (+ {self.heldout_frac})")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not 0 < self.hidden_frac < 1:
            raise ValueError(f"hidden_frac must be in (0, 1), got {self.hidden_frac}")
        if self.min_interactions < max(2, self.k + 1):
            raise ValueError(f"min_interactions must be >= max(2, k + 1) = {max(2, self.k + 1)}, "
                             f"got {self.min_interactions}")
        if self.negatives_per_like < 0:
            raise ValueError(f"negatives_per_like must be >= 0, got {self.negatives_per_like}")
        if self.negative_sampling not in NEGATIVE_SAMPLING:
            raise ValueError(f"negative_sampling must be one of {', '.join(NEGATIVE_SAMPLING)}, "
                             f"got {self.negative_sampling!r}")
        if isinstance(self.popularity_window, bool) or not isinstance(self.popularity_window, int) \
                or self.popularity_window < 1:
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


def make_split(ws: Workspace, dataset: str | None = None, params: SplitParams | None = None,
               *, name: str | None = None) -> dict[str, Any]:
    """Split a stored dataset's users and store the split (one transaction). Returns its summary.

    Re-running with the same name and parameters returns the stored split unchanged; the same name
    with other parameters is an error (nothing is overwritten).
    """
    p = params or SplitParams()
    dataset_id = resolve_dataset(ws, dataset)
    split_id = name or f"{dataset_id}/s{p.seed}"
    existing = ws.query("SELECT dataset_id, params FROM splits WHERE split_id = ?", [split_id])
    if existing:
        if existing[0][0] == dataset_id and _stored_params(loads(existing[0][1])) == asdict(p):
            return split_summary(ws, split_id)
        raise WorkspaceError(f"split {split_id!r} already exists with other settings; pass another --name")
    meta = dataset_meta(ws, dataset_id)
    like, dislike = meta.get("like_threshold"), meta.get("dislike_threshold")
    rng = np.random.default_rng(p.seed)

    by_user: dict[str, list] = defaultdict(list)
    for x in load_interactions(ws, dataset_id):
        by_user[x.user_id].append(x)
    users = sorted(by_user)
    eligible = [u for u in users if len({x.item_id for x in by_user[u]}) >= p.min_interactions]
    order = rng.permutation(len(eligible))
    n_held = int(round(p.heldout_frac * len(users)))
    n_cold = int(round(p.coldstart_frac * len(users)))
    if n_held + n_cold > len(eligible):
        raise WorkspaceError(f"only {len(eligible)} users have >= {p.min_interactions} interactions; cannot hold out "
                             f"{n_held} + {n_cold}. Lower --heldout/--coldstart or --min-interactions.")
    held = {eligible[i] for i in order[:n_held]}
    cold = {eligible[i] for i in order[n_held:n_held + n_cold]}
    roles = {u: "heldout" if u in held else "coldstart" if u in cold else "train" for u in users}

    items = load_items(ws, dataset_id)
    by_kind: dict[str, np.ndarray] = defaultdict(list)
    for iid, it in items.items():
        by_kind[it.kind].append(iid)
    by_kind = {k: np.array(sorted(v), dtype=object) for k, v in by_kind.items()}
    features = _matching_features(by_kind, by_user, roles, p.negative_sampling) if p.negative_sampling != "uniform" else {}

    rows: dict[str, list] = defaultdict(list)
    for u in sorted(held | cold):
        xs = by_user[u]
        tie = rng.permutation(len(xs))
        xs = [x for _, _, x in sorted(zip([x.timestamp if x.timestamp is not None else -1.0 for x in xs], tie, xs),
                                      key=lambda t: (t[0], t[1]))]
        # One entry per item: an item seen visibly is never also a hidden target.
        if roles[u] == "heldout":
            cut = len(xs) - max(1, int(round(p.hidden_frac * len(xs))))
        else:
            cut = p.k
        visible, hidden = xs[:cut], xs[cut:]
        vis_items = {x.item_id for x in visible}
        hidden_items: dict[str, str] = {}
        for x in hidden:
            if x.item_id in vis_items:
                continue
            lab = _label(x.value, like, dislike)
            prev = hidden_items.get(x.item_id)
            hidden_items[x.item_id] = "liked" if "liked" in (prev, lab) else lab
        for iid in sorted(vis_items):
            rows["visible"].append((u, iid, "visible", None))
        for iid, lab in sorted(hidden_items.items()):
            rows["hidden"].append((u, iid, "hidden", lab))
        liked_ids = sorted(i for i, lab in hidden_items.items() if lab == "liked")
        liked_kinds = sorted({items[i].kind for i in liked_ids})
        n_neg = p.negatives_per_like * len(liked_ids)
        if n_neg and liked_kinds:
            seen = {x.item_id for x in xs}
            if p.negative_sampling == "uniform":
                pool = np.concatenate([by_kind[k] for k in liked_kinds])
                pool = pool[~np.isin(pool, list(seen))]
                negs = rng.choice(pool, size=min(n_neg, len(pool)), replace=False).tolist()
            else:
                negs = []
                for kind in liked_kinds:
                    pool = by_kind[kind][~np.isin(by_kind[kind], list(seen))]
                    negs += _matched_negatives([i for i in liked_ids if items[i].kind == kind], pool, features,
                                               p.negatives_per_like, p.popularity_window, rng)
            for iid in sorted(negs):
                rows["hidden"].append((u, iid, "hidden", "unseen"))

    all_rows = rows["visible"] + rows["hidden"]
    with ws.transaction() as con:
        con.execute("INSERT INTO splits (split_id, dataset_id, seed, params) VALUES (?, ?, ?, ?)",
                    [split_id, dataset_id, p.seed, dumps(asdict(p))])
        ws.insert_columns("split_users", {"split_id": [split_id] * len(users), "user_id": users,
                                          "role": [roles[u] for u in users]})
        ws.insert_columns("split_items", {
            "split_id": [split_id] * len(all_rows), "user_id": [r[0] for r in all_rows],
            "item_id": [r[1] for r in all_rows], "part": [r[2] for r in all_rows], "label": [r[3] for r in all_rows],
        }, casts={"label": "VARCHAR"})
    return split_summary(ws, split_id)


def _matching_features(by_kind: dict[str, np.ndarray], by_user: dict[str, list], roles: dict[str, str],
                       mode: str) -> dict[str, np.ndarray]:
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


def _matched_negatives(liked: list[str], pool: np.ndarray, features: dict[str, np.ndarray], per_like: int, window: int,
                       rng: np.random.Generator) -> list[str]:
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


def resolve_split(ws: Workspace, name: str | None) -> str:
    """The split called ``name``, or the only one when ``name`` is ``None``."""
    return ws.resolve("split", "splits", "split_id", name, "--split", "pwb data split")


def split_summary(ws: Workspace, split_id: str) -> dict[str, Any]:
    roles = dict(ws.query("SELECT role, count(*) FROM split_users WHERE split_id = ? GROUP BY role", [split_id]))
    labels = dict(ws.query("SELECT coalesce(label, 'visible'), count(*) FROM split_items WHERE split_id = ? GROUP BY 1",
                           [split_id]))
    dataset_id = ws.scalar("SELECT dataset_id FROM splits WHERE split_id = ?", [split_id])
    return {"split": split_id, "dataset": dataset_id, "train": roles.get("train", 0),
            "heldout": roles.get("heldout", 0), "coldstart": roles.get("coldstart", 0),
            **{f"items_{k}": v for k, v in sorted(labels.items())}}


def split_dataset(ws: Workspace, split_id: str) -> str:
    return ws.scalar("SELECT dataset_id FROM splits WHERE split_id = ?", [split_id])


def split_users(ws: Workspace, split_id: str, roles: tuple[str, ...] = ("heldout",)) -> list[str]:
    return [r[0] for r in ws.query("SELECT user_id FROM split_users WHERE split_id = ? AND list_contains(?, role) "
                                   "ORDER BY user_id", [split_id, list(roles)])]


def visible_interactions(ws: Workspace, split_id: str, user_ids: list[str] | None = None):
    """Each user's visible interactions: all of a train user's, the visible part of the others'."""
    dataset_id = split_dataset(ws, split_id)
    sql = """
        SELECT x.user_id, x.item_id, x.kind, x.value, x.timestamp, x.text
        FROM interactions x JOIN split_users s ON s.user_id = x.user_id AND s.split_id = ?
        WHERE x.dataset_id = ? AND (s.role = 'train' OR EXISTS (
            SELECT 1 FROM split_items v WHERE v.split_id = s.split_id AND v.user_id = x.user_id
              AND v.item_id = x.item_id AND v.part = 'visible'))
    """
    params: list[Any] = [split_id, dataset_id]
    if user_ids is not None:
        sql += " AND list_contains(?, x.user_id)"
        params.append(list(user_ids))
    sql += " ORDER BY x.user_id, x.timestamp NULLS LAST, x.item_id"
    from persona.records import Interaction

    return [Interaction(*r[:5], r[5] or "") for r in ws.query(sql, params)]


def hidden_targets(ws: Workspace, split_id: str, user_ids: list[str] | None = None) -> dict[str, dict[str, list[str]]]:
    """``{user: {label: [item ids]}}`` of each evaluated user's hidden items (for scoring only)."""
    sql = "SELECT user_id, label, item_id FROM split_items WHERE split_id = ? AND part = 'hidden'"
    params: list[Any] = [split_id]
    if user_ids is not None:
        sql += " AND list_contains(?, user_id)"
        params.append(list(user_ids))
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for u, lab, iid in ws.query(sql + " ORDER BY user_id, item_id", params):
        out[u][lab].append(iid)
    return {u: dict(v) for u, v in out.items()}
