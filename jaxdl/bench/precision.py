"""Mixed precision for the pure apply: compute in bf16, keep parameters in fp32.

The standard recipe (Micikevicius et al. 2018, "Mixed precision training"; bf16 needs no loss
scaling): the optimizer updates fp32 master parameters; each step casts them to bf16 on the way
into the model, so every matmul and convolution runs on the tensor cores, and the gradient flows
back through the cast into fp32. Model state (BatchNorm statistics) stays fp32; so that a
BatchNorm does not promote its output to fp32 (and every layer after it with it), the Flax
layers' compute `dtype` is set to bf16 (`set_compute_dtype`, Flax's own mixed-precision switch:
BatchNorm then reduces its statistics in fp32 and normalises in bf16). Outputs come back as fp32
for the loss (a softmax over 50k logits in bf16 loses the loss).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


def cast_floating(tree, dtype):
    """Cast every floating leaf of `tree` to `dtype` (integer leaves, e.g. tokens, untouched)."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def set_compute_dtype(model: nnx.Module, dtype) -> nnx.Module:
    """Set the compute `dtype` of every Flax layer in `model` that has one (Linear, Conv,
    BatchNorm, LayerNorm, Embed...), in place; parameters keep their dtype (`param_dtype`). Call
    it before `split`: the dtype is static, part of the graphdef."""
    for _, module in nnx.iter_modules(model):
        if type(module).__module__.startswith("flax.") and hasattr(module, "dtype"):
            module.dtype = dtype
    return model


def mixed_precision(apply: Callable, compute_dtype=jnp.bfloat16) -> Callable:
    """`apply(params, state, x, **kw) -> (y, new_state)` with parameters and input cast to
    `compute_dtype` (for layers that multiply with raw parameters); new state in the stored
    dtypes, y as fp32. Pair with `set_compute_dtype` on the model for Flax layers."""

    def mp_apply(params, state, x, **kwargs):
        y, new_state = apply(
            cast_floating(params, compute_dtype), state, cast_floating(x, compute_dtype), **kwargs
        )
        new_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_state, state)
        return cast_floating(y, jnp.float32), new_state

    return mp_apply
