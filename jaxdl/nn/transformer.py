"""Transformer layers and stacks (Vaswani et al., 2017; pre-LN: Xiong et al., 2020).

A `TransformerLayer` is self-attention, optional cross-attention (the decoder of the
encoder-decoder) and a position-wise feed-forward net, each a residual branch:

    post-LN (the 2017 paper, BERT):  x = LN(x + Dropout(f(x)))
    pre-LN  (GPT-2, ViT):            x = x + Dropout(f(LN(x)))

`TransformerStack` runs N identical layers either as a Python loop over `layers/0`, `layers/1`,
... or (`scan=True`) as one `jax.lax.scan` over parameters stacked on a leading layer axis
(`layers/<param>` of shape [N, ...]), so the program, and its compile time, do not grow with
depth. Both give the same outputs for the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.nn.activations import get_activation
from jaxdl.nn.attention import MultiHeadAttention
from jaxdl.parallel import logical as L


@dataclass(frozen=True)
class LayerConfig:
    """One layer's hyper-parameters (d_ff defaults to 4 d_model, as in GPT-2, BERT and ViT)."""

    d_model: int
    num_heads: int
    d_ff: int | None = None
    dropout: float = 0.1
    activation: str = "gelu"
    pre_ln: bool = True
    ln_eps: float = 1e-5
    rotary: bool = False
    init_std: float | None = 0.02  # normal(std) kernels (GPT/BERT/ViT); None: Glorot uniform

    @property
    def ff(self) -> int:
        return self.d_ff or 4 * self.d_model

    def kernel_init(self):
        if self.init_std is None:
            return nnx.initializers.glorot_uniform()
        return nnx.initializers.normal(self.init_std)


_HIDDEN = (L.BATCH, L.LENGTH, L.ACT_MLP)  # the MLP hidden [B, T, d_ff]


def layer_norm(d: int, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """LayerNorm over the model width whose scale and bias are never split (logical `norm`)."""
    meta = L.axes(L.NORM)
    return nnx.LayerNorm(d, epsilon=eps, scale_metadata=meta, bias_metadata=meta, rngs=rngs)


@dataclass(frozen=True)
class StackDims:
    """The dimensions every one-stack transformer family shares (GPT, BERT, ViT): width, heads,
    depth, feed-forward width, dropout, LayerNorm epsilon, init scale and the scan option. A
    family's config inherits them (redeclaring a field changes its default) and builds the
    stack's `LayerConfig` with `layer(...)`."""

    d_model: int = 768
    num_heads: int = 12
    num_layers: int = 12
    d_ff: int | None = None  # None: 4 d_model
    dropout: float = 0.1
    ln_eps: float = 1e-5
    init_std: float = 0.02
    scan_layers: bool = False  # lax.scan over stacked layers: compile time independent of depth

    def layer(self, *, pre_ln: bool = True, activation: str = "gelu", rotary: bool = False):
        return LayerConfig(
            self.d_model,
            self.num_heads,
            self.d_ff,
            self.dropout,
            activation,
            pre_ln=pre_ln,
            ln_eps=self.ln_eps,
            rotary=rotary,
            init_std=self.init_std,
        )


class FeedForward(nnx.Module):
    """x [..., d] -> fc2(Dropout(act(fc1(x)))) [..., d]; fc1: d -> d_ff, fc2: d_ff -> d."""

    def __init__(self, cfg: LayerConfig, *, rngs: nnx.Rngs):
        init = cfg.kernel_init()
        # Megatron: fc1 column-parallel (d_ff split over model), fc2 row-parallel
        self.fc1 = nnx.Linear(
            cfg.d_model,
            cfg.ff,
            kernel_init=init,
            kernel_metadata=L.axes(L.EMBED, L.MLP),
            bias_metadata=L.axes(L.MLP),
            rngs=rngs,
        )
        self.fc2 = nnx.Linear(
            cfg.ff,
            cfg.d_model,
            kernel_init=init,
            kernel_metadata=L.axes(L.MLP, L.EMBED),
            bias_metadata=L.axes(L.EMBED),
            rngs=rngs,
        )
        self.act = get_activation(cfg.activation)
        self.dropout = nnx.Dropout(cfg.dropout)

    def __call__(self, x, *, train=False, rngs=None):
        h = L.constrain(self.act(self.fc1(x)), _HIDDEN)
        h = self.dropout(h, deterministic=not train, rngs=rngs)
        return self.fc2(h)


class TransformerLayer(nnx.Module):
    """x [B, T, d] (+ memory [B, S, d] when `cross`) -> [B, T, d].

    Sub-layers: `attn` (self), `cross_attn` (only when cross=True), `mlp`; norms `ln1`, `ln2`,
    `ln3` precede (pre-LN) or follow (post-LN) their sub-layer."""

    def __init__(self, cfg: LayerConfig, *, cross: bool = False, rngs: nnx.Rngs):
        if not 0.0 <= cfg.dropout < 1.0:
            raise JaxdlError(f"dropout must be in [0, 1), got {cfg.dropout}")
        self.cfg = cfg
        init = cfg.kernel_init()

        def mha():
            return MultiHeadAttention(
                cfg.num_heads, cfg.d_model, rotary=cfg.rotary, kernel_init=init, rngs=rngs
            )

        def ln():
            return layer_norm(cfg.d_model, cfg.ln_eps, rngs)

        self.attn, self.ln1 = mha(), ln()
        self.cross_attn, self.ln2 = (mha(), ln()) if cross else (None, None)
        self.mlp, self.ln3 = FeedForward(cfg, rngs=rngs), ln()
        self.dropout = nnx.Dropout(cfg.dropout)

    def _residual(self, x, norm, f, train, rngs):
        # a sub-layer's output joins the residual stream laid out as it is: batch on data,
        # replicated over model (or its length split over model: sequence parallel), so the
        # row-parallel partial sums are all-reduced (reduce-scattered) here and nowhere else
        def drop(y):
            y = L.constrain(y, L.RESIDUAL)
            return self.dropout(y, deterministic=not train, rngs=rngs)

        if self.cfg.pre_ln:
            y, aux = f(norm(x))
            return x + drop(y), aux
        y, aux = f(x)
        return norm(x + drop(y)), aux

    def __call__(
        self,
        x,
        memory=None,
        *,
        mask=None,
        is_causal=False,
        memory_mask=None,
        cache=None,
        pos=0,
        train=False,
        rngs=None,
    ):
        """mask: self-attention mask; memory_mask: cross-attention mask (both True = attend).
        cache: this layer's self-attention cache (see MultiHeadAttention); returns (x, cache)."""

        def self_attn(h):
            if cache is None:
                return self.attn(h, mask=mask, is_causal=is_causal), None
            return self.attn(h, mask=mask, cache=cache, pos=pos)

        x = L.constrain(x, L.RESIDUAL)
        x, new_cache = self._residual(x, self.ln1, self_attn, train, rngs)
        if self.cross_attn is not None:
            if memory is None:
                raise JaxdlError(
                    "a decoder layer with cross-attention needs `memory` (the encoder output)"
                )
            x, _ = self._residual(
                x,
                self.ln2,
                lambda h: (self.cross_attn(h, memory, mask=memory_mask), None),
                train,
                rngs,
            )
        x, _ = self._residual(
            x, self.ln3, lambda h: (self.mlp(h, train=train, rngs=rngs), None), train, rngs
        )
        return x, new_cache


class TransformerStack(nnx.Module):
    """N `TransformerLayer`s, x [B, T, d] -> [B, T, d], plus a final LayerNorm `ln_f` for pre-LN
    stacks (whose residual stream is otherwise never normalised).

    scan=False: `layers` is a list (`layers/0/...`); scan=True: one layer whose parameters carry a
    leading axis of size N, run by `jax.lax.scan`."""

    def __init__(
        self,
        cfg: LayerConfig,
        num_layers: int,
        *,
        cross: bool = False,
        scan: bool = False,
        rngs: nnx.Rngs,
    ):
        if num_layers < 1:
            raise JaxdlError(f"num_layers must be >= 1, got {num_layers}")
        self.num_layers, self.scan = num_layers, scan
        if scan:
            keys = jax.random.split(rngs.params(), num_layers)
            make = nnx.vmap(
                lambda k: TransformerLayer(cfg, cross=cross, rngs=nnx.Rngs(params=k)),
                # the stacked axis is logical axis `layers` of every parameter
                transform_metadata={nnx.PARTITION_NAME: L.LAYERS, L.KEY: L.LAYERS},
            )
            self.layers = make(keys)
        else:
            self.layers = nnx.List(
                [TransformerLayer(cfg, cross=cross, rngs=rngs) for _ in range(num_layers)]
            )
        self.ln_f = layer_norm(cfg.d_model, cfg.ln_eps, rngs) if cfg.pre_ln else None

    def init_cache(self, batch: int, max_len: int, dtype=jnp.float32):
        """Per-layer self-attention caches: a list (loop) or one dict stacked on axis 0 (scan)."""
        if self.scan:
            one = {"k": jnp.zeros((self.num_layers, batch, max_len, *self._kv_shape()), dtype)}
            one["v"] = jnp.zeros_like(one["k"])
            return one
        return [layer.attn.init_cache(batch, max_len, dtype) for layer in self.layers]

    def _kv_shape(self):
        attn = self.layers.attn
        return attn.num_heads, attn.head_dim

    def __call__(
        self,
        x,
        memory=None,
        *,
        mask=None,
        is_causal=False,
        memory_mask=None,
        cache=None,
        pos=0,
        train=False,
        rngs=None,
    ):
        """Returns x, or (x, new_cache) when a cache is given."""
        kw = dict(mask=mask, is_causal=is_causal, memory_mask=memory_mask, pos=pos, train=train)
        if not self.scan:
            new_caches = []
            for i, layer in enumerate(self.layers):
                x, c = layer(x, memory, cache=None if cache is None else cache[i], rngs=rngs, **kw)
                new_caches.append(c)
            new_cache = new_caches if cache is not None else None
        else:
            graphdef, stacked = nnx.split(self.layers)
            # one dropout key per layer, drawn outside the scan so the body is pure
            use_keys = train and rngs is not None
            keys = jax.random.split(rngs.dropout(), self.num_layers) if use_keys else None

            def body(h, xs):
                state, key, layer_cache = xs
                layer = nnx.merge(graphdef, state)
                r = nnx.Rngs(dropout=key) if key is not None else None
                h, c = layer(h, memory, cache=layer_cache, rngs=r, **kw)
                return h, c

            x, new_cache = jax.lax.scan(body, x, (stacked, keys, cache))
        if self.ln_f is not None:
            x = self.ln_f(x)
        return x if cache is None else (x, new_cache)
