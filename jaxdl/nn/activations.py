"""Activations by name and the Maxout unit (Goodfellow et al., 2013)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import unknown_name


def heaviside(x: jax.Array) -> jax.Array:
    """Step function of the perceptron: 1 where x >= 0, else 0 (Rosenblatt's convention)."""
    return (x >= 0).astype(x.dtype)


def hard_swish(x: jax.Array) -> jax.Array:
    """x * relu6(x + 3) / 6 (MobileNet v3)."""
    return x * jax.nn.relu6(x + 3.0) / 6.0


def hard_sigmoid(x: jax.Array) -> jax.Array:
    """relu6(x + 3) / 6 (MobileNet v3's gate)."""
    return jax.nn.relu6(x + 3.0) / 6.0


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "linear": lambda x: x,
    "identity": lambda x: x,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "scaled_tanh": lambda x: 1.7159 * jnp.tanh(x * (2.0 / 3.0)),  # LeCun et al. 1998, app. A
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, negative_slope=0.2),  # Keras 3 default slope
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "softplus": jax.nn.softplus,
    "softmax": jax.nn.softmax,
    "log_softmax": jax.nn.log_softmax,
    "swish": jax.nn.silu,
    "silu": jax.nn.silu,
    "hard_swish": hard_swish,
    "hard_sigmoid": hard_sigmoid,
    "heaviside": heaviside,
}


def get_activation(name: str | Callable | None) -> Callable[[jax.Array], jax.Array]:
    """An activation function by name (None -> identity); callables pass through.

    'maxout' is not an elementwise function: it is a layer (`Maxout`), built by the MLP."""
    if name is None:
        return ACTIVATIONS["linear"]
    if callable(name):
        return name
    if name not in ACTIVATIONS:
        raise unknown_name("activation", name, [*ACTIVATIONS, "maxout"])
    return ACTIVATIONS[name]


class Maxout(nnx.Module):
    """Maxout unit: `pieces` affine maps per output, keep the largest.

    x: [..., in_features] -> [..., out_features]; params: kernel [in, out * pieces], bias.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int = 2, *, rngs: nnx.Rngs):
        if pieces < 1:
            raise ValueError(f"Maxout pieces must be >= 1, got {pieces}")
        self.out_features = out_features
        self.pieces = pieces
        self.linear = nnx.Linear(in_features, out_features * pieces, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        z = self.linear(x)
        z = z.reshape(*z.shape[:-1], self.out_features, self.pieces)
        return jnp.max(z, axis=-1)
