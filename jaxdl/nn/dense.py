"""A fully connected layer with Keras's options (keras.layers.Dense).

y = act(x W + b) over the last axis of x: [..., in_features] -> [..., units]. Parameters
`kernel` [in_features, units] and `bias` [units] (Keras's names and layouts, so weights copy one
to one). Regularisers are `jaxdl.train.optim.Regularizer`s (only their l1 / l2 are used here; any
object with `l1` and `l2` attributes works): the kernel and bias penalties
l1 sum|w| + l2 sum w^2, and the activity penalty of the outputs divided by the batch size (as
Keras divides it), are recorded at every call as one `jaxdl.functional.ActivityLoss`, which the
training step adds to the loss: the same total as Keras's `layer.losses`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError, check_positive
from jaxdl.functional import ActivityLoss
from jaxdl.nn.activations import get_activation
from jaxdl.nn.init import get_initializer


def _l1l2(reg, what: str) -> tuple[float, float] | None:
    if reg is None:
        return None
    l1, l2 = getattr(reg, "l1", None), getattr(reg, "l2", None)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (l1, l2)):
        raise JaxdlError(
            f"Dense: {what} must be a jaxdl.train.Regularizer (or have numeric l1 and l2), "
            f"got {reg!r}"
        )
    return float(l1), float(l2)


def _penalty(x, l1l2) -> jax.Array:
    l1, l2 = l1l2
    x = x.astype(jnp.float32)
    total = jnp.zeros((), jnp.float32)
    if l1:
        total += l1 * jnp.sum(jnp.abs(x))
    if l2:
        total += l2 * jnp.sum(jnp.square(x))
    return total


class Dense(nnx.Module):
    """keras.layers.Dense: x [..., in_features] -> act(x kernel + bias) [..., units].

    Options as Keras: `activation` (a name of jaxdl.nn.ACTIVATIONS or None), `use_bias`,
    `kernel_init` / `bias_init` (names of jaxdl.nn.INITIALIZERS or callables; Glorot-uniform
    and zeros by default), `kernel_regularizer`, `bias_regularizer`, `activity_regularizer`."""

    def __init__(
        self,
        in_features: int,
        units: int,
        *,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_init="glorot_uniform",
        bias_init="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        rngs: nnx.Rngs,
    ):
        check_positive("Dense in_features", in_features, integer=True)
        check_positive("Dense units", units, integer=True)
        self.in_features, self.units, self.activation = in_features, units, activation
        self.act = get_activation(activation)
        self.kernel = nnx.Param(
            get_initializer(kernel_init)(rngs.params(), (in_features, units), jnp.float32)
        )
        self.bias = (
            nnx.Param(get_initializer(bias_init)(rngs.params(), (units,), jnp.float32))
            if use_bias
            else None
        )
        self.regs = (
            _l1l2(kernel_regularizer, "kernel_regularizer"),
            _l1l2(bias_regularizer, "bias_regularizer") if use_bias else None,
            _l1l2(activity_regularizer, "activity_regularizer"),
        )
        self.penalty = (
            ActivityLoss(jnp.zeros((), jnp.float32)) if any(self.regs) else nnx.data(None)
        )

    def __call__(self, x, *, train: bool = False, rngs=None):
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise JaxdlError(
                f"Dense: input shape {tuple(x.shape)} does not fit; expected (..., "
                f"{self.in_features}) (features last)"
            )
        y = x @ self.kernel[...]
        if self.bias is not None:
            y = y + self.bias[...]
        y = self.act(y)
        if self.penalty is not None:
            kreg, breg, areg = self.regs
            total = jnp.zeros((), jnp.float32)
            if kreg:
                total += _penalty(self.kernel[...], kreg)
            if breg:
                total += _penalty(self.bias[...], breg)
            if areg:
                total += _penalty(y, areg) / (y.shape[0] if y.ndim > 1 else 1)
            self.penalty[...] = total
        return y
