"""Example inputs from a model's config: `input_shape` (without batch) and optional
`input_dtype` ('float32' for images and features, 'int32' for token ids)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.errors import JaxdlError


def example_input(config, batch_size: int = 1) -> jax.ShapeDtypeStruct:
    shape = getattr(config, "input_shape", None)
    if shape is None:
        raise JaxdlError(f"{type(config).__name__} has no input_shape; pass an input explicitly")
    dtype = jnp.dtype(getattr(config, "input_dtype", "float32"))
    return jax.ShapeDtypeStruct((batch_size, *shape), dtype)


def resize_input_shape(config, size: int) -> tuple[int, ...]:
    """input_shape with its spatial size set to `size`: (H, W, C) -> (size, size, C);
    (T,) or (T, F) -> (size,) / (size, F)."""
    shape = tuple(getattr(config, "input_shape", ()))
    if len(shape) == 3:
        return (size, size, shape[2])
    if len(shape) in (1, 2) and getattr(config, "input_dtype", "float32") != "float32":
        return (size, *shape[1:])
    if len(shape) == 2:
        return (size, shape[1])
    raise JaxdlError(f"--input does not apply to input_shape {shape}")
