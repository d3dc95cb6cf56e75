"""What every dataset loader returns and the pieces they share.

`ArrayDataset` (in-memory x, y), `Subset` (rows of any random-access source) and `Splits`
(train / validation / test sources with their class count and input shape). A source is random
access (`len`, `source[i] -> {'x', 'y'}`). Splits come from a seeded stratified permutation
(`split_indices`), so the same seed gives the same splits everywhere; `load_arrays` makes them
from arrays already in memory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from jaxdl.errors import JaxdlError


@dataclass
class ArrayDataset:
    """In-memory examples: x [N, ...], y [N, ...] (class indices for classification).

    x_scale: x holds integers (e.g. uint8 pixels) and the model sees float32(x) * x_scale. The
    engine moves x to the devices as it is (a quarter of float32's bytes for uint8) and converts
    it there, inside the step; `scaled_x()` gives the float32 view on the host."""

    x: np.ndarray
    y: np.ndarray
    x_scale: float | None = None

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise JaxdlError(
                f"x and y must have the same length, got {len(self.x)} and {len(self.y)}"
            )
        if self.x_scale is not None:
            if not np.issubdtype(np.asarray(self.x).dtype, np.integer):
                raise JaxdlError(
                    f"x_scale is for integer x (e.g. uint8 pixels), got x of dtype "
                    f"{np.asarray(self.x).dtype}"
                )
            if not (np.isfinite(self.x_scale) and self.x_scale > 0):
                raise JaxdlError(f"x_scale must be a positive number, got {self.x_scale!r}")

    def scaled_x(self) -> np.ndarray:
        """x as the model sees it: float32(x) * x_scale (or x itself without x_scale)."""
        if self.x_scale is None:
            return self.x
        return np.asarray(self.x).astype(np.float32) * np.float32(self.x_scale)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {"x": self.x[i], "y": self.y[i]}

    def get_batch(self, idx) -> dict[str, np.ndarray]:
        return {"x": self.x[idx], "y": self.y[idx]}

    def subset(self, index) -> ArrayDataset:
        return ArrayDataset(self.x[index], self.y[index], self.x_scale)


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

    def head(self, train: int, val: int, test: int) -> Splits:
        """The first `train` / `val` / `test` examples of each split (the experiments' --smoke
        runs)."""
        cut = lambda d, n: None if d is None else d.subset(slice(0, n))  # noqa: E731
        return dataclasses.replace(
            self, train=cut(self.train, train), val=cut(self.val, val), test=cut(self.test, test)
        )


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
            parts[i + 1].append(idx[prev : start + cut])
            prev = start + cut
    return [np.sort(np.concatenate(p)) for p in parts]


class OneClassWarning(UserWarning):
    """The dataset has a single class: a classifier trained on it learns nothing useful."""


def warn_one_class(name, num_classes: int, class_names=None) -> None:
    """Documented behaviour for one-class data: it loads (a legitimate if degenerate dataset),
    with a OneClassWarning saying what it means."""
    if num_classes == 1:
        import warnings

        only = f" ({class_names[0]!r})" if class_names else ""
        warnings.warn(
            f"dataset {name!r} has a single class{only}: every label is 0, so a classifier "
            "trained on it predicts that class for everything; add a folder (or label) per class",
            OneClassWarning,
            stacklevel=3,
        )


def make_splits(
    name, x, y, num_classes, *, seed, val_fraction, test_fraction, test=None, class_names=None
):
    warn_one_class(name, num_classes, class_names)
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


def load_arrays(
    x,
    y,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    name: str = "arrays",
) -> Splits:
    """Splits from in-memory arrays (class labels in y)."""
    x, y = np.asarray(x), np.asarray(y)
    n = int(num_classes if num_classes is not None else y.max() + 1)
    return make_splits(
        name, x, y, n, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
    )


class Subset:
    """Rows `indices` of a random-access source."""

    def __init__(self, source, indices):
        self.source, self.indices = source, np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.source[int(self.indices[i])]

    def get_batch(self, idx):
        from jaxdl.data.pipeline import read_rows

        return read_rows(self.source, self.indices[np.asarray(idx)])

    @property
    def y(self):
        y = getattr(self.source, "y", None)
        return None if y is None else y[self.indices]
