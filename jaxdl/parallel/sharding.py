"""Where the train state lives on a mesh: replicated (data parallel) or sharded (FSDP).

One rule, a pure function of an array's shape and the mesh, places every array:

* data parallel (`fsdp=False`): arrays are replicated over the `data` axis; XLA all-reduces the
  gradients (ring all-reduce: 2(N-1)/N x the gradient bytes per device per step).
* FSDP (`fsdp=True`, ZeRO-3 style): each array is split over the `data` axis along its largest
  dimension divisible by the axis size (replicated when none divides, e.g. a bias of 10 on 8
  devices, and for scalars). XLA then all-gathers a weight where a step needs it whole and
  reduce-scatters its gradient, so each device stores 1/N of the parameters and of the optimizer
  state (which follows the parameters: a moment has its parameter's shape, hence its sharding).
* Any other mesh axis (e.g. `model` in `data=2,model=4`) splits arrays the same way on a
  further dimension (the default, `sharding=None`: a shape rule that knows nothing of the layer).
* Tensor parallel (`sharding='tp'`, or a `rules` table): every array that declares logical axis
  names (`jaxdl.parallel.logical`: parameters, and the optimizer moments and EMA copies that
  carry their parameter's metadata) is placed by the rules, Megatron-style by default
  (`tp_rules(fsdp=fsdp)`); any other floating array is replicated over `model` (and split over
  `data` with `fsdp`). `sharding='auto'` replicates a dimension the mesh does not divide (with a
  warning listing them) where 'tp' raises.

The numbers a step computes do not depend on the placement (up to the order of float sums), which
is what makes FSDP == data parallel == one device testable, and a checkpoint written on one mesh
restorable on another: restore against `abstract_state(state, new_mesh, fsdp)`.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.errors import unknown_name
from jaxdl.parallel import logical
from jaxdl.parallel.mesh import DATA

SHARDING_MODES = ("tp", "auto")  # besides None: the shape rule


def array_spec(
    shape: tuple[int, ...], mesh: Mesh, *, fsdp: bool = False, other_axes: bool = True
) -> P:
    """The PartitionSpec of an array of `shape`: the non-data axes of the mesh first (unless
    `other_axes` is False), then (with `fsdp`) the data axis, each on the largest still-free
    dimension divisible by its size (ties: the later dimension, e.g. a kernel's output features)."""
    spec: list[str | None] = [None] * len(shape)
    others = [a for a in mesh.axis_names if a != DATA] if other_axes else []
    axes = others + ([DATA] if fsdp else [])
    for axis in axes:
        n = mesh.shape[axis]
        if n == 1:
            continue
        free = [i for i, d in enumerate(shape) if spec[i] is None and d >= n and d % n == 0]
        if free:
            spec[max(free, key=lambda i: (shape[i], i))] = axis
    return P(*spec)


def layout_rules(sharding: str | None, rules=None, *, fsdp: bool = False):
    """The logical rules a placement uses: `rules` if given, `tp_rules(fsdp=fsdp)` for 'tp' and
    'auto', None for the shape rule (`sharding=None`)."""
    if sharding is not None and sharding not in SHARDING_MODES:
        raise unknown_name("sharding mode", sharding, SHARDING_MODES)
    if rules is not None:
        return tuple(rules)
    return logical.tp_rules(fsdp=fsdp) if sharding is not None else None


def state_shardings(
    state, mesh: Mesh, *, fsdp: bool = False, sharding: str | None = None, rules=None
):
    """A tree like `state` (a TrainState, or any tree of arrays / ShapeDtypeStructs) of
    NamedShardings: by `array_spec` (sharding=None, no rules) or by logical axis names and the
    rules (see the module docstring); integer leaves such as the step and the RNG key and every
    scalar are replicated."""
    table = layout_rules(sharding, rules, fsdp=fsdp)
    if table is None:

        def leaf(x):
            shape = tuple(np.shape(x))
            if not shape or not jax.numpy.issubdtype(x.dtype, jax.numpy.floating):
                return NamedSharding(mesh, P())
            return NamedSharding(mesh, array_spec(shape, mesh, fsdp=fsdp))

        return jax.tree.map(leaf, state)
    auto = sharding == "auto"
    dropped: list[str] = []

    def logical_leaf(path, x):
        value = x.get_value() if isinstance(x, nnx.Variable) else x
        shape = tuple(np.shape(value))
        names = logical.names_of(x)
        if not shape or not jax.numpy.issubdtype(value.dtype, jax.numpy.floating):
            spec = P()
        elif names is not None and len(names) == len(shape):
            where = logical._path(path)
            spec, d = logical.resolve(names, shape, mesh, table, strict=not auto, where=where)
            dropped.extend(d)
        else:  # no names (or an optimizer statistic of another shape): not split over model
            spec = array_spec(shape, mesh, fsdp=fsdp, other_axes=False)
        s = NamedSharding(mesh, spec)
        return x.replace(s) if isinstance(x, nnx.Variable) else s

    out = jax.tree_util.tree_map_with_path(
        logical_leaf, state, is_leaf=lambda x: isinstance(x, nnx.Variable)
    )
    if dropped:
        warnings.warn(
            "sharding auto: replicated instead of sharded (the mesh axis does not divide the "
            f"dimension) in {len(dropped)} place(s): " + "; ".join(dropped),
            stacklevel=2,
        )
    return out


def is_key(x) -> bool:
    """Whether `x` (an array or ShapeDtypeStruct) is a typed PRNG key (`jax.random.key`)."""
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def key_data_sharding(sharding, data_ndim: int):
    """The sharding of `jax.random.key_data` (`data_ndim` dimensions) of a key array placed with
    `sharding`: the key's split, the trailing key-data dimensions whole."""
    if not isinstance(sharding, NamedSharding):
        return sharding
    spec = (*sharding.spec, *(None,) * (data_ndim - len(sharding.spec)))
    return NamedSharding(sharding.mesh, P(*spec[:data_ndim]))


def put(tree, shardings):
    """`jax.device_put(tree, shardings)` that also places typed PRNG keys on a mesh spanning
    several processes (multi-host): a key leaf travels as its raw key data (plain uint32, which
    device_put places on any mesh when every process holds the same value) and is wrapped back
    into a key of its own implementation on the devices."""

    def leaf(x, s):
        if not is_key(x):
            return jax.device_put(x, s)
        data = np.asarray(jax.random.key_data(x))
        placed = jax.device_put(data, key_data_sharding(s, data.ndim))
        return jax.random.wrap_key_data(placed, dtype=x.dtype)

    return jax.tree.map(leaf, tree, shardings)


def place_state(state, mesh: Mesh, *, fsdp: bool = False, sharding=None, rules=None):
    """`state` moved onto `mesh` with `state_shardings` (resharding if it lives elsewhere)."""
    return put(state, state_shardings(state, mesh, fsdp=fsdp, sharding=sharding, rules=rules))


def abstract_state(state, mesh: Mesh, *, fsdp: bool = False, sharding=None, rules=None):
    """ShapeDtypeStructs with the shardings `state` would have on `mesh`: the target tree for an
    Orbax restore onto a (possibly different) mesh, e.g. a checkpoint written on 8 devices
    restored on 1 or on a 2x4 mesh. `state` may itself be abstract (`jax.eval_shape` output)."""
    shardings = state_shardings(state, mesh, fsdp=fsdp, sharding=sharding, rules=rules)
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), state, shardings
    )


def bytes_per_device(state, mesh: Mesh, *, fsdp: bool = False, sharding=None, rules=None) -> int:
    """Bytes of `state` that one device stores under `state_shardings` (shapes only)."""
    total = 0
    shardings = jax.tree.leaves(
        state_shardings(state, mesh, fsdp=fsdp, sharding=sharding, rules=rules)
    )
    for x, s in zip(jax.tree.leaves(state), shardings, strict=True):
        shard = s.shard_shape(tuple(np.shape(x)))
        total += int(np.prod(shard, dtype=np.int64)) * x.dtype.itemsize  # key dtypes too
    return total
