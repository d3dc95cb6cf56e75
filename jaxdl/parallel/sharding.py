"""Where the train state lives on a mesh: replicated (data parallel) or sharded (FSDP).

One rule, a pure function of an array's shape and the mesh, places every array:

* data parallel (`fsdp=False`): arrays are replicated over the `data` axis; XLA all-reduces the
  gradients (ring all-reduce: 2(N-1)/N x the gradient bytes per device per step).
* FSDP (`fsdp=True`, ZeRO-3 style): each array is split over the `data` axis along its largest
  dimension divisible by the axis size (replicated when none divides, e.g. a bias of 10 on 8
  devices, and for scalars). XLA then all-gathers a weight where a step needs it whole and
  reduce-scatters its gradient, so each device stores 1/N of the parameters and of the optimizer
  state (which follows the parameters: a moment has its parameter's shape, hence its sharding).
* Any other mesh axis (e.g. `model` in `data=2,model=4`) always splits arrays the same way on a
  further dimension: weights sharded by annotation, the collectives left to XLA (GSPMD).

The numbers a step computes do not depend on the placement (up to the order of float sums), which
is what makes FSDP == data parallel == one device testable, and a checkpoint written on one mesh
restorable on another: restore against `abstract_state(state, new_mesh, fsdp)`.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.parallel.mesh import DATA


def array_spec(shape: tuple[int, ...], mesh: Mesh, *, fsdp: bool = False) -> P:
    """The PartitionSpec of an array of `shape`: the non-data axes of the mesh first, then (with
    `fsdp`) the data axis, each on the largest still-free dimension divisible by its size (ties:
    the later dimension, e.g. a kernel's output features)."""
    spec: list[str | None] = [None] * len(shape)
    axes = [a for a in mesh.axis_names if a != DATA] + ([DATA] if fsdp else [])
    for axis in axes:
        n = mesh.shape[axis]
        if n == 1:
            continue
        free = [i for i, d in enumerate(shape) if spec[i] is None and d >= n and d % n == 0]
        if free:
            spec[max(free, key=lambda i: (shape[i], i))] = axis
    return P(*spec)


def state_shardings(state, mesh: Mesh, *, fsdp: bool = False):
    """A tree like `state` (a TrainState, or any tree of arrays / ShapeDtypeStructs) of
    NamedShardings by `array_spec`; integer leaves such as the step and the RNG key and every
    scalar are replicated."""

    def leaf(x):
        shape = tuple(np.shape(x))
        if not shape or not jax.numpy.issubdtype(x.dtype, jax.numpy.floating):
            return NamedSharding(mesh, P())
        return NamedSharding(mesh, array_spec(shape, mesh, fsdp=fsdp))

    return jax.tree.map(leaf, state)


def place_state(state, mesh: Mesh, *, fsdp: bool = False):
    """`state` moved onto `mesh` with `state_shardings` (resharding if it lives elsewhere)."""
    return jax.device_put(state, state_shardings(state, mesh, fsdp=fsdp))


def abstract_state(state, mesh: Mesh, *, fsdp: bool = False):
    """ShapeDtypeStructs with the shardings `state` would have on `mesh`: the target tree for an
    Orbax restore onto a (possibly different) mesh, e.g. a checkpoint written on 8 devices
    restored on 1 or on a 2x4 mesh. `state` may itself be abstract (`jax.eval_shape` output)."""
    shardings = state_shardings(state, mesh, fsdp=fsdp)
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), state, shardings
    )


def bytes_per_device(state, mesh: Mesh, *, fsdp: bool = False) -> int:
    """Bytes of `state` that one device stores under `state_shardings` (shapes only)."""
    total = 0
    shardings = jax.tree.leaves(state_shardings(state, mesh, fsdp=fsdp))
    for x, s in zip(jax.tree.leaves(state), shardings, strict=True):
        shard = s.shard_shape(tuple(np.shape(x)))
        total += int(np.prod(shard, dtype=np.int64)) * np.dtype(x.dtype).itemsize
    return total
