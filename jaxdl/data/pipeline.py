"""Input pipelines (docs/design.md, decision 8): the one way jaxdl iterates over data.

A source is random access: `len(source)` and `source[i] -> {'x': ..., 'y': ...}` (an
`ArrayDataset`, an image folder, a TFDS data source, ...); a source may also offer
`get_batch(indices)` to read many rows at once (in-memory arrays do, so small datasets cost a
fancy index per batch, not a Python loop).

`Pipeline(source, batch_size, ...)` turns it into batches:

1. epoch order: one vectorised permutation seeded by (seed, epoch) (`epoch_order`; Grain's
   index shuffle costs one Python call per example, ~15 us each);
2. index batches (`index_batches`): every epoch is cut into global batches of exactly
   `batch_size` rows; the last one is padded (by repeating its first row) with `weight` 0 on the
   padding, so no example is dropped, weighted means stay exact and nothing recompiles; or it is
   dropped with `drop_remainder=True`;
3. per-host sharding: process p of P reads rows [p*B/P, (p+1)*B/P) of each global batch, so the
   global batch is the same for any number of hosts;
4. reading / decoding the rows (`source.get_batch` or `source[i]` stacked: one fancy index per
   batch in this process, or Grain worker processes with `num_workers`, `prefetch` batches per
   worker);
5. with a `mesh`, placement of each batch as global arrays sharded on its data axis
   (`jaxdl.parallel.shard_batch`) by a background thread, `device_prefetch` batches ahead
   (`prefetch`), so host work overlaps the steps.

`Trainer.fit` goes further for in-memory arrays that fit: they live on the devices and each
step gathers its batch there from the same index batches (`jaxdl.train.loop.DeviceData`).

The position (epoch, batch index) determines everything that follows, so it is the iterator
state a checkpoint stores: `PipelineIterator.get_state()` / `set_state()`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import grain
import numpy as np

from jaxdl.errors import JaxdlError, check_positive


def epoch_seed(seed: int, epoch: int) -> np.random.SeedSequence:
    """The seed of `epoch`'s order: a hash of (seed, epoch), so nearby seeds and epochs give
    unrelated orders."""
    return np.random.SeedSequence([seed, epoch])


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order of examples in `epoch` (the one the pipeline reads them in): one vectorised
    permutation seeded by (seed, epoch), or the source order without shuffling."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng(epoch_seed(seed, epoch)).permutation(n)


def num_batches(n: int, batch_size: int, drop_remainder: bool = False) -> int:
    return n // batch_size if drop_remainder else -(-n // batch_size)


def index_batches(
    n: int,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    drop_remainder: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices [S, B] int64, weights [S, B] float32): `epoch`'s S batches of example indices.

    Every batch has exactly `batch_size` rows: the last one is padded by repeating its first
    row, with weight 0 on the padding (or dropped with `drop_remainder`)."""
    order = epoch_order(n, seed=seed, epoch=epoch, shuffle=shuffle)
    s = num_batches(n, batch_size, drop_remainder)
    idx = np.empty(s * batch_size, np.int64)
    weight = np.zeros(s * batch_size, np.float32)
    used = min(n, s * batch_size)
    idx[:used], weight[:used] = order[:used], 1.0
    if used < s * batch_size:  # the last batch of an epoch: pad with its first row
        idx[used:] = order[(s - 1) * batch_size]
    return idx.reshape(s, batch_size), weight.reshape(s, batch_size)


def read_rows(source, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Rows `idx` of a source as a dict of stacked arrays."""
    if hasattr(source, "get_batch"):
        return source.get_batch(idx)
    rows = [source[int(i)] for i in idx]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


class _Epochs:
    """Global batch number g = epoch * num_batches + b -> this host's batch b of that epoch. A
    picklable callable: the function worker processes run, so that one pool of workers serves
    consecutive epochs without restarting."""

    def __init__(self, source, batch_size, shuffle, seed, drop_remainder, rows):
        self.source, self.n, self.batch_size = source, len(source), batch_size
        self.shuffle, self.seed, self.drop_remainder = shuffle, seed, drop_remainder
        self.rows = rows
        self.num_batches = num_batches(self.n, batch_size, drop_remainder)
        self._cached: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None

    def indices(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """This host's (indices [S, b], weights [S, b]) of `epoch` (b = its rows per batch)."""
        if self._cached is None or self._cached[0] != epoch:
            idx, w = index_batches(
                self.n,
                self.batch_size,
                seed=self.seed,
                epoch=epoch,
                shuffle=self.shuffle,
                drop_remainder=self.drop_remainder,
            )
            self._cached = (epoch, (idx[:, self.rows], w[:, self.rows]))
        return self._cached[1]

    def read(self, epoch: int, b: int) -> dict[str, np.ndarray]:
        idx, w = self.indices(epoch)
        batch = read_rows(self.source, idx[b])
        batch["weight"] = w[b].copy()
        return batch

    def __call__(self, g: int) -> dict[str, np.ndarray]:
        return self.read(*divmod(int(g), self.num_batches))


class Pipeline:
    """Batches of a random-access source, seeded by (seed, epoch); see the module docstring.

    Args:
      source: `len()` and `[i] -> {'x', 'y'}` (or an `ArrayDataset`).
      batch_size: the global batch size (all hosts together).
      shuffle, seed: order of each epoch: a shuffle seeded by (seed, epoch), or the source order.
      drop_remainder: drop the last incomplete batch instead of padding it with weight 0.
      num_workers: Grain worker processes that read/decode batches (0: in this process).
      prefetch: batches each worker reads ahead (with num_workers > 0).
      shard_index, shard_count: this host's part of each batch: rows
        [index * B / count, (index + 1) * B / count) (default: jax.process_index() /
        jax.process_count()); batch_size must be divisible by shard_count.
      rows: instead of shard_index / shard_count, the slice of every global batch this host reads
        (e.g. the rows its devices hold on the mesh).
      mesh: place each batch as global arrays sharded on the mesh's data axis.
      device_prefetch: with a mesh, batches transferred ahead of the one being consumed.
    """

    def __init__(
        self,
        source,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_remainder: bool = False,
        num_workers: int = 0,
        prefetch: int = 2,
        shard_index: int | None = None,
        shard_count: int | None = None,
        rows: slice | None = None,
        mesh=None,
        device_prefetch: int = 2,
    ):
        check_positive("batch_size", batch_size, integer=True)
        if num_workers < 0 or prefetch < 0 or device_prefetch < 0:
            raise JaxdlError(
                f"num_workers, prefetch and device_prefetch must be >= 0, got "
                f"{num_workers}, {prefetch}, {device_prefetch}"
            )
        if rows is not None:
            if shard_index is not None or shard_count is not None:
                raise JaxdlError("give either rows or shard_index / shard_count, not both")
            lo, hi, step = rows.indices(batch_size)
            if step != 1 or hi <= lo:
                raise JaxdlError(
                    f"rows must be a non-empty contiguous slice of the batch of "
                    f"{batch_size}, got {rows}"
                )
        else:
            if shard_count is None or shard_index is None:
                import jax

                shard_index, shard_count = jax.process_index(), jax.process_count()
            if not 0 <= shard_index < shard_count:
                raise JaxdlError(f"shard_index must be in [0, {shard_count}), got {shard_index}")
            if batch_size % shard_count:
                raise JaxdlError(
                    f"batch_size {batch_size} is not divisible by the {shard_count} hosts"
                )
            local = batch_size // shard_count
            rows = slice(shard_index * local, (shard_index + 1) * local)
        if len(source) == 0:
            raise JaxdlError("the data source is empty")
        self.source, self.batch_size = source, batch_size
        self.shuffle, self.seed, self.drop_remainder = shuffle, seed, drop_remainder
        self.num_workers, self.prefetch = num_workers, prefetch
        self.rows = rows
        self.mesh, self.device_prefetch = mesh, device_prefetch
        self._epochs = _Epochs(source, batch_size, shuffle, seed, drop_remainder, rows)
        # the worker stream and the position (epoch, batch) it will produce next; None while an
        # epoch is being read from it
        self._stream: Iterator | None = None
        self._stream_pos: tuple[int, int] | None = None
        if self.num_batches == 0:
            raise JaxdlError(
                f"drop_remainder with batch_size {batch_size} > {len(source)} examples "
                "leaves no batch"
            )

    def __len__(self) -> int:
        """Examples per epoch (before padding or dropping)."""
        return len(self.source)

    @property
    def num_batches(self) -> int:
        """Batches per epoch."""
        return num_batches(len(self.source), self.batch_size, self.drop_remainder)

    def dataset(self, epoch: int) -> grain.MapDataset:
        """The Grain MapDataset of this host's batches of `epoch` (random access by batch index)."""
        first = epoch * self.num_batches
        return grain.MapDataset.range(first, first + self.num_batches).map(self._epochs)

    def host_batches(self, epoch: int = 0, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """This host's batches of `epoch` from batch `start` on, as numpy arrays.

        With workers, batches come from one stream over all following epochs: reading epoch e to
        its end and then asking for epoch e + 1 keeps the same worker processes; any other
        position starts a new stream."""
        if not 0 <= start <= self.num_batches:
            raise JaxdlError(f"start must be in [0, {self.num_batches}], got {start}")
        if self.num_workers == 0:
            # in-process: one fancy index per batch (no reader threads to start per epoch)
            return (self._epochs.read(epoch, b) for b in range(start, self.num_batches))
        if self._stream_pos != (epoch, start):
            self._stream = self._worker_stream(epoch * self.num_batches + start)
        self._stream_pos = None
        return self._from_stream(epoch, start)

    def _from_stream(self, epoch: int, start: int):
        for b in range(start, self.num_batches):
            batch = next(self._stream)
            if b == self.num_batches - 1:  # the stream now stands at the next epoch's start
                self._stream_pos = (epoch + 1, 0)
            yield batch

    def _worker_stream(self, first: int) -> Iterator:
        from absl import flags

        if not flags.FLAGS.is_parsed():
            # Grain's workers read absl flags, which nothing parses outside absl.app: use defaults
            flags.FLAGS.mark_as_parsed()
        # global batch numbers from `first` on, without end (2**62: far beyond any run)
        ds = grain.MapDataset.range(first, 2**62).map(self._epochs)
        it = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
        options = grain.MultiprocessingOptions(
            num_workers=self.num_workers, per_worker_buffer_size=max(self.prefetch, 1)
        )
        return iter(it.mp_prefetch(options))

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[dict[str, Any]]:
        """The batches of `epoch` from `start`: numpy, or global arrays on the mesh if set."""
        host = self.host_batches(epoch, start)
        if self.mesh is None:
            return host
        return _placed(host, self.mesh, self.device_prefetch)

    def iterator(
        self, state: dict | None = None, *, num_epochs: int | None = None
    ) -> PipelineIterator:
        """An iterator over epochs (`num_epochs`, or without end), from `state` if given."""
        it = PipelineIterator(self, num_epochs)
        if state is not None:
            it.set_state(state)
        return it

    def __iter__(self):
        return self.iterator(num_epochs=1)


def prefetch(host: Iterator, place, ahead: int = 2) -> Iterator:
    """`place(batch)` for every batch of `host`, computed by a background thread up to `ahead`
    batches early, so reading, gathering and the host-to-device transfer overlap the steps that
    run meanwhile. Exceptions reach the consumer; closing the iterator stops the thread."""
    if ahead <= 0:
        yield from (place(b) for b in host)
        return
    q: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for b in host:
                item = place(b)
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # handed to the consumer, raised there
            q.put(_Failed(e))

    t = threading.Thread(target=work, name="jaxdl-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def _placed(host: Iterator, mesh, ahead: int) -> Iterator:
    """Put batches on the mesh `ahead` batches early, so transfers overlap the steps."""
    from jaxdl.parallel.mesh import shard_batch

    return prefetch(host, lambda b: shard_batch(b, mesh), ahead)


class PipelineIterator:
    """Batches across epochs with a checkpointable position.

    `get_state()` is {'epoch', 'batch'}: the position of the NEXT batch (after an epoch's last
    batch, the start of the next epoch); a fresh iterator given that state (`set_state`) yields
    exactly the batches that remained. It is plain JSON, for a checkpoint's JsonSave."""

    def __init__(self, pipeline: Pipeline, num_epochs: int | None = None):
        self.pipeline, self.num_epochs = pipeline, num_epochs
        self._epoch, self._batch = 0, 0
        self._it: Iterator | None = None

    def get_state(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batch": self._batch}

    def set_state(self, state: dict) -> None:
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if epoch < 0 or not 0 <= batch <= self.pipeline.num_batches:
            raise JaxdlError(
                f"iterator state {state} is outside the pipeline (epochs >= 0, "
                f"batches 0..{self.pipeline.num_batches})"
            )
        self._epoch, self._batch, self._it = epoch, batch, None

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self.num_epochs is not None and self._epoch >= self.num_epochs:
                raise StopIteration
            if self._batch < self.pipeline.num_batches:
                if self._it is None:
                    self._it = self.pipeline.epoch(self._epoch, self._batch)
                batch = next(self._it)
                self._batch += 1
                if self._batch == self.pipeline.num_batches:  # state: the start of the next epoch
                    self._epoch, self._batch, self._it = self._epoch + 1, 0, None
                return batch
            self._epoch, self._batch, self._it = self._epoch + 1, 0, None


def batches(
    ds,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    drop_remainder: bool = False,
    start: int = 0,
    rows: slice | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield {'x', 'y', 'weight'} batches of exactly `batch_size` rows of `epoch`, from batch
    `start` on (a one-epoch `Pipeline`); with `rows`, only those rows of every batch (a host's
    part of the global batch)."""
    pipe = Pipeline(
        ds,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_remainder=drop_remainder,
        rows=rows if rows is not None else slice(0, batch_size),
    )
    return pipe.host_batches(epoch, start)
