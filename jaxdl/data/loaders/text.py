"""`text:PATH[,level=char|byte|word,seq_len=T,max_size=N]`: next-token windows of a UTF-8 file."""

from __future__ import annotations

from pathlib import Path

from jaxdl.data.core import Splits
from jaxdl.data.spec import spec_options
from jaxdl.data.text import CharVocab, lm_windows, read_text
from jaxdl.errors import JaxdlError, check_positive


def load_text(
    *, arg=None, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> Splits:
    """`text:PATH[,level=char|byte|word,seq_len=128,max_size=N]`: next-token windows of a UTF-8
    file. The token stream is cut into contiguous train / val / test parts (in that order, by the
    fractions), so no window of one part overlaps another; x, y: [N, seq_len] int32, y shifted by
    one. `info['vocab']` is the CharVocab (built on the whole file). `seed` is unused: the split is
    positional."""
    del seed
    path, opts = spec_options("text", arg, {"level": str, "seq_len": int, "max_size": int})
    text = read_text(Path(path).expanduser())
    vocab = CharVocab.from_text(text, opts.get("level", "char"), opts.get("max_size"))
    ids = vocab.encode(text)
    seq_len = opts.get("seq_len", 128)
    check_positive("text: seq_len", seq_len, integer=True)
    if "max_size" in opts:
        check_positive("text: max_size", opts["max_size"], integer=True)
    n = len(ids)
    n_test, n_val = int(n * test_fraction), int(n * val_fraction)
    cuts = {
        "train": ids[: n - n_val - n_test],
        "val": ids[n - n_val - n_test : n - n_test],
        "test": ids[n - n_test :],
    }
    parts = {k: lm_windows(v, seq_len) if len(v) > seq_len else None for k, v in cuts.items()}
    for k in ("train", "test"):
        if parts[k] is None:
            raise JaxdlError(
                f"text: the {k} part of {path} ({len(cuts[k])} tokens) is too short for windows of "
                f"{seq_len}; use a smaller seq_len or another {k} fraction"
            )
    return Splits(
        name=Path(path).stem,
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        num_classes=len(vocab),
        input_shape=(seq_len,),
        info={"vocab": vocab},
    )
