"""The pure-torch neighbour sampler behind LinkNeighborLoader: fan-out, uniformity, batch consistency."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from persona.sampling import fanout_sampler, sample_segments


def test_fanout_caps_each_segment_and_takes_small_ones_whole():
    ptr = torch.tensor([0, 3, 13, 13, 20])
    owner, pos = sample_segments(ptr, torch.tensor([0, 1, 2, 3]), 4, torch.Generator().manual_seed(0))
    counts = torch.bincount(owner, minlength=4).tolist()
    assert counts == [3, 4, 0, 4]
    assert sorted(pos[owner == 0].tolist()) == [0, 1, 2]
    for s, (lo, hi) in enumerate([(0, 3), (3, 13), (13, 13), (13, 20)]):
        p = pos[owner == s]
        assert len(set(p.tolist())) == len(p) and all(lo <= x < hi for x in p.tolist())
    owner, pos = sample_segments(ptr, torch.tensor([1]), -1)
    assert pos.tolist() == list(range(3, 13))


def test_every_neighbour_is_drawn_with_probability_k_over_degree():
    ptr = torch.tensor([0, 10])
    g = torch.Generator().manual_seed(1)
    hits = np.zeros(10)
    n = 4000
    for _ in range(n):
        _, pos = sample_segments(ptr, torch.tensor([0]), 3, g)
        hits[pos.numpy()] += 1
    assert hits.sum() == 3 * n
    assert chisquare(hits).pvalue > 0.001
    np.testing.assert_allclose(hits / n, 0.3, atol=0.03)


def tiny_hetero():
    from torch_geometric.data import HeteroData

    d = HeteroData()
    d["user"].num_nodes, d["item"].num_nodes = 5, 7
    ei = torch.tensor([[0, 0, 1, 2, 3, 4, 4, 1], [0, 1, 2, 3, 4, 5, 6, 0]])
    d["user", "r", "item"].edge_index = ei
    d["user", "r", "item"].edge_attr = torch.arange(8.0)[:, None]
    d["item", "rb", "user"].edge_index = ei.flip(0)
    d["item", "rb", "user"].edge_attr = torch.arange(8.0)[:, None]
    return d, ei


def test_link_loader_batches_are_consistent_subgraphs():
    from torch_geometric.loader import LinkNeighborLoader
    from torch_geometric.sampler import NegativeSampling

    d, ei = tiny_hetero()
    nn = {("user", "r", "item"): [2, 2], ("item", "rb", "user"): [-1, 0]}
    loader = LinkNeighborLoader(
        d,
        nn,
        edge_label_index=(("user", "r", "item"), ei),
        batch_size=3,
        neg_sampling=NegativeSampling("triplet", 2),
        neighbor_sampler=fanout_sampler(d, nn),
    )
    seen = 0
    for b in loader:
        un, itn = b["user"].n_id, b["item"].n_id
        assert len(set(un.tolist())) == len(un) and len(set(itn.tolist())) == len(itn)
        for et in (("user", "r", "item"), ("item", "rb", "user")):
            eid = b[et].e_id
            assert torch.equal(b[et].edge_attr.flatten(), eid.float())  # edge features follow their edges
            src_t, _, dst_t = et
            src, dst = b[src_t].n_id[b[et].edge_index[0]], b[dst_t].n_id[b[et].edge_index[1]]
            orig = ei if et[1] == "r" else ei.flip(0)
            assert torch.equal(src, orig[0, eid]) and torch.equal(dst, orig[1, eid])
        assert b["item"].dst_neg_index.shape == (b["user"].src_index.numel(), 2)
        seen += b["user"].src_index.numel()
    assert seen == ei.shape[1]


def test_sampler_is_seeded_and_rejects_homogeneous_graphs():
    from torch_geometric.data import Data

    d, _ = tiny_hetero()
    nn = {("user", "r", "item"): [1, 1], ("item", "rb", "user"): [1, 1]}
    outs = [
        fanout_sampler(d, nn, seed=3)._sample({"user": torch.tensor([0, 4]), "item": torch.tensor([0])})
        for _ in range(2)
    ]
    for et in outs[0].edge:
        assert torch.equal(outs[0].edge[et], outs[1].edge[et])
    with pytest.raises(TypeError, match="HeteroData"):
        fanout_sampler(Data(edge_index=torch.tensor([[0], [1]]), num_nodes=2), [2])
