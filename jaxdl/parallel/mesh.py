"""Meshes and shardings for data parallelism (DESIGN.md decision 4: jit + Mesh, no pmap).

By default every device goes on one `data` axis; batches are sharded on it and parameters are
replicated, so XLA inserts the gradient all-reduce. BatchNorm statistics computed on a global
batch are the global statistics (synchronised BN) with no extra code.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdl.errors import JaxdlError

DATA = "data"


def make_mesh(devices=None, *, num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: all devices of every process) on the `data` axis;
    `num_devices` takes the first N."""
    devs = list(devices) if devices is not None else jax.devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devs):
            raise JaxdlError(f"num_devices must be in 1..{len(devs)} (the devices available), got {num_devices}")
        devs = devs[:num_devices]
    return Mesh(np.asarray(devs), (DATA,))


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


def shard_batch(batch, mesh: Mesh):
    """Place a host batch (a tree of numpy arrays, leading axis = global batch) as global arrays
    sharded on the data axis. With several processes each passes its local part."""
    sharding = data_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, a), batch)


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, replicated(mesh))
