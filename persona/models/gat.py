"""``gat``: the PersonaGAT miner, a two-layer edge-aware GATv2 over the user-item graph.

Layer 1 lets every item attend over the users who engaged with it; layer 2 lets every user attend over
their items. With item features :math:`x_i`, edge features :math:`e_{ui}` and user input

.. math::
    h_u^{(0)} = W_u\\,[\\,d_u \\,\\|\\, \\overline{x}_{u}^{+} \\,\\|\\, \\overline{x}_{u}^{-} \\,\\|\\, \\log(1+\\deg u)/5\\,]

(:math:`d_u` declared demographics, :math:`\\overline{x}_{u}^{\\pm}` mean features of liked / disliked
visible items; no per-user ID embedding, so the model is inductive),

.. math::
    h_i^{(1)} = h_i^{(0)} + \\mathrm{GATv2}_1\\big((h^{(0)}_{\\mathcal U}, h^{(0)}_i), e\\big), \\qquad
    h_u = W_s h_u^{(0)} + \\sum_{i \\in N(u)} \\alpha_{ui}\\, W h_i^{(1)}

with GATv2 attention :math:`\\alpha_{ui} = \\mathrm{softmax}_i\\big(a^\\top \\mathrm{LeakyReLU}(W[h_u \\| h_i \\| e_{ui}])\\big)`
(averaged over heads). Training is link prediction: each epoch a random 20% of the liked edges are
removed from message passing and scored, :math:`s(u, i) = h_u^\\top W_o h_i^{(1)}`, against sampled
items with binary cross-entropy. The layer-2 attention :math:`\\alpha_{ui}` ranks a user's evidence.

Shapes:
    x_user ``(U, F_u)``, x_item ``(I, F_i)``, edge_index ``(2, E)`` (row 0 users, row 1 items),
    edge_attr ``(E, F_e)`` -> h_user ``(U, D)``, h_item ``(I, D)``, attention ``(E,)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from persona.models.base import PersonaEncoder


def _torch_module():
    import torch
    from torch import nn
    from torch_geometric.nn import GATv2Conv
    from torch_geometric.utils import scatter

    class PersonaGAT(nn.Module):
        """Two-layer bipartite GATv2 (see the module docstring).

        Args:
            user_dim: Demographic feature width.
            item_dim: Item feature width.
            edge_dim: Edge feature width.
            hidden: Hidden width (default 64).
            heads: Attention heads (default 4, averaged).
            dropout: Attention dropout (default 0.1).
        """

        def __init__(self, user_dim: int, item_dim: int, edge_dim: int, hidden: int = 64, heads: int = 4,
                     dropout: float = 0.1):
            super().__init__()
            self.dims = dict(user_dim=user_dim, item_dim=item_dim, edge_dim=edge_dim, hidden=hidden, heads=heads,
                             dropout=dropout)
            self.item_in = nn.Linear(item_dim, hidden)
            self.user_in = nn.Linear(user_dim + 2 * item_dim + 1, hidden)
            self.conv1 = GATv2Conv((hidden, hidden), hidden, heads=heads, edge_dim=edge_dim, concat=False,
                                   add_self_loops=False, dropout=dropout)
            self.conv2 = GATv2Conv((hidden, hidden), hidden, heads=heads, edge_dim=edge_dim, concat=False,
                                   add_self_loops=False, dropout=dropout)
            self.user_skip = nn.Linear(hidden, hidden)
            self.out = nn.Linear(hidden, hidden, bias=False)
            self.reset_parameters()

        def reset_parameters(self) -> None:
            for m in (self.item_in, self.user_in, self.conv1, self.conv2, self.user_skip, self.out):
                m.reset_parameters()

        def __repr__(self) -> str:
            d = self.dims
            return f"PersonaGAT(user={d['user_dim']}, item={d['item_dim']}, edge={d['edge_dim']}, hidden={d['hidden']}, heads={d['heads']})"

        def forward(self, x_user, x_item, edge_index, edge_attr, edge_liked, edge_disliked):
            n_users = x_user.shape[0]
            row, col = edge_index
            liked_mean = scatter(x_item[col[edge_liked]], row[edge_liked], 0, dim_size=n_users, reduce="mean")
            dis_mean = scatter(x_item[col[edge_disliked]], row[edge_disliked], 0, dim_size=n_users, reduce="mean")
            deg = scatter(torch.ones_like(row, dtype=x_item.dtype), row, 0, dim_size=n_users, reduce="sum")
            u0 = torch.relu(self.user_in(torch.cat([x_user, liked_mean, dis_mean, torch.log1p(deg)[:, None] / 5], 1)))
            i0 = torch.relu(self.item_in(x_item))
            i1 = i0 + torch.relu(self.conv1((u0, i0), edge_index, edge_attr))
            rev = edge_index.flip(0)
            msg, (_, alpha) = self.conv2((i1, u0), rev, edge_attr, return_attention_weights=True)
            h_user = self.user_skip(u0) + msg
            return h_user, self.out(i1), alpha.mean(dim=1)

        @staticmethod
        def score(h_user, h_item):
            return (h_user * h_item).sum(-1)

    return PersonaGAT


@dataclass
class TrainReport:
    epochs: int
    final_loss: float
    seconds: float


def split_edge_masks(graph):
    """``(liked, disliked)`` boolean masks over the graph's edges."""
    return graph.edge_liked, graph.edge_attr[:, 2] > 0.5


def train_gat(graph, *, epochs: int = 60, hidden: int = 64, heads: int = 4, lr: float = 5e-3,
              holdout: float = 0.2, negatives: int = 2, seed: int = 0, progress: bool = False):
    """Fit a PersonaGAT on ``graph`` by link prediction (full-graph steps). Returns ``(model, TrainReport)``."""
    import time

    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cls = _torch_module()
    model = cls(graph.x_user.shape[1], graph.x_item.shape[1], graph.edge_attr.shape[1], hidden, heads)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    liked, disliked = split_edge_masks(graph)
    pos_idx = torch.nonzero(liked).flatten()
    n_items = graph.x_item.shape[0]
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    loss_val = float("nan")
    for _ in tqdm(range(epochs), desc="training gat", unit="epoch", disable=not progress):
        model.train()
        perm = pos_idx[torch.randperm(pos_idx.numel(), generator=gen)]
        sup = perm[: max(1, int(holdout * perm.numel()))]
        keep = torch.ones(graph.edge_index.shape[1], dtype=torch.bool)
        keep[sup] = False
        h_u, h_i, _ = model(graph.x_user, graph.x_item, graph.edge_index[:, keep], graph.edge_attr[keep],
                            liked[keep], disliked[keep])
        users = graph.edge_index[0, sup]
        pos = cls.score(h_u[users], h_i[graph.edge_index[1, sup]])
        neg_items = torch.randint(0, n_items, (sup.numel() * negatives,), generator=gen)
        neg = cls.score(h_u[users.repeat(negatives)], h_i[neg_items])
        loss = F.binary_cross_entropy_with_logits(torch.cat([pos, neg]),
                                                  torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_val = float(loss.detach())
    return model, TrainReport(epochs, loss_val, time.perf_counter() - t0)


class GatPersonaEncoder(PersonaEncoder):
    """Persona encoder backed by a trained PersonaGAT; evidence ranked by layer-2 attention.

    Args:
        epochs: Link-prediction epochs (full-graph steps).
        hidden, heads: Model width and attention heads.
        n_traits, n_evidence: Traits and evidence items kept per card.
        text_encoder: Item text encoder (``minilm`` embedded stand-in, or a sentence-transformers id).
        seed: Training seed; the same seed gives the same model.
    """

    name = "gat"
    version = "1"

    def __init__(self, epochs: int = 60, hidden: int = 64, heads: int = 4, n_traits: int = 4, n_evidence: int = 5,
                 text_encoder: str = "minilm", seed: int = 0, progress: bool = False):
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.epochs, self.hidden, self.heads, self.seed = epochs, hidden, heads, seed
        self.n_traits, self.n_evidence, self.text_encoder, self.progress = n_traits, n_evidence, text_encoder, progress

    def fit(self, context):
        import torch

        from persona.graph import build_graph

        self.context = context
        self.graph = build_graph(context, text_encoder=self.text_encoder)
        self.model, self.report = train_gat(self.graph, epochs=self.epochs, hidden=self.hidden, heads=self.heads,
                                            seed=self.seed, progress=self.progress)
        self.model.eval()
        liked, disliked = split_edge_masks(self.graph)
        with torch.no_grad():
            self.h_user, self.h_item, self.alpha = self.model(self.graph.x_user, self.graph.x_item, self.graph.edge_index,
                                                              self.graph.edge_attr, liked, disliked)
        return self

    def score(self, user_ids: list[str], item_ids: list[str]) -> np.ndarray:
        """Link scores ``s(u, i)`` for aligned lists of users and items."""
        ui, ii = self.graph.user_index, self.graph.item_index
        hu = self.h_user[[ui[u] for u in user_ids]]
        hi = self.h_item[[ii[i] for i in item_ids]]
        return (hu * hi).sum(-1).numpy()

    def attention(self, user_id: str) -> list[tuple[str, float]]:
        """``(item_id, weight)`` of the user's visible items, by layer-2 attention (sums to 1)."""
        u = self.graph.user_index[user_id]
        mask = self.graph.edge_index[0] == u
        items = self.graph.edge_index[1, mask].tolist()
        weights = self.alpha[mask].tolist()
        return sorted(((self.graph.item_ids[i], w) for i, w in zip(items, weights)), key=lambda t: (-t[1], t[0]))

    def encode(self, user_ids):
        from collections import defaultdict

        from persona.records import Evidence, PersonaCard
        from persona.verbalize import scrub, verbalize

        ctx = self.context
        noun = ctx.meta.get("item_noun", "items")
        cards = []
        ui = self.graph.user_index
        for u in user_ids:
            if u not in ui:
                raise KeyError(f"user {u!r} has no visible interactions in split {ctx.split_id!r}")
            liked_items = {x.item_id for x in ctx.visible[u] if ctx.is_liked(x)}
            ranked = [(i, w) for i, w in self.attention(u) if i in liked_items] or self.attention(u)
            tag_w: dict[str, float] = defaultdict(float)
            for i, w in ranked:
                for t in ctx.items[i].tags:
                    tag_w[t] += w
            traits = [{"name": t, "weight": round(w, 4)} for t, w in
                      sorted(tag_w.items(), key=lambda kv: (-kv[1], kv[0]))[: self.n_traits]]
            evidence = [Evidence(i, round(w, 5), scrub(ctx.items[i].title)) for i, w in ranked[: self.n_evidence]]
            demo = ctx.demographics(u)
            summary = verbalize(traits, [e.snippet for e in evidence[:3]], demo, noun)
            cards.append(PersonaCard(u, summary, traits, evidence,
                                     [round(float(v), 5) for v in self.h_user[ui[u]].tolist()], self.model_version, demo))
        return cards
