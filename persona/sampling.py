"""Neighbour sampling for PyG's ``LinkNeighborLoader`` without the compiled ``pyg-lib`` / ``torch-sparse``.

PyG's :class:`~torch_geometric.sampler.NeighborSampler` delegates the actual sampling to one of two
compiled extensions; neither has wheels for current torch on PyPI, so a plain ``pip install`` gets
``ImportError`` from every ``NeighborLoader``. :class:`FanoutSampler` keeps PyG's loader, negative
sampling, CSC conversion and batch filtering, and replaces only ``_sample`` with a vectorised torch
implementation (heterogeneous graphs, ``directional`` subgraphs, no replacement).

Sampling ``k`` of a node's ``d`` incoming edges: all of them when ``d <= k``, otherwise *systematic*
sampling over the node's CSC segment, positions ``floor((u + j) d / k)`` for ``j = 0..k-1`` with one
uniform offset ``u`` per node. Every neighbour is then included with probability exactly ``k / d``,
without duplicates, in O(k) work per node (no per-node loop, no sort over the whole segment).
"""

from __future__ import annotations

import warnings

import torch


def sample_segments(ptr: torch.Tensor, seeds: torch.Tensor, k: int, generator: torch.Generator | None = None):
    """Sample up to ``k`` positions from each seed's segment ``[ptr[s], ptr[s+1])``.

    Returns ``(owner, pos)``: for every sampled position, the index into ``seeds`` it belongs to and
    the position in the CSC arrays. ``k < 0`` takes every position.
    """
    start = ptr[seeds]
    deg = ptr[seeds + 1] - start
    take = deg if k < 0 else torch.clamp(deg, max=k)
    owner = torch.repeat_interleave(torch.arange(seeds.numel()), take)
    if owner.numel() == 0:
        return owner, owner.clone()
    first = torch.cumsum(take, 0) - take
    j = torch.arange(owner.numel()) - first[owner]
    if k < 0:
        return owner, start[owner] + j
    d = deg[owner]
    u = torch.rand(seeds.numel(), generator=generator, dtype=torch.float64)[owner]
    systematic = torch.floor((u + j) * d / k).to(torch.long)
    return owner, start[owner] + torch.where(d <= k, j, systematic)


def _neighbor_sampler_cls():
    from torch_geometric.sampler import HeteroSamplerOutput, NeighborSampler

    class FanoutSampler(NeighborSampler):
        """A :class:`~torch_geometric.sampler.NeighborSampler` whose sampling runs in plain torch.

        Pass it as ``LinkNeighborLoader(..., neighbor_sampler=FanoutSampler(data, num_neighbors))``.
        Only heterogeneous data and ``subgraph_type='directional'`` are supported (what the persona
        miner uses); ``seed`` makes the sampled neighbourhoods reproducible.
        """

        def __init__(self, data, num_neighbors, *, seed: int = 0, **kwargs):
            from torch_geometric.data import HeteroData

            if not isinstance(data, HeteroData):
                raise TypeError(f"FanoutSampler supports HeteroData only, got {type(data).__name__}")
            with warnings.catch_warnings():  # PyG warns that pyg-lib is missing: that is why this class exists
                warnings.simplefilter("ignore")
                super().__init__(data, num_neighbors, **kwargs)
            self.generator = torch.Generator().manual_seed(seed)
            self._g2l = {t: torch.full((n,), -1, dtype=torch.long) for t, n in self.num_nodes.items()}

        def _sample(self, seed, seed_time=None, **kwargs):
            if seed_time is not None:
                raise NotImplementedError("FanoutSampler does not do temporal sampling")
            fanouts = self.num_neighbors.get_mapped_values(self.edge_types)
            hops = max((len(v) for v in fanouts.values()), default=0)
            nodes = {t: [] for t in self.node_types}
            count = {t: 0 for t in self.node_types}
            frontier = {}
            for t in self.node_types:
                s = seed.get(t, torch.empty(0, dtype=torch.long)).to(torch.long)
                self._g2l[t][s] = torch.arange(s.numel())
                nodes[t].append(s)
                count[t] = s.numel()
                frontier[t] = s
            rows, cols, edges = ({et: [] for et in self.edge_types} for _ in range(3))
            for hop in range(hops):
                new = {t: [] for t in self.node_types}
                for et in self.edge_types:
                    rel = self.to_rel_type[et]
                    ks = fanouts[rel]
                    src_t, _, dst_t = et
                    if hop >= len(ks) or ks[hop] == 0 or frontier[dst_t].numel() == 0:
                        continue
                    owner, pos = sample_segments(self.colptr_dict[rel], frontier[dst_t], ks[hop], self.generator)
                    src = self.row_dict[rel][pos]
                    g2l = self._g2l[src_t]
                    fresh = torch.unique(src[g2l[src] < 0])
                    g2l[fresh] = torch.arange(count[src_t], count[src_t] + fresh.numel())
                    count[src_t] += fresh.numel()
                    nodes[src_t].append(fresh)
                    new[src_t].append(fresh)
                    rows[et].append(g2l[src])
                    cols[et].append(self._g2l[dst_t][frontier[dst_t][owner]])
                    edges[et].append(pos)
                frontier = {t: torch.cat(v) if v else torch.empty(0, dtype=torch.long) for t, v in new.items()}
            node = {t: torch.cat(v) for t, v in nodes.items()}
            for t, n in node.items():
                self._g2l[t][n] = -1
            empty = torch.empty(0, dtype=torch.long)
            cat = {
                et: (
                    torch.cat(rows[et]) if rows[et] else empty,
                    torch.cat(cols[et]) if cols[et] else empty,
                    torch.cat(edges[et]) if edges[et] else empty,
                )
                for et in self.edge_types
            }
            return HeteroSamplerOutput(
                node=node,
                row={et: v[0] for et, v in cat.items()},
                col={et: v[1] for et, v in cat.items()},
                edge={et: v[2] for et, v in cat.items()},
            )

    return FanoutSampler


def fanout_sampler(data, num_neighbors, *, seed: int = 0, **kwargs):
    """A :class:`FanoutSampler` (see the module docstring) for ``data``."""
    return _neighbor_sampler_cls()(data, num_neighbors, seed=seed, **kwargs)
