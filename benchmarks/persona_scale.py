"""Persona-miner scale benchmark: synthetic communities of 10k, 100k and 1M users, ~50 interactions each.

For each size, in a fresh child process (so peak memory is that size's own):

* **graph**: a planted-persona community generated directly as tensors (``--items`` items, each with
  1-3 of 20 tags; 64-d item features from the tags plus noise; users with two demographic groups;
  ratings 1-5, 4+ liked). Records are skipped on purpose: this measures the model, not the importer.
* **train**: PersonaGAT mini-batch link prediction (``LinkNeighborLoader`` + the torch fan-out sampler)
  for a fixed budget of ``--steps`` steps; reports seconds per step and the **extrapolated** time of
  one full epoch (every liked edge a target once), plus the budgeted training time actually spent.
* **infer**: full-graph chunked inference of every user and item embedding and every edge's attention
  (items read a seeded sample of at most 64 of their users; users read all their items).
* **cards**: per user, interests (tag weights by attention), top-5 evidence and the template summary,
  vectorised over users (the summaries are Python string work).
* **mined**: graph + train budget + infer + cards, the time to a persona for every user.
* **cold start**: ``ColdStart.persona`` (one inductive pass over 10 interactions + card + summary) for
  500 random new users: p50 / p99 latency; and the bare embedding pass alone.
* **peak RSS** of the child process.

Usage: ``python benchmarks/persona_scale.py [--users 10000,100000,1000000] [--steps 300]``; prints a
table and writes ``benchmarks/results/persona_scale.json``. Hardware is recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_TAGS = 20
FEAT = 64
ITEM_FANOUT = 64  # users an item's layer reads at inference (a seeded sample; training reads 10)


def synthetic_graph(n_users: int, n_items: int, per_user: int, seed: int = 0):
    """A planted-persona community as a :class:`persona.graph.UserItemGraph` (vectorised)."""
    import torch

    from persona.graph import UserItemGraph

    g = torch.Generator().manual_seed(seed)
    item_tags = torch.zeros(n_items, N_TAGS)
    for k in range(3):
        pick = torch.randint(0, N_TAGS, (n_items,), generator=g)
        keep = torch.rand(n_items, generator=g) < (1.0 if k == 0 else 0.4)
        item_tags[torch.arange(n_items)[keep], pick[keep]] = 1.0
    basis = torch.randn(N_TAGS, FEAT, generator=g)
    x_item = item_tags @ basis / 2 + 0.5 * torch.randn(n_items, FEAT, generator=g)
    n_personas = 8
    persona_tags = torch.stack([torch.randperm(N_TAGS, generator=g)[:3] for _ in range(n_personas)])
    persona = torch.randint(0, n_personas, (n_users,), generator=g)
    group = torch.randint(0, 2, (n_users,), generator=g)
    pop = torch.rand(n_items, generator=g).clamp_min(1e-6) ** (-1 / 1.2)  # Pareto(1, 1.2) by inverse CDF, seeded
    rows, cols = [], []
    deg = torch.clamp(torch.poisson(torch.full((n_users,), float(per_user)), generator=g), 5, 4 * per_user).long()
    for p in range(n_personas):
        match = item_tags[:, persona_tags[p]].sum(1)
        w = pop * (1 + 4 * match)
        users = torch.nonzero(persona == p).flatten()
        total = int(deg[users].sum())
        # with replacement across users, then duplicates within a user removed below
        cols.append(torch.multinomial(w / w.sum(), total, replacement=True, generator=g))
        rows.append(torch.repeat_interleave(users, deg[users]))
    row, col = torch.cat(rows), torch.cat(cols)
    key = torch.unique(row * n_items + col)
    row, col = key // n_items, key % n_items
    m = torch.stack([item_tags[:, persona_tags[p]].sum(1) for p in range(n_personas)])  # (personas, items)
    match = m[persona[row], col]
    rating = torch.clamp(torch.round(2.5 + 1.0 * match + torch.randn(col.numel(), generator=g)), 1, 5)
    n = torch.bincount(row, minlength=n_users).float()
    mean = torch.zeros(n_users).index_add_(0, row, rating) / n.clamp(min=1)
    liked, disliked = rating >= 4, rating <= 2
    edge_attr = torch.stack(
        [
            (rating - mean[row]) / 2,
            liked.float(),
            disliked.float(),
            torch.rand(col.numel(), generator=g),
            torch.ones(col.numel()),
        ],
        1,
    )
    x_user = torch.stack([torch.ones(n_users), torch.log1p(n) / 5, (group == 0).float(), (group == 1).float()], 1)
    graph = UserItemGraph(
        [f"u{i}" for i in range(n_users)],
        [f"i{i}" for i in range(n_items)],
        x_user,
        x_item,
        torch.stack([row, col]),
        edge_attr,
        liked,
        ["rating"],
        {"group": ["a", "b"]},
        None,
        disliked,
        (0.0, 1.0),
    )
    tags = [f"tag{t:02d}" for t in range(N_TAGS)]
    return graph, item_tags, tags


def cards_vectorised(graph, emb, item_tags, tags, n_traits: int = 4, n_evidence: int = 5):
    """Interests, top evidence and a template summary for every user (vectorised where it matters)."""
    import torch

    from persona.verbalize import verbalize

    row, col = graph.edge_index
    n_users, n_tags = len(graph.user_ids), item_tags.shape[1]
    weight = emb.alpha * torch.where(graph.edge_disliked, -1.0, 1.0)
    w = torch.zeros(n_users * n_tags)
    it, tg = torch.nonzero(item_tags, as_tuple=True)  # items carry 1-3 tags: loop over tag slots, not (E x T)
    slot = torch.cumsum(torch.ones_like(it), 0) - 1 - torch.searchsorted(it, it)
    for k in range(int(slot.max()) + 1):
        tag_of = torch.full((item_tags.shape[0],), -1, dtype=torch.long)
        tag_of[it[slot == k]] = tg[slot == k]
        t = tag_of[col]
        ok = t >= 0
        w.index_add_(0, row[ok] * n_tags + t[ok], weight[ok])
    w = w.view(n_users, n_tags)
    top_w, top_t = torch.topk(w, n_traits, dim=1)
    order = torch.argsort(row * 2.0 - emb.alpha.double(), stable=True)  # by user, then attention desc
    r_sorted = row[order]
    first = torch.searchsorted(r_sorted, torch.arange(len(graph.user_ids)))
    rank = torch.arange(order.numel()) - first[r_sorted]
    keep = order[rank < n_evidence]
    ev_user, ev_item = row[keep].tolist(), col[keep].tolist()
    evidence: dict[int, list[str]] = {}
    for u, i in zip(ev_user, ev_item):
        evidence.setdefault(u, []).append(graph.item_ids[i])
    tw, tt = top_w.tolist(), top_t.tolist()
    summaries = [
        verbalize(
            [{"name": tags[t], "weight": x} for t, x in zip(tt[u], tw[u]) if x > 0],
            evidence.get(u, [])[:3],
            {},
            "items",
        )
        for u in range(len(graph.user_ids))
    ]
    return summaries, evidence


def run_size(n_users: int, n_items: int, per_user: int, steps: int, seed: int) -> dict:
    import torch

    from persona.coldstart import ColdStart
    from persona.models.base import PersonaContext
    from persona.models.gat import GatPersonaEncoder, infer, train_gat
    from workbench.records import Interaction, Item

    torch.set_num_threads(os.cpu_count() or 1)
    out = {"users": n_users, "items": n_items}
    t = time.perf_counter()
    graph, item_tags, tags = synthetic_graph(n_users, n_items, per_user, seed)
    out["graph_s"] = time.perf_counter() - t
    out["edges"] = int(graph.edge_index.shape[1])
    n_targets = int(graph.edge_liked.sum())
    t = time.perf_counter()
    model, report = train_gat(graph, epochs=1, max_steps=steps, seed=seed)
    out["train_budget_s"] = time.perf_counter() - t
    out["train_steps"] = report.steps
    out["s_per_step"] = report.seconds / max(report.steps, 1)
    out["epoch_s_extrapolated"] = out["s_per_step"] * -(-n_targets // 1024)
    out["peak_batch_edges"] = report.peak_batch_edges
    t = time.perf_counter()
    emb = infer(model, graph, item_fanout=ITEM_FANOUT)
    out["infer_s"] = time.perf_counter() - t
    t = time.perf_counter()
    summaries, _ = cards_vectorised(graph, emb, item_tags, tags)
    out["cards_s"] = time.perf_counter() - t
    out["mined_s"] = out["graph_s"] + out["train_budget_s"] + out["infer_s"] + out["cards_s"]
    out["example_persona"] = summaries[0]

    items = {
        iid: Item(
            iid, "item", f"item {k}", "", None, tuple(tags[j] for j in torch.nonzero(item_tags[k]).flatten().tolist())
        )
        for k, iid in enumerate(graph.item_ids)
    }
    ctx = PersonaContext(
        "bench",
        "bench",
        {},
        items,
        {},
        {"like_threshold": 4, "dislike_threshold": 2, "demographics": ["group"], "item_noun": "items"},
    )
    enc = GatPersonaEncoder.from_parts(ctx, graph, model, emb, item_fanout=ITEM_FANOUT)
    cs = ColdStart(enc)
    rng = np.random.default_rng(seed)
    lat_full, lat_embed = [], []
    for k in range(520):
        xs = [
            Interaction("new", graph.item_ids[i], "rating", float(rng.integers(1, 6)))
            for i in rng.choice(n_items, 10, replace=False)
        ]
        t = time.perf_counter()
        cs.embed(xs, {"group": "a"})
        e = time.perf_counter() - t
        t = time.perf_counter()
        cs.persona(f"new{k}", xs, {"group": "a"})
        f = time.perf_counter() - t
        if k >= 20:  # warm-up excluded
            lat_embed.append(e)
            lat_full.append(f)
    out["coldstart_embed_p50_ms"] = 1000 * float(np.percentile(lat_embed, 50))
    out["coldstart_embed_p99_ms"] = 1000 * float(np.percentile(lat_embed, 99))
    out["coldstart_p50_ms"] = 1000 * float(np.percentile(lat_full, 50))
    out["coldstart_p99_ms"] = 1000 * float(np.percentile(lat_full, 99))
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


COLUMNS = [
    ("users", "users"),
    ("edges", "edges"),
    ("graph_s", "graph s"),
    ("s_per_step", "s/step"),
    ("epoch_s_extrapolated", "epoch s (extrap.)"),
    ("train_budget_s", "train s (budget)"),
    ("infer_s", "infer s"),
    ("cards_s", "cards s"),
    ("mined_s", "mined s"),
    ("coldstart_p50_ms", "cold p50 ms"),
    ("coldstart_p99_ms", "cold p99 ms"),
    ("coldstart_embed_p99_ms", "embed p99 ms"),
    ("peak_rss_gib", "peak GiB"),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", default="10000,100000,1000000", help="Comma-separated community sizes.")
    ap.add_argument("--items", type=int, default=20000, help="Catalogue size.")
    ap.add_argument("--per-user", type=int, default=50, help="Mean interactions per user.")
    ap.add_argument("--steps", type=int, default=300, help="Training budget in mini-batch steps (batch 1024).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "persona_scale.json"))
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_size(args.child, args.items, args.per_user, args.steps, args.seed)))
        return 0
    rows = []
    for n in [int(x) for x in args.users.split(",")]:
        print(f"[persona_scale] {n} users ...", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(n),
                "--items",
                str(args.items),
                "--per-user",
                str(args.per_user),
                "--steps",
                str(args.steps),
                "--seed",
                str(args.seed),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            rows.append(
                {"users": n, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
            )
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    header = " | ".join(h for _, h in COLUMNS)
    print(header)
    print(" | ".join("---" for _ in COLUMNS))
    for r in rows:
        if "error" in r:
            print(f"{r['users']} | error: {r['error']}")
            continue
        print(
            " | ".join(
                f"{r[k]:.3f}"
                if isinstance(r[k], float) and r[k] < 10
                else (f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k]))
                for k, _ in COLUMNS
            )
        )
    from _results import write_result

    write_result(
        args.out,
        "persona_scale",
        rows,
        params={
            "items": args.items,
            "per_user": args.per_user,
            "steps": args.steps,
            "batch_size": 1024,
            "model": "PersonaGAT hidden=64 heads=2",
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
