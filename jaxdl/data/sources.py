"""Datasets that work offline (DESIGN.md decision 8): scikit-learn's `digits` and MNIST IDX files.

A dataset spec is `KIND` or `KIND:ARGUMENT`, e.g. `digits`, `mnist_idx:../shared/data/mnist`.
`load_dataset(spec)` returns `Splits` (train / validation / test `ArrayDataset`s), split by a
seeded stratified permutation, so the same seed gives the same splits everywhere.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jaxdl.errors import JaxdlError, unknown_name


@dataclass
class ArrayDataset:
    """In-memory examples: x [N, ...], y [N, ...] (class indices for classification)."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise JaxdlError(f"x and y must have the same length, got {len(self.x)} and {len(self.y)}")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index) -> ArrayDataset:
        return ArrayDataset(self.x[index], self.y[index])


@dataclass
class Splits:
    name: str
    train: ArrayDataset
    val: ArrayDataset | None
    test: ArrayDataset
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def split_indices(y: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Stratified split of range(len(y)) into len(fractions)+1 parts (the rest goes first).

    Each class is permuted by `seed` and cut at the same fractions, so splits are balanced."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = len(idx)
        cuts = np.cumsum([round(f * n) for f in fractions])
        start = n - cuts[-1] if len(cuts) else n
        parts[0].append(idx[:start])
        prev = start
        for i, cut in enumerate(cuts):
            parts[i + 1].append(idx[prev:start + cut])
            prev = start + cut
    return [np.sort(np.concatenate(p)) for p in parts]


def _make_splits(name, x, y, num_classes, *, seed, val_fraction, test_fraction, test=None, class_names=None):
    for arg, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= v < 1.0:
            raise JaxdlError(f"{arg} must be in [0, 1), got {v}")
    if test is not None:
        train_idx, val_idx = split_indices(y, (val_fraction,), seed)
        test_ds = test
    else:
        if not test_fraction:
            raise JaxdlError(f"dataset {name!r} has no test split; test_fraction must be > 0")
        train_idx, val_idx, test_idx = split_indices(y, (val_fraction, test_fraction), seed)
        test_ds = ArrayDataset(x[test_idx], y[test_idx])
    full = ArrayDataset(x, y)
    return Splits(
        name=name,
        train=full.subset(train_idx),
        val=full.subset(val_idx) if len(val_idx) else None,
        test=test_ds,
        num_classes=num_classes,
        input_shape=tuple(x.shape[1:]),
        class_names=class_names or [str(i) for i in range(num_classes)],
    )


def load_digits(*, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2, arg=None) -> Splits:
    """scikit-learn's bundled 1,797 real 8x8 handwritten digits (UCI), scaled to [0, 1].

    x: [N, 8, 8, 1] float32, y: [N] int32 in 0..9."""
    if arg:
        raise JaxdlError(f"dataset 'digits' takes no argument, got {arg!r}")
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int32)
    return _make_splits("digits", x, y, 10, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)


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
        raise JaxdlError(f"{path} is not an IDX file: expected magic 0x0000TTNN, got {data[:4].hex()}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise JaxdlError(f"{path}: truncated IDX header")
    shape = struct.unpack(">" + "I" * ndim, data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise JaxdlError(
            f"{path}: IDX header says shape {shape} ({expected} bytes of data), file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    return None


def load_mnist_idx(*, arg=None, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Splits:
    """MNIST from IDX files in a folder (`mnist_idx:PATH`).

    With train-* and t10k-* files, train (minus a validation part) and t10k are the splits. With
    only the t10k files (as in ../shared/data/mnist), those 10,000 images are split by
    `test_fraction` (0.2: 8,000 train / 2,000 test). x: [N, 28, 28, 1] float32 in [0, 1]."""
    if not arg:
        raise JaxdlError("dataset 'mnist_idx' needs a folder: mnist_idx:PATH (e.g. mnist_idx:../shared/data/mnist)")
    folder = Path(arg).expanduser()
    if not folder.is_dir():
        raise JaxdlError(f"mnist_idx: {folder} is not a folder of IDX files")
    files = {s: _find_idx(folder, s) for s in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    if not (files["t10k-images-idx3-ubyte"] and files["t10k-labels-idx1-ubyte"]):
        raise JaxdlError(
            f"mnist_idx: {folder} must hold t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]; "
            f"found {sorted(p.name for p in folder.iterdir())}"
        )

    def load(kind):
        x = read_idx(files[f"{kind}-images-idx3-ubyte"])
        y = read_idx(files[f"{kind}-labels-idx1-ubyte"])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise JaxdlError(f"mnist_idx: {kind} images {x.shape} and labels {y.shape} do not match")
        if y.max() > 9:
            raise JaxdlError(f"mnist_idx: {kind} labels must be 0..9, found {y.max()}")
        return (x.astype(np.float32) / 255.0)[..., None], y.astype(np.int32)

    x_test, y_test = load("t10k")
    if files["train-images-idx3-ubyte"] and files["train-labels-idx1-ubyte"]:
        x, y = load("train")
        return _make_splits("mnist", x, y, 10, seed=seed, val_fraction=val_fraction, test_fraction=0.0,
                            test=ArrayDataset(x_test, y_test))
    return _make_splits("mnist", x_test, y_test, 10, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)


def load_arrays(x, y, *, num_classes: int | None = None, seed: int = 0, val_fraction: float = 0.1,
                test_fraction: float = 0.2, name: str = "arrays") -> Splits:
    """Splits from in-memory arrays (class labels in y)."""
    x, y = np.asarray(x), np.asarray(y)
    n = int(num_classes if num_classes is not None else y.max() + 1)
    return _make_splits(name, x, y, n, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)


DATASETS: dict[str, Callable[..., Splits]] = {
    "digits": load_digits,
    "mnist_idx": load_mnist_idx,
}


def register_dataset(kind: str, loader: Callable[..., Splits]) -> None:
    """Add a dataset kind; `loader(*, arg, seed, val_fraction, test_fraction) -> Splits`."""
    DATASETS[kind] = loader


def load_dataset(spec: str, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Splits:
    """Load `KIND[:ARGUMENT]`, e.g. 'digits' or 'mnist_idx:../shared/data/mnist'."""
    kind, _, arg = spec.partition(":")
    if kind not in DATASETS:
        raise unknown_name("dataset", kind, DATASETS)
    return DATASETS[kind](arg=arg or None, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)


def shared_data_dir() -> Path | None:
    """../shared/data next to the checkout (or $JAXDL_SHARED_DATA), if present."""
    env = os.environ.get("JAXDL_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p.parent / "shared" / "data" for p in here.parents[:4]]
    candidates.append(Path.cwd().parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None
