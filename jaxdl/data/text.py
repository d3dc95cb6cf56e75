"""Text for language models: a vocabulary (characters, bytes or words) and next-token windows.

`CharVocab.from_text(text)` maps each distinct character to an id (sorted, so the same text gives
the same ids); `encode` of a character outside the vocabulary is an error naming it.
`level='byte'` uses the 256 byte values of the UTF-8 encoding (no unknown tokens);
`level='word'` splits into words and punctuation marks (`WORD_PATTERN`), keeps the `max_size`
most frequent ones and maps the rest to '<unk>' (id 0); decode joins words with spaces.
`lm_windows(ids, seq_len)` cuts a token stream into (x, y) pairs with y shifted by one.
The dataset kind `text` (`jaxdl.data.loaders.text`) loads a file through these.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxdl.data.core import ArrayDataset
from jaxdl.errors import JaxdlError, unknown_name

LEVELS = ("char", "byte", "word")
WORD_PATTERN = re.compile(r"\w+|[^\w\s]")
UNK = "<unk>"


@dataclass(frozen=True)
class CharVocab:
    """Tokens (`chars`: characters, the 256 bytes as latin-1 characters, or words) and ids."""

    chars: tuple[str, ...]
    level: str = "char"

    @classmethod
    def from_text(cls, text: str, level: str = "char", max_size: int | None = None) -> CharVocab:
        if level not in LEVELS:
            raise unknown_name("vocabulary level", level, LEVELS)
        if not text:
            raise JaxdlError("cannot build a vocabulary from empty text")
        if level == "byte":
            return cls(tuple(chr(i) for i in range(256)), level)
        if level == "word":
            counts = collections.Counter(WORD_PATTERN.findall(text))
            # most frequent first, ties alphabetical, so the same text gives the same ids
            words = sorted(counts, key=lambda w: (-counts[w], w))
            if max_size is not None:
                words = words[: max_size - 1]
            return cls((UNK, *words), level)
        return cls(tuple(sorted(set(text))), level)

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> np.ndarray:
        if self.level == "byte":
            return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
        idx = self.index
        if self.level == "word":
            return np.asarray([idx.get(w, 0) for w in WORD_PATTERN.findall(text)], np.int32)
        unknown = sorted({c for c in text if c not in idx})
        if unknown:
            raise JaxdlError(
                f"text has {len(unknown)} character(s) outside the vocabulary: {unknown[:10]!r}; "
                f"the vocabulary has {len(self)} characters"
            )
        return np.fromiter((idx[c] for c in text), np.int32, len(text))

    def decode(self, ids) -> str:
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise JaxdlError(
                f"token ids must be in [0, {len(self) - 1}], got [{ids.min()}, {ids.max()}]"
            )
        if self.level == "byte":
            return bytes(ids.astype(np.uint8)).decode("utf-8", errors="replace")
        return (" " if self.level == "word" else "").join(self.chars[i] for i in ids)


def generate_text(
    model,
    vocab: CharVocab,
    prompt: str,
    length: int,
    *,
    seed: int | None = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> str:
    """The prompt followed by `length` characters sampled from a character language model
    (`model.generate(ids, length, key=...)`, e.g. a `jaxdl.models.rnn.RecurrentNet`); seed None:
    greedy. The prompt must use only the vocabulary's characters (otherwise a JaxdlError names
    the unknown ones)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxdl.functional import split

    if not prompt:
        raise JaxdlError("generate_text: the prompt must have at least one character")
    ids = jnp.asarray(vocab.encode(prompt))[None]
    graphdef, params, state = split(model)

    @jax.jit
    def run(params, state, ids, key):
        m = nnx.merge(graphdef, params, state, copy=True)
        return m.generate(ids, length, key=key, temperature=temperature, top_k=top_k, top_p=top_p)

    key = None if seed is None else jax.random.key(seed)
    return prompt + vocab.decode(run(params, state, ids, key)[0])


def read_text(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise JaxdlError(f"text file {p} does not exist")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise JaxdlError(f"{p} is not UTF-8 text: {e}") from e


def lm_windows(ids: np.ndarray, seq_len: int, *, stride: int | None = None) -> ArrayDataset:
    """Non-overlapping (or `stride`-spaced) windows: x = ids[i:i+T], y = ids[i+1:i+T+1]."""
    stride = stride or seq_len
    n = (len(ids) - 1 - seq_len) // stride + 1
    if n < 1:
        raise JaxdlError(f"text of {len(ids)} tokens is too short for windows of {seq_len}")
    starts = np.arange(n) * stride
    idx = starts[:, None] + np.arange(seq_len)[None, :]
    return ArrayDataset(ids[idx].astype(np.int32), ids[idx + 1].astype(np.int32))
