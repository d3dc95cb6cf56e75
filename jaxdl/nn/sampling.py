"""Sampling the next token from logits: greedy, temperature, top-k, top-p (nucleus)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.errors import JaxdlError


def sample_logits(
    key: jax.Array | None,
    logits: jax.Array,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> jax.Array:
    """logits [..., V] -> token ids [...]. temperature 0 (or key None) is greedy (argmax).

    top_k keeps the k largest logits; top_p keeps the smallest set of tokens whose probability
    mass reaches p (Holtzman et al., 2020); both apply before sampling at `temperature`."""
    if temperature < 0:
        raise JaxdlError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise JaxdlError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise JaxdlError(f"top_p must be in (0, 1], got {top_p}")
    logits = logits.astype(jnp.float32)
    if key is None or temperature == 0:
        return jnp.argmax(logits, axis=-1)
    logits = logits / temperature
    neg = jnp.finfo(jnp.float32).min
    if top_k is not None and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, neg, logits)
    if top_p is not None and top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        cum = jnp.cumsum(probs, axis=-1)
        # keep tokens until the mass before them reaches top_p (the first is always kept)
        keep = (cum - probs) < top_p
        cutoff = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, neg, logits)
    return jax.random.categorical(key, logits, axis=-1)
