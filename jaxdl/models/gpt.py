"""Decoder-only transformer language model: GPT-2 (Radford et al., 2019).

Token embedding `wte` [V, d] + learned positions `wpe` [context, d] (or rotary positions inside
attention), N pre-LN causal layers, a final LayerNorm, and logits from the embedding matrix
transposed (tied) or from a separate `head`. GPT-2 small: 12 layers, d 768, 12 heads, vocabulary
50,257, context 1,024, tied: 124,439,808 parameters.

Autoregressive decoding with a key/value cache: `init_cache(batch, max_len)` and
`decode(tokens, cache, pos)`; see `jaxdl.nn.decoding.generate`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.attention import LearnedPositions
from jaxdl.nn.shapes import check_input
from jaxdl.nn.transformer import LayerConfig, StackDims, TransformerStack
from jaxdl.parallel import logical as L

LOGITS = (L.BATCH, L.LENGTH, L.ACT_VOCAB)  # vocab-parallel logits [B, T, V]


@dataclass(frozen=True)
class GPTConfig(StackDims):
    input_shape: tuple[int, ...] = (1024,)  # [T] token ids, any T <= context
    input_dtype: str = "int32"
    vocab_size: int = 50257
    context: int = 1024
    activation: str = "gelu"
    positions: str = "learned"  # or 'rotary'
    tie_embeddings: bool = True

    def layer(self) -> LayerConfig:
        return super().layer(activation=self.activation, rotary=self.positions == "rotary")


class GPT(nnx.Module):
    """tokens [B, T] (T <= context) -> next-token logits [B, T, vocab_size]."""

    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
        c = config
        if c.positions not in ("learned", "rotary"):
            raise JaxdlError(f"gpt: positions must be 'learned' or 'rotary', got {c.positions!r}")
        self.config = c
        init = nnx.initializers.normal(c.init_std)
        # vocab-parallel: rows split over model; the tied logits come out split on vocab
        self.wte = nnx.Embed(
            c.vocab_size,
            c.d_model,
            embedding_init=init,
            embedding_metadata=L.axes(L.VOCAB, L.EMBED),
            rngs=rngs,
        )
        self.wpe = (
            LearnedPositions(c.context, c.d_model, init_std=c.init_std, rngs=rngs)
            if c.positions == "learned"
            else None
        )
        self.dropout = nnx.Dropout(c.dropout)
        self.blocks = TransformerStack(c.layer(), c.num_layers, scan=c.scan_layers, rngs=rngs)
        self.head = (
            None
            if c.tie_embeddings
            else nnx.Linear(
                c.d_model,
                c.vocab_size,
                use_bias=False,
                kernel_init=init,
                kernel_metadata=L.axes(L.EMBED, L.VOCAB),
                rngs=rngs,
            )
        )

    def _check(self, tokens, pos=0):
        check_input(tokens, (None,), model="gpt", what="tokens")
        t = tokens.shape[1]
        if isinstance(pos, int) and pos + t > self.config.context:
            raise JaxdlError(
                f"gpt: sequence of {pos + t} tokens is longer than the context of "
                f"{self.config.context}"
            )

    def _embed(self, tokens, pos, train, rngs):
        h = self.wte(tokens)
        if self.wpe is not None:
            h = self.wpe(h, pos)
        return self.dropout(h, deterministic=not train, rngs=rngs)

    def _logits(self, h):
        logits = self.wte.attend(h) if self.head is None else self.head(h)
        return L.constrain(logits, LOGITS)

    def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
        self._check(x)
        h = self._embed(x, 0, train, rngs)
        return self._logits(self.blocks(h, is_causal=True, train=train, rngs=rngs))

    def init_cache(self, batch: int, max_len: int | None = None):
        """An empty key/value cache for `max_len` (default: context) positions."""
        max_len = max_len or self.config.context
        if max_len > self.config.context:
            raise JaxdlError(
                f"gpt: cache of {max_len} positions exceeds the context {self.config.context}"
            )
        return self.blocks.init_cache(batch, max_len)

    def decode(self, tokens, cache, pos):
        """tokens [B, t] at positions pos..pos+t-1 -> (logits [B, t, V], cache). Inference only."""
        self._check(tokens, pos)
        h = self._embed(tokens, pos, False, None)
        h, cache = self.blocks(h, cache=cache, pos=pos)
        return self._logits(h), cache


_TINY = {
    "input_shape": (16,),
    "vocab_size": 50,
    "context": 16,
    "d_model": 32,
    "num_heads": 4,
    "num_layers": 2,
    "dropout": 0.1,
}
register(
    "gpt2",
    GPT,
    GPTConfig(),
    family="gpt",
    task="lm",
    test_overrides=_TINY,
    description="GPT-2 small: 12 layers, d 768, 12 heads, ctx 1024, tied embedding",
)
register(
    "gpt_mini",
    GPT,
    GPTConfig(
        input_shape=(64,),
        vocab_size=65,
        context=64,
        d_model=64,
        num_heads=4,
        num_layers=2,
        dropout=0.0,
    ),
    family="gpt",
    task="lm",
    test_overrides=_TINY,
    description="tiny character GPT for tests and experiments",
)

__all__ = ["GPT", "GPTConfig"]
