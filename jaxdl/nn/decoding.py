"""Autoregressive decoding with a key/value cache.

- `generate(model, prompt, n)`: a decoder-only model (`init_cache`, `decode`: GPT, whose cache
  holds the keys and values of every earlier position, or a recurrent language model, whose
  cache is its carried state) reads the prompt in one pass (prefill), then emits one token per
  step; the next token comes from `sample_logits` (greedy, temperature, top-k, top-p).
- `greedy_decode(model, src, n, bos_id)` and `beam_search(model, src, n, bos_id, beam_size)`: an
  encoder-decoder (`encode`, `init_cache`, `decode`: the Transformer, or the LSTM Seq2Seq whose
  cache is its decoder state) encodes the source once.
  Beam search keeps the `beam_size` best prefixes by total log-probability; finished beams (after
  `eos_id`) are frozen, and the final choice divides by the GNMT length penalty
  ((5 + len) / 6)^alpha (Wu et al., 2016).

Each function is jitted whole (a `lax.scan` over steps), on the model's pure parts.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError, check_positive
from jaxdl.nn.sampling import sample_logits


def generate(
    model,
    prompt,
    max_new_tokens: int,
    *,
    key=None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> jax.Array:
    """prompt [B, P] int -> [B, P + max_new_tokens]. key None or temperature 0: greedy."""
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise JaxdlError(f"prompt must be [batch, length >= 1] token ids, got {prompt.shape}")
    check_positive("max_new_tokens", max_new_tokens, integer=True)
    total = prompt.shape[1] + max_new_tokens
    context = getattr(model.config, "context", None)  # None: no limit (a recurrent net's state)
    if context is not None and total > context:
        raise JaxdlError(
            f"prompt ({prompt.shape[1]}) + max_new_tokens ({max_new_tokens}) = "
            f"{total} tokens is longer than the context of {context}"
        )
    graphdef, state = nnx.split(model)
    greedy = key is None or temperature == 0
    key = jax.random.key(0) if key is None else key
    return _generate(
        graphdef, state, prompt, key, max_new_tokens, greedy, temperature, top_k, top_p
    )


@partial(jax.jit, static_argnums=(0, 4, 5, 6, 7, 8))
def _generate(graphdef, state, prompt, key, n, greedy, temperature, top_k, top_p):
    model = nnx.merge(graphdef, state)
    b, p = prompt.shape
    cache = model.init_cache(b, p + n)

    def pick(k, logits):
        if greedy:
            return sample_logits(None, logits)
        return sample_logits(k, logits, temperature=temperature, top_k=top_k, top_p=top_p)

    logits, cache = model.decode(prompt, cache, 0)
    first = pick(jax.random.fold_in(key, 0), logits[:, -1])

    def step(carry, i):
        tok, cache = carry
        logits, cache = model.decode(tok[:, None], cache, p + i)
        nxt = pick(jax.random.fold_in(key, i + 1), logits[:, -1])
        return (nxt, cache), tok

    (last, _), toks = jax.lax.scan(step, (first, cache), jnp.arange(n - 1))
    new = jnp.concatenate([toks.T, last[:, None]], axis=1) if n > 1 else first[:, None]
    return jnp.concatenate([prompt, new.astype(prompt.dtype)], axis=1)


def greedy_decode(model, src, max_len: int, *, bos_id: int) -> jax.Array:
    """src [B, S] -> generated target tokens [B, max_len] (BOS not included)."""
    return beam_search(model, src, max_len, bos_id=bos_id, beam_size=1)


def beam_search(
    model,
    src,
    max_len: int,
    *,
    bos_id: int,
    eos_id: int | None = None,
    beam_size: int = 4,
    length_penalty: float = 0.6,
) -> jax.Array:
    """src [B, S] -> best target [B, max_len] by log-probability / ((5 + len) / 6)^alpha.

    Tokens after a beam's EOS are EOS. beam_size 1 is greedy decoding."""
    src = jnp.asarray(src, jnp.int32)
    check_positive("max_len", max_len, integer=True)
    check_positive("beam_size", beam_size, integer=True)
    if src.ndim != 2:
        raise JaxdlError(f"src must be [batch, length] token ids, got shape {src.shape}")
    graphdef, state = nnx.split(model)
    return _beam(
        graphdef,
        state,
        src,
        max_len,
        bos_id,
        -1 if eos_id is None else eos_id,
        beam_size,
        float(length_penalty),
    )


@partial(jax.jit, static_argnums=(0, 3, 4, 5, 6, 7))
def _beam(graphdef, state, src, n, bos, eos, k, alpha):
    model = nnx.merge(graphdef, state)
    b = src.shape[0]
    memory, src_mask = model.encode(src)
    # beams live on the batch axis: [B * k, ...], beam j of example i at row i * k + j
    rep = lambda a: jax.tree.map(lambda t: jnp.repeat(t, k, axis=0), a)  # noqa: E731
    memory, src_mask = rep(memory), rep(src_mask)
    cache = model.init_cache(b * k, n)
    neg = jnp.float32(-1e9)
    # only the first beam is live at the start, so the k beams do not all pick the same token
    scores = jnp.tile(jnp.concatenate([jnp.zeros(1), jnp.full(k - 1, neg)]), (b, 1))  # [B, k]
    tokens = jnp.full((b, k, n), eos if eos >= 0 else 0, jnp.int32)
    done = jnp.zeros((b, k), bool)
    lengths = jnp.zeros((b, k), jnp.int32)
    last = jnp.full((b * k,), bos, jnp.int32)

    def step(carry, i):
        scores, tokens, done, lengths, last, cache = carry
        logits, cache = model.decode(last[:, None], memory, src_mask, cache, i)
        logp = jax.nn.log_softmax(logits[:, -1].astype(jnp.float32)).reshape(b, k, -1)
        v = logp.shape[-1]
        if eos >= 0:  # a finished beam may only extend with EOS, at no cost
            frozen = jnp.full((v,), neg).at[eos].set(0.0)
            logp = jnp.where(done[..., None], frozen, logp)
        cand = (scores[..., None] + logp).reshape(b, k * v)
        scores, flat = jax.lax.top_k(cand, k)  # [B, k]
        beam, tok = flat // v, (flat % v).astype(jnp.int32)
        gather = lambda a: jnp.take_along_axis(
            a,
            beam.reshape(b, k, *([1] * (a.ndim - 2))),  # noqa: E731
            axis=1,
        )
        tokens = gather(tokens).at[:, :, i].set(tok)
        lengths = gather(lengths) + (~gather(done)).astype(jnp.int32)
        done = gather(done) | (tok == eos)
        rows = (jnp.arange(b)[:, None] * k + beam).reshape(-1)
        cache = jax.tree.map(lambda c: jnp.take(c, rows, axis=_batch_axis(c)), cache)
        return (scores, tokens, done, lengths, tok.reshape(-1), cache), None

    carry = (scores, tokens, done, lengths, last, cache)
    (scores, tokens, done, lengths, _, _), _ = jax.lax.scan(step, carry, jnp.arange(n))
    norm = scores / ((5.0 + lengths) / 6.0) ** alpha
    best = jnp.argmax(norm, axis=1)
    return jnp.take_along_axis(tokens, best[:, None, None], axis=1)[:, 0]


def _batch_axis(c) -> int:
    """Cache leaves are [B, L, H, Dh] (attention, layer loop), [N, B, L, H, Dh] (scanned
    layers) or [B, units] (a recurrent decoder's state)."""
    return 1 if c.ndim == 5 else 0
