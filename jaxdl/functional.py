"""The pure view of any jaxdl model (docs/design.md, decision 1).

Every model is a Flax NNX module whose `__call__(x, *, train=False, rngs=None)` takes the training
flag and the random streams explicitly. `split` turns it into (graphdef, params, state): `params`
holds the `nnx.Param` leaves, `state` everything else (BatchNorm statistics, activity losses...).
`make_apply(graphdef)` gives

    apply(params, state, x, *, train=False, key=None) -> (y, new_state)

a pure function of arrays that `jax.jit`, `jax.grad` and `jax.vmap` compose over: e.g.
`jax.vmap(apply, in_axes=(0, None, None))(stacked_params, state, x)` evaluates an ensemble of
parameter sets in one call. Randomness comes only from `key` (dropout, stochastic depth), so the
same key gives the same bits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Params = Any  # an nnx.State of nnx.Param leaves
ModelState = Any  # an nnx.State of every other variable


class ActivityLoss(nnx.Variable):
    """A penalty a layer computed on its activations during the last call (Keras's activity
    regularisation). The training step adds every ActivityLoss in the new state to the loss."""


def split(model: nnx.Module) -> tuple[nnx.GraphDef, Params, ModelState]:
    """(graphdef, params, state) of `model`; params are the trainable `nnx.Param` leaves."""
    graphdef, params, state = nnx.split(model, nnx.Param, ...)
    return graphdef, params, state


def merge(graphdef: nnx.GraphDef, params: Params, state: ModelState) -> nnx.Module:
    """A fresh module from its pure parts (copies, so the inputs are never aliased)."""
    return nnx.merge(graphdef, params, state, copy=True)


def make_apply(
    graphdef: nnx.GraphDef, method: str | None = None
) -> Callable[..., tuple[Any, ModelState]]:
    """The pure apply function of the model family `graphdef` describes; with `method`, of that
    submodule or method of the model (e.g. a GAN's 'generator'), over the whole model's params."""

    def apply(
        params, state, x, *, train: bool = False, key: jax.Array | None = None, method=method
    ):
        model = nnx.merge(graphdef, params, state, copy=True)
        rngs = nnx.Rngs(key) if key is not None else None
        fn = model if method is None else getattr(model, method)
        y = fn(x, train=train, rngs=rngs)
        new_state = nnx.state(model, nnx.Not(nnx.Param))
        return y, new_state

    return apply


def pure(model: nnx.Module):
    """(apply, params, state) for `model`; `apply` is `make_apply` of its graphdef."""
    graphdef, params, state = split(model)
    return make_apply(graphdef), params, state


def output_spec(model, x, *, train: bool = False):
    """The output's ShapeDtypeStructs (a pytree of them for dict or tuple outputs) of `model` on
    `x` (an array or a ShapeDtypeStruct, e.g. `jaxdl.models.inputs.example_input(config, 2)`),
    traced abstractly: nothing is computed or allocated. `model` is an nnx.Module (abstract ones
    from `nnx.eval_shape` too) or an `(apply, params, state)` triple from `pure`."""
    apply, params, state = pure(model) if isinstance(model, nnx.Module) else model
    spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
    key = jax.random.key(0) if train else None
    return jax.eval_shape(
        lambda p, s, x: apply(p, s, x, train=train, key=key)[0], params, state, spec
    )


def output_shape(model: nnx.Module, x_example) -> tuple[int, ...]:
    """The model's output shape (inference mode) for an input like `x_example`, traced
    abstractly (`output_spec`)."""
    return tuple(output_spec(model, x_example).shape)


def activity_loss(state: ModelState) -> jax.Array:
    """Sum of the activity-regularisation penalties recorded in `state` (0.0 if none)."""
    if state is None:
        return jnp.zeros((), jnp.float32)
    leaves = jax.tree.leaves(nnx.filter_state(state, ActivityLoss))
    return sum((jnp.sum(v) for v in leaves), jnp.zeros((), jnp.float32))


def count_params(tree) -> int:
    """Number of scalars in a tree of arrays or ShapeDtypeStructs (e.g. the params State)."""
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(tree) if hasattr(x, "shape")))


def param_counts(model: nnx.Module) -> dict[str, int]:
    """Trainable (nnx.Param) and non-trainable (everything else that is an array) counts."""
    _, params, state = split(model)
    rest = nnx.filter_state(state, nnx.Not(nnx.RngState))
    trainable = count_params(params)
    non_trainable = count_params(rest)
    return {
        "trainable": trainable,
        "non_trainable": non_trainable,
        "total": trainable + non_trainable,
    }


def path_str(path) -> str:
    """'layers/0/kernel' for a jax key path, dropping the `.value` attribute of NNX variables.

    The one spelling of parameter names: regularisers, freezing and weight converters use it."""
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.GetAttrKey):
            continue
        parts.append(str(getattr(k, "key", getattr(k, "idx", k))))
    return "/".join(parts)


def named_leaves(tree) -> dict[str, Any]:
    """{'layers/0/kernel': array, ...} for a params (or any) tree."""
    return {path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
