"""Batching with deterministic shuffling by (seed, epoch).

Every batch has the same shape: the last one is padded and carries `weight` 0 on the padding, so
no example is dropped, losses and metrics are exact weighted means, and nothing recompiles.
The position (epoch, batch index) fully determines what comes next, so it is the iterator state a
checkpoint stores.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from jaxdl.data.sources import ArrayDataset
from jaxdl.errors import check_positive


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order of examples in `epoch`: a permutation seeded by (seed, epoch)."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def num_batches(n: int, batch_size: int, drop_remainder: bool = False) -> int:
    return n // batch_size if drop_remainder else -(-n // batch_size)


def batches(
    ds: ArrayDataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    drop_remainder: bool = False,
    start: int = 0,
    rows: slice | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield {'x', 'y', 'weight'} batches of exactly `batch_size` rows, from batch `start` on.

    `rows` keeps only those rows of every batch (a host of a multi-process run reads just its
    part of the global batch; see `jaxdl.parallel.local_rows`)."""
    check_positive("batch_size", batch_size, integer=True)
    n = len(ds)
    order = epoch_order(n, seed=seed, epoch=epoch, shuffle=shuffle)
    for b in range(start, num_batches(n, batch_size, drop_remainder)):
        idx = order[b * batch_size:(b + 1) * batch_size]
        weight = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            weight[len(idx):] = 0.0
            idx = np.concatenate([idx, np.full(batch_size - len(idx), idx[0] if len(idx) else 0)])
        if rows is not None:
            idx, weight = idx[rows], weight[rows]
        yield {"x": ds.x[idx], "y": ds.y[idx], "weight": weight}
