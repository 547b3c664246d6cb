"""Batch order of training.batches: it depends only on the seed and the epoch, and the ranks of a
distributed run take disjoint shares of one permutation."""


from __future__ import annotations

import numpy as np
import torch

from dualcontrast.data import Dataset
from dualcontrast.training import BatchSource


def stack(n=60, shape=(1, 8, 8)):
    return np.random.default_rng(0).random((n, *shape), dtype=np.float32)


def test_batch_order_depends_only_on_seed_and_epoch():
    data = Dataset(stack())
    a = BatchSource(data, 10, torch.device("cpu"), seed=4)
    b = BatchSource(data, 10, torch.device("cpu"), seed=4, resident="never")
    a.set_epoch(2)
    b.set_epoch(2)
    torch.manual_seed(0)
    first = [x.clone() for x in a]
    torch.manual_seed(123)  # whatever else used the global generator
    second = list(b)
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    a.set_epoch(3)
    assert not torch.equal(next(iter(a)), first[0])


def test_ranks_take_disjoint_shares_of_one_permutation():
    data = Dataset(stack(n=64), ids=np.arange(64))
    data.x[:, 0, 0, 0] = np.arange(64)  # the sample's index, readable from the batch
    seen = []
    for rank in (0, 1):
        src = BatchSource(data, 8, torch.device("cpu"), rank=rank, world_size=2, seed=1)
        src.set_epoch(5)
        assert len(src) == 4
        seen.append({int(v) for x in src for v in x[:, 0, 0, 0]})
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 64
