"""The one precision policy: fp32 master parameters, bf16 or fp16 compute (mixed precision).

The standard recipe (Micikevicius et al., 2018, "Mixed precision training"): the optimizer keeps
and updates float32 parameters; each step casts them, and the input, to the compute dtype on
the way into the model, so every matmul and convolution runs in bf16 (tensor cores), and the
gradient flows back through the cast into float32. fp16 also needs dynamic loss scaling (its
range is too small for small gradients); bf16 has float32's range and needs none.

Where accuracy needs float32 it stays float32:
- the Flax layers' compute `dtype` is set to the compute dtype (`set_compute_dtype`, Flax's own
  switch), so a BatchNorm reduces its statistics in float32 (Flax forces float32 reductions) but
  normalises and returns bf16 instead of promoting every later layer back to float32; its
  running statistics (model state) keep their float32 storage;
- the model's output is cast to float32 before the loss (a softmax over 50k logits in bf16
  loses the loss), and so are the loss, the metrics and the optimizer update.

`Trainer(mixed_precision=...)` and `jaxdl bench --dtype` both go through `Policy`, so the
benchmark times the program training runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import unknown_name

COMPUTE_DTYPES = {"bf16": jnp.bfloat16, "fp16": jnp.float16}
# names accepted for "no mixed precision"
FP32_NAMES = (None, "fp32", "float32")


def cast_floating(tree, dtype):
    """Every floating-point leaf of `tree` cast to `dtype` (integers and keys unchanged)."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def set_compute_dtype(model: nnx.Module, dtype) -> nnx.Module:
    """Set the compute `dtype` of every Flax layer in `model` that has one (Linear, Conv,
    BatchNorm, LayerNorm, Embed...), in place; parameters keep their `param_dtype`. The dtype is
    static (part of the graphdef), so call it before `split`."""
    for _, module in nnx.iter_modules(model):
        if type(module).__module__.startswith("flax.") and hasattr(module, "dtype"):
            module.dtype = dtype
    return model


@dataclass(frozen=True)
class Policy:
    """A precision policy. `name`: 'fp32', 'bf16' or 'fp16'; `compute_dtype` None for fp32."""

    name: str = "fp32"

    def __post_init__(self):
        if self.name not in ("fp32", *COMPUTE_DTYPES):
            raise unknown_name("mixed precision mode", self.name, ("fp32", *COMPUTE_DTYPES))

    @property
    def compute_dtype(self):
        return COMPUTE_DTYPES.get(self.name)

    @property
    def mixed(self) -> bool:
        return self.compute_dtype is not None

    @property
    def loss_scaling(self) -> bool:
        """fp16 needs dynamic loss scaling; bf16 (float32's exponent range) does not."""
        return self.name == "fp16"

    def graphdef(self, graphdef: nnx.GraphDef, params, state) -> nnx.GraphDef:
        """The graphdef with the Flax layers' compute dtype set (the caller's model untouched)."""
        if not self.mixed:
            return graphdef
        model = nnx.merge(graphdef, params, state, copy=True)
        set_compute_dtype(model, self.compute_dtype)
        return nnx.split(model, nnx.Param, ...)[0]

    def wrap(self, apply: Callable) -> Callable:
        """`apply(params, state, x, **kw) -> (y, new_state)` computing in the compute dtype:
        floating params and inputs cast on the way in (differentiable casts: gradients arrive in
        float32), floating outputs returned as float32, the new state in its stored dtypes."""
        if not self.mixed:
            return apply
        dtype = self.compute_dtype

        def mixed_apply(params, state, x, **kwargs):
            y, new_state = apply(
                cast_floating(params, dtype), state, cast_floating(x, dtype), **kwargs
            )
            new_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_state, state)
            return cast_floating(y, jnp.float32), new_state

        return mixed_apply


def get_policy(name: str | Policy | None) -> Policy:
    """The policy for `name` (None / 'fp32' / 'float32': no mixed precision)."""
    if isinstance(name, Policy):
        return name
    return Policy("fp32" if name in FP32_NAMES else name)


__all__ = ["COMPUTE_DTYPES", "Policy", "cast_floating", "get_policy", "set_compute_dtype"]
