"""Meshes and batch shardings for data parallelism (docs/design.md, decision 4: no pmap).

By default every device of every process goes on one `data` axis; batches are sharded on it and
parameters are replicated (or sharded, see `jaxdl.parallel.sharding`), so XLA inserts the gradient
all-reduce. BatchNorm statistics computed on a global batch are the global statistics
(synchronised BN) with no extra code.

Mesh specs (the `--mesh` flag): `data=8`, `data=2,model=4`, `2x4` (unnamed sizes take the names
`data`, `model` in order) and `-1` for the one size to infer from the device count, e.g.
`data=-1,model=2`. The product must equal the number of devices used.

With several processes each one feeds only its rows of the global batch: `local_rows` says which,
`shard_batch` assembles the global array from every process's part.
"""

from __future__ import annotations

import math
import re

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.errors import JaxdlError

DATA = "data"
MODEL = "model"
DEFAULT_AXES = (DATA, MODEL)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def parse_mesh_spec(spec: str) -> dict[str, int]:
    """'data=2,model=4' | '2x4' | '8' | 'data=-1,model=2' -> {'data': 2, 'model': 4} (ordered).

    Sizes are positive ints or -1 (at most one; inferred by `make_mesh`). Every spec has a `data`
    axis: the batch is sharded on it."""
    text = spec.strip().replace(" ", "")
    if not text:
        raise JaxdlError("mesh spec is empty; expected e.g. 'data=8', 'data=2,model=4' or '2x4'")
    named = "=" in text
    items = text.split(",") if named else text.lower().split("x")
    if not named and len(items) > len(DEFAULT_AXES):
        raise JaxdlError(
            f"mesh spec {spec!r}: unnamed sizes name at most {len(DEFAULT_AXES)} axes "
            f"({', '.join(DEFAULT_AXES)}); name them, e.g. 'data=2,model=2,extra=2'"
        )
    axes: dict[str, int] = {}
    for i, item in enumerate(items):
        name, sep, size = item.partition("=") if named else (DEFAULT_AXES[i], "=", item)
        if not sep or not _NAME.match(name):
            raise JaxdlError(
                f"mesh spec {spec!r}: expected NAME=SIZE items separated by commas, got {item!r}"
            )
        if name in axes:
            raise JaxdlError(f"mesh spec {spec!r}: axis {name!r} appears twice")
        try:
            n = int(size)
        except ValueError:
            raise JaxdlError(
                f"mesh spec {spec!r}: size of axis {name!r} must be an integer, got {size!r}"
            ) from None
        if n < 1 and n != -1:
            raise JaxdlError(
                f"mesh spec {spec!r}: size of axis {name!r} must be >= 1 (or -1 to "
                f"infer it), got {n}"
            )
        axes[name] = n
    if DATA not in axes:
        raise JaxdlError(
            f"mesh spec {spec!r} has no {DATA!r} axis (the batch is sharded on it); "
            f"axes given: {', '.join(axes)}"
        )
    if list(axes.values()).count(-1) > 1:
        raise JaxdlError(f"mesh spec {spec!r}: at most one size may be -1")
    return axes


def make_mesh(
    devices=None, *, num_devices: int | None = None, axes: str | dict[str, int] | None = None
) -> Mesh:
    """A mesh over `devices` (default: every device of every process; `num_devices` takes the
    first N). `axes` is a mesh spec or a {name: size} dict; by default one `data` axis of them all.
    The sizes must multiply to the number of devices (one may be -1: inferred)."""
    devs = list(devices) if devices is not None else jax.devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devs):
            raise JaxdlError(
                f"num_devices must be in 1..{len(devs)} (the devices available), got {num_devices}"
            )
        devs = devs[:num_devices]
    n = len(devs)
    shape = parse_mesh_spec(axes) if isinstance(axes, str) else dict(axes or {DATA: -1})
    spec = ",".join(f"{k}={v}" for k, v in shape.items())
    known = math.prod(v for v in shape.values() if v != -1)
    if -1 in shape.values():
        if n % known:
            raise JaxdlError(
                f"mesh {spec}: cannot infer the -1 axis, {n} devices are not divisible by {known}"
            )
        shape = {k: (n // known if v == -1 else v) for k, v in shape.items()}
    elif known != n:
        which = f"num_devices={num_devices}" if num_devices is not None else "all devices"
        raise JaxdlError(
            f"mesh {spec} has {known} devices but {n} are used ({which}); the axis "
            f"sizes must multiply to {n}, e.g. {DATA}={n}"
        )
    sizes = tuple(shape.values())
    # topology-aware placement on GPU/TPU (fast links along the last axes); plain reshape on CPU
    arr = (
        mesh_utils.create_device_mesh(sizes, devices=devs, allow_split_physical_axes=True)
        if devs[0].platform != "cpu"
        else np.asarray(devs).reshape(sizes)
    )
    return Mesh(arr, tuple(shape))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA))


def data_axis_size(mesh: Mesh) -> int:
    return mesh.shape[DATA]


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    n = data_axis_size(mesh)
    if batch_size % n:
        raise JaxdlError(
            f"batch_size {batch_size} is not divisible by the {n} devices of the data axis; "
            f"use a multiple of {n} (e.g. {max(n, batch_size // n * n)})"
        )


def local_rows(batch_size: int, mesh: Mesh) -> slice:
    """The rows of a global batch of `batch_size` that this process's devices hold (all rows in a
    single process). Each host reads only these examples (`batches(..., rows=...)`)."""
    idx = data_sharding(mesh).addressable_devices_indices_map((batch_size,)).values()
    spans = sorted({i[0].indices(batch_size)[:2] for i in idx})
    if any(a[1] != b[0] for a, b in zip(spans, spans[1:], strict=False)):
        raise JaxdlError(
            f"process {jax.process_index()} holds the non-contiguous batch rows "
            f"{spans} on this mesh; build the mesh with each process's devices "
            f"adjacent along the data axis (make_mesh does)"
        )
    return slice(spans[0][0], spans[-1][1])


def shard_batch(batch, mesh: Mesh, *, batch_size: int | None = None):
    """Place a batch (a tree of numpy arrays) as global arrays sharded on the data axis.

    In one process the leading axis is the global batch. With several processes each passes its
    own `local_rows(batch_size, mesh)` rows and the global `batch_size` (default: local rows x
    process count, right for the default mesh)."""
    sharding = data_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)

    def put(a):
        n = batch_size if batch_size is not None else a.shape[0] * jax.process_count()
        return jax.make_array_from_process_local_data(sharding, a, (n, *a.shape[1:]))

    return jax.tree.map(put, batch)


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, replicated(mesh))
