"""BERT-style encoder with a masked-language-model head (Devlin et al., 2019).

Embeddings: token `tok_embed` + learned positions `pos_embed` + segment `type_embed`, then
LayerNorm `emb_ln` and dropout; N post-LN encoder layers (GELU, LayerNorm epsilon 1e-12) with
padding tokens masked out of attention; the MLM head `mlm_dense` (d -> d, GELU), `mlm_ln`, and
logits through the token embedding transposed plus a bias `mlm_bias` [V]. The pooler and the
next-sentence head are not included.

    bert_base: 12 layers, d 768, 12 heads, MLP 3072, vocab 30,522, 512 positions
    bert_mini: 4 layers,  d 256, 4 heads,  MLP 1024 (Turc et al., 2019, "BERT-Mini")
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.attention import LearnedPositions, padding_mask
from jaxdl.nn.shapes import check_input
from jaxdl.nn.transformer import StackDims, TransformerStack, layer_norm
from jaxdl.parallel import logical as L


@dataclass(frozen=True)
class BERTConfig(StackDims):
    input_shape: tuple[int, ...] = (128,)  # [T] token ids, T <= max_len
    input_dtype: str = "int32"
    vocab_size: int = 30522
    max_len: int = 512
    type_vocab_size: int = 2
    d_ff: int | None = 3072
    ln_eps: float = 1e-12
    pad_id: int | None = 0  # [PAD] in BERT's WordPiece vocabulary; None: no padding mask


class BERT(nnx.Module):
    """tokens [B, T] (optional segment ids [B, T]) -> MLM logits [B, T, vocab_size]."""

    def __init__(self, config: BERTConfig, *, rngs: nnx.Rngs):
        c = config
        self.config = c
        init = nnx.initializers.normal(c.init_std)
        self.tok_embed = nnx.Embed(
            c.vocab_size,
            c.d_model,
            embedding_init=init,
            embedding_metadata=L.axes(L.VOCAB, L.EMBED),
            rngs=rngs,
        )
        self.pos_embed = LearnedPositions(c.max_len, c.d_model, init_std=c.init_std, rngs=rngs)
        self.type_embed = nnx.Embed(
            c.type_vocab_size,
            c.d_model,
            embedding_init=init,
            embedding_metadata=L.axes(None, L.EMBED),
            rngs=rngs,
        )
        self.emb_ln = layer_norm(c.d_model, c.ln_eps, rngs)
        self.dropout = nnx.Dropout(c.dropout)
        self.encoder = TransformerStack(
            c.layer(pre_ln=False), c.num_layers, scan=c.scan_layers, rngs=rngs
        )
        self.mlm_dense = nnx.Linear(
            c.d_model,
            c.d_model,
            kernel_init=init,
            kernel_metadata=L.axes(L.EMBED, None),
            bias_metadata=L.axes(None),
            rngs=rngs,
        )
        self.mlm_ln = layer_norm(c.d_model, c.ln_eps, rngs)
        self.mlm_bias = nnx.Param(jnp.zeros((c.vocab_size,)), **L.axes(L.VOCAB))

    def encode(self, x, segments=None, *, train=False, rngs=None):
        """tokens [B, T] -> hidden states [B, T, d]."""
        check_input(x, (None,), model="bert", what="tokens")
        if x.shape[1] > self.config.max_len:
            raise JaxdlError(
                f"bert: sequence of {x.shape[1]} tokens is longer than max_len "
                f"{self.config.max_len}"
            )
        segments = jnp.zeros_like(x) if segments is None else segments
        h = self.pos_embed(self.tok_embed(x)) + self.type_embed(segments)
        h = self.dropout(self.emb_ln(h), deterministic=not train, rngs=rngs)
        mask = None if self.config.pad_id is None else padding_mask(x, self.config.pad_id)
        return self.encoder(h, mask=mask, train=train, rngs=rngs)

    def __call__(self, x, *, segments=None, train: bool = False, rngs: nnx.Rngs | None = None):
        h = self.encode(x, segments, train=train, rngs=rngs)
        h = self.mlm_ln(jax.nn.gelu(self.mlm_dense(h), approximate=False))
        logits = self.tok_embed.attend(h) + self.mlm_bias[...]
        return L.constrain(logits, (L.BATCH, L.LENGTH, L.ACT_VOCAB))


_TINY = {
    "input_shape": (12,),
    "vocab_size": 50,
    "max_len": 16,
    "d_model": 32,
    "num_heads": 4,
    "num_layers": 2,
    "d_ff": 64,
    "dropout": 0.1,
}
register(
    "bert_base",
    BERT,
    BERTConfig(),
    family="bert",
    task="lm",
    test_overrides=_TINY,
    description="BERT-base encoder + MLM head (no pooler), 12 layers, d 768",
)
register(
    "bert_mini",
    BERT,
    BERTConfig(d_model=256, num_heads=4, num_layers=4, d_ff=1024),
    family="bert",
    task="lm",
    test_overrides=_TINY,
    description="BERT-Mini encoder + MLM head, 4 layers, d 256",
)

__all__ = ["BERT", "BERTConfig"]
