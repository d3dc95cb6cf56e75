"""Models used as layers inside other models (SCOPE.md section 6: the inner/outer model).

`Chain(backbone=..., head=...)` calls its named children in order; their parameters are
addressed by path ('backbone/stages/0/...', 'head/kernel'), which is what freezing by pattern,
per-group learning rates and weight converters select on. Children that are jaxdl models receive
the `train` flag and random streams; plain layers (nnx.Linear...) receive just x.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError


def _takes_train(module) -> bool:
    try:
        params = inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        return False
    return "train" in params


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
        self.order = tuple(children)
        self.takes_train = tuple(_takes_train(m) for m in children.values())
        for name, m in children.items():
            setattr(self, name, m)
        # input_shape comes from the first child that has a config (layers before it, such as
        # preprocessing, keep shapes)
        self.config = next((m.config for m in children.values() if hasattr(m, "config")), None)

    def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
        for name, takes in zip(self.order, self.takes_train, strict=False):
            layer = getattr(self, name)
            x = layer(x, train=train, rngs=rngs) if takes else layer(x)
        return x


def feature_dim(model: nnx.Module, input_shape: tuple[int, ...], dtype=jnp.float32) -> int:
    """Width of a model's output for one example (traced abstractly)."""
    from jaxdl.functional import pure

    apply, params, state = pure(model)
    out = jax.eval_shape(
        lambda p, s, x: apply(p, s, x)[0],
        params,
        state,
        jax.ShapeDtypeStruct((1, *input_shape), dtype),
    )
    if len(out.shape) != 2:
        raise JaxdlError(
            f"expected pooled features [B, C] from the backbone, got {out.shape}; "
            f"build it with include_top=False, pooling='avg' (or 'max')"
        )
    return int(out.shape[-1])
