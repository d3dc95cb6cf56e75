"""Mixed precision for the pure apply: compute in bf16, keep parameters in fp32.

The standard recipe (Micikevicius et al. 2018, "Mixed precision training"; bf16 needs no loss
scaling): the optimizer updates fp32 master parameters; each step casts them to bf16 on the way
into the model, so every matmul and convolution runs on the tensor cores, and the gradient flows
back through the cast into fp32. Floating model state (BatchNorm statistics) is cast too, or a
BatchNorm would promote its output to fp32 and every layer after it would run in fp32; the new
state is cast back to the stored dtypes so the train state never changes type between steps.
Outputs come back as fp32 for the loss (a softmax over 50k logits in bf16 loses the loss).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


def cast_floating(tree, dtype):
    """Cast every floating leaf of `tree` to `dtype` (integer leaves, e.g. tokens, untouched)."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def mixed_precision(apply: Callable, compute_dtype=jnp.bfloat16) -> Callable:
    """`apply(params, state, x, **kw) -> (y, new_state)` computing in `compute_dtype`, taking
    and returning the stored dtypes (y as fp32)."""

    def mp_apply(params, state, x, **kwargs):
        y, new_state = apply(cast_floating(params, compute_dtype), cast_floating(state, compute_dtype),
                             cast_floating(x, compute_dtype), **kwargs)
        new_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_state, state)
        return cast_floating(y, jnp.float32), new_state

    return mp_apply
