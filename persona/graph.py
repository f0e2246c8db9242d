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
    """The visible-interaction graph of a split (see the module docstring)."""
    import torch

    items = sorted(context.items)
    item_pos = {i: k for k, i in enumerate(items)}
    if item_emb is None:
        item_emb = item_features(context, text_encoder)
    if image_emb is None and image_encoder:
        image_emb = image_features(context, image_encoder)
    x_item = np.asarray(item_emb, dtype=np.float32)
    if image_emb is not None:
        image_emb = np.asarray(image_emb, dtype=np.float32)
        x_item = np.concatenate([x_item, image_emb], 1)
    users = sorted(context.visible)
    user_pos = {u: k for k, u in enumerate(users)}
    demo_values = {}
    for key in context.meta.get("demographics", []):
        vals = sorted(
            {_bucket(u.attributes[key]) for u in context.users.values() if u.attributes.get(key) not in (None, "")}
        )
        if 1 < len(vals) <= 50:
            demo_values[key] = vals
    kinds = sorted({x.kind for xs in context.visible.values() for x in xs})
    stamps = [x.timestamp for xs in context.visible.values() for x in xs if x.timestamp is not None]
    t_range = (min(stamps), max(stamps)) if stamps else (0.0, 1.0)
    rows, cols, attrs, liked, disliked = [], [], [], [], []
    for u in users:
        c, a, lk, dl = edge_features(context, context.visible[u], kinds, t_range, item_pos)
        rows.extend([user_pos[u]] * len(c))
        cols.extend(c)
        attrs.extend(a)
        liked.extend(lk)
        disliked.extend(dl)
    degrees = np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(users))
    x_user = demographic_features(context, users, demo_values, degrees.tolist())
    return UserItemGraph(
        users,
        items,
        torch.from_numpy(x_user),
        torch.from_numpy(x_item),
        torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1),
        torch.tensor(attrs, dtype=torch.float32),
        torch.tensor(liked, dtype=torch.bool),
        kinds,
        demo_values,
        None if image_emb is None else torch.from_numpy(image_emb),
        torch.tensor(disliked, dtype=torch.bool),
        t_range,
    )


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
