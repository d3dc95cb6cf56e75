"""`mnist_idx:PATH`: MNIST from IDX files (LeCun's format, gzipped or not) in a folder."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from jaxdl.data.core import ArrayDataset, Splits, make_splits
from jaxdl.errors import JaxdlError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzipped or not. A malformed file is an error."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise JaxdlError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise JaxdlError(
            f"{path} is not an IDX file: expected magic 0x0000TTNN, got {data[:4].hex()}"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise JaxdlError(f"{path}: truncated IDX header")
    shape = struct.unpack(">" + "I" * ndim, data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise JaxdlError(
            f"{path}: IDX header says shape {shape} ({expected} bytes of data), "
            f"file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    return None


def load_mnist_idx(
    *, arg=None, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> Splits:
    """MNIST from IDX files in a folder (`mnist_idx:PATH`).

    With train-* and t10k-* files, train (minus a validation part) and t10k are the splits. With
    only the t10k files (as in ../shared/data/mnist), those 10,000 images are split by
    `test_fraction` (0.2: 8,000 train / 2,000 test). x: [N, 28, 28, 1] float32 in [0, 1]."""
    if not arg:
        raise JaxdlError(
            "dataset 'mnist_idx' needs a folder: mnist_idx:PATH "
            "(e.g. mnist_idx:../shared/data/mnist)"
        )
    folder = Path(arg).expanduser()
    if not folder.is_dir():
        raise JaxdlError(f"mnist_idx: {folder} is not a folder of IDX files")
    files = {
        s: _find_idx(folder, s)
        for s in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    }
    if not (files["t10k-images-idx3-ubyte"] and files["t10k-labels-idx1-ubyte"]):
        raise JaxdlError(
            f"mnist_idx: {folder} must hold t10k-images-idx3-ubyte[.gz] and "
            f"t10k-labels-idx1-ubyte[.gz]; "
            f"found {sorted(p.name for p in folder.iterdir())}"
        )

    def load(kind):
        x = read_idx(files[f"{kind}-images-idx3-ubyte"])
        y = read_idx(files[f"{kind}-labels-idx1-ubyte"])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise JaxdlError(
                f"mnist_idx: {kind} images {x.shape} and labels {y.shape} do not match"
            )
        if len(x) == 0:
            raise JaxdlError(f"mnist_idx: {files[f'{kind}-images-idx3-ubyte']} holds 0 images")
        if x.dtype != np.uint8:
            raise JaxdlError(
                f"mnist_idx: {kind} images must be uint8 pixels (IDX type 0x08), got {x.dtype}"
            )
        if y.dtype.kind not in "iu":
            raise JaxdlError(
                f"mnist_idx: {kind} labels must be integers (IDX type 0x08-0x0C), got {y.dtype}: "
                "a float label file would be truncated"
            )
        if y.min() < 0 or y.max() > 9:
            raise JaxdlError(f"mnist_idx: {kind} labels must be 0..9, found {y.min()}..{y.max()}")
        return (x.astype(np.float32) / 255.0)[..., None], y.astype(np.int32)

    x_test, y_test = load("t10k")
    if files["train-images-idx3-ubyte"] and files["train-labels-idx1-ubyte"]:
        x, y = load("train")
        return make_splits(
            "mnist",
            x,
            y,
            10,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=0.0,
            test=ArrayDataset(x_test, y_test),
        )
    return make_splits(
        "mnist",
        x_test,
        y_test,
        10,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
