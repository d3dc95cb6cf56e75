"""Neurons and multilayer perceptrons.

- `Perceptron`: Rosenblatt's neuron, y = H(w.x + b) with the Heaviside step H, trained by the delta
  rule w <- w + eta (d - y) x (and b <- b + eta (d - y)), observation by observation, epoch by
  epoch, until an epoch makes no correction (`train_perceptron`).
- `MLP`: fully connected, any depth and width, any activation of `jaxdl.nn.ACTIVATIONS` or
  'maxout'; optional batch normalisation, dropout and activity regularisation per hidden layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.activations import Maxout, get_activation, heaviside
from jaxdl.nn.init import get_initializer
from jaxdl.nn.regularization import ActivityRegularization
from jaxdl.nn.shapes import check_input
from jaxdl.parallel import logical as L

# --------------------------------------------------------------------------------------------
# Perceptron


@dataclass(frozen=True)
class PerceptronConfig:
    input_shape: tuple[int, ...] = (2,)
    num_outputs: int = 1
    init: str = "zeros"  # the course starts from zero weights


class Perceptron(nnx.Module):
    """x: [B, in] -> [B, num_outputs] in {0, 1}. Params: `w` [in, out], `b` [out]."""

    def __init__(self, config: PerceptronConfig, *, rngs: nnx.Rngs):
        self.config = config
        n_in = prod(config.input_shape)
        init = get_initializer(config.init)
        self.w = nnx.Param(init(rngs.params(), (n_in, config.num_outputs), jnp.float32))
        self.b = nnx.Param(jnp.zeros((config.num_outputs,), jnp.float32))

    def net(self, x: jax.Array) -> jax.Array:
        check_input(x, self.config.input_shape, model="perceptron")
        return x.reshape(x.shape[0], -1) @ self.w[...] + self.b[...]

    def __call__(self, x, *, train: bool = False, rngs=None):
        return heaviside(self.net(x))


def delta_rule_epoch(w, b, x, d, eta):
    """One epoch of the delta rule, one observation at a time (a lax.scan over observations).

    w: [in, out], b: [out], x: [N, in], d: [N, out]. Returns (w, b, trace) where trace holds, per
    observation, the output y, the error d - y and the weights and bias after the update."""

    def step(carry, xd):
        w, b = carry
        xi, di = xd
        yi = heaviside(xi @ w + b)
        err = di - yi
        w = w + eta * jnp.outer(xi, err)
        b = b + eta * err
        return (w, b), {"y": yi, "error": err, "w": w, "b": b}

    (w, b), trace = jax.lax.scan(step, (w, b), (x, d))
    return w, b, trace


@dataclass
class PerceptronResult:
    converged: bool
    epochs: int  # epochs run, including the last one (the one without corrections, if converged)
    w: np.ndarray
    b: np.ndarray
    corrections: list[int] = field(default_factory=list)  # per epoch
    trace: list[dict] = field(default_factory=list)  # per epoch, per observation


def train_perceptron(
    model: Perceptron, x, d, *, eta: float = 0.1, max_epochs: int = 100
) -> PerceptronResult:
    """Train `model` in place by the delta rule until an epoch makes no correction.

    Stops after `max_epochs` otherwise and reports `converged=False` (XOR never converges: it is
    not linearly separable)."""
    if eta <= 0:
        raise JaxdlError(f"eta (learning rate) must be positive, got {eta}")
    if max_epochs < 1:
        raise JaxdlError(f"max_epochs must be >= 1, got {max_epochs}")
    x = jnp.asarray(x, jnp.float32).reshape(len(x), -1)
    d = jnp.asarray(d, jnp.float32).reshape(len(x), -1)
    if d.shape[1] != model.config.num_outputs:
        raise JaxdlError(
            f"targets d have {d.shape[1]} column(s); the perceptron has "
            f"{model.config.num_outputs} output(s)"
        )
    epoch_fn = jax.jit(delta_rule_epoch)
    w, b = model.w[...], model.b[...]
    result = PerceptronResult(False, 0, np.asarray(w), np.asarray(b))
    for epoch in range(1, max_epochs + 1):
        w, b, trace = epoch_fn(w, b, x, d, eta)
        n_corr = int(jnp.sum(jnp.any(trace["error"] != 0, axis=-1)))
        result.corrections.append(n_corr)
        result.trace.append(jax.tree.map(np.asarray, trace))
        result.epochs = epoch
        if n_corr == 0:
            result.converged = True
            break
    model.w[...] = w
    model.b[...] = b
    result.w, result.b = np.asarray(w), np.asarray(b)
    return result


# --------------------------------------------------------------------------------------------
# MLP


@dataclass(frozen=True)
class MLPConfig:
    input_shape: tuple[int, ...] = (64,)  # flattened on entry
    num_classes: int = 10  # outputs; 1 for a binary sigmoid head
    hidden: tuple[int, ...] = (128, 64)
    activation: str = "relu"  # any of jaxdl.nn.ACTIVATIONS, or 'maxout'
    maxout_pieces: int = 2
    dropout: float = 0.0
    batch_norm: bool = False
    output_activation: str | None = None  # None: logits (losses take logits)
    kernel_init: str = "glorot_uniform"  # Keras's default; 'he_normal' suits ReLU
    use_bias: bool = True  # the hidden layers'
    head_bias: bool = True  # the output layer's (False: Dense(use_bias=False) as the head)
    activity_l1: float = 0.0
    activity_l2: float = 0.0


class MLP(nnx.Module):
    """x: [B, *input_shape] -> [B, num_classes]. Layers are named `layers.{i}`, head `head`."""

    def __init__(self, config: MLPConfig, *, rngs: nnx.Rngs):
        c = config
        if not 0.0 <= c.dropout < 1.0:
            raise JaxdlError(f"mlp: dropout must be in [0, 1), got {c.dropout}")
        if c.num_classes < 1 or any(h < 1 for h in c.hidden):
            raise JaxdlError(
                f"mlp: widths must be >= 1, got hidden={c.hidden}, num_classes={c.num_classes}"
            )
        self.config = c
        kinit = get_initializer(c.kernel_init)
        self.act = None if c.activation == "maxout" else get_activation(c.activation)
        self.out_act = get_activation(c.output_activation)
        n = prod(c.input_shape)
        layers, norms, regs = [], [], []
        for width in c.hidden:
            if c.activation == "maxout":
                layers.append(Maxout(n, width, c.maxout_pieces, rngs=rngs))
            else:
                layers.append(
                    nnx.Linear(
                        n,
                        width,
                        use_bias=c.use_bias,
                        kernel_init=kinit,
                        **L.dense_axes(),
                        rngs=rngs,
                    )
                )
            norms.append(
                nnx.BatchNorm(
                    width,
                    momentum=0.99,
                    epsilon=1e-3,
                    scale_metadata=L.axes(L.DENSE_OUT),
                    bias_metadata=L.axes(L.DENSE_OUT),
                    rngs=rngs,
                )
                if c.batch_norm
                else None
            )
            regs.append(
                ActivityRegularization(c.activity_l1, c.activity_l2)
                if (c.activity_l1 or c.activity_l2)
                else None
            )
            n = width
        self.layers = nnx.List(layers)
        self.norms = nnx.List(norms)
        self.regs = nnx.List(regs)
        self.dropout = nnx.Dropout(c.dropout) if c.dropout > 0 else None
        self.head = nnx.Linear(
            n,
            c.num_classes,
            use_bias=c.head_bias,
            kernel_init=kinit,
            **L.dense_axes(L.CLASSES),
            rngs=rngs,
        )

    def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
        check_input(x, self.config.input_shape, model="mlp")
        h = x.reshape(x.shape[0], -1)
        for layer, norm, reg in zip(self.layers, self.norms, self.regs, strict=False):
            h = layer(h)
            if norm is not None:
                h = norm(h, use_running_average=not train)
            if self.act is not None:
                h = self.act(h)
            if reg is not None:
                h = reg(h)
            if self.dropout is not None:
                h = self.dropout(h, deterministic=not train, rngs=rngs)
        return self.out_act(self.head(h))


register(
    "perceptron",
    Perceptron,
    PerceptronConfig(),
    family="perceptron",
    task="perceptron",
    test_overrides={},
    description="Rosenblatt perceptron, Heaviside output, delta rule",
)
register(
    "mlp",
    MLP,
    MLPConfig(),
    family="mlp",
    task="classify",
    test_overrides={"hidden": (16,), "dropout": 0.2, "batch_norm": True},
    description="multilayer perceptron, any depth/width/activation",
)
register(
    "mlp_xor",
    MLP,
    MLPConfig(input_shape=(2,), num_classes=1, hidden=(4,), activation="tanh"),
    family="mlp",
    task="classify",
    test_overrides={},
    description="2-4-1 MLP for XOR (sigmoid head via binary cross-entropy)",
)

__all__ = [
    "Perceptron",
    "PerceptronConfig",
    "MLP",
    "MLPConfig",
    "train_perceptron",
    "delta_rule_epoch",
    "PerceptronResult",
]
