"""Logical axis names and the rules that map them to mesh axes (docs/design.md, decision 11).

Every parameter of the transformer, embedding, normalisation and CNN layers declares, where it
is created, one logical name per dimension (`axes("embed", "heads", "head_dim")`, stored as the
`logical_axes` metadata of its `nnx.Param`; None: a dimension that is never sharded). A rules
table, a sequence of `(logical name, mesh axis | tuple of mesh axes | None)` pairs in the MaxText
style, turns those names into a PartitionSpec for a given mesh, so data parallel, FSDP and tensor
parallel are rule sets over one model definition:

    TP (Megatron):  heads, mlp, vocab -> model; activations: batch -> data, heads / mlp /
                    vocab -> model, the residual stream replicated over model
    FSDP + TP:      the same and embed -> data (each weight split over both axes)
    + sequence parallel: the residual stream (norms, dropout) split on its length over model

Why our own `logical_axes` key and not Flax's `out_sharding`: Flax renamed that key twice
(`sharding`, `sharding_names`, `out_sharding`) and, with eager sharding (its default), shards a
variable at creation, which needs a mesh then; jaxdl builds every model without one and places it
later (the Trainer, checkpoint restores onto another mesh). `nnx.vmap` inserts the scan's layer
axis into `logical_axes` like it does into `out_sharding` (TransformerStack passes the metadata).

A parameter dimension that the rules shard but that its mesh axes do not divide (12 heads on
model=8) is an error naming the parameter, its logical axis and the sizes; with `auto=True`
(`--sharding auto`) that dimension is replicated instead and a warning lists every such array.

Activations: `constrain(x, names)` is `jax.lax.with_sharding_constraint` with logical names
resolved through the rules in force (`use_rules(mesh, rules)`, entered by `with_rules(fn, ...)`
while a step is traced); outside such a context, and for a dimension its mesh axes do not divide,
it does nothing, so layers call it unconditionally.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.errors import JaxdlError

KEY = "logical_axes"  # the nnx.Variable metadata entry

# parameter axes
EMBED = "embed"  # the model width d (the residual stream)
HEADS = "heads"
HEAD_DIM = "head_dim"
MLP = "mlp"  # the feed-forward hidden width d_ff
VOCAB = "vocab"
NORM = "norm"  # LayerNorm / BatchNorm scale and bias
LAYERS = "layers"  # the stacked-layer axis of a scanned stack
POSITIONS = "positions"  # rows of a position table
CLASSES = "classes"
CONV_IN = "conv_in"
CONV_OUT = "conv_out"
DENSE_IN = "dense_in"  # dense layers of CNN classifiers and MLPs
DENSE_OUT = "dense_out"

# activation axes
BATCH = "activation_batch"
LENGTH = "activation_length"  # sequence inside attention and the MLP
NORM_LENGTH = "activation_norm_length"  # sequence of the residual stream (sequence parallel)
ACT_EMBED = "activation_embed"
ACT_HEADS = "activation_heads"
ACT_HEAD_DIM = "activation_head_dim"
ACT_MLP = "activation_mlp"
ACT_VOCAB = "activation_vocab"

#: the residual stream between layers [B, T, d]
RESIDUAL = (BATCH, NORM_LENGTH, ACT_EMBED)

Rules = Sequence[tuple[str, Any]]


def conv_axes(ndim: int = 2, *, depthwise: bool = False) -> dict:
    """Metadata for a convolution kernel [*window, cin / groups, cout] (window never split)."""
    return axes(*([None] * ndim), None if depthwise else CONV_IN, CONV_OUT)


def dense_axes(out: str | None = DENSE_OUT) -> dict:
    """`kernel_metadata` and `bias_metadata` of a CNN / MLP Linear layer [in, out]."""
    return {"kernel_metadata": axes(DENSE_IN, out), "bias_metadata": axes(out)}


def axes(*names: str | None) -> dict[str, tuple[str | None, ...]]:
    """Metadata for a parameter with these logical axis names, one per dimension: pass as
    `nnx.Param(value, **axes(...))` or a Flax layer's `kernel_metadata=axes(...)`."""
    return {KEY: tuple(names)}


def tp_rules(*, fsdp: bool = False, sequence_parallel: bool = False) -> tuple:
    """Megatron-style tensor parallelism on the `model` axis, batch on `data`.

    Column-parallel QKV and MLP-up (heads, mlp -> model), row-parallel attention-out and
    MLP-down (the same names on their input side), vocab-parallel embedding and logits, conv
    output channels and dense outputs of CNNs on model. `fsdp`: embed and dense_in also over
    data (not conv_in: a first convolution's 3 input channels would rarely divide).
    `sequence_parallel`: the residual stream's length over model."""
    data = "data" if fsdp else None
    return (
        (HEADS, "model"),
        (MLP, "model"),
        (VOCAB, "model"),
        (CONV_OUT, "model"),
        (DENSE_OUT, "model"),
        (EMBED, data),
        (DENSE_IN, data),
        (CONV_IN, None),
        (HEAD_DIM, None),
        (NORM, None),
        (LAYERS, None),
        (POSITIONS, None),
        (CLASSES, None),
        (BATCH, "data"),
        (NORM_LENGTH, "model" if sequence_parallel else None),
        (LENGTH, None),
        (ACT_EMBED, None),
        (ACT_HEADS, "model"),
        (ACT_HEAD_DIM, None),
        (ACT_MLP, "model"),
        (ACT_VOCAB, "model"),
    )


def dp_rules(*, fsdp: bool = False) -> tuple:
    """Data parallel (every weight replicated) or, with `fsdp`, weights split on embed over data."""
    data = "data" if fsdp else None
    return ((EMBED, data), (DENSE_IN, data), (BATCH, "data"))


def _targets(rules: Rules, name: str):
    found = False
    for logical, target in rules:
        if logical == name:
            found = True
            yield () if target is None else ((target,) if isinstance(target, str) else target)
    if not found:
        yield ()


def resolve(
    names: Sequence[str | None],
    shape: Sequence[int],
    mesh: Mesh,
    rules: Rules,
    *,
    strict: bool = True,
    where: str = "array",
) -> tuple[P, list[str]]:
    """The PartitionSpec for an array of `shape` whose dimensions have these logical `names`,
    and the dimensions that were left replicated because their mesh axes do not divide them
    (only when `strict` is False; strict raises). For each name the first rule whose mesh axes
    exist in `mesh` and are not used by an earlier dimension applies; a name without a rule,
    None, or a rule to None is replicated."""
    if len(names) != len(shape):
        raise JaxdlError(
            f"{where}: {len(names)} logical axis names {tuple(names)} for an array of rank "
            f"{len(shape)} {tuple(shape)}"
        )
    used: set[str] = set()
    spec: list[Any] = []
    dropped: list[str] = []
    for i, (name, size) in enumerate(zip(names, shape, strict=True)):
        chosen = None
        if name is not None:
            for target in _targets(rules, name):
                mesh_axes = tuple(a for a in target if a in mesh.shape)
                if not mesh_axes or used & set(mesh_axes):
                    continue
                n = math.prod(mesh.shape[a] for a in mesh_axes)
                if size % n:
                    what = " x ".join(f"{a!r} of size {mesh.shape[a]}" for a in mesh_axes)
                    if strict:
                        raise JaxdlError(
                            f"{where}: dimension {i} (logical axis {name!r}) has size {size}, "
                            f"not divisible by mesh axis {what}; use a mesh whose axis divides "
                            f"{size}, change the model, or --sharding auto (sharding='auto') to "
                            "replicate such dimensions"
                        )
                    dropped.append(f"{where} dim {i} ({name!r}, {size} on {what})")
                    continue
                chosen = mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes
                used.update(mesh_axes)
                break
        spec.append(chosen)
    return P(*spec), dropped


def names_of(x) -> tuple[str | None, ...] | None:
    """The logical axis names of an nnx.Variable (None if it declares none)."""
    if isinstance(x, nnx.Variable):
        return x.get_metadata().get(KEY)
    return None


def _is_var(x) -> bool:
    return isinstance(x, nnx.Variable)


def _path(path) -> str:
    from jaxdl.functional import path_str

    return path_str(path) or "array"


def logical_specs(tree, mesh: Mesh, rules: Rules | None = None, *, auto: bool = False):
    """(tree of PartitionSpecs like `tree`, list of replicated-by-fallback dimensions). Leaves
    that are nnx.Variables with `logical_axes` follow the rules; any other array is replicated."""
    rules = tp_rules() if rules is None else rules
    dropped: list[str] = []

    def leaf(path, x):
        value = x.get_value() if _is_var(x) else x
        shape = tuple(np.shape(value))
        names = names_of(x)
        if names is None or not shape:
            spec = P()
        else:
            spec, d = resolve(names, shape, mesh, rules, strict=not auto, where=_path(path))
            dropped.extend(d)
        return x.replace(spec) if _is_var(x) else spec

    out = jax.tree_util.tree_map_with_path(leaf, tree, is_leaf=_is_var)
    return out, dropped


def logical_shardings(params, mesh: Mesh, rules: Rules | None = None, *, auto: bool = False):
    """NamedShardings for a tree of parameters (an nnx State, `nnx.eval_shape` output, an
    optimizer state of moments that carry their parameter's metadata, ...) by their logical axis
    names and `rules` (default `tp_rules()`). `auto`: dimensions the mesh does not divide are
    replicated and one warning lists them (strict otherwise: a JaxdlError)."""
    specs, dropped = logical_specs(params, mesh, rules, auto=auto)
    if dropped:
        warnings.warn(
            "sharding auto: replicated instead of sharded (the mesh axis does not divide the "
            "dimension): " + "; ".join(dropped),
            stacklevel=2,
        )
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda s: isinstance(s, P))


# --------------------------------------------------------------------------------------------
# activation constraints


class _Context(threading.local):
    mesh: Mesh | None = None
    rules: Rules = ()


_CTX = _Context()


@contextlib.contextmanager
def use_rules(mesh: Mesh | None, rules: Rules | None):
    """Within this context `constrain` resolves logical names with `rules` on `mesh`."""
    prev = (_CTX.mesh, _CTX.rules)
    _CTX.mesh, _CTX.rules = mesh, tuple(rules or ())
    try:
        yield
    finally:
        _CTX.mesh, _CTX.rules = prev


def with_rules(fn: Callable, mesh: Mesh | None, rules: Rules | None) -> Callable:
    """`fn` run (and so traced) inside `use_rules(mesh, rules)`; `fn` itself when rules is None."""
    if rules is None or mesh is None:
        return fn

    def wrapped(*args, **kwargs):
        with use_rules(mesh, rules):
            return fn(*args, **kwargs)

    wrapped.__wrapped__ = fn
    return wrapped


def constrain(x, names: Sequence[str | None]):
    """`x` constrained to the sharding its logical axis `names` map to under the rules in force
    (no-op without them; a dimension its mesh axes do not divide is left unconstrained)."""
    mesh = _CTX.mesh
    if mesh is None or not _CTX.rules or np.ndim(x) != len(names):
        return x
    spec, _ = resolve(names, np.shape(x), mesh, _CTX.rules, strict=False, where="activation")
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


__all__ = [
    "KEY",
    "RESIDUAL",
    "axes",
    "constrain",
    "conv_axes",
    "dense_axes",
    "dp_rules",
    "logical_shardings",
    "logical_specs",
    "names_of",
    "resolve",
    "tp_rules",
    "use_rules",
    "with_rules",
]
