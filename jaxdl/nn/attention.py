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


class MultiHeadAttention(nnx.Module):
    """Multi-head attention: x [B, T, D] (context [B, S, Dkv] for cross-attention) -> [B, T, Do].

    Each head h projects q = x W_q[:, h], k = c W_k[:, h], v = c W_v[:, h] (width `head_dim`,
    default D / num_heads), attends, and the heads are mixed back by W_o [H, Dh, Do]."""

    def __init__(
        self,
        num_heads: int,
        in_features: int,
        *,
        kv_features: int | None = None,
        head_dim: int | None = None,
        out_features: int | None = None,
        use_bias: bool = True,
        rotary: bool = False,
        kernel_init=None,
        rngs: nnx.Rngs,
    ):
        if num_heads < 1:
            raise JaxdlError(f"num_heads must be >= 1, got {num_heads}")
        if head_dim is None:
            if in_features % num_heads:
                raise JaxdlError(
                    f"num_heads={num_heads} does not divide the model width "
                    f"{in_features}; pick a divisor or pass head_dim"
                )
            head_dim = in_features // num_heads
        kv_features = kv_features or in_features
        # Keras's default kernel initializer
        kernel_init = kernel_init or nnx.initializers.glorot_uniform()
        out_features = out_features or in_features
        self.num_heads, self.head_dim, self.rotary = num_heads, head_dim, rotary

        def proj(n_in):
            return nnx.Einsum(
                "btd,dhk->bthk",
                (n_in, num_heads, head_dim),
                (num_heads, head_dim) if use_bias else None,
                kernel_init=kernel_init,
                # column-parallel (Megatron): heads split over the model axis
                kernel_metadata=L.axes(L.EMBED, L.HEADS, L.HEAD_DIM),
                bias_metadata=L.axes(L.HEADS, L.HEAD_DIM),
                rngs=rngs,
            )

        self.query = proj(in_features)
        self.key = proj(kv_features)
        self.value = proj(kv_features)
        self.out = nnx.Einsum(
            "bthk,hkd->btd",
            (num_heads, head_dim, out_features),
            (out_features,) if use_bias else None,
            kernel_init=kernel_init,
            # row-parallel: each device's heads give a partial sum, all-reduced over model
            kernel_metadata=L.axes(L.HEADS, L.HEAD_DIM, L.EMBED),
            bias_metadata=L.axes(L.EMBED),
            rngs=rngs,
        )

    def init_cache(self, batch: int, max_len: int, dtype=jnp.float32) -> dict:
        """Zeros for keys and values of `max_len` positions: {'k', 'v'} of [B, max_len, H, Dh]."""
        shape = (batch, max_len, self.num_heads, self.head_dim)
        return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}

    def __call__(
        self,
        x,
        context=None,
        *,
        mask=None,
        is_causal: bool = False,
        cache=None,
        pos=0,
        train: bool = False,
        rngs=None,
    ):
        """x [B, T, D]; context [B, S, Dkv] (None: self-attention).

        mask: bool, True = attend, broadcastable to [B, H, T, S] (or [B, T, S]).
        cache: None, or {'k', 'v'} [B, L, H, Dh] for causal self-attention; the T new keys and
        values are written at positions pos..pos+T-1, queries attend to keys at positions <= their
        own, and (y, new_cache) is returned. `pos` may be a traced integer."""
        c = x if context is None else context
        q, k, v = self.query(x), self.key(c), self.value(c)
        q, k, v = (L.constrain(a, _HEADS) for a in (q, k, v))  # heads split over model
        t = x.shape[1]
        if self.rotary:
            q_pos = pos + jnp.arange(t)
            q = apply_rotary(q, q_pos)
            k = apply_rotary(k, q_pos if context is None else jnp.arange(c.shape[1]))
        if cache is not None:
            if context is not None:
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
        o = L.constrain(dot_product_attention(q, k, v, mask=mask, is_causal=is_causal), _HEADS)
        y = self.out(o)
        return y if cache is None else (y, cache)

    def macs(self, args, out) -> int:
        """The QK^T and AV products (the projections are counted by their Einsum leaves)."""
        x = args[0]
        c = args[1] if len(args) > 1 and args[1] is not None else x
        return attention_macs(x.shape[0], self.num_heads, x.shape[1], c.shape[1], self.head_dim)
