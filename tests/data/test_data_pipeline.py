"""The Grain pipeline: order by (seed, epoch), padding / drop-remainder, host sharding, placement
on the mesh, worker processes, and a checkpointable position restored at every batch."""

import jax
import numpy as np
import pytest

from jaxdl.data import ArrayDataset, Pipeline, batches, epoch_order
from jaxdl.errors import JaxdlError
from jaxdl.parallel import make_mesh


def _ds(n=10):
    return ArrayDataset(
        np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32),
        np.arange(n, dtype=np.int32),
    )


def _ys(it):
    return [np.asarray(b["y"]).tolist() for b in it]


def test_epoch_is_a_seeded_permutation_padded_with_weight_zero():
    ds = _ds(10)
    out = list(batches(ds, 4, seed=3, epoch=0))
    assert [b["x"].shape for b in out] == [(4, 3)] * 3
    ys = np.concatenate([b["y"] for b in out])
    w = np.concatenate([b["weight"] for b in out])
    assert w.tolist() == [1.0] * 10 + [0.0] * 2
    assert sorted(ys[w > 0].tolist()) == list(range(10))  # every example exactly once
    np.testing.assert_array_equal(ys[:10], epoch_order(10, seed=3, epoch=0))
    np.testing.assert_array_equal(out[0]["x"][:, 0], out[0]["y"])  # rows stay together
    # deterministic per (seed, epoch); another epoch or seed reorders
    again = np.concatenate([b["y"] for b in batches(ds, 4, seed=3, epoch=0)])
    np.testing.assert_array_equal(ys, again)
    for other in (dict(seed=3, epoch=1), dict(seed=4, epoch=0)):
        assert not np.array_equal(ys[:10], epoch_order(10, **other))
    # grain would reuse seed + epoch; the hashed per-epoch seed does not
    assert not np.array_equal(epoch_order(10, seed=3, epoch=1), epoch_order(10, seed=4, epoch=0))
    assert _ys(batches(ds, 4, shuffle=False)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 8, 8]]


def test_drop_remainder_and_errors():
    ds = _ds(10)
    p = Pipeline(ds, 4, drop_remainder=True, shard_index=0, shard_count=1)
    out = list(p.epoch(0))
    assert p.num_batches == 2 and len(out) == 2 and all(b["weight"].sum() == 4 for b in out)
    with pytest.raises(JaxdlError, match="leaves no batch"):
        Pipeline(ds, 16, drop_remainder=True)
    with pytest.raises(JaxdlError, match="not divisible by the 3 hosts"):
        Pipeline(ds, 4, shard_index=0, shard_count=3)
    with pytest.raises(JaxdlError, match="empty"):
        Pipeline(ArrayDataset(np.zeros((0, 2)), np.zeros(0)), 4)
    with pytest.raises(JaxdlError, match="start must be in"):
        list(p.epoch(0, start=3))


def test_host_shards_partition_each_global_batch():
    ds = _ds(11)
    full = list(Pipeline(ds, 4, seed=1, shard_index=0, shard_count=1).epoch(2))
    parts = [list(Pipeline(ds, 4, seed=1, shard_index=h, shard_count=2).epoch(2)) for h in range(2)]
    for b, p0, p1 in zip(full, *parts, strict=True):
        for k in ("x", "y", "weight"):
            np.testing.assert_array_equal(b[k], np.concatenate([p0[k], p1[k]]))


def test_rows_select_a_part_of_every_batch():
    ds = _ds(11)
    full = list(batches(ds, 4, seed=1, epoch=2))
    part = list(batches(ds, 4, seed=1, epoch=2, rows=slice(1, 3)))
    for b, p in zip(full, part, strict=True):
        for k in ("x", "y", "weight"):
            np.testing.assert_array_equal(b[k][1:3], p[k])
    with pytest.raises(JaxdlError, match="either rows or shard_index"):
        Pipeline(ds, 4, rows=slice(0, 2), shard_index=0, shard_count=2)
    with pytest.raises(JaxdlError, match="non-empty contiguous slice"):
        Pipeline(ds, 4, rows=slice(0, 4, 2))


def test_restored_at_every_position_yields_exactly_the_rest():
    ds = _ds(7)
    pipe = Pipeline(ds, 3, seed=5, shard_index=0, shard_count=1)
    reference = _ys(pipe.iterator(num_epochs=3))
    assert len(reference) == 3 * pipe.num_batches == 9
    for pos in range(len(reference) + 1):
        it = pipe.iterator(num_epochs=3)
        for _ in range(pos):
            next(it)
        state = it.get_state()
        assert state == {"epoch": pos // 3, "batch": pos % 3}
        restored = Pipeline(ds, 3, seed=5, shard_index=0, shard_count=1).iterator(
            state, num_epochs=3
        )
        assert _ys(restored) == reference[pos:], pos
    # the position at the end of an epoch and the start of the next are the same point
    assert _ys(pipe.iterator({"epoch": 0, "batch": 3}, num_epochs=3)) == reference[3:]
    with pytest.raises(JaxdlError, match="outside the pipeline"):
        pipe.iterator({"epoch": 0, "batch": 4})


def test_placement_on_the_mesh_data_axis():
    mesh = make_mesh()
    n = mesh.shape["data"]
    pipe = Pipeline(_ds(20), 2 * n, seed=0, mesh=mesh, device_prefetch=2)
    out = list(pipe.epoch(0))
    host = list(Pipeline(_ds(20), 2 * n, seed=0).host_batches(0))
    assert len(out) == len(host) == pipe.num_batches
    for b, h in zip(out, host, strict=True):
        assert isinstance(b["x"], jax.Array) and b["x"].sharding.spec == jax.sharding.PartitionSpec(
            "data"
        )
        assert len(b["x"].addressable_shards) == n
        np.testing.assert_array_equal(np.asarray(b["y"]), h["y"])


@pytest.mark.slow
def test_worker_processes_give_the_same_batches():
    ds = _ds(23)
    ref = Pipeline(ds, 4, seed=2, shard_index=0, shard_count=1)
    pipe = Pipeline(ds, 4, seed=2, num_workers=2, prefetch=2, shard_index=0, shard_count=1)
    assert _ys(pipe.epoch(1, start=2)) == _ys(ref.epoch(1, start=2))
    stream = pipe._stream
    assert _ys(pipe.epoch(2)) == _ys(ref.epoch(2))  # the next epoch: the same workers
    assert pipe._stream is stream
    assert _ys(pipe.epoch(0)) == _ys(ref.epoch(0))  # another position: a new stream
    assert pipe._stream is not stream
    # an iterator across epochs keeps one stream too
    it = pipe.iterator(num_epochs=3)
    got = [next(it)]
    stream = pipe._stream
    got += list(it)
    assert _ys(got) == _ys(ref.iterator(num_epochs=3))
    assert pipe._stream is stream and pipe._stream_pos == (3, 0)
