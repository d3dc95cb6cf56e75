"""`csv:PATH[,label=COLUMN]`: a table of numeric features and a class column."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxdl.data.core import Splits, make_splits
from jaxdl.data.spec import spec_options
from jaxdl.errors import JaxdlError


def load_csv(
    *, arg=None, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> Splits:
    """`csv:PATH[,label=COLUMN]`: numeric feature columns and one class column (a header name or
    a 0-based index; default the last column). A first row that is not all numbers is the header.
    Class values (numbers or strings) are mapped to ids in sorted order. x: [N, F] float32."""
    import csv

    path, opts = spec_options("csv", arg, {"label": str})
    p = Path(path).expanduser()
    if not p.is_file():
        raise JaxdlError(f"csv: {p} does not exist")
    with open(p, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows:
        raise JaxdlError(f"csv: {p} is empty")

    def numeric(v):
        try:
            float(v)
            return True
        except ValueError:
            return False

    header = None if all(numeric(v) for v in rows[0]) else [h.strip() for h in rows.pop(0)]
    width = len(rows[0]) if rows else 0
    if width < 2 or any(len(r) != width for r in rows):
        raise JaxdlError(f"csv: {p} needs at least 2 columns and the same number in every row")
    label = opts.get("label", str(width - 1))
    if header is not None and label in header:
        col = header.index(label)
    elif label.lstrip("-").isdigit() and -width <= int(label) < width:
        col = int(label) % width
    else:
        raise JaxdlError(
            f"csv: label column {label!r} is neither a header name {header} nor an index < {width}"
        )
    feats = [j for j in range(width) if j != col]
    try:
        x = np.asarray([[float(r[j]) for j in feats] for r in rows], np.float32)
    except ValueError as e:
        raise JaxdlError(f"csv: {p}: feature columns must be numeric ({e})") from None
    raw = [r[col].strip() for r in rows]
    values = sorted(set(raw), key=lambda v: (not numeric(v), float(v) if numeric(v) else 0.0, v))
    ids = {v: i for i, v in enumerate(values)}
    y = np.asarray([ids[v] for v in raw], np.int32)
    out = make_splits(
        p.stem,
        x,
        y,
        len(values),
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        class_names=values,
    )
    out.info["feature_names"] = [header[j] for j in feats] if header else []
    return out
