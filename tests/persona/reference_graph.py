"""The graph builder as it was before it read columns (issue 19): the reference the vectorised one must equal.

A frozen copy of ``persona.graph.build_graph`` at 49faea0 (a Python loop over each user's records), kept only to
check that :func:`persona.graph.build_graph_frame` gives the same tensors bit for bit."""

from __future__ import annotations

import numpy as np

from persona.graph import UserItemGraph, _bucket, demographic_features, edge_features, image_features, item_features
from persona.models.base import PersonaContext


def reference_graph(
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
