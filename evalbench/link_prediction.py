"""Held-out link evaluation of persona encoders (ZIPP's "posting accuracy" analogue).

For each held-out user, every encoder scores the user's hidden liked items against unseen items:

* **link AUC**: ROC AUC of hidden liked items vs the split's sampled unseen negatives, per user;
* **hit rate@1 of 1+N**: for each hidden liked item, is it scored above all of ``N`` items the user
  never touched (sampled with ``seed``)?

Where users rated every item (no unseen items exist), the user's hidden disliked and neutral items
are the negatives of both measures instead.

Both are averaged per user and reported with a user-bootstrap 95% CI (``cluster_mean_ci``).
Scorers: ``popularity`` (item degree, a reference), ``tfidf`` (persona tag weights x item tags),
``mf`` (BPR matrix factorisation on visible likes), and the graph encoders ``sage``, ``gat-noalign``
and ``gat`` (PersonaGAT link score; on datasets without images ``gat`` and ``gat-noalign`` coincide).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from persona.models.base import PersonaContext

SCORERS = ("popularity", "tfidf", "mf", "sage", "gat-noalign", "gat")
GRAPH_SCORERS = ("sage", "gat-noalign", "gat")


class PopularityScorer:
    name = "popularity"

    def fit(self, ctx: PersonaContext):
        from collections import Counter

        self.counts = Counter(x.item_id for xs in ctx.visible.values() for x in xs if ctx.is_liked(x))
        return self

    def score(self, users, items):
        return np.array([self.counts.get(i, 0) for i in items], dtype=float)


class TfidfScorer:
    name = "tfidf"

    def fit(self, ctx: PersonaContext):
        from persona.models.tfidf import TfidfPersonaEncoder

        self.enc = TfidfPersonaEncoder().fit(ctx)
        self.col = {t: j for j, t in enumerate(self.enc.vocab)}
        self.ctx = ctx
        return self

    def score(self, users, items):
        out = np.zeros(len(users))
        for k, (u, i) in enumerate(zip(users, items)):
            w = self.enc.like_w[self.enc._row[u]]
            cols = [self.col[t] for t in self.enc._terms(i) if t in self.col]
            out[k] = w[cols].sum() / np.sqrt(len(cols)) if cols else 0.0
        return out


class MfScorer:
    """BPR matrix factorisation on visible likes (transductive: needs the user in training)."""

    name = "mf"

    def __init__(self, dim: int = 32, epochs: int = 200, lr: float = 0.05, seed: int = 0):
        self.dim, self.epochs, self.lr, self.seed = dim, epochs, lr, seed

    def fit(self, ctx: PersonaContext):
        import torch

        torch.manual_seed(self.seed)
        self.users = {u: k for k, u in enumerate(sorted(ctx.visible))}
        self.items = {i: k for k, i in enumerate(sorted(ctx.items))}
        pairs = [
            (self.users[u], self.items[x.item_id])
            for u, xs in ctx.visible.items()
            for x in xs
            if ctx.is_liked(x) and x.item_id in self.items
        ]
        pu, pi = torch.tensor(pairs).T
        U = torch.nn.Parameter(0.1 * torch.randn(len(self.users), self.dim))
        V = torch.nn.Parameter(0.1 * torch.randn(len(self.items), self.dim))
        b = torch.nn.Parameter(torch.zeros(len(self.items)))
        opt = torch.optim.Adam([U, V, b], lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            neg = torch.randint(0, len(self.items), pu.shape, generator=gen)
            x = (U[pu] * (V[pi] - V[neg])).sum(1) + b[pi] - b[neg]
            loss = -torch.nn.functional.logsigmoid(x).mean() + 1e-4 * (U.pow(2).sum() + V.pow(2).sum()) / len(pairs)
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.U, self.V, self.b = U.detach().numpy(), V.detach().numpy(), b.detach().numpy()
        return self

    def score(self, users, items):
        uu = [self.users[u] for u in users]
        ii = [self.items[i] for i in items]
        return (self.U[uu] * self.V[ii]).sum(1) + self.b[ii]


class GraphScorer:
    """A graph persona encoder (``sage``, ``gat-noalign``, ``gat``) used as a link scorer."""

    def __init__(self, name: str = "gat", **kwargs: Any):
        self.name, self.kwargs = name, kwargs

    def fit(self, ctx: PersonaContext):
        from persona.models import ENCODERS

        self.enc = ENCODERS.get(self.name)(**self.kwargs).fit(ctx)
        return self

    def score(self, users, items):
        return self.enc.score(users, items)


def make_scorer(name: str, **kwargs: Any):
    table = {"popularity": PopularityScorer, "tfidf": TfidfScorer, "mf": MfScorer}
    if name in GRAPH_SCORERS:
        return GraphScorer(name, **kwargs)
    if name not in table:
        raise KeyError(f"unknown link scorer {name!r}; available: {', '.join(SCORERS)}")
    return table[name](**kwargs)


def evaluate_links(
    ctx: PersonaContext, targets: dict[str, dict[str, list[str]]], scorers: list, *, n_negatives: int = 9, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Per-scorer ``{"per_user": {user: (auc, hit)}, "auc": (mean, lo, hi), "hit_rate": (mean, lo, hi)}``."""
    from sklearn.metrics import roc_auc_score

    from evalbench.metrics.preference import cluster_mean_ci

    rng = np.random.default_rng(seed)
    all_items = np.array(sorted(ctx.items), dtype=object)
    cases = []
    for u in sorted(targets):
        pos = targets[u].get("liked", [])
        # unseen items are the negatives; where every user rated every item (the face ratings) there are
        # none, and the user's hidden non-liked items (disliked, then neutral) take their place
        rated_not_liked = targets[u].get("disliked", []) + targets[u].get("neutral", [])
        neg = targets[u].get("unseen", []) or rated_not_liked
        if not pos or not neg or u not in ctx.visible:
            continue
        touched = {x.item_id for x in ctx.visible[u]} | set(pos) | set(rated_not_liked)
        pool = all_items[~np.isin(all_items, list(touched))]
        if len(pool) < n_negatives:
            pool = np.array(sorted(set(rated_not_liked) or set(neg)), dtype=object)
        hits = [rng.choice(pool, size=min(n_negatives, len(pool)), replace=False).tolist() for _ in pos]
        cases.append((u, pos, neg, hits))
    out = {}
    for sc in scorers:
        per_user = {}
        for u, pos, neg, hits in cases:
            s = sc.score([u] * (len(pos) + len(neg)), pos + neg)
            auc = roc_auc_score([1] * len(pos) + [0] * len(neg), s)
            h = []
            for p, negs in zip(pos, hits):
                v = sc.score([u] * (1 + len(negs)), [p] + negs)
                h.append(float(v[0] > v[1:].max()))
            per_user[u] = (float(auc), float(np.mean(h)))
        users = np.array(list(per_user))
        out[sc.name] = {
            "per_user": per_user,
            "auc": cluster_mean_ci(np.array([v[0] for v in per_user.values()]), users, seed=seed),
            "hit_rate": cluster_mean_ci(np.array([v[1] for v in per_user.values()]), users, seed=seed),
            "n_users": len(per_user),
        }
    return out


def run_link_eval(
    ws,
    split: str | None = None,
    scorers: tuple[str, ...] = SCORERS,
    *,
    n_negatives: int = 9,
    seed: int = 0,
    gat_epochs: int = 20,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Fit each scorer on the split's visible graph, evaluate held-out links, store per-user scores as a run."""
    from persona.mining import load_context
    from workbench.records import Score
    from workbench.store.runs import clear_run_results, finish_run, start_run, write_units
    from workbench.store.splits import hidden_targets, resolve_split, split_users

    for name in scorers:
        if name not in SCORERS:
            raise KeyError(f"unknown link scorer {name!r}; available: {', '.join(SCORERS)}")
    split_id = resolve_split(ws, split)
    held = split_users(ws, split_id, ("heldout",))
    ctx = load_context(ws, split_id)
    targets = hidden_targets(ws, split_id, held)
    rows = []
    for name in scorers:
        kwargs = {"epochs": gat_epochs, "seed": seed} if name in GRAPH_SCORERS else {}
        config = {
            "split": split_id,
            "scorer": name,
            "n_negatives": n_negatives,
            "seed": seed,
            **kwargs,
            "system": f"{name} (link eval)",
        }
        t0 = time.perf_counter()
        scorer = make_scorer(name, **kwargs, **({"progress": progress} if name in GRAPH_SCORERS else {})).fit(ctx)
        res = evaluate_links(ctx, targets, [scorer], n_negatives=n_negatives, seed=seed)[name]
        run_id, _ = start_run(ws, "linkeval", config, res["n_users"])
        clear_run_results(ws, run_id)
        scores = [
            Score(run_id, u, m, v, name)
            for u, (auc, hit) in res["per_user"].items()
            for m, v in (("link_auc", auc), (f"hit_rate@1of{1 + n_negatives}", hit))
        ]
        write_units(ws, run_id, [(u, "scored", None) for u in res["per_user"]], scores)
        finish_run(ws, run_id)
        rows.append(
            {
                "scorer": name,
                "run_id": run_id,
                "n_users": res["n_users"],
                "seconds": time.perf_counter() - t0,
                "auc": res["auc"][0],
                "auc_low": res["auc"][1],
                "auc_high": res["auc"][2],
                "hit_rate": res["hit_rate"][0],
                "hit_low": res["hit_rate"][1],
                "hit_high": res["hit_rate"][2],
            }
        )
    return rows
