"""Putting converted tensors into a jaxdl model, with every mismatch reported.

Converters produce a flat dict of our names ('stem/conv/kernel', 'stem/bn/mean', ...: the
`jaxdl.functional.path_str` spelling of `nnx.state(model)`, so BatchNorm statistics are
included) to numpy arrays in our layouts. `assign` checks it against the model: names missing,
names extra, shapes or dtypes that differ are listed together in one error, never cast or
truncated silently.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.functional import path_str


def model_tensors(model: nnx.Module) -> dict[str, jax.Array]:
    """Our flat names -> arrays for every variable of `model` except RNG state."""
    state = nnx.state(model, nnx.Not(nnx.RngState))
    return {path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(state)[0]}


def check_tensors(
    expected: dict[str, tuple], got: dict[str, np.ndarray], *, source: str = "weights"
) -> None:
    """expected: name -> shape. Raise one error listing missing, extra and mis-shaped tensors."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    shapes = sorted(
        f"{k}: expected {tuple(expected[k])}, got {tuple(np.shape(got[k]))}"
        for k in set(expected) & set(got)
        if tuple(expected[k]) != tuple(np.shape(got[k]))
    )
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} missing: {', '.join(missing[:20])}"
                f"{' ...' if len(missing) > 20 else ''}"
            )
        if extra:
            parts.append(
                f"{len(extra)} unexpected: {', '.join(extra[:20])}"
                f"{' ...' if len(extra) > 20 else ''}"
            )
        if shapes:
            parts.append(
                f"{len(shapes)} mis-shaped: {'; '.join(shapes[:20])}"
                f"{' ...' if len(shapes) > 20 else ''}"
            )
        raise JaxdlError(f"{source} do not match the model: " + " | ".join(parts))


def build_for_weights(name: str, rngs: nnx.Rngs | None = None, **overrides) -> nnx.Module:
    """The registered model `name` to be filled by `assign`. Without `rngs` it is built with
    shapes only (`abstract_model`: no random initialisation, which for a big model costs more
    than the conversion, e.g. EfficientNet-B7 14 s against 0.7 s); a model that keeps RNG
    streams (dropout with its own rngs) is built for real, with `rngs` or nnx.Rngs(0)."""
    from jaxdl.models.registry import abstract_model, create_model

    if rngs is None:
        model = abstract_model(name, **overrides)
        if not jax.tree_util.tree_leaves(nnx.state(model, nnx.RngState)):
            return model
    return create_model(name, rngs=rngs if rngs is not None else nnx.Rngs(0), **overrides)


def assign(
    model: nnx.Module, tensors: dict[str, np.ndarray], *, source: str = "weights"
) -> nnx.Module:
    """Write `tensors` into `model` in place (all of them, or nothing) and return it. `model` may
    be shapes only (`build_for_weights`): every variable is replaced by a jax array."""
    current = model_tensors(model)
    check_tensors({k: v.shape for k, v in current.items()}, tensors, source=source)
    for k, v in current.items():
        if not np.issubdtype(np.asarray(tensors[k]).dtype, np.floating) and np.issubdtype(
            v.dtype, np.floating
        ):
            raise JaxdlError(
                f"{source}: {k} has dtype {np.asarray(tensors[k]).dtype}, expected floating point"
            )
    state = nnx.state(model, nnx.Not(nnx.RngState))
    flat = jax.tree_util.tree_flatten_with_path(state)
    # v.dtype, not np.asarray(v): v is a ShapeDtypeStruct in a model built with nnx.eval_shape
    leaves = [jnp.asarray(np.asarray(tensors[path_str(p)], dtype=v.dtype)) for p, v in flat[0]]
    nnx.update(model, jax.tree_util.tree_unflatten(flat[1], leaves))
    return model


def fold_bias_into_bn(conv_bias: np.ndarray, bn_mean: np.ndarray) -> np.ndarray:
    """BN(conv(x) + b) with running mean m equals BN'(conv(x)) with running mean m - b
    (inference). Keras's ResNet v1 has conv biases before BN; ours has none."""
    return bn_mean - conv_bias
