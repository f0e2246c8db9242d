"""``gat``: the PersonaGAT miner, a two-layer edge-aware GATv2 over the user-item graph.

Node inputs (no per-user ID embedding, so users are inductive; items are a shared catalogue and keep
a learned embedding :math:`e_i` and bias :math:`b_i` next to their content features :math:`x_i`):

.. math::
    i^{(0)} = \\mathrm{ReLU}(W_x x_i) + e_i, \\qquad
    d_u = \\mathrm{ReLU}(W_d\\,[\\text{demographics}_u \\,\\|\\, \\log(1+\\deg u)/5]),

    u^{(0)} = \\mathrm{ReLU}\\big(W_0\\,[\\,d_u \\,\\|\\, \\overline{i^{(0)}}_{u,+} \\,\\|\\, \\overline{i^{(0)}}_{u,-}\\,]\\big)

(means over the user's liked / disliked visible items). Two layers, each a GATv2 per edge direction:

.. math::
    i^{(1)} = i^{(0)} + \\mathrm{ReLU}\\,\\mathrm{GATv2}_{u\\to i}\\big((d, i^{(0)}), e\\big), \\qquad
    u^{(1)} = W_1 u^{(0)} + \\mathrm{GATv2}^{(1)}_{i\\to u}\\big((i^{(0)}, u^{(0)}), e\\big),

    u^{(2)} = W_2 u^{(1)} + \\mathrm{GATv2}^{(2)}_{i\\to u}\\big((i^{(1)}, u^{(1)}), e\\big)

with GATv2 attention :math:`\\alpha_{ui} = \\mathrm{softmax}_{i \\in N(u)}\\big(a^\\top
\\mathrm{LeakyReLU}(W_s h_i + W_t h_u + W_e e_{ui})\\big)` per head, edge features :math:`e_{ui}` =
(centred rating, liked, disliked, recency, interaction kind). The link score is
:math:`s(u, i) = (W_o u^{(2)})^\\top i^{(1)} + b_i`.

Training: ``LinkNeighborLoader`` mini-batches over the liked edges (fan-out sampled by
:class:`persona.sampling.FanoutSampler`, so a step's memory is bounded by the fan-outs, not the graph),
each batch's target edges removed from its message passing, BPR loss against sampled items
(``triplet`` negative sampling), plus, when items carry image features, the **ImageAlign** InfoNCE loss

.. math::
    \\mathcal L_{\\text{align}} = -\\frac1B \\sum_b \\log
    \\frac{\\exp(\\langle \\hat z_{u_b}, \\hat g_{i_b}\\rangle/\\tau)}{\\sum_{b'} \\exp(\\langle \\hat z_{u_b}, \\hat g_{i_{b'}}\\rangle/\\tau)}

between the projected user embedding and the projected image features of the image they engaged
with (unit-normalised, in-batch negatives, :math:`\\tau = 0.1`), weighted by ``align_weight``.

Evidence weight of a user's item: the two layers' :math:`\\alpha_{ui}` averaged over heads and layers
(each sums to 1 over the user's items, so the average does too). ``conv="sage"`` swaps every GATv2
for a mean-aggregating GraphSAGE layer (the ``sage`` baseline: same harness, no attention).

Shapes: ``x_user (U, F_u)``, ``x_item (I, F_i)``, ``edge_index (2, E)`` (row 0 users, row 1 items),
``edge_attr (E, F_e)`` -> ``h_user (U, D)``, ``h_item (I, D)``, ``bias (I,)``, ``attention (E,)``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from persona.models.base import PersonaEncoder

REL = ("user", "engages", "item")
REV = ("item", "rev_engages", "user")


@dataclass
class TrainReport:
    """What a training run did: ``steps`` of the ``planned_steps`` (``epochs`` x batches, or ``max_steps``),
    and ``stopped_by`` (``"time_budget"``, ``"max_steps"`` or ``None`` when every planned step ran)."""

    epochs: int
    steps: int
    final_loss: float
    seconds: float
    peak_batch_edges: int
    planned_steps: int = 0
    stopped_by: str | None = None
    workers: int = 1

    def note(self) -> str:
        """One line for the user: the steps run, why it stopped and how to repeat it exactly."""
        text = f"{self.steps} of {self.planned_steps} planned steps in {self.seconds:.1f} s"
        if self.workers > 1:
            text += f" on {self.workers} data-parallel workers"
        if self.stopped_by == "time_budget":
            return f"{text} (stopped by the time budget; --max-steps {self.steps} repeats this model exactly)"
        if self.stopped_by == "max_steps":
            return f"{text} (stopped at --max-steps)"
        return text


class _deterministic(contextlib.ContextDecorator):
    """Deterministic torch kernels for the duration of a call (then the caller's setting again).

    With more than one CPU thread, scatter-style reductions (the backward of indexing, message
    aggregation) otherwise add in a thread-dependent order, so two runs with the same seed drift apart;
    measured cost here: none.
    """

    def __enter__(self):
        import torch

        self.prev = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        torch.use_deterministic_algorithms(True, warn_only=True)

    def __exit__(self, *exc):
        import torch

        torch.use_deterministic_algorithms(self.prev[0], warn_only=self.prev[1])


def build_model(graph, **kwargs):
    """A fresh PersonaGAT sized for ``graph``."""
    from persona.models.gat_net import PersonaGAT

    image_dim = 0 if getattr(graph, "x_image", None) is None else graph.x_image.shape[1]
    return PersonaGAT(
        graph.x_user.shape[1],
        graph.x_item.shape[1],
        graph.edge_attr.shape[1],
        graph.x_item.shape[0],
        image_dim=image_dim,
        **kwargs,
    )


def _hetero(graph):
    from torch_geometric.data import HeteroData

    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes = graph.x_user.shape[0], graph.x_item.shape[0]
    data[REL].edge_index = graph.edge_index
    data[REV].edge_index = graph.edge_index.flip(0)
    return data


@_deterministic()
def train_gat(
    graph,
    *,
    epochs: int = 20,
    hidden: int = 64,
    heads: int = 2,
    conv: str = "gatv2",
    lr: float = 5e-3,
    batch_size: int = 1024,
    negatives: int = 4,
    fanout_items: tuple[int, int] = (10, 3),
    fanout_users: int = 64,
    align_weight: float = 0.1,
    max_steps: int | None = None,
    time_budget: float | None = None,
    started: float | None = None,
    name: str | None = None,
    weight_decay: float = 1e-6,
    seed: int = 0,
    progress: bool = False,
    workers: int = 1,
):
    """Fit a PersonaGAT on ``graph`` by mini-batch link prediction. Returns ``(model, TrainReport)``.

    Deterministic: the same graph and seed give the same model whatever the thread count.

    Args:
        epochs: Passes over the liked edges (each a supervision target once per epoch).
        batch_size: Target edges per step; negatives: sampled items per target (BPR).
        fanout_items: Users sampled per item: for the scored items, and for the items of the batch's users
            (their layer-1 states feed the users' layer 2). fanout_users: items sampled per user.
        align_weight: Weight of the ImageAlign loss (used only when ``graph.x_image`` is set).
        max_steps: Stop after this many steps in total (deterministic: the same steps give the same model).
        time_budget: Stop after the step that ends this many seconds after ``started`` (a
            ``time.perf_counter()`` value; default: when training starts). The model trained so far is kept;
            how many steps ran depends on the machine, so :meth:`TrainReport.note` says the ``max_steps``
            that repeat it. name: What the printed plan and estimate call the model (default ``conv``).

    With ``progress``, the plan (epochs x batches) is printed before training and a time estimate after
    the first steps: seconds a step, minutes for the plan, and the steps the budget leaves room for.

    ``workers > 1`` trains data-parallel (:func:`train_distributed`): as many processes, each on its share of the
    liked edges, their gradients averaged every step.
    """
    import torch

    from workbench.progress import progress_bar

    if workers > 1:
        return train_distributed(
            graph,
            workers=workers,
            epochs=epochs,
            hidden=hidden,
            heads=heads,
            conv=conv,
            lr=lr,
            batch_size=batch_size,
            negatives=negatives,
            fanout_items=fanout_items,
            fanout_users=fanout_users,
            align_weight=align_weight,
            max_steps=max_steps,
            time_budget=time_budget,
            started=started,
            name=name,
            weight_decay=weight_decay,
            seed=seed,
            progress=progress,
        )
    # 1. the model, its optimiser and a neighbour-sampling loader over the liked edges
    torch.manual_seed(seed)
    model = build_model(graph, hidden=hidden, heads=heads, conv=conv)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loader = _loader(
        graph, graph.edge_index[:, graph.edge_liked], batch_size, negatives, fanout_items, fanout_users, seed
    )
    # 2. train: BPR on sampled negatives (plus ImageAlign when images are set), within max_steps
    align = align_weight > 0 and getattr(graph, "x_image", None) is not None
    steps, loss_val, peak, t0 = 0, float("nan"), 0, time.perf_counter()
    deadline = None if time_budget is None else (t0 if started is None else started) + float(time_budget)
    total = epochs * len(loader) if max_steps is None else min(max_steps, epochs * len(loader))
    bar = progress_bar(total=total, desc=f"training {conv}", unit="step", disable=not progress)
    say = (lambda msg: bar.write(msg, file=sys.stderr)) if progress else (lambda msg: None)
    name = name or conv
    say(_plan_line(name, epochs, len(loader), batch_size, total, deadline, t0))
    stopped_by = None
    model.train()
    for _ in range(epochs):
        for batch in loader:
            loss, edges = _batch_loss(model, graph, batch, align_weight if align else 0.0)
            peak = max(peak, edges)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_val = float(loss.detach())
            steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_val:.4f}")
            if steps == 1:
                t1 = time.perf_counter()  # the first step pays for warm-up: time the ones after it
            elif steps == 1 + ESTIMATE_AFTER and steps < total:
                say(_estimate_line(name, steps, total, (time.perf_counter() - t1) / ESTIMATE_AFTER, deadline))
            if deadline is not None and time.perf_counter() >= deadline and steps < total:
                stopped_by = "time_budget"
            elif max_steps is not None and steps >= max_steps and steps < epochs * len(loader):
                stopped_by = "max_steps"
            if stopped_by:
                break
        if stopped_by:
            break
    # 3. done: eval mode and what training cost
    bar.close()
    model.eval()
    report = TrainReport(epochs, steps, loss_val, time.perf_counter() - t0, peak, total, stopped_by)
    say(f"{name}: {report.note()}")
    return model, report


def _loader(graph, targets, batch_size: int, negatives: int, fanout_items, fanout_users: int, seed: int):
    """A :class:`LinkNeighborLoader` over ``targets`` (liked edges), neighbours sampled by
    :class:`persona.sampling.FanoutSampler`, shuffled and sampled reproducibly from ``seed``."""
    import torch
    from torch_geometric.loader import LinkNeighborLoader
    from torch_geometric.sampler import NegativeSampling

    from persona.sampling import fanout_sampler

    data = _hetero(graph)
    num_neighbors = {REL: list(fanout_items), REV: [fanout_users, 0]}
    return LinkNeighborLoader(
        data,
        num_neighbors,
        edge_label_index=(REL, targets),
        batch_size=batch_size,
        shuffle=True,
        neg_sampling=NegativeSampling("triplet", negatives),
        neighbor_sampler=fanout_sampler(data, num_neighbors, seed=seed),
        generator=torch.Generator().manual_seed(seed),
    )


def _batch_loss(model, graph, batch, align_weight: float):
    """``(loss, message-passing edges)`` of one mini-batch of :class:`LinkNeighborLoader`: BPR of each target
    link against its sampled items, plus ``align_weight`` x ImageAlign (when > 0). The batch's own target
    links are dropped from its message passing (no label leakage)."""
    import torch
    import torch.nn.functional as F

    n_items = graph.x_item.shape[0]
    liked, disliked = graph.edge_liked, graph.edge_disliked
    un, itn = batch["user"].n_id, batch["item"].n_id
    src, pos = batch["user"].src_index, batch["item"].dst_pos_index
    neg = batch["item"].dst_neg_index
    e_ui, e_iu = batch[REL], batch[REV]
    keep_ui = _not_target(e_ui.edge_index[0], e_ui.edge_index[1], src, pos, un, itn, n_items)
    keep_iu = _not_target(e_iu.edge_index[1], e_iu.edge_index[0], src, pos, un, itn, n_items)
    ui_index, ui_eid = e_ui.edge_index[:, keep_ui], e_ui.e_id[keep_ui]
    iu_index, iu_eid = e_iu.edge_index[:, keep_iu], e_iu.e_id[keep_iu]
    x_user, x_item = graph.x_user[un], graph.x_item[itn]
    i0, i1 = model.items(x_item, itn, x_user, ui_index, graph.edge_attr[ui_eid])
    h_user, _ = model.users(x_user, i0, i1, iu_index, graph.edge_attr[iu_eid], liked[iu_eid], disliked[iu_eid])
    bias = model.item_bias(itn).squeeze(-1)
    hu = h_user[src]
    s_pos = model.score(hu, i1[pos], bias[pos])
    s_neg = model.score(hu[:, None, :], i1[neg], bias[neg])
    loss = -F.logsigmoid(s_pos[:, None] - s_neg).mean()
    if align_weight > 0:
        z = F.normalize(model.user_proj(hu), dim=-1)
        g = F.normalize(model.img_proj(graph.x_image[itn[pos]]), dim=-1)
        loss = loss + align_weight * F.cross_entropy(z @ g.T / 0.1, torch.arange(z.shape[0]))
    return loss, ui_index.shape[1] + iu_index.shape[1]


def train_distributed(graph, *, workers: int = 2, progress: bool = False, **kwargs):
    """:func:`train_gat` data-parallel over ``workers`` processes (``torch.distributed``, gloo): each trains on its
    share of the liked edges (every ``workers``-th, from its own offset), every step's gradients are summed
    across the processes and averaged (an all-reduce), so all hold the same model at every step. The graph's
    tensors are shared with the processes, not copied. Returns ``(model, TrainReport)`` like :func:`train_gat`.

    A step here sees ``workers`` x ``batch_size`` liked edges: the same steps make a different model from the
    one-process run's (deterministic for a given number of workers and seed). Each process gets an equal share
    of the threads; ``max_steps`` and ``time_budget`` bound the steps of all of them together (the first
    process's clock decides).
    """
    import os
    import tempfile

    import torch
    import torch.multiprocessing as mp

    if workers < 2:
        raise ValueError(f"train_distributed needs at least 2 workers, got {workers}")
    threads = max(1, torch.get_num_threads() // workers)
    for t in (graph.x_user, graph.x_item, graph.edge_index, graph.edge_attr, graph.edge_liked, graph.edge_disliked):
        t.share_memory_()
    if getattr(graph, "x_image", None) is not None:
        graph.x_image.share_memory_()
    with tempfile.TemporaryDirectory(prefix="pwb-ddp-") as tmp:
        out = os.path.join(tmp, "model.pt")
        mp.spawn(
            _distributed_rank,
            args=(workers, _free_port(), graph, dict(kwargs), threads, out, progress),
            nprocs=workers,
            join=True,
        )
        blob = torch.load(out, map_location="cpu", weights_only=False)
    from persona.models.gat_net import PersonaGAT

    model = PersonaGAT(**blob["config"])
    model.load_state_dict(blob["state"])
    model.eval()
    return model, TrainReport(**blob["report"])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@_deterministic()
def _distributed_rank(rank: int, world: int, port: int, graph, kw: dict, threads: int, out: str, progress: bool):
    """One process of :func:`train_distributed`."""
    import torch
    import torch.distributed as dist

    from workbench.progress import progress_bar

    # 1. the process group, this process's share of the liked edges, the same initial model everywhere
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(threads)
        seed, epochs = kw.get("seed", 0), kw.get("epochs", 20)
        max_steps, time_budget, started = kw.get("max_steps"), kw.get("time_budget"), kw.get("started")
        align_weight = kw.get("align_weight", 0.1)
        align = align_weight > 0 and getattr(graph, "x_image", None) is not None
        torch.manual_seed(seed)
        model = build_model(graph, hidden=kw.get("hidden", 64), heads=kw.get("heads", 2), conv=kw.get("conv", "gatv2"))
        opt = torch.optim.Adam(model.parameters(), lr=kw.get("lr", 5e-3), weight_decay=kw.get("weight_decay", 1e-6))
        targets = graph.edge_index[:, graph.edge_liked][:, rank::world]
        loader = _loader(
            graph,
            targets,
            kw.get("batch_size", 1024),
            kw.get("negatives", 4),
            kw.get("fanout_items", (10, 3)),
            kw.get("fanout_users", 64),
            seed + rank,
        )
        per_epoch = torch.tensor([len(loader)])
        dist.all_reduce(per_epoch, op=dist.ReduceOp.MIN)  # every process takes the same number of steps
        per_epoch = int(per_epoch)
        total = epochs * per_epoch if max_steps is None else min(max_steps, epochs * per_epoch)
        # 2. train: each step's gradients averaged over the processes before the update
        t0 = time.perf_counter()
        deadline = None if time_budget is None else (t0 if started is None else started) + float(time_budget)
        name = kw.get("name") or kw.get("conv", "gatv2")
        bar = progress_bar(
            total=total, desc=f"training {name} ({world} workers)", unit="step", disable=not (progress and rank == 0)
        )
        steps, loss_val, peak, stopped_by = 0, float("nan"), 0, None
        params = [p for p in model.parameters() if p.requires_grad]
        model.train()
        for _ in range(epochs):
            batches = iter(loader)
            for _ in range(per_epoch):
                loss, edges = _batch_loss(model, graph, next(batches), align_weight if align else 0.0)
                peak = max(peak, edges)
                opt.zero_grad()
                loss.backward()
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    dist.all_reduce(p.grad)
                    p.grad /= world
                opt.step()
                steps += 1
                loss_val = float(loss.detach())
                bar.update(1)
                stop = torch.tensor([0])
                if rank == 0:
                    if deadline is not None and time.perf_counter() >= deadline and steps < total:
                        stop[0] = 1
                    elif max_steps is not None and steps >= max_steps and steps < epochs * per_epoch:
                        stop[0] = 2
                dist.broadcast(stop, src=0)
                if int(stop):
                    stopped_by = "time_budget" if int(stop) == 1 else "max_steps"
                    break
            if stopped_by:
                break
        bar.close()
        # 3. the first process keeps the model and what training cost
        if rank == 0:
            report = TrainReport(epochs, steps, loss_val, time.perf_counter() - t0, peak, total, stopped_by, world)
            torch.save({"config": model.config, "state": model.state_dict(), "report": asdict(report)}, out)
    finally:
        dist.destroy_process_group()


#: steps timed (after the first, which pays for warm-up) before the estimate is printed
ESTIMATE_AFTER = 5


def _plan_line(name: str, epochs: int, per_epoch: int, batch_size: int, total: int, deadline, t0: float) -> str:
    text = f"{name}: {epochs} epochs x {per_epoch} steps of {batch_size} liked edges, {total} steps planned"
    if deadline is not None:
        text += f", time budget {max(deadline - t0, 0):.0f} s left for training"
    return text


def _estimate_line(name: str, steps: int, total: int, per: float, deadline) -> str:
    """The estimate after the first steps: seconds a step (``per``), the plan's time, what the budget allows."""
    text = f"{name}: about {per:.2f} s a step, about {_minutes(per * total)} for the {total} planned steps"
    if deadline is not None:
        left = max(deadline - time.perf_counter(), 0.0)
        fit = min(total, steps + int(left / per)) if per > 0 else total
        text += f"; the time budget leaves room for about {fit}"
    return text


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _not_target(users, items, src, pos, un, itn, n_items: int):
    """Mask of batch edges (local ``users``, ``items``) that are not one of the batch's target links."""
    import torch

    is_src = torch.zeros(un.numel(), dtype=torch.bool)
    is_src[src] = True
    keep = torch.ones(users.numel(), dtype=torch.bool)
    cand = is_src[users]
    keys = un[users[cand]] * n_items + itn[items[cand]]
    keep[cand] = ~torch.isin(keys, un[src] * n_items + itn[pos])
    return keep


def _csr(index: Any, n: int, chunk: int = 1 << 22):
    """``(order, ptr)``: the positions of ``index`` grouped by value, in their order within a value (a stable
    sort), and each value's offsets. A counting sort in chunks: beside the result it holds one chunk's sort, not a
    sort of the whole array (which took twice the memory of 180M edges again)."""
    import torch

    keys = index.numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
    counts = np.bincount(keys, minlength=n)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    order = np.empty(keys.shape[0], dtype=np.int64)
    cursor = ptr[:-1].copy()
    for lo in range(0, keys.shape[0], chunk):
        k = keys[lo : lo + chunk]
        idx = np.argsort(k, kind="stable")
        ks = k[idx]
        rank = np.arange(ks.shape[0]) - np.searchsorted(ks, ks, side="left")  # within its value, in this chunk
        order[cursor[ks] + rank] = lo + idx
        cursor += np.bincount(k, minlength=n)
    return torch.from_numpy(order), torch.from_numpy(ptr)


@dataclass
class Embeddings:
    """Inference output: ``h_user (U, D)``, item states ``i0``/``i1 (I, D)`` (``i1`` is the scored item
    embedding), item ``bias (I,)`` and per-edge evidence ``alpha (E,)`` (``None`` for ``sage``)."""

    h_user: Any
    i0: Any
    i1: Any
    bias: Any
    alpha: Any


@_deterministic()
def infer(
    model,
    graph,
    *,
    chunk_edges: int = 1_000_000,
    item_fanout: int | None = None,
    attention: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> Embeddings:
    """Full-graph inference in edge-bounded chunks.

    Items are computed first (chunks of items with their users), then users (chunks of users with all
    their items); each chunk's working memory is bounded by ``chunk_edges`` edges. ``item_fanout``
    caps the users an item's layer reads (a seeded uniform sample, as in training) so that very
    popular items do not dominate inference time on huge graphs; ``None`` reads all of them.
    """
    import torch

    from workbench.progress import progress_bar

    n_users, n_items = graph.x_user.shape[0], graph.x_item.shape[0]
    ei, ea = graph.edge_index, graph.edge_attr
    item_ids = torch.arange(n_items)
    # the items' chunks are infer_items' own (so batched mining, which calls it too, gets the same item states)
    i0, i1 = infer_items(model, graph, item_fanout=item_fanout, seed=seed, progress=progress)
    with torch.no_grad():
        h_user = torch.empty(n_users, model.config["hidden"])
        alpha = torch.empty(ei.shape[1]) if attention and model.attentive else None
        order, ptr = _csr(ei[0], n_users)
        for lo, hi in progress_bar(
            _chunks(ptr, chunk_edges), desc="inferring users", unit="chunk", disable=not progress
        ):
            e = order[ptr[lo] : ptr[hi]]
            iu = torch.stack([ei[1, e], ei[0, e] - lo])
            h, a = model.users(
                graph.x_user[lo:hi],
                i0,
                i1,
                iu,
                ea[e],
                graph.edge_liked[e],
                graph.edge_disliked[e],
                attention=alpha is not None,
            )
            h_user[lo:hi] = h
            if alpha is not None:
                alpha[e] = a
        bias = model.item_bias(item_ids).squeeze(-1)
    return Embeddings(h_user, i0, i1, bias, alpha)


@_deterministic()
def infer_items(
    model, graph, *, chunk_edges: int = 250_000, item_fanout: int | None = None, seed: int = 0, progress: bool = False
):
    """``(i0, i1)``: every item's states, in edge-bounded chunks of items with their users (see :func:`infer`,
    whose first half this is; a user's embedding then needs only their own edges and these)."""
    import torch

    from persona.sampling import sample_segments
    from workbench.progress import progress_bar

    n_items = graph.x_item.shape[0]
    ei, ea = graph.edge_index, graph.edge_attr
    item_ids = torch.arange(n_items)
    with torch.no_grad():
        i0 = torch.relu(model.item_in(graph.x_item)) + model.item_emb(item_ids)
        i1 = torch.empty_like(i0)
        order, ptr = _csr(ei[1], n_items)
        if item_fanout is not None:
            owner, pos = sample_segments(ptr, item_ids, item_fanout, torch.Generator().manual_seed(seed))
            order = order[pos]
            ptr = torch.zeros(n_items + 1, dtype=torch.long)
            ptr[1:] = torch.cumsum(torch.bincount(owner, minlength=n_items), 0)
        for lo, hi in progress_bar(
            _chunks(ptr, chunk_edges), desc="inferring items", unit="chunk", disable=not progress
        ):
            e = order[ptr[lo] : ptr[hi]]
            users, local = torch.unique(ei[0, e], return_inverse=True)
            sub = torch.stack([local, ei[1, e] - lo])
            _, i1[lo:hi] = model.items(graph.x_item[lo:hi], item_ids[lo:hi], graph.x_user[users], sub, ea[e])
    return i0, i1


def _chunks(ptr, chunk_edges: int):
    """Node ranges ``[lo, hi)`` whose edges total about ``chunk_edges`` (at least one node each)."""
    import torch

    n = ptr.numel() - 1
    lo = 0
    while lo < n:
        hi = int(torch.searchsorted(ptr, ptr[lo] + chunk_edges, right=True)) - 1
        hi = min(max(hi, lo + 1), n)
        yield lo, hi
        lo = hi


def save_checkpoint(model, path, meta: dict[str, Any] | None = None) -> None:
    """Weights, model config and ``meta`` (e.g. the item ids) in one ``torch.save`` file."""
    import os

    import torch

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    torch.save({"config": model.config, "state": model.state_dict(), "meta": meta or {}}, tmp)
    os.replace(tmp, path)


def items_path(checkpoint) -> str:
    """Where the item states of ``checkpoint``'s model are kept beside it (:func:`save_item_states`)."""
    return f"{checkpoint}.items.pt"


def save_item_states(checkpoint, graph, i0, i1, population_parts: dict[str, Any]) -> None:
    """Keep beside ``checkpoint`` what a new user's one pass needs besides the model: the item states, the
    graph's vocabulary (item ids, interaction kinds, time range, demographic values) and the population's
    counts (``{"likes": {item: n}, "said": [(item, text), ...]}``), so a server loads them in seconds instead of
    reading every interaction of the split. Tied to the model by its fingerprint."""
    import os

    import torch

    tmp = f"{items_path(checkpoint)}.tmp"
    torch.save(
        {
            "fingerprint": model_fingerprint(checkpoint),
            "item_ids": list(graph.item_ids),
            "kinds": list(graph.kinds),
            "t_range": tuple(graph.t_range),
            "demo_values": dict(graph.demo_values),
            "i0": i0.contiguous(),
            "i1": i1.contiguous(),
            "population": population_parts,
        },
        tmp,
    )
    os.replace(tmp, items_path(checkpoint))


def load_item_states(checkpoint) -> dict[str, Any] | None:
    """What :func:`save_item_states` kept beside ``checkpoint``, or ``None`` when there is none for its model
    (an older checkpoint, or one trained again since)."""
    import os

    import torch

    path = items_path(checkpoint)
    if not os.path.exists(path):
        return None
    blob = torch.load(path, map_location="cpu", weights_only=False)
    return blob if blob.get("fingerprint") == model_fingerprint(checkpoint) else None


def model_fingerprint(path) -> str:
    """A hash of a checkpoint's model (its config and weights; not when or how long it trained): two trainings
    to the same weights share it."""
    import hashlib
    import json

    import torch

    blob = torch.load(path, map_location="cpu", weights_only=True)
    h = hashlib.sha256(json.dumps(blob["config"], sort_keys=True).encode())
    for name, tensor in sorted(blob["state"].items()):
        h.update(name.encode())
        h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def load_checkpoint(path):
    """``(model, meta)`` from :func:`save_checkpoint` (model in eval mode)."""
    import torch

    from persona.models.gat_net import PersonaGAT

    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = PersonaGAT(**blob["config"])
    model.load_state_dict(blob["state"])
    model.eval()
    return model, blob["meta"]


def _half_life(value) -> float | None:
    """``recency_half_life`` from an option value: a positive number, or ``off``/``0`` for none."""
    if value in ("off", "none", 0, "0", False):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"recency_half_life must be a positive number of interactions or 'off', got {value!r}"
        ) from None
    if value <= 0:
        raise ValueError(f"recency_half_life must be a positive number of interactions or 'off', got {value!r}")
    return value


def _positive(name: str, value, kind):
    """``value`` as a positive ``kind`` (``None`` stays ``None``), or an error naming the option."""
    if value is None:
        return None
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if out <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return out


class GatPersonaEncoder(PersonaEncoder):
    """Persona encoder backed by a trained PersonaGAT; evidence ranked by learned attention.

    Args:
        epochs, hidden, heads, lr, batch_size, negatives: Training settings (see :func:`train_gat`).
        align: Use the ImageAlign loss when items have images (``gat``); ``False`` is ``gat-noalign``.
        n_traits: Interests kept per card; token_budget: evidence token budget per card.
        traits: ``distinctive`` (interests ranked by log-odds against the population, the default) or
            ``share`` (by raw share of the user's evidence); see :mod:`persona.traits`. Card options
            (``traits``, ``n_traits``, ``token_budget``, ``recency_half_life``) do not retrain: both modes share a
            checkpoint.
        recency_half_life: Half-life in interactions of the recency prior on the evidence weights
            (:func:`persona.traits.recency_prior`; default 4; ``"off"`` or 0: attention alone).
        text_encoder, image_encoder: Item feature encoders (embedded stand-ins by default; any
            sentence-transformers id / CLIP id or path on a machine that has them).
        item_fanout: Users an item's layer reads at inference (``None``: all; see :func:`infer`).
        max_steps: Stop training after this many steps (deterministic).
        train_workers: Train data-parallel over this many processes (:func:`train_distributed`; default 1).
        train_users: Train on the edges of this many users drawn at random (seeded) when the split has more
            (default: all). The model has no per-user parameters, so it then infers every user; training's
            neighbour sampler then indexes a graph of that size, not the split's.
        time_budget: Seconds for :meth:`fit` (item features plus training): training stops at the first step
            that ends past it, keeping the model trained so far (``report.note()`` says how many steps ran and
            the ``max_steps`` that repeat them). Not deterministic across machines; ``max_steps`` is.
        checkpoint: Path of a checkpoint to load instead of training (written by ``save``).
        seed: Training seed; the same seed gives the same model.
    """

    name = "gat"
    version = "3"
    conv = "gatv2"
    #: options that change only how cards are written from a trained model (not part of its checkpoint)
    card_options = ("traits", "n_traits", "token_budget", "recency_half_life")

    def __init__(
        self,
        epochs: int = 20,
        hidden: int = 64,
        heads: int = 2,
        lr: float = 5e-3,
        batch_size: int = 1024,
        negatives: int = 4,
        align: bool = True,
        n_traits: int = 4,
        token_budget: int = 2048,
        text_encoder: str = "minilm",
        image_encoder: str = "effnet-lite0",
        item_fanout: int | None = None,
        checkpoint: str | None = None,
        seed: int = 0,
        progress: bool = False,
        traits: str = "distinctive",
        recency_half_life: float | None = None,
        max_steps: int | None = None,
        time_budget: float | None = None,
        train_workers: int = 1,
        train_users: int | None = None,
    ):
        from persona.evidence import DEFAULT_HALF_LIFE
        from persona.traits import check_mode

        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        max_steps, time_budget = _positive("max_steps", max_steps, int), _positive("time_budget", time_budget, float)
        self.train_args = dict(
            epochs=epochs,
            hidden=hidden,
            heads=heads,
            lr=lr,
            batch_size=batch_size,
            negatives=negatives,
            conv=self.conv,
            align_weight=0.1 if align else 0.0,
            seed=seed,
        )
        if max_steps is not None:
            self.train_args["max_steps"] = max_steps
        self.train_users = _positive("train_users", train_users, int)
        train_workers = _positive("train_workers", train_workers, int)
        if train_workers > 1:  # data-parallel training (a different model from one process's: part of the key)
            self.train_args["workers"] = train_workers
        self.time_budget = time_budget
        self.n_traits, self.token_budget, self.traits = n_traits, token_budget, check_mode(traits)
        self.recency_half_life = DEFAULT_HALF_LIFE if recency_half_life is None else _half_life(recency_half_life)
        self.text_encoder, self.image_encoder = text_encoder, image_encoder
        self.checkpoint, self.progress, self.item_fanout = checkpoint, progress, item_fanout

    def fit(self, context):
        from persona.graph import build_graph

        started = time.perf_counter()
        graph = build_graph(context, text_encoder=self.text_encoder, image_encoder=self.image_encoder)
        self.prepare(context, graph, started=started)
        self.emb = infer(self.model, self.graph, item_fanout=self.item_fanout, progress=self.progress)
        return self

    def prepare(self, context, graph, *, started: float | None = None):
        """Train on ``graph`` (or load the checkpoint) without inferring every user: :meth:`fit` less its last
        step, for :func:`persona.mining.mine_personas`, which infers users in batches. ``started`` is when fitting
        began (a ``time.perf_counter()`` value), what ``time_budget`` counts from."""
        started = time.perf_counter() if started is None else started
        self.context, self.graph, self._ptr = context, graph, None
        if self.checkpoint:
            self.model, meta = load_checkpoint(self.checkpoint)
            if meta.get("item_ids") != self.graph.item_ids:
                raise ValueError(
                    f"checkpoint {self.checkpoint} was trained on a different item catalogue; "
                    "retrain (drop --checkpoint) or pass the matching dataset"
                )
            self.report = TrainReport(**meta["report"]) if meta.get("report") else None
        else:
            self.model, self.report = train_gat(
                self._training_graph(),
                progress=self.progress,
                time_budget=self.time_budget,
                started=started,
                name=self.name,
                **self.train_args,
            )
        return self

    def _training_graph(self):
        """The graph training sees: the split's, or the subgraph of ``train_users`` users drawn with the seed."""
        n = len(self.graph.user_ids)
        if not self.train_users or self.train_users >= n:
            return self.graph
        pick = np.sort(np.random.default_rng(self.train_args["seed"]).choice(n, self.train_users, replace=False))
        return self.graph.users_subgraph(pick)

    @classmethod
    def from_item_states(cls, context, states: dict[str, Any], **kwargs):
        """An encoder for new users only (:class:`persona.coldstart.ColdStart`), from its checkpoint and the item
        states kept beside it (:func:`save_item_states`): no graph of the split's users is built or read.
        ``context`` needs the catalogue and meta; its population is made from the kept counts."""
        import torch

        from persona.graph import UserItemGraph
        from persona.traits import population_from

        enc = cls(**kwargs)
        enc.model, meta = load_checkpoint(enc.checkpoint)
        if meta.get("item_ids") != states["item_ids"] or sorted(context.items) != states["item_ids"]:
            raise ValueError(f"checkpoint {enc.checkpoint} was trained on a different item catalogue")
        enc.report = TrainReport(**meta["report"]) if meta.get("report") else None
        empty = torch.zeros(0)
        enc.graph = UserItemGraph(
            [],
            states["item_ids"],
            torch.zeros(0, enc.model.config["user_dim"]),
            empty,
            torch.zeros(2, 0, dtype=torch.long),
            torch.zeros(0, enc.model.config["edge_dim"]),
            torch.zeros(0, dtype=torch.bool),
            states["kinds"],
            states["demo_values"],
            None,
            torch.zeros(0, dtype=torch.bool),
            tuple(states["t_range"]),
        )
        enc.emb = Embeddings(None, states["i0"], states["i1"], enc.model.item_bias.weight.detach().squeeze(-1), None)
        if "population" not in context.cache:
            pop = states["population"]
            context.cache["population"] = population_from(context, pop["likes"], [tuple(x) for x in pop["said"]])
        enc.context, enc._ptr = context, None
        return enc

    @classmethod
    def from_parts(cls, context, graph, model, emb=None, **kwargs):
        """An encoder around an already trained model and its graph (no training; ``emb`` computed if missing)."""
        enc = cls(**kwargs)
        enc.context, enc.graph, enc.model, enc.report, enc._ptr = context, graph, model, None, None
        enc.emb = emb if emb is not None else infer(model, graph)
        return enc

    def save(self, path) -> None:
        """Checkpoint the trained model (with the item ids it was trained on)."""
        save_checkpoint(
            self.model,
            path,
            {
                "item_ids": self.graph.item_ids,
                "encoder": self.name,
                "split": self.context.split_id,
                "train_args": self.train_args,
                "report": None if self.report is None else asdict(self.report),
            },
        )

    def score(self, user_ids: list[str], item_ids: list[str]) -> np.ndarray:
        """Link scores ``s(u, i)`` for aligned lists of users and items."""
        ui, ii = self.graph.user_index, self.graph.item_index
        hu = self.emb.h_user[[ui[u] for u in user_ids]]
        items = [ii[i] for i in item_ids]
        return (hu * self.emb.i1[items]).sum(-1).numpy() + self.emb.bias[items].numpy()

    def attention(self, user_id: str) -> list[tuple[str, float]]:
        """``(item_id, weight)`` over the user's visible items, highest first; weights sum to 1.

        Learned attention (mean over heads and layers) for ``gat``; for the attention-free ``sage``
        baseline, the normalised centred rating (liked items first) instead.
        """
        import torch

        if self._ptr is None:
            self._order, self._ptr = _csr(self.graph.edge_index[0], len(self.graph.user_ids))
        u = self.graph.user_index[user_id]
        e = self._order[self._ptr[u] : self._ptr[u + 1]]
        items = self.graph.edge_index[1, e].tolist()
        if self.emb.alpha is not None:
            weights = self.emb.alpha[e]
        else:
            weights = torch.softmax(self.graph.edge_attr[e, 0] + 2 * self.graph.edge_liked[e].float(), 0)
        return sorted(
            ((self.graph.item_ids[i], float(w)) for i, w in zip(items, weights.tolist())), key=lambda t: (-t[1], t[0])
        )

    def embedding(self, user_id: str) -> list[float]:
        return [round(float(v), 5) for v in self.emb.h_user[self.graph.user_index[user_id]].tolist()]

    def encode(self, user_ids):
        from persona.evidence import build_card

        ctx = self.context
        cards = []
        for u in user_ids:
            if u not in self.graph.user_index:
                raise KeyError(f"user {u!r} has no visible interactions in split {ctx.split_id!r}")
            cards.append(
                build_card(
                    ctx,
                    u,
                    self.attention(u),
                    self.embedding(u),
                    self.model_version,
                    traits=self.traits,
                    n_traits=self.n_traits,
                    token_budget=self.token_budget,
                    recency_half_life=self.recency_half_life,
                )
            )
        return cards


class GatNoAlignEncoder(GatPersonaEncoder):
    """``gat-noalign``: the same PersonaGAT trained without the ImageAlign loss (ablation)."""

    name = "gat-noalign"

    def __init__(self, **kwargs: Any):
        kwargs["align"] = False
        super().__init__(**kwargs)


class SagePersonaEncoder(GatPersonaEncoder):
    """``sage``: the same harness with mean-aggregating GraphSAGE layers (no attention)."""

    name = "sage"
    conv = "sage"
