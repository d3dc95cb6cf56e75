"""Recurrent networks over sequences: one family, `RecurrentNet`.

    tokens [B, T] (or features [B, T, F]) -> Embedding -> RecurrentStack -> Dense
        many-to-many: logits [B, T, num_classes]  (language models, taggers)
        many-to-one:  logits [B, num_classes]     (sequence classification, e.g. sentiment)

Variants are config rows: `rnn_lm`, `lstm_lm`, `gru_lm` (character or token language models:
unidirectional, num_classes = vocab_size, sampling by temperature / top-k / top-p through
`generate`), `lstm_classifier` (many-to-one, the last real step's output, padding id 0 masked),
`lstm_tagger` (bidirectional, one tag per token).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
from flax import nnx

from jaxdl.errors import JaxdlError, check_positive
from jaxdl.models.registry import register
from jaxdl.nn.recurrent import Embedding, RecurrentStack, TimeDistributed, get_layer
from jaxdl.nn.shapes import check_input


@dataclass(frozen=True)
class RecurrentConfig:
    input_shape: tuple[int, ...] = (100,)  # (T,) token ids, or (T, F) features; T is an example
    input_dtype: str = "int32"
    vocab_size: int | None = 65  # None: the input is features [B, T, F], no embedding
    num_classes: int = 65  # outputs per step (many-to-many) or per sequence (many-to-one)
    cell: str = "lstm"  # 'rnn', 'lstm' or 'gru'
    embed_dim: int = 64
    units: tuple[int, ...] = (256,)  # one entry per stacked layer
    bidirectional: bool = False
    merge_mode: str = "concat"
    many_to_many: bool = True
    mask_zero: bool = False  # token id 0 is padding: masked in the recurrence
    dropout: float = 0.0  # on the embedding output, between layers and before the head
    recurrent_dropout: float = 0.0
    reset_after: bool = True  # GRU only (Keras's default)
    unroll: int = 1


class RecurrentNet(nnx.Module):
    """x [B, T] int (or [B, T, F] float) -> logits [B, T, num_classes] or [B, num_classes].

    Sub-modules: `embed` (Embedding, absent for feature inputs), `rnn` (RecurrentStack),
    `head` (a TimeDistributed nnx.Linear for many-to-many, an nnx.Linear otherwise)."""

    def __init__(self, config: RecurrentConfig, *, rngs: nnx.Rngs):
        c = config
        get_layer(c.cell)  # an unknown cell name fails here, listing the known ones
        check_positive("num_classes", c.num_classes, integer=True)
        if not 0.0 <= c.dropout < 1.0:
            raise JaxdlError(f"recurrent net: dropout must be in [0, 1), got {c.dropout}")
        tokens = c.vocab_size is not None
        if len(c.input_shape) != (1 if tokens else 2):
            raise JaxdlError(
                f"recurrent net: input_shape {c.input_shape} must be (T,) for token "
                f"ids (vocab_size set) or (T, F) for features (vocab_size=None)"
            )
        self.config = c
        self.embed = (
            Embedding(c.vocab_size, c.embed_dim, mask_zero=c.mask_zero, rngs=rngs)
            if tokens
            else None
        )
        d = c.embed_dim if tokens else c.input_shape[-1]
        options = {"reset_after": c.reset_after} if c.cell == "gru" else {}
        self.rnn = RecurrentStack(
            c.cell,
            d,
            c.units,
            bidirectional=c.bidirectional,
            merge_mode=c.merge_mode,
            dropout=c.dropout,
            return_sequences=c.many_to_many,
            unroll=c.unroll,
            recurrent_dropout=c.recurrent_dropout,
            rngs=rngs,
            **options,
        )
        self.drop = nnx.Dropout(c.dropout) if c.dropout > 0 else None
        head = nnx.Linear(self.rnn.out_features, c.num_classes, rngs=rngs)
        self.head = TimeDistributed(head) if c.many_to_many else head

    def __call__(
        self,
        x,
        *,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
        mask=None,
        initial_state=None,
        return_state: bool = False,
    ):
        """mask [B, T] (optional) marks real steps; with mask_zero it defaults to x != 0.
        initial_state / return_state: per-layer states as in RecurrentStack (for generation)."""
        c = self.config
        check_input(
            x,
            (None,) if self.embed is not None else (None, c.input_shape[-1]),
            model="recurrent net",
        )
        if self.embed is not None:
            if mask is None:
                mask = self.embed.compute_mask(x)
            x = self.embed(x)
        if self.drop is not None:
            x = self.drop(x, deterministic=not train, rngs=rngs)
        h, states = self.rnn(
            x, mask=mask, initial_state=initial_state, return_state=True, train=train, rngs=rngs
        )
        if self.drop is not None:
            h = self.drop(h, deterministic=not train, rngs=rngs)
        y = self.head(h)
        return (y, states) if return_state else y

    def _check_lm(self, what: str) -> None:
        c = self.config
        if not (c.many_to_many and not c.bidirectional and c.num_classes == c.vocab_size):
            raise JaxdlError(
                f"{what} needs a unidirectional many-to-many language model "
                "(num_classes == vocab_size)"
            )

    def init_cache(self, batch: int, max_len: int | None = None):
        """The decoding cache of the generation API (`jaxdl.nn.decoding.generate`): the carried
        state, one zero state per layer. A recurrent net has no context limit (max_len unused)."""
        self._check_lm("init_cache")
        check_positive("batch", batch, integer=True)
        return [tuple(layer.cell.zero_state(batch)) for layer in self.rnn.layers]

    def decode(self, tokens, cache, pos=0):
        """tokens [B, t] continuing the sequence whose carried state is `cache` ->
        (logits [B, t, V], cache). `pos` is unused: the state is the position. Inference only."""
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise JaxdlError(f"decode: tokens must be [B, t] ids with t >= 1, got {tokens.shape}")
        return self(tokens, initial_state=cache, return_state=True)

    def generate(
        self,
        prompt: jax.Array,
        num_steps: int,
        *,
        key: jax.Array | None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> jax.Array:
        """Sample `num_steps` tokens after prompt [B, P] -> [B, num_steps] (key None: greedy).

        `jaxdl.nn.decoding.generate` over `init_cache` / `decode`: the prompt runs through the
        network once, then each sampled token is fed back with the carried state (a lax.scan),
        so a step costs one cell step."""
        from jaxdl.nn.decoding import generate

        self._check_lm("generate")
        if prompt.ndim != 2 or prompt.shape[1] == 0:
            raise JaxdlError(
                f"generate: prompt must be [B, P] token ids with P >= 1, got {prompt.shape}"
            )
        out = generate(
            self, prompt, num_steps, key=key, temperature=temperature, top_k=top_k, top_p=top_p
        )
        return out[:, prompt.shape[1] :]


_LM = dict(input_shape=(100,), vocab_size=65, num_classes=65, embed_dim=64, units=(256,))
_TINY_LM = {"input_shape": (12,), "units": (8,), "embed_dim": 6}
_TINY_TEXT = {"input_shape": (12,), "vocab_size": 30, "units": (8,), "embed_dim": 6}
register(
    "rnn_lm",
    RecurrentNet,
    RecurrentConfig(cell="rnn", **_LM),
    family="rnn",
    task="lm",
    test_overrides=_TINY_LM,
    description="character/token language model, SimpleRNN (Elman)",
)
register(
    "lstm_lm",
    RecurrentNet,
    RecurrentConfig(cell="lstm", **_LM),
    family="rnn",
    task="lm",
    test_overrides=_TINY_LM,
    description="character/token language model, LSTM",
)
register(
    "gru_lm",
    RecurrentNet,
    RecurrentConfig(cell="gru", **_LM),
    family="rnn",
    task="lm",
    test_overrides=_TINY_LM,
    description="character/token language model, GRU (reset_after, Keras default)",
)
register(
    "lstm_classifier",
    RecurrentNet,
    RecurrentConfig(
        input_shape=(200,),
        vocab_size=20000,
        num_classes=2,
        embed_dim=128,
        units=(128,),
        many_to_many=False,
        mask_zero=True,
    ),
    family="rnn",
    task="classify",
    test_overrides=_TINY_TEXT,
    description="many-to-one LSTM sequence classifier (e.g. sentiment), padding id 0 masked",
)
register(
    "lstm_tagger",
    RecurrentNet,
    RecurrentConfig(
        input_shape=(50,),
        vocab_size=10000,
        num_classes=17,
        embed_dim=100,
        units=(128,),
        bidirectional=True,
        mask_zero=True,
    ),
    family="rnn",
    task="tag",
    test_overrides=_TINY_TEXT,
    description="many-to-many bidirectional LSTM tagger (one tag per token)",
)

__all__ = ["RecurrentConfig", "RecurrentNet"]
