"""The encoder-decoder Transformer of "Attention is all you need" (Vaswani et al., 2017).

Source and target tokens are embedded, scaled by sqrt(d) and added to sinusoidal positions
(section 3.5); N post-LN encoder layers; N post-LN decoder layers with causal self-attention and
cross-attention to the encoder output; logits from the output projection. `share_embeddings`
(section 3.4) uses one matrix `embed` for the source and target embeddings and the pre-softmax
projection (a shared source-target vocabulary); otherwise `src_embed`, `tgt_embed`, `head`.
Padding tokens (`pad_id`) are masked out of every attention over the source and out of the
decoder's self-attention keys.

    transformer_base: d 512, 8 heads, MLP 2048, 6 + 6 layers, vocabulary 37,000 (shared BPE)
    transformer_small: d 256, 4 heads, MLP 1024, 3 + 3 layers, vocabulary 8,000

Input packing for the training engine: x [B, src_len + tgt_len] is the source followed by the
decoder input (the target shifted right after a BOS token); the output is the logits
[B, tgt_len, tgt_vocab]. `encode`, `init_cache` and `decode` serve autoregressive decoding
(`jaxdl.nn.decoding.greedy_decode`, `beam_search`).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import sqrt

import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.attention import padding_mask, sinusoidal_positions
from jaxdl.nn.shapes import check_input
from jaxdl.nn.transformer import LayerConfig, TransformerStack
from jaxdl.parallel import logical as L


@dataclass(frozen=True)
class TransformerConfig:
    input_shape: tuple[int, ...] = (256,)  # src_len + tgt_len
    input_dtype: str = "int32"
    src_len: int = 128
    src_vocab: int = 37000
    tgt_vocab: int = 37000
    share_embeddings: bool = True
    d_model: int = 512
    num_heads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    d_ff: int | None = 2048
    dropout: float = 0.1
    activation: str = "relu"
    pre_ln: bool = False  # the paper's post-LN; pre-LN trains more easily without warm-up
    ln_eps: float = 1e-6
    max_len: int = 1024  # positions precomputed
    pad_id: int | None = 0
    scan_layers: bool = False

    @property
    def tgt_len(self) -> int:
        return self.input_shape[0] - self.src_len

    def layer(self) -> LayerConfig:
        return LayerConfig(
            self.d_model,
            self.num_heads,
            self.d_ff,
            self.dropout,
            self.activation,
            pre_ln=self.pre_ln,
            ln_eps=self.ln_eps,
            init_std=None,
        )


class Transformer(nnx.Module):
    """x = [source | decoder input] [B, S + T] -> logits [B, T, tgt_vocab]."""

    def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
        c = config
        if c.share_embeddings and c.src_vocab != c.tgt_vocab:
            raise JaxdlError(
                f"transformer: share_embeddings needs one vocabulary, got src_vocab="
                f"{c.src_vocab}, tgt_vocab={c.tgt_vocab}"
            )
        if not 0 < c.src_len < c.input_shape[0]:
            raise JaxdlError(
                f"transformer: src_len {c.src_len} must be in (0, input length {c.input_shape[0]})"
            )
        if max(c.src_len, c.tgt_len) > c.max_len:
            raise JaxdlError(f"transformer: sequences longer than max_len {c.max_len}")
        self.config = c
        init = nnx.initializers.normal(c.d_model**-0.5)  # unit variance after the sqrt(d) scale
        meta = L.axes(L.VOCAB, L.EMBED)  # vocab-parallel tables and logits
        if c.share_embeddings:
            self.embed = nnx.Embed(
                c.src_vocab, c.d_model, embedding_init=init, embedding_metadata=meta, rngs=rngs
            )
            self.src_embed = self.tgt_embed = self.head = None
        else:
            self.embed = None
            self.src_embed = nnx.Embed(
                c.src_vocab, c.d_model, embedding_init=init, embedding_metadata=meta, rngs=rngs
            )
            self.tgt_embed = nnx.Embed(
                c.tgt_vocab, c.d_model, embedding_init=init, embedding_metadata=meta, rngs=rngs
            )
            self.head = nnx.Linear(
                c.d_model,
                c.tgt_vocab,
                kernel_metadata=L.axes(L.EMBED, L.VOCAB),
                bias_metadata=L.axes(L.VOCAB),
                rngs=rngs,
            )
        self.dropout = nnx.Dropout(c.dropout)
        self.encoder = TransformerStack(c.layer(), c.enc_layers, scan=c.scan_layers, rngs=rngs)
        self.decoder = TransformerStack(
            c.layer(), c.dec_layers, cross=True, scan=c.scan_layers, rngs=rngs
        )

    def _embed(self, tokens, table, offset, train, rngs):
        pe = sinusoidal_positions(self.config.max_len, self.config.d_model)
        t = tokens.shape[1]
        pos = (
            pe[offset : offset + t]
            if isinstance(offset, int)
            else jnp.take(pe, offset + jnp.arange(t), axis=0)
        )
        h = table(tokens) * sqrt(self.config.d_model) + pos[None]
        return self.dropout(h, deterministic=not train, rngs=rngs)

    def _src_mask(self, src):
        return None if self.config.pad_id is None else padding_mask(src, self.config.pad_id)

    def encode(self, src, *, train=False, rngs=None):
        """src [B, S] -> (memory [B, S, d], source mask [B, 1, 1, S] or None)."""
        check_input(src, (None,), model="transformer", what="source tokens")
        if src.shape[1] > self.config.max_len:
            raise JaxdlError(
                f"transformer: source of {src.shape[1]} tokens is longer than max_len "
                f"{self.config.max_len}"
            )
        mask = self._src_mask(src)
        h = self._embed(src, self.embed or self.src_embed, 0, train, rngs)
        return self.encoder(h, mask=mask, train=train, rngs=rngs), mask

    def _logits(self, h):
        logits = self.embed.attend(h) if self.head is None else self.head(h)
        return L.constrain(logits, (L.BATCH, L.LENGTH, L.ACT_VOCAB))

    def decode_full(self, tgt_in, memory, src_mask, *, train=False, rngs=None):
        """Teacher forcing: decoder input [B, T] -> logits [B, T, V] (causal self-attention)."""
        self_mask = self._src_mask(tgt_in)
        h = self._embed(tgt_in, self.embed or self.tgt_embed, 0, train, rngs)
        h = self.decoder(
            h, memory, mask=self_mask, is_causal=True, memory_mask=src_mask, train=train, rngs=rngs
        )
        return self._logits(h)

    def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
        check_input(
            x,
            self.config.input_shape,
            model="transformer",
            what="packed [source | decoder input] tokens",
        )
        src, tgt_in = x[:, : self.config.src_len], x[:, self.config.src_len :]
        memory, src_mask = self.encode(src, train=train, rngs=rngs)
        return self.decode_full(tgt_in, memory, src_mask, train=train, rngs=rngs)

    def init_cache(self, batch: int, max_len: int):
        if max_len > self.config.max_len:
            raise JaxdlError(
                f"transformer: cannot decode {max_len} positions; max_len is {self.config.max_len}"
            )
        return self.decoder.init_cache(batch, max_len)

    def decode(self, tokens, memory, src_mask, cache, pos):
        """tokens [B, t] at positions pos.. -> (logits [B, t, V], cache). Inference only; the
        decoded prefix holds no padding (BOS then generated tokens)."""
        h = self._embed(tokens, self.embed or self.tgt_embed, pos, False, None)
        h, cache = self.decoder(h, memory, memory_mask=src_mask, cache=cache, pos=pos)
        return self._logits(h), cache


_TINY = {
    "input_shape": (14,),
    "src_len": 8,
    "src_vocab": 30,
    "tgt_vocab": 30,
    "d_model": 32,
    "num_heads": 4,
    "enc_layers": 2,
    "dec_layers": 2,
    "d_ff": 64,
    "max_len": 16,
}
register(
    "transformer_base",
    Transformer,
    TransformerConfig(),
    family="transformer",
    task="seq2seq",
    test_overrides=_TINY,
    description="Vaswani et al. 2017 base: d 512, 6+6 layers, shared 37k vocabulary",
)
register(
    "transformer_small",
    Transformer,
    TransformerConfig(
        input_shape=(128,),
        src_len=64,
        src_vocab=8000,
        tgt_vocab=8000,
        d_model=256,
        num_heads=4,
        enc_layers=3,
        dec_layers=3,
        d_ff=1024,
    ),
    family="transformer",
    task="seq2seq",
    test_overrides=_TINY,
    description="small encoder-decoder: d 256, 3+3 layers",
)

__all__ = ["Transformer", "TransformerConfig"]
