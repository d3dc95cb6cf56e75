"""Losses. Each returns the loss per example (the label's shape), so that the
caller weights and reduces: padded examples get weight 0, sequences get a mask.

Labels may be integers (`sparse`) or one-hot / probability vectors, told apart by rank:
labels with the logits' rank are distributions, one rank less are class indices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxdl.errors import unknown_name


def categorical_cross_entropy(
    logits: jax.Array, labels: jax.Array, *, label_smoothing: float = 0.0, from_logits: bool = True
) -> jax.Array:
    """-sum_c t_c log softmax(z)_c. logits: [..., C]; labels: [...] int or [..., C] -> [...]."""
    num_classes = logits.shape[-1]
    if labels.ndim == logits.ndim - 1:
        targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    else:
        targets = labels.astype(jnp.float32)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
    logits = logits.astype(jnp.float32)
    logp = jax.nn.log_softmax(logits) if from_logits else jnp.log(jnp.clip(logits, 1e-7, 1.0))
    return -jnp.sum(targets * logp, axis=-1)


def binary_cross_entropy(
    logits: jax.Array, labels: jax.Array, *, from_logits: bool = True
) -> jax.Array:
    """-(t log p + (1-t) log(1-p)), averaged over the last axis (Keras's reduction).

    logits: [..., K] (K sigmoid outputs); labels: same shape, or [...] when K == 1 -> [...]."""
    logits = logits.astype(jnp.float32)
    labels = labels.astype(jnp.float32)
    if labels.ndim == logits.ndim - 1:
        labels = labels[..., None]
    if from_logits:
        per = optax.sigmoid_binary_cross_entropy(logits, labels)
    else:
        p = jnp.clip(logits, 1e-7, 1.0 - 1e-7)
        per = -(labels * jnp.log(p) + (1.0 - labels) * jnp.log1p(-p))
    return jnp.mean(per, axis=-1)


def mean_squared_error(pred: jax.Array, target: jax.Array) -> jax.Array:
    """mean over the last axis of (pred - target)^2. pred, target: [..., K] -> [...]."""
    pred = pred.astype(jnp.float32)
    target = target.astype(jnp.float32).reshape(pred.shape)
    return jnp.mean(jnp.square(pred - target), axis=-1)


LOSSES = {
    "categorical_crossentropy": categorical_cross_entropy,
    "sparse_categorical_crossentropy": categorical_cross_entropy,
    "binary_crossentropy": binary_cross_entropy,
    "mse": mean_squared_error,
    "mean_squared_error": mean_squared_error,
}


def get_loss(name: str):
    if callable(name):
        return name
    if name not in LOSSES:
        raise unknown_name("loss", name, LOSSES)
    return LOSSES[name]
