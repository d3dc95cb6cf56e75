"""Text for language models: a character vocabulary and next-token windows.

`CharVocab.from_text(text)` maps each distinct character to an id (sorted, so the same text gives
the same ids); `encode` of a character outside the vocabulary is an error naming it.
`lm_windows(ids, seq_len)` cuts a token stream into (x, y) pairs with y shifted by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxdl.data.sources import ArrayDataset
from jaxdl.errors import JaxdlError


@dataclass(frozen=True)
class CharVocab:
    chars: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        if not text:
            raise JaxdlError("cannot build a vocabulary from empty text")
        return cls(tuple(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> np.ndarray:
        idx = self.index
        unknown = sorted({c for c in text if c not in idx})
        if unknown:
            raise JaxdlError(f"text has {len(unknown)} character(s) outside the vocabulary: {unknown[:10]!r}; "
                             f"the vocabulary has {len(self)} characters")
        return np.fromiter((idx[c] for c in text), np.int32, len(text))

    def decode(self, ids) -> str:
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise JaxdlError(f"token ids must be in [0, {len(self) - 1}], got [{ids.min()}, {ids.max()}]")
        return "".join(self.chars[i] for i in ids)


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
