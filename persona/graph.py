"""Build the user-item graph a split's encoders learn from (visible interactions only).

Users and items are the two node types of a PyG :class:`~torch_geometric.data.HeteroData`, with typed
edges ``('user', <kind>, 'item')`` and their reverses. Node features:

* items: a text embedding of the item's text (MiniLM stand-in by default, any sentence-transformers
  model by name), so unseen items need no training;
* users: declared demographics only (one-hot, plus a constant); the model adds aggregates of the
  user's visible edges (mean liked / disliked item embedding, degree) itself. There is no free
  per-user ID embedding, so the model is inductive: a new user is one forward pass over their edges.

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
        kind_col = self.edge_attr[:, 4:].argmax(1) if self.edge_attr.shape[1] > 4 else torch.zeros(self.edge_attr.shape[0], dtype=torch.long)
        for k, name in enumerate(self.kinds):
            m = kind_col == k
            data["user", name, "item"].edge_index = self.edge_index[:, m]
            data["user", name, "item"].edge_attr = self.edge_attr[m]
            data["item", f"rev_{name}", "user"].edge_index = self.edge_index[:, m].flip(0)
        return data


def item_features(context: PersonaContext, text_encoder: str = "minilm") -> np.ndarray:
    from evalbench.metrics.encoders import load_text_encoder

    items = sorted(context.items)
    return load_text_encoder(text_encoder).encode([context.items[i].text or context.items[i].title for i in items])


def _bucket(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{int(value) // 10 * 10}s"
    return str(value)


def demographic_features(context: PersonaContext, users: list[str], demo_values: dict[str, list[str]]) -> np.ndarray:
    """One-hot declared demographics (numbers in decades) plus a constant column."""
    n_demo = sum(len(v) for v in demo_values.values())
    out = np.zeros((len(users), 1 + n_demo), dtype=np.float32)
    out[:, 0] = 1.0
    for r, u in enumerate(users):
        demo = context.demographics(u) if u in context.users else {}
        off = 1
        for key, values in demo_values.items():
            v = _bucket(demo[key]) if key in demo else None
            if v in values:
                out[r, off + values.index(v)] = 1.0
            off += len(values)
    return out


def build_graph(context: PersonaContext, *, text_encoder: str = "minilm",
                item_emb: np.ndarray | None = None) -> UserItemGraph:
    """The visible-interaction graph of a split (see the module docstring)."""
    import torch

    items = sorted(context.items)
    item_pos = {i: k for k, i in enumerate(items)}
    if item_emb is None:
        item_emb = item_features(context, text_encoder)
    users = sorted(context.visible)
    user_pos = {u: k for k, u in enumerate(users)}
    demo_values = {}
    for key in context.meta.get("demographics", []):
        vals = sorted({_bucket(u.attributes[key]) for u in context.users.values() if u.attributes.get(key) not in (None, "")})
        if 1 < len(vals) <= 50:
            demo_values[key] = vals
    kinds = sorted({x.kind for xs in context.visible.values() for x in xs})
    like = context.meta.get("like_threshold")
    rows, cols, attrs, liked = [], [], [], []
    stamps = [x.timestamp for xs in context.visible.values() for x in xs if x.timestamp is not None]
    t_lo, t_hi = (min(stamps), max(stamps)) if stamps else (0.0, 1.0)
    for u in users:
        xs = context.visible[u]
        vals = [x.value for x in xs if x.value is not None]
        mean = float(np.mean(vals)) if vals else 0.0
        scale = float(np.std(vals)) + 1.0 if vals else 1.0
        for x in xs:
            if x.item_id not in item_pos:
                continue
            rows.append(user_pos[u])
            cols.append(item_pos[x.item_id])
            onehot = [1.0 if x.kind == k else 0.0 for k in kinds]
            centred = 0.0 if x.value is None or like is None else (x.value - mean) / scale
            rec = 0.5 if x.timestamp is None else (x.timestamp - t_lo) / max(t_hi - t_lo, 1e-9)
            is_liked, is_disliked = context.is_liked(x), context.is_disliked(x)
            attrs.append([centred, float(is_liked), float(is_disliked), rec] + onehot)
            liked.append(is_liked)
    x_user = demographic_features(context, users, demo_values)
    return UserItemGraph(
        users, items, torch.from_numpy(x_user), torch.from_numpy(np.asarray(item_emb, dtype=np.float32)),
        torch.tensor([rows, cols], dtype=torch.long), torch.tensor(attrs, dtype=torch.float32),
        torch.tensor(liked, dtype=torch.bool), kinds, demo_values,
    )
