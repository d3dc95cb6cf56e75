"""Models used as layers inside other models (the inner/outer model).

`Chain(backbone=..., head=...)` calls its named children in order; their parameters are
addressed by path ('backbone/stages/0/...', 'head/kernel'), which is what freezing by pattern,
per-group learning rates and weight converters select on. Every child receives the `train` flag
and the random streams: every jaxdl layer and model takes them (docs/design.md, the model
contract); `jaxdl.nn.Linear` is nnx.Linear under that contract.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.functional import output_spec


class Chain(nnx.Module):
    """x -> child_1 -> child_2 -> ... ; children given as keyword arguments, in call order."""

    def __init__(self, **children: nnx.Module):
        if not children:
            raise JaxdlError("Chain needs at least one child module")
        for name in children:
            if not name.isidentifier() or name.startswith("_"):
                raise JaxdlError(
                    f"Chain child names must be identifiers without a leading '_', got {name!r}"
                )
        for name, m in children.items():
            if not isinstance(m, nnx.Module):
                raise JaxdlError(f"Chain child {name!r} must be an nnx.Module, got {type(m)}")
            if type(m).__module__.startswith("flax."):
                raise JaxdlError(
                    f"Chain child {name!r} is a plain Flax layer ({type(m).__name__}), which "
                    "takes no `train` / `rngs`; use the jaxdl layer (jaxdl.nn.Linear for "
                    "nnx.Linear) or a module whose __call__(x, *, train, rngs) wraps it"
                )
        self.order = tuple(children)
        for name, m in children.items():
            setattr(self, name, m)
        # input_shape comes from the first child that has a config (layers before it, such as
        # preprocessing, keep shapes)
        self.config = next((m.config for m in children.values() if hasattr(m, "config")), None)

    def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
        for name in self.order:
            x = getattr(self, name)(x, train=train, rngs=rngs)
        return x


def feature_dim(model: nnx.Module, input_shape: tuple[int, ...], dtype=jnp.float32) -> int:
    """Width of a model's output for one example (traced abstractly)."""
    out = output_spec(model, jax.ShapeDtypeStruct((1, *input_shape), dtype))
    if len(out.shape) != 2:
        raise JaxdlError(
            f"expected pooled features [B, C] from the backbone, got {out.shape}; "
            f"build it with include_top=False, pooling='avg' (or 'max')"
        )
    return int(out.shape[-1])
