"""The PersonaGAT network (torch and PyG): a two-layer edge-aware bipartite GATv2, or GraphSAGE for the ablation.

Imported only when a ``gat`` / ``sage`` encoder builds or loads a model (:mod:`persona.models.gat`), so
importing the encoders never imports torch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GATv2Conv, SAGEConv
from torch_geometric.utils import scatter


class PersonaGAT(nn.Module):
    """Two-layer bipartite GATv2 (the equations are in :mod:`persona.models.gat`).

    Args:
        user_dim, item_dim, edge_dim: Input widths (``x_user``, ``x_item``, ``edge_attr``).
        n_items: Catalogue size (item embeddings and biases).
        hidden: Hidden width. heads: Attention heads (averaged). dropout: Attention dropout.
        conv: ``"gatv2"`` or ``"sage"``. image_dim: Image feature width (0: no ImageAlign head).
    """

    def __init__(
        self,
        user_dim: int,
        item_dim: int,
        edge_dim: int,
        n_items: int,
        hidden: int = 64,
        heads: int = 2,
        dropout: float = 0.0,
        conv: str = "gatv2",
        image_dim: int = 0,
    ):
        super().__init__()
        if conv not in ("gatv2", "sage"):
            raise ValueError(f"conv must be 'gatv2' or 'sage', got {conv!r}")
        self.config = dict(
            user_dim=user_dim,
            item_dim=item_dim,
            edge_dim=edge_dim,
            n_items=n_items,
            hidden=hidden,
            heads=heads,
            dropout=dropout,
            conv=conv,
            image_dim=image_dim,
        )
        self.attentive = conv == "gatv2"

        def make():
            if self.attentive:
                return GATv2Conv(
                    (hidden, hidden),
                    hidden,
                    heads=heads,
                    edge_dim=edge_dim,
                    concat=False,
                    add_self_loops=False,
                    dropout=dropout,
                )
            return SAGEConv((hidden, hidden), hidden, aggr="mean")

        self.item_in = nn.Linear(item_dim, hidden)
        self.item_emb = nn.Embedding(n_items, hidden)
        self.item_bias = nn.Embedding(n_items, 1)
        self.user_demo = nn.Linear(user_dim, hidden)
        self.user_in = nn.Linear(3 * hidden, hidden)
        self.conv_item = make()
        self.conv_user1, self.conv_user2 = make(), make()
        self.skip1, self.skip2 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden, bias=False)
        if image_dim:
            self.img_proj = nn.Linear(image_dim, hidden)
            self.user_proj = nn.Linear(hidden, hidden)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.children():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        nn.init.normal_(self.item_emb.weight, std=0.1)
        nn.init.zeros_(self.item_bias.weight)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"PersonaGAT(conv={c['conv']}, user={c['user_dim']}, item={c['item_dim']}, edge={c['edge_dim']}, "
            f"items={c['n_items']}, hidden={c['hidden']}, heads={c['heads']}, image={c['image_dim']})"
        )

    def _conv(self, conv, x, edge_index, edge_attr, attention: bool):
        if self.attentive:
            if attention:
                out, (_, alpha) = conv(x, edge_index, edge_attr, return_attention_weights=True)
                return out, alpha.mean(dim=1)
            return conv(x, edge_index, edge_attr), None
        return conv(x, edge_index), None

    def items(self, x_item, item_ids, x_user, ui_index, ui_attr):
        """``(i0, i1)`` for items; ``ui_index`` holds user->item edges (local rows of ``x_user``)."""
        i0 = torch.relu(self.item_in(x_item)) + self.item_emb(item_ids)
        d = torch.relu(self.user_demo(x_user))
        msg, _ = self._conv(self.conv_item, (d, i0), ui_index, ui_attr, False)
        return i0, i0 + torch.relu(msg)

    def users(self, x_user, i0, i1, iu_index, iu_attr, liked, disliked, attention: bool = False):
        """``(h_user, attention)``; ``iu_index`` holds item->user edges (rows index ``i0``/``i1``)."""
        n = x_user.shape[0]
        src, dst = iu_index
        d = torch.relu(self.user_demo(x_user))
        pos = scatter(i0[src[liked]], dst[liked], 0, dim_size=n, reduce="mean")
        neg = scatter(i0[src[disliked]], dst[disliked], 0, dim_size=n, reduce="mean")
        u0 = torch.relu(self.user_in(torch.cat([d, pos, neg], 1)))
        m1, a1 = self._conv(self.conv_user1, (i0, u0), iu_index, iu_attr, attention)
        u1 = self.skip1(u0) + m1
        m2, a2 = self._conv(self.conv_user2, (i1, torch.relu(u1)), iu_index, iu_attr, attention)
        u2 = self.skip2(torch.relu(u1)) + m2
        alpha = (a1 + a2) / 2 if a1 is not None else None
        return self.out(u2), alpha

    def forward(self, x_user, x_item, item_ids, edge_index, edge_attr, liked, disliked, attention: bool = False):
        """Whole-(sub)graph pass: ``(h_user, h_item, bias, attention)``."""
        i0, i1 = self.items(x_item, item_ids, x_user, edge_index, edge_attr)
        h_user, alpha = self.users(x_user, i0, i1, edge_index.flip(0), edge_attr, liked, disliked, attention)
        return h_user, i1, self.item_bias(item_ids).squeeze(-1), alpha

    @staticmethod
    def score(h_user, h_item, bias):
        return (h_user * h_item).sum(-1) + bias
