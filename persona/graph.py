"""Build the user-item graph a split's encoders learn from (visible interactions only).

Users and items are the two node types of a PyG :class:`~torch_geometric.data.HeteroData`, with typed
edges ``('user', <kind>, 'item')`` and their reverses. Node features:

* items: a text embedding of the item's text (MiniLM stand-in by default, any sentence-transformers
  model by name), so unseen items need no training;
* items that are images also get image features (``x_image``: EfficientNet-Lite0 stand-in by
  default, any CLIP by name), used as extra item input and by the ImageAlign loss;
* users: declared demographics (one-hot, plus a constant) and ``log(1 + degree) / 5``; the model adds
  aggregates of the user's visible edges itself. There is no free per-user ID embedding, so the model
  is inductive: a new user is one forward pass over their edges.

Edge features: ``[centred value, liked, disliked, recency in [0, 1], one-hot interaction kind]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from persona.models.base import PersonaContext


@dataclass
class UserItemGraph:
    """Tensors of the bipartite graph plus the id maps (``edge_index[0]`` users, ``[1]`` items)."""

    user_ids: list[str]
    item_ids: list[str]
    x_user: Any
    x_item: Any
    edge_index: Any
    edge_attr: Any
    edge_liked: Any
    kinds: list[str]
    demo_values: dict[str, list[str]] = field(default_factory=dict)
    x_image: Any = None
    edge_disliked: Any = None
    t_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        if self.edge_disliked is None:
            self.edge_disliked = self.edge_attr[:, 2] > 0.5

    @property
    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids)}

    @property
    def item_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.item_ids)}

    def users_subgraph(self, users) -> UserItemGraph:
        """The graph of ``users`` (positions, increasing) and their edges, every item kept: what training on a
        sample of users sees (the model has no per-user parameters, so it serves every user after)."""
        import torch

        users = torch.as_tensor(users, dtype=torch.long)
        keep = torch.zeros(len(self.user_ids), dtype=torch.bool)
        keep[users] = True
        new = torch.full((len(self.user_ids),), -1, dtype=torch.long)
        new[users] = torch.arange(users.numel())
        mask = keep[self.edge_index[0]]
        index = self.edge_index[:, mask].clone()
        index[0] = new[index[0]]
        return UserItemGraph(
            [self.user_ids[u] for u in users.tolist()],
            self.item_ids,
            self.x_user[users],
            self.x_item,
            index,
            self.edge_attr[mask],
            self.edge_liked[mask],
            self.kinds,
            self.demo_values,
            self.x_image,
            self.edge_disliked[mask],
            self.t_range,
        )

    def to_hetero(self):
        """The same graph as a PyG ``HeteroData`` with one edge type per interaction kind."""
        import torch
        from torch_geometric.data import HeteroData

        data = HeteroData()
        data["user"].x, data["item"].x = self.x_user, self.x_item
        kind_col = (
            self.edge_attr[:, 4:].argmax(1)
            if self.edge_attr.shape[1] > 4
            else torch.zeros(self.edge_attr.shape[0], dtype=torch.long)
        )
        for k, name in enumerate(self.kinds):
            m = kind_col == k
            data["user", name, "item"].edge_index = self.edge_index[:, m]
            data["user", name, "item"].edge_attr = self.edge_attr[m]
            data["item", f"rev_{name}", "user"].edge_index = self.edge_index[:, m].flip(0)
        return data


def item_features(context: PersonaContext, text_encoder: str = "minilm") -> np.ndarray:
    from workbench.encoders.text import load_text_encoder

    items = sorted(context.items)
    return load_text_encoder(text_encoder).encode([context.items[i].text or context.items[i].title for i in items])


def _bucket(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{int(value) // 10 * 10}s"
    return str(value)


def image_features(context: PersonaContext, image_encoder: str = "effnet-lite0") -> np.ndarray | None:
    """Image embeddings of the items (sorted by id) when every item has an image, else ``None``."""
    items = sorted(context.items)
    uris = [context.items[i].image_uri for i in items]
    if not uris or any(not u for u in uris):
        return None
    from workbench.encoders.image import load_image_encoder

    return load_image_encoder(image_encoder).encode(uris)


def demographic_features(
    context: PersonaContext, users: list[str], demo_values: dict[str, list[str]], degrees: list[int] | None = None
) -> np.ndarray:
    """One-hot declared demographics (numbers in decades), a constant and ``log(1 + degree) / 5``."""
    degrees = degrees if degrees is not None else [0] * len(users)
    rows = [
        user_features(context.demographics(u) if u in context.users else {}, demo_values, d)
        for u, d in zip(users, degrees)
    ]
    n = 2 + sum(len(v) for v in demo_values.values())
    return np.stack(rows) if rows else np.zeros((0, n), dtype=np.float32)


def user_features(demo: dict[str, Any], demo_values: dict[str, list[str]], degree: int) -> np.ndarray:
    """One user's input row: ``[1, log(1 + degree) / 5, one-hot demographics...]`` (unknown values: zeros)."""
    row = np.zeros(2 + sum(len(v) for v in demo_values.values()), dtype=np.float32)
    row[0], row[1] = 1.0, np.log1p(degree) / 5
    off = 2
    for key, values in demo_values.items():
        v = _bucket(demo[key]) if demo.get(key) not in (None, "") else None
        if v in values:
            row[off + values.index(v)] = 1.0
        off += len(values)
    return row


def build_graph(
    context: PersonaContext,
    *,
    text_encoder: str = "minilm",
    image_encoder: str | None = "effnet-lite0",
    item_emb: np.ndarray | None = None,
    image_emb: np.ndarray | None = None,
) -> UserItemGraph:
    """The visible-interaction graph of a split (see the module docstring), from its records: the same graph
    :func:`build_graph_frame` builds from the split's columns."""
    keys = list(context.meta.get("demographics", []))
    frame = frame_of(context)
    demo_all = {k: [u.attributes.get(k) for u in context.users.values()] for k in keys}
    demo_users = {
        k: [context.demographics(u).get(k) if u in context.users else None for u in frame.user_ids] for k in keys
    }
    return build_graph_frame(
        frame,
        context.items,
        context.meta,
        demo_users,
        demo_all,
        text_encoder=text_encoder,
        image_encoder=image_encoder,
        item_emb=item_emb,
        image_emb=image_emb,
    )


def frame_of(context: PersonaContext):
    """A context's visible interactions as a :class:`~workbench.store.frames.VisibleFrame` (the columns
    :func:`~workbench.store.frames.visible_frame` reads from the workspace), users and items sorted, each
    user's interactions in the context's order."""
    from workbench.store.frames import VisibleFrame

    users, items = sorted(context.visible), sorted(context.items)
    item_pos = {i: k for k, i in enumerate(items)}
    kinds = sorted({x.kind for xs in context.visible.values() for x in xs})
    kind_pos = {k: n for n, k in enumerate(kinds)}
    rows = [(u, x) for u, name in enumerate(users) for x in context.visible[name] if x.item_id in item_pos]
    texts = [(n, x.text) for n, (_, x) in enumerate(rows) if x.text]
    return VisibleFrame(
        context.split_id,
        context.dataset_id,
        users,
        items,
        kinds,
        np.array([u for u, _ in rows], dtype=np.int64),
        np.array([item_pos[x.item_id] for _, x in rows], dtype=np.int64),
        np.array([kind_pos[x.kind] for _, x in rows], dtype=np.int64),
        np.array([np.nan if x.value is None else x.value for _, x in rows], dtype=np.float64),
        np.array([x.value is not None for _, x in rows], dtype=bool),
        np.array([np.nan if x.timestamp is None else x.timestamp for _, x in rows], dtype=np.float64),
        np.array([x.timestamp is not None for _, x in rows], dtype=bool),
        np.array([n for n, _ in texts], dtype=np.int64),
        [t for _, t in texts],
    )


def demographic_values(keys: list[str], demo_all: dict[str, list]) -> dict[str, list[str]]:
    """The one-hot vocabulary of each declared demographic: its values' buckets over every user (numbers in
    decades), kept when there are 2 to 50 of them."""
    out = {}
    for key in keys:
        vals = sorted({_bucket(v) for v in demo_all.get(key, []) if v not in (None, "")})
        if 1 < len(vals) <= 50:
            out[key] = vals
    return out


def build_graph_frame(
    frame,
    items: dict,
    meta: dict,
    demo_users: dict[str, list],
    demo_all: dict[str, list],
    *,
    text_encoder: str = "minilm",
    image_encoder: str | None = "effnet-lite0",
    item_emb: np.ndarray | None = None,
    image_emb: np.ndarray | None = None,
) -> UserItemGraph:
    """The visible-interaction graph from a split's columns (:class:`~workbench.store.frames.VisibleFrame`),
    vectorised over the rows: the tensors :func:`build_graph` gives for the same interactions, bit for bit.

    Args:
        frame: The visible interactions.
        items: Every item of the dataset (for their texts and images), by id.
        meta: The dataset's meta (thresholds, demographics).
        demo_users: Each declared demographic's value (``None`` when absent) of each of ``frame.user_ids``.
        demo_all: Each declared demographic's values over every user of the dataset (their one-hot vocabulary).
    """
    import torch

    # 1. Item inputs: text embeddings (plus image features when every item has an image)
    from persona.models.base import PersonaContext

    catalogue = PersonaContext(frame.split_id, frame.dataset_id, {}, items, {}, meta)
    if item_emb is None:
        item_emb = item_features(catalogue, text_encoder)
    if image_emb is None and image_encoder:
        image_emb = image_features(catalogue, image_encoder)
    x_item = np.asarray(item_emb, dtype=np.float32)
    if image_emb is not None:
        image_emb = np.asarray(image_emb, dtype=np.float32)
        x_item = np.concatenate([x_item, image_emb], 1)
    # 2. Edge features, vectorised over the rows (see edge_features for one user's)
    attrs, liked, disliked, t_range = edge_columns(frame, meta)
    # 3. User inputs: demographics one-hot, a constant, log(1 + degree) / 5
    keys = list(meta.get("demographics", []))
    demo_values = demographic_values(keys, demo_all)
    degrees = np.bincount(frame.user, minlength=len(frame.user_ids))
    x_user = user_columns(demo_users, demo_values, degrees)
    return UserItemGraph(
        list(frame.user_ids),
        list(frame.item_ids),
        torch.from_numpy(x_user),
        torch.from_numpy(x_item),
        torch.from_numpy(_edge_index(frame)),
        torch.from_numpy(attrs),
        torch.from_numpy(liked),
        list(frame.kinds),
        demo_values,
        None if image_emb is None else torch.from_numpy(image_emb),
        torch.from_numpy(disliked),
        t_range,
    )


def _edge_index(frame) -> np.ndarray:
    """``(2, E)`` int64 user and item positions (made once, at its final size)."""
    out = np.empty((2, len(frame)), dtype=np.int64)
    out[0], out[1] = frame.user, frame.item
    return out


def edge_columns(frame, meta: dict, chunk: int = 1 << 22):
    """``(features (E, 4 + kinds) float32, liked, disliked, t_range)`` of every row: :func:`edge_features`'
    arithmetic, vectorised (each user's mean and spread taken by numpy over rows of equal length, as
    ``np.mean`` / ``np.std`` take them one user at a time)."""
    like, dislike = meta.get("like_threshold"), meta.get("dislike_threshold")
    n = len(frame)
    ts, has_ts = frame.timestamp, frame.has_timestamp
    t_range = (
        (float(np.min(ts, where=has_ts, initial=np.inf)), float(np.max(ts, where=has_ts, initial=-np.inf)))
        if has_ts.any()
        else (0.0, 1.0)
    )
    # a user's values: mean and std + 1 (0 and 1 without values); a user's rows are contiguous, so where every
    # row has a value the rows of each block are offsets from the user's start (no index of every row)
    mean = np.zeros(len(frame.user_ids))
    scale = np.ones(len(frame.user_ids))
    if frame.has_value.all():
        rows, counts = None, np.bincount(frame.user, minlength=len(frame.user_ids))
    else:
        rows = np.flatnonzero(frame.has_value)
        counts = np.bincount(frame.user[rows], minlength=len(frame.user_ids))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for c in np.unique(counts[counts > 0]):
        who = np.flatnonzero(counts == c)
        at = (starts[who][:, None] + np.arange(c)[None, :]).ravel()
        block = frame.value[at if rows is None else rows[at]].reshape(len(who), c)
        mean[who] = np.mean(block, axis=1)
        scale[who] = np.std(block, axis=1) + 1.0
    liked = np.ones(n, dtype=bool) if like is None else (~frame.has_value | (frame.value >= like))
    disliked = np.zeros(n, dtype=bool) if dislike is None else (frame.has_value & (frame.value <= dislike))
    out = np.zeros((n, 4 + len(frame.kinds)), dtype=np.float32)  # each column rounded from float64 as it lands
    t_lo, t_hi = t_range
    span = max(t_hi - t_lo, 1e-9)
    for lo in range(0, n, chunk):  # a chunk of rows at a time: the float64 temporaries stay small
        sl = slice(lo, min(lo + chunk, n))
        users, has_value = frame.user[sl], frame.has_value[sl]
        if like is not None:
            out[sl, 0] = np.where(has_value, (frame.value[sl] - mean[users]) / scale[users], 0.0)
        out[sl, 1], out[sl, 2] = liked[sl], disliked[sl]
        rec = np.full(sl.stop - lo, 0.5)
        has = has_ts[sl]
        rec[has] = np.minimum(1.0, np.maximum(0.0, (ts[sl][has] - t_lo) / span))
        out[sl, 3] = rec
        out[np.arange(lo, sl.stop), 4 + frame.kind[sl]] = 1.0
    return out, liked, disliked, t_range


def user_columns(demo_users: dict[str, list], demo_values: dict[str, list[str]], degrees: np.ndarray) -> np.ndarray:
    """Every user's input row (:func:`user_features`), one column block at a time."""
    x = np.zeros((len(degrees), 2 + sum(len(v) for v in demo_values.values())), dtype=np.float32)
    x[:, 0] = 1.0
    logs = {int(d): np.log1p(int(d)) / 5 for d in np.unique(degrees)}  # as user_features takes it, per degree
    x[:, 1] = [logs[int(d)] for d in degrees]
    off = 2
    for key, values in demo_values.items():
        index = {v: k for k, v in enumerate(values)}
        buckets: dict[tuple[type, Any], int] = {}  # by type too: True and 1 are equal keys, not equal buckets
        for u, raw in enumerate(demo_users.get(key, [])):
            if raw in (None, ""):
                continue
            try:
                k = buckets[type(raw), raw]
            except (KeyError, TypeError):
                k = index.get(_bucket(raw), -1)
                if not isinstance(raw, (list, dict)):
                    buckets[type(raw), raw] = k
            if k >= 0:
                x[u, off + k] = 1.0
        off += len(values)
    return x


def edge_features(
    context: PersonaContext, interactions, kinds: list[str], t_range: tuple[float, float], item_pos: dict[str, int]
):
    """One user's edges: ``(item columns, feature rows, liked flags, disliked flags)``.

    Features: value centred and scaled by the user's own ratings, liked, disliked, recency within
    ``t_range`` (clipped to [0, 1]; 0.5 when unknown), one-hot interaction kind. Unknown items are skipped.
    """
    like = context.meta.get("like_threshold")
    xs = [x for x in interactions if x.item_id in item_pos]
    vals = [x.value for x in xs if x.value is not None]
    mean = float(np.mean(vals)) if vals else 0.0
    scale = float(np.std(vals)) + 1.0 if vals else 1.0
    t_lo, t_hi = t_range
    cols, attrs, liked, disliked = [], [], [], []
    for x in xs:
        cols.append(item_pos[x.item_id])
        onehot = [1.0 if x.kind == k else 0.0 for k in kinds]
        centred = 0.0 if x.value is None or like is None else (x.value - mean) / scale
        rec = 0.5 if x.timestamp is None else min(1.0, max(0.0, (x.timestamp - t_lo) / max(t_hi - t_lo, 1e-9)))
        is_liked, is_disliked = context.is_liked(x), context.is_disliked(x)
        attrs.append([centred, float(is_liked), float(is_disliked), rec] + onehot)
        liked.append(is_liked)
        disliked.append(is_disliked)
    return cols, attrs, liked, disliked
