"""Encoder-decoder recurrent network (Sutskever et al., 2014; Cho et al., 2014): `seq2seq_lstm`.

The encoder reads the source and hands its final state (every layer's (h, c)) to the decoder, which
is trained by teacher forcing: it reads the target shifted right by one (a start token first) and
predicts the target. Inference decodes greedily, feeding back its own argmax.

So that the training engine (which gives a model one input array) can drive it, the input is the
source and the decoder input side by side: x [B, S + T] int = concat(source [B, S],
decoder_input [B, T]), S = `source_len`. Output: logits [B, T, target_vocab_size].
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError, check_positive
from jaxdl.models.registry import register
from jaxdl.nn.recurrent import Embedding, RecurrentStack, TimeDistributed, get_layer
from jaxdl.nn.shapes import check_input


@dataclass(frozen=True)
class Seq2SeqConfig:
    input_shape: tuple[int, ...] = (11,)  # (source_len + target_len,)
    input_dtype: str = "int32"
    source_len: int = 7
    vocab_size: int = 14  # source tokens
    target_vocab_size: int | None = None  # None: the source vocabulary
    cell: str = "lstm"
    embed_dim: int = 32
    units: tuple[int, ...] = (128,)  # encoder and decoder layers (equal, to pass the states)
    dropout: float = 0.0
    mask_zero: bool = False  # source id 0 is padding


class Seq2Seq(nnx.Module):
    """x [B, S + T] -> logits [B, T, V_target]. Sub-modules: `src_embed`, `encoder`, `tgt_embed`,
    `decoder`, `head`."""

    def __init__(self, config: Seq2SeqConfig, *, rngs: nnx.Rngs):
        c = config
        get_layer(c.cell)
        check_positive("source_len", c.source_len, integer=True)
        if len(c.input_shape) != 1 or c.input_shape[0] <= c.source_len:
            raise JaxdlError(
                f"seq2seq: input_shape {c.input_shape} must be (source_len + "
                f"target_len,) with source_len = {c.source_len} and target_len >= 1"
            )
        self.config = c
        self.target_vocab = c.target_vocab_size or c.vocab_size
        self.src_embed = Embedding(c.vocab_size, c.embed_dim, mask_zero=c.mask_zero, rngs=rngs)
        self.tgt_embed = Embedding(self.target_vocab, c.embed_dim, rngs=rngs)
        self.encoder = RecurrentStack(
            c.cell, c.embed_dim, c.units, dropout=c.dropout, return_sequences=False, rngs=rngs
        )
        self.decoder = RecurrentStack(c.cell, c.embed_dim, c.units, dropout=c.dropout, rngs=rngs)
        self.head = TimeDistributed(nnx.Linear(c.units[-1], self.target_vocab, rngs=rngs))

    def encode(self, source, *, train=False, rngs=None):
        """source [B, S] -> (memory, None): the encoder's per-layer final states, which start the
        decoder (no attention mask: the generation API's `(memory, src_mask)`)."""
        _, states = self.encoder(
            self.src_embed(source),
            mask=self.src_embed.compute_mask(source),
            return_state=True,
            train=train,
            rngs=rngs,
        )
        return states, None

    def decode_full(self, dec_in, states, *, train=False, rngs=None):
        """dec_in [B, T] (teacher forcing), decoder start states -> (logits [B, T, V], states)."""
        h, states = self.decoder(
            self.tgt_embed(dec_in), initial_state=states, return_state=True, train=train, rngs=rngs
        )
        return self.head(h), states

    def init_cache(self, batch: int, max_len: int | None = None):
        """The decoding cache of the generation API: the decoder's carried state (zeros; at
        position 0 `decode` starts from the encoder's states instead)."""
        check_positive("batch", batch, integer=True)
        return [tuple(layer.cell.zero_state(batch)) for layer in self.decoder.layers]

    def decode(self, tokens, memory, src_mask, cache, pos):
        """tokens [B, t] at positions pos.. of the target -> (logits [B, t, V], cache); the
        state starts from the encoder's (`memory`) at pos 0. Inference only."""
        start = jax.tree.map(lambda m, c: jnp.where(pos == 0, m, c), memory, cache)
        return self.decode_full(tokens, start)

    def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
        check_input(x, (None,), model="seq2seq")
        S = self.config.source_len
        if x.shape[1] <= S:
            raise JaxdlError(
                f"seq2seq: input of length {x.shape[1]} must hold the source "
                f"({S} tokens) and at least one decoder-input token"
            )
        states, _ = self.encode(x[:, :S], train=train, rngs=rngs)
        return self.decode_full(x[:, S:], states, train=train, rngs=rngs)[0]

    def greedy_decode(self, source: jax.Array, length: int, start_id: int) -> jax.Array:
        """source [B, S] -> target ids [B, length], each step fed the previous argmax
        (`jaxdl.nn.decoding.greedy_decode` over `encode` / `init_cache` / `decode`)."""
        from jaxdl.nn.decoding import greedy_decode

        check_positive("length", length, integer=True)
        if source.ndim != 2 or source.shape[1] != self.config.source_len:
            raise JaxdlError(
                f"greedy_decode: source must be [B, {self.config.source_len}], got {source.shape}"
            )
        return greedy_decode(self, source, length, bos_id=start_id)


register(
    "seq2seq_lstm",
    Seq2Seq,
    Seq2SeqConfig(),
    family="seq2seq",
    task="seq2seq",
    test_overrides={"units": (8,), "embed_dim": 6},
    description="LSTM encoder-decoder, teacher forcing, greedy decoding (e.g. '123+456' -> '579')",
)

__all__ = ["Seq2Seq", "Seq2SeqConfig"]
