"""`digits`: scikit-learn's bundled 8x8 handwritten digits (offline)."""

from __future__ import annotations

import numpy as np

from jaxdl.data.core import Splits, make_splits
from jaxdl.errors import JaxdlError


def load_digits(
    *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2, arg=None
) -> Splits:
    """scikit-learn's bundled 1,797 real 8x8 handwritten digits (UCI), scaled to [0, 1].

    x: [N, 8, 8, 1] float32, y: [N] int32 in 0..9."""
    if arg:
        raise JaxdlError(f"dataset 'digits' takes no argument, got {arg!r}")
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int32)
    return make_splits(
        "digits", x, y, 10, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
    )
