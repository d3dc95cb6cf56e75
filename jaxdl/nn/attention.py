"""Attention and positional encodings (Vaswani et al., 2017, "Attention is all you need").

- `dot_product_attention`: softmax(Q K^T / sqrt(d_k)) V through `jax.nn.dot_product_attention`
  with `implementation=None`, so XLA picks the fused cuDNN kernel on a GPU where the shapes and
  dtypes allow and its own XLA lowering elsewhere (same results within float tolerance).
- Masks are boolean, True = may attend, shaped to broadcast to [B, H, T, S] (or [B, T, S], Keras's
  `attention_mask` convention, which gets a head axis). `causal_mask`, `padding_mask`.
- `MultiHeadAttention`: self- or cross-attention with per-head projections. Parameters are laid
  out like Keras's `MultiHeadAttention` so weights copy one to one:

      ours                 Keras
      query/kernel  [D, H, Dh]   query_dense kernel
      query/bias    [H, Dh]      query_dense bias
      key/..., value/...         key_dense, value_dense
      out/kernel    [H, Dh, Do]  output_dense kernel
      out/bias      [Do]         output_dense bias

  An optional key/value cache (`init_cache`) makes autoregressive decoding cost one position
  per step; rotary position embeddings (Su et al., 2021) rotate queries and keys.
- Positions: `sinusoidal_positions` (PE[p, 2k] = sin(p w_k), PE[p, 2k+1] = cos(p w_k),
  w_k = 1 / 10000^(2k/d)), `LearnedPositions`, `apply_rotary`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.nn.macs import attention_macs
from jaxdl.parallel import logical as L

# --------------------------------------------------------------------------------------------
# masks and the attention product


def causal_mask(q_len: int, kv_len: int | None = None, *, offset=0) -> jax.Array:
    """[1, 1, T, S] bool: query i (at absolute position offset + i) sees keys j <= offset + i."""
    kv_len = q_len if kv_len is None else kv_len
    q_pos = offset + jnp.arange(q_len)[:, None]
    return (jnp.arange(kv_len)[None, :] <= q_pos)[None, None]


def padding_mask(tokens: jax.Array, pad_id: int) -> jax.Array:
    """tokens [B, S] -> [B, 1, 1, S] bool: keys that are not padding."""
    return (tokens != pad_id)[:, None, None, :]


def combine_masks(*masks) -> jax.Array | None:
    """Logical AND of the masks that are not None (None if all are)."""
    out = None
    for m in masks:
        if m is not None:
            out = m if out is None else jnp.logical_and(out, m)
    return out


def _check_mask(mask, batch: int, heads: int, q_len: int, kv_len: int) -> jax.Array:
    """Bring `mask` to rank 4 and check it broadcasts to [B, H, T, S] (a clear error if not)."""
    mask = jnp.asarray(mask)
    target = (batch, heads, q_len, kv_len)
    if mask.ndim == 3:  # Keras: [B, T, S]
        mask = mask[:, None]
    ok = mask.ndim == 4 and all(m in (1, t) for m, t in zip(mask.shape, target, strict=False))
    if not ok:
        raise JaxdlError(
            f"attention mask of shape {tuple(jnp.shape(mask))} does not broadcast to "
            f"(batch, heads, query_len, key_len) = {target}; pass [B, T, S] or [B|1, H|1, T|1, S|1]"
        )
    return mask.astype(jnp.bool_)


def dot_product_attention(
    q, k, v, *, mask=None, is_causal: bool = False, implementation: str | None = None
) -> jax.Array:
    """q [B, T, H, Dh], k and v [B, S, H, Dh] -> [B, T, H, Dh].

    softmax(q k^T / sqrt(Dh) + masked) v. `mask` (True = attend) broadcasts to [B, H, T, S];
    `is_causal` adds the lower-triangular mask (keys aligned to the end of the query block is not
    assumed: query i sees key j <= i). `implementation=None` lets JAX use cuDNN's fused kernel on a
    GPU where it applies and XLA otherwise."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise JaxdlError(
            f"attention expects q, k, v of rank 4 [B, T, H, Dh], got ranks "
            f"{q.ndim}, {k.ndim}, {v.ndim}"
        )
    b, t, h, _ = q.shape
    if mask is not None:
        mask = _check_mask(mask, b, h, t, k.shape[1])
    return jax.nn.dot_product_attention(
        q, k, v, mask=mask, is_causal=is_causal, implementation=implementation
    )


# --------------------------------------------------------------------------------------------
# positions


def sinusoidal_positions(length: int, dim: int, *, base: float = 10000.0) -> jax.Array:
    """[length, dim]: PE[p, 2k] = sin(p w_k), PE[p, 2k+1] = cos(p w_k), w_k = base^(-2k/dim)."""
    if dim % 2:
        raise JaxdlError(f"sinusoidal positions need an even width, got {dim}")
    pos = np.arange(length)[:, None]
    w = 1.0 / base ** (np.arange(0, dim, 2) / dim)
    pe = np.zeros((length, dim), np.float32)
    pe[:, 0::2] = np.sin(pos * w)
    pe[:, 1::2] = np.cos(pos * w)
    return jnp.asarray(pe)


class LearnedPositions(nnx.Module):
    """A trained table `embedding` [max_len, d]; x [B, T, d] + embedding[offset : offset + T]."""

    def __init__(self, max_len: int, dim: int, *, init_std: float = 0.02, rngs: nnx.Rngs):
        self.max_len = max_len
        self.embedding = nnx.Param(
            init_std * jax.random.normal(rngs.params(), (max_len, dim)),
            **L.axes(L.POSITIONS, L.EMBED),
        )

    def __call__(self, x, offset=0, *, train: bool = False, rngs=None):
        t = x.shape[1]
        return x + jax.lax.dynamic_slice_in_dim(self.embedding[...], offset, t, axis=0)[None]


def apply_rotary(x, positions, *, base: float = 10000.0) -> jax.Array:
    """Rotary position embedding (RoFormer, Su et al. 2021), x [B, T, H, Dh], positions [T].

    Pairs (x[2k], x[2k+1]) are rotated by the angle p w_k, w_k = base^(-2k/Dh), so q.k depends
    only on the relative position of query and key."""
    dh = x.shape[-1]
    if dh % 2:
        raise JaxdlError(f"rotary embeddings need an even head width, got {dh}")
    w = 1.0 / base ** (jnp.arange(0, dh, 2, dtype=jnp.float32) / dh)
    ang = positions.astype(jnp.float32)[:, None] * w[None, :]  # [T, Dh/2]
    cos, sin = jnp.cos(ang)[None, :, None, :], jnp.sin(ang)[None, :, None, :]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)


# --------------------------------------------------------------------------------------------
# multi-head attention


_HEADS = (L.BATCH, L.LENGTH, L.ACT_HEADS, L.ACT_HEAD_DIM)  # q, k, v [B, T, H, Dh]


def _letters(n: int, start: int = 0) -> str:
    return "".join(chr(ord("m") + start + i) for i in range(n))


class MultiHeadAttention(nnx.Module):
    """Multi-head attention: query x [B, *Tq, D], value [B, *S, Dv] (and key [B, *S, Dk], default
    the value; both default to x: self-attention) -> [B, *Tq, *out_features].

    Each head h projects q = x W_q[:, h] (width `head_dim`, default D / num_heads, Keras's
    `key_dim`), k = key W_k[:, h] (same width), v = value W_v[:, h] (width `value_dim`, default
    `head_dim`), attends with softmax(q k^T / sqrt(head_dim)), and the heads are mixed back by
    W_o [H, value_dim, *out_features] (`out_features` an int or a tuple: Keras's
    `output_shape`; default D). Options as in keras.layers.MultiHeadAttention:

    - `attention_axes`: the axes of a rank > 3 input that attention runs over (default all
      axes between batch and features); the other axes act as batch axes.
    - `dropout`: dropout on the attention probabilities in training (needs `rngs`).
    - `return_attention_scores=True` in the call: (y, scores), scores [B, H, T, S] (in general
      [B, *other axes, H, *query attention axes, *key attention axes]) after the softmax,
      before the dropout.

    Without score dropout and without returned scores, a rank-3 call with equal key and value
    widths runs `jax.nn.dot_product_attention` (cuDNN's fused kernel on a GPU where it applies);
    otherwise the explicit softmax path, which follows Keras's masked softmax (masked positions
    get probability 0, so a query whose keys are all masked outputs the output bias)."""

    def __init__(
        self,
        num_heads: int,
        in_features: int,
        *,
        kv_features: int | None = None,
        key_features: int | None = None,
        head_dim: int | None = None,
        value_dim: int | None = None,
        out_features: int | tuple[int, ...] | None = None,
        use_bias: bool = True,
        dropout: float = 0.0,
        attention_axes: int | tuple[int, ...] | None = None,
        rotary: bool = False,
        kernel_init=None,
        bias_init=None,
        rngs: nnx.Rngs,
    ):
        if not isinstance(num_heads, int) or num_heads < 1:
            raise JaxdlError(f"num_heads must be an int >= 1, got {num_heads!r}")
        if head_dim is None:
            if in_features % num_heads:
                raise JaxdlError(
                    f"num_heads={num_heads} does not divide the model width "
                    f"{in_features}; pick a divisor or pass head_dim"
                )
            head_dim = in_features // num_heads
        if not 0.0 <= dropout < 1.0:
            raise JaxdlError(f"MultiHeadAttention: dropout must be in [0, 1), got {dropout!r}")
        if attention_axes is not None:
            attention_axes = (
                (attention_axes,) if isinstance(attention_axes, int) else tuple(attention_axes)
            )
            if not attention_axes or not all(
                isinstance(a, int) and not isinstance(a, bool) for a in attention_axes
            ):
                raise JaxdlError(
                    f"MultiHeadAttention: attention_axes must be an int or a non-empty tuple of "
                    f"ints, got {attention_axes!r}"
                )
            if rotary:
                raise JaxdlError("MultiHeadAttention: rotary=True needs attention_axes=None")
        kv_features = kv_features or in_features
        key_features = key_features or kv_features
        value_dim = value_dim or head_dim
        # Keras's default initializers: Glorot-uniform kernels, zero biases
        kernel_init = kernel_init or nnx.initializers.glorot_uniform()
        bias_init = bias_init or nnx.initializers.zeros_init()
        out_features = out_features or in_features
        out_shape = (out_features,) if isinstance(out_features, int) else tuple(out_features)
        self.num_heads, self.head_dim, self.value_dim = num_heads, head_dim, value_dim
        self.rotary, self.dropout, self.attention_axes = rotary, dropout, attention_axes
        self.out_shape = out_shape

        def proj(n_in, width):
            return nnx.Einsum(
                "...d,dhk->...hk",
                (n_in, num_heads, width),
                (num_heads, width) if use_bias else None,
                kernel_init=kernel_init,
                # column-parallel (Megatron): heads split over the model axis
                kernel_metadata=L.axes(L.EMBED, L.HEADS, L.HEAD_DIM),
                bias_metadata=L.axes(L.HEADS, L.HEAD_DIM),
                bias_init=bias_init,
                rngs=rngs,
            )

        self.query = proj(in_features, head_dim)
        self.key = proj(key_features, head_dim)
        self.value = proj(kv_features, value_dim)
        o = _letters(len(out_shape))
        self.out = nnx.Einsum(
            f"...hk,hk{o}->...{o}",
            (num_heads, value_dim, *out_shape),
            out_shape if use_bias else None,
            kernel_init=kernel_init,
            # row-parallel: each device's heads give a partial sum, all-reduced over model
            kernel_metadata=L.axes(L.HEADS, L.HEAD_DIM, L.EMBED),
            bias_metadata=L.axes(L.EMBED),
            bias_init=bias_init,
            rngs=rngs,
        )

    def init_cache(self, batch: int, max_len: int, dtype=jnp.float32) -> dict:
        """Zeros for keys and values of `max_len` positions: {'k', 'v'} of [B, max_len, H, Dh]."""
        return {
            "k": jnp.zeros((batch, max_len, self.num_heads, self.head_dim), dtype),
            "v": jnp.zeros((batch, max_len, self.num_heads, self.value_dim), dtype),
        }

    def _axes(self, rank: int) -> tuple[int, ...]:
        """The attention axes of an input of `rank` (normalised to 1..rank-2, sorted)."""
        if self.attention_axes is None:
            return tuple(range(1, rank - 1))
        out = []
        for a in self.attention_axes:
            n = a + rank if a < 0 else a
            if not 1 <= n <= rank - 2:
                raise JaxdlError(
                    f"MultiHeadAttention: attention_axes={self.attention_axes} does not fit an "
                    f"input of rank {rank}; allowed are the axes between batch and features, "
                    f"1..{rank - 2} (or {-(rank - 1)}..-2)"
                )
            out.append(n)
        if len(set(out)) != len(out):
            raise JaxdlError(
                f"MultiHeadAttention: attention_axes={self.attention_axes} repeats an axis"
            )
        return tuple(sorted(out))

    def __call__(
        self,
        x,
        context=None,
        *,
        key=None,
        mask=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        is_causal: bool = False,
        return_attention_scores: bool = False,
        cache=None,
        pos=0,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
    ):
        """x [B, T, D] (or [B, *Tq, D]); context: the value [B, S, Dv] (None: self-attention);
        key [B, S, Dk] (None: the value, as Keras).

        mask: bool, True = attend, broadcastable to [B, H, T, S] (or [B, T, S], Keras's
        `attention_mask`; with attention_axes, Keras's [B, *other, *Tq, *S]). query_mask [B, T],
        value_mask / key_mask [B, S]: Keras's masks of the inputs (True = a real position).
        is_causal: query i sees keys j <= i (Keras's use_causal_mask).
        return_attention_scores: also return the attention probabilities (see the class).
        cache: None, or {'k', 'v'} [B, L, H, Dh] for causal self-attention; the T new keys and
        values are written at positions pos..pos+T-1, queries attend to keys at positions <= their
        own, and (y, new_cache) is returned. `pos` may be a traced integer."""
        v_in = x if context is None else context
        k_in = v_in if key is None else key
        rank = x.ndim
        if k_in.ndim != rank or v_in.ndim != rank:
            raise JaxdlError(
                f"MultiHeadAttention: query, key and value need the same rank; got "
                f"{rank}, {k_in.ndim}, {v_in.ndim}"
            )
        if rank < 3:
            raise JaxdlError(f"MultiHeadAttention: inputs need rank >= 3, got shape {x.shape}")
        axes = self._axes(rank)
        general = rank != 3
        if general and (cache is not None or is_causal or self.rotary):
            raise JaxdlError(
                "MultiHeadAttention: a cache, is_causal and rotary need rank-3 inputs [B, T, D]"
            )
        if general and any(m is not None for m in (query_mask, value_mask, key_mask)):
            raise JaxdlError(
                "MultiHeadAttention: query_mask / value_mask / key_mask need rank-3 inputs; "
                "pass mask= for higher ranks"
            )
        if mask is not None and not general:
            mask = jnp.asarray(mask)
            if mask.ndim == 3:  # Keras's [B, T, S]: add the head axis
                mask = mask[:, None]
        q, k, v = self.query(x), self.key(k_in), self.value(v_in)
        if not general:  # Megatron: the heads split over the model axis
            q, k, v = (L.constrain(a, _HEADS) for a in (q, k, v))
        t = x.shape[1]
        if self.rotary:
            q_pos = pos + jnp.arange(t)
            q = apply_rotary(q, q_pos)
            k = apply_rotary(
                k, q_pos if context is None and key is None else jnp.arange(k.shape[1])
            )
        if cache is not None:
            if context is not None or key is not None:
                raise JaxdlError(
                    "a key/value cache is for self-attention; cross-attention keys "
                    "come from the fixed context (compute them once)"
                )
            max_len = cache["k"].shape[1]
            if isinstance(pos, int) and pos + t > max_len:
                raise JaxdlError(f"the cache holds {max_len} positions; cannot write {t} at {pos}")
            k = jax.lax.dynamic_update_slice_in_dim(cache["k"], k.astype(cache["k"].dtype), pos, 1)
            v = jax.lax.dynamic_update_slice_in_dim(cache["v"], v.astype(cache["v"].dtype), pos, 1)
            cache = {"k": k, "v": v}
            # causal over absolute positions; slots beyond pos + T are still empty and masked
            mask = combine_masks(mask, causal_mask(t, max_len, offset=pos))
            is_causal = False
        if query_mask is not None:
            mask = combine_masks(mask, jnp.asarray(query_mask, bool)[:, None, :, None])
        for m in (value_mask, key_mask if key is not None else None):
            if m is not None:
                mask = combine_masks(mask, jnp.asarray(m, bool)[:, None, None, :])
        # rank > 3: the non-attention axes join the batch, the attention axes are flattened
        q, k, v, mask, restore = _flatten_attention_axes(q, k, v, mask, axes, self.num_heads)
        drop = self.dropout > 0 and train
        if drop and rngs is None:
            raise JaxdlError(
                "MultiHeadAttention: dropout > 0 in training needs random streams: call with "
                "rngs=nnx.Rngs(...)"
            )
        fast = not drop and not return_attention_scores and self.value_dim == self.head_dim
        if fast:
            o, scores = dot_product_attention(q, k, v, mask=mask, is_causal=is_causal), None
        else:
            o, scores = attention_with_scores(
                q,
                k,
                v,
                mask=mask,
                is_causal=is_causal,
                dropout=self.dropout if drop else 0.0,
                key=rngs.dropout() if drop else None,
            )
        o, scores = restore(o, scores)
        if not general:
            o = L.constrain(o, _HEADS)
        y = self.out(o)
        if return_attention_scores:
            y = (y, scores)
        if cache is None:
            return y
        return (*y, cache) if return_attention_scores else (y, cache)

    def macs(self, args, out) -> int:
        """The QK^T and AV products (the projections are counted by their Einsum leaves)."""
        x = args[0]
        c = args[1] if len(args) > 1 and args[1] is not None else x
        return attention_macs(x.shape[0], self.num_heads, x.shape[1], c.shape[1], self.head_dim)


def attention_with_scores(
    q, k, v, *, mask=None, is_causal: bool = False, dropout: float = 0.0, key=None
) -> tuple[jax.Array, jax.Array]:
    """The explicit path: q [B, T, H, Dk], k [B, S, H, Dk], v [B, S, H, Dv] ->
    (out [B, T, H, Dv], probabilities [B, H, T, S] before dropout).

    Keras's masked softmax: masked logits become -1e9, masked probabilities 0 (a query whose keys
    are all masked attends to nothing). `dropout` drops probabilities with `key` (inverted
    dropout, as keras.layers.Dropout)."""
    b, t, h, dk = q.shape
    s = k.shape[1]
    logits = jnp.einsum("bthd,bshd->bhts", q * jnp.asarray(1.0 / np.sqrt(dk), q.dtype), k)
    if is_causal:
        mask = combine_masks(mask, causal_mask(t, s))
    if mask is not None:
        mask = jnp.broadcast_to(_check_mask(mask, b, h, t, s), logits.shape)
        logits = jnp.where(mask, logits, jnp.asarray(-1e9, logits.dtype))
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(logits.dtype)
    if mask is not None:
        probs = jnp.where(mask, probs, 0.0)
    used = probs
    if dropout > 0:
        keep = jax.random.bernoulli(key, 1.0 - dropout, probs.shape)
        used = jnp.where(keep, probs / (1.0 - dropout), 0.0).astype(probs.dtype)
    return jnp.einsum("bhts,bshd->bthd", used, v), probs


def _flatten_attention_axes(q, k, v, mask, axes, heads):
    """Bring projected [B, *rest, H, K] tensors to [B', T, H, K] (the non-attention axes folded
    into the batch, the attention axes flattened), and the mask to [B', H|1, T, S]. Returns them
    and `restore(out, scores)`, which gives out [B, *rest, H, Dv] and Keras's score layout
    [B, *other, H, *Tq, *S]."""
    rank = q.ndim - 1  # the input's rank
    if rank == 3:
        return q, k, v, mask, lambda o, s: (o, s)
    other = tuple(a for a in range(1, rank - 1) if a not in axes)
    perm = (0, *other, *axes, rank - 1, rank)  # [B, *other, *attn, H, K]
    for name, arr in (("key", k), ("value", v)):
        if tuple(arr.shape[a] for a in other) != tuple(q.shape[a] for a in other):
            raise JaxdlError(
                f"MultiHeadAttention: the {name}'s non-attention axes {other} have sizes "
                f"{tuple(arr.shape[a] for a in other)}; the query's are "
                f"{tuple(q.shape[a] for a in other)}"
            )
    b = q.shape[0]
    o_sizes = tuple(q.shape[a] for a in other)
    tq = tuple(q.shape[a] for a in axes)
    ts = tuple(k.shape[a] for a in axes)
    bb = b * math.prod(o_sizes)

    def flat(arr):
        arr = jnp.transpose(arr, perm)
        return arr.reshape(bb, -1, *arr.shape[-2:])

    if mask is not None:
        mask = jnp.asarray(mask, bool)
        n_att = 2 * len(axes)
        if mask.ndim == len(o_sizes) + 1 + n_att:  # Keras's [B, *other, *Tq, *S]: add heads
            mask = jnp.expand_dims(mask, -n_att - 1)
        full = (b, *o_sizes, heads, *tq, *ts)
        try:
            mask = jnp.broadcast_to(
                mask, (*full[: -n_att - 1], mask.shape[-n_att - 1], *full[-n_att:])
            )
        except ValueError:
            raise JaxdlError(
                f"attention mask of shape {mask.shape} does not broadcast to "
                f"(batch, *other axes, heads, *query axes, *key axes) = {full}"
            ) from None
        mask = mask.reshape(bb, mask.shape[-n_att - 1], math.prod(tq), math.prod(ts))
    qf, kf, vf = flat(q), flat(k), flat(v)
    inv = np.argsort(perm)

    def restore(o, scores):
        o = o.reshape(b, *o_sizes, *tq, *o.shape[-2:])
        o = jnp.transpose(o, inv)
        if scores is not None:
            scores = scores.reshape(b, *o_sizes, heads, *tq, *ts)
        return o, scores

    return qf, kf, vf, mask, restore
