"""Activity regularisation (Keras's `activity_regularizer`): a penalty on a layer's outputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.functional import ActivityLoss


class ActivityRegularization(nnx.Module):
    """Identity on x; records l1 * sum|x| + l2 * sum x^2, divided by the batch size, as an
    ActivityLoss that the train step adds to the loss (Keras divides by the batch size too)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1, self.l2 = float(l1), float(l2)
        self.penalty = ActivityLoss(jnp.zeros((), jnp.float32))

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        b = x.shape[0] if x.ndim else 1
        p = self.l1 * jnp.sum(jnp.abs(x)) + self.l2 * jnp.sum(jnp.square(x))
        self.penalty[...] = (p / b).astype(jnp.float32)
        return x
