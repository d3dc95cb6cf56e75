"""Data sources (DESIGN.md decision 8): offline defaults, TFDS, image folders, CSV (and, in
`jaxdl.data.text`, text files).

A dataset spec is `KIND` or `KIND:ARGUMENT[,OPTION=VALUE...]`:

    digits                          scikit-learn's 1,797 8x8 digits (offline)
    mnist_idx:PATH                  MNIST IDX files in a folder
    tfds:NAME                       any prepared TFDS dataset, through tfds.data_source
    folder:PATH[,size=HxW,color=rgb|grayscale|rgba,on_error=raise|skip]
                                    one sub-folder per class of JPEG/PNG/BMP/GIF images
    csv:PATH[,label=COLUMN]         a table of numeric features and a class column
    text:PATH[,level=char|byte|word,seq_len=T]   next-token windows of a text file

`load_dataset(spec)` returns `Splits` (train / validation / test sources). A source is random
access (`len`, `source[i] -> {'x', 'y'}`); small ones are in-memory `ArrayDataset`s, large ones
(image folders, TFDS) read or decode rows on demand, in Grain worker processes if asked
(`jaxdl.data.pipeline`). Splits come from a seeded stratified permutation, so the same seed gives
the same splits everywhere.
"""

from __future__ import annotations

import dataclasses
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


def _make_splits(
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
    return _make_splits(
        "digits", x, y, 10, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
    )


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
        return _make_splits(
            "mnist",
            x,
            y,
            10,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=0.0,
            test=ArrayDataset(x_test, y_test),
        )
    return _make_splits(
        "mnist",
        x_test,
        y_test,
        10,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
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
    return _make_splits(
        name, x, y, n, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
    )


def spec_options(kind: str, arg: str | None, allowed: dict[str, Callable[[str], object]]):
    """'PATH,key=value,...' -> (PATH, {key: parsed value}); unknown keys are an error."""
    if not arg:
        raise JaxdlError(f"dataset {kind!r} needs an argument: {kind}:PATH")
    path, *items = arg.split(",")
    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in allowed:
            raise JaxdlError(
                f"{kind}: option {item!r} is not one of {', '.join(f'{k}=...' for k in allowed)}"
            )
        try:
            opts[key] = allowed[key](value)
        except ValueError as e:
            raise JaxdlError(f"{kind}: bad value in {item!r}: {e}") from None
    return path, opts


def parse_size(text: str) -> tuple[int, int]:
    """'64x48' -> (64, 48) (height x width); '64' -> (64, 64)."""
    h, sep, w = text.partition("x")
    size = (int(h), int(w)) if sep else (int(h), int(h))
    if min(size) < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return size


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


# ---- image folders -------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3), "rgba": ("RGBA", 4)}


def list_image_folder(path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Image files under PATH/CLASS/ (any depth below CLASS), their class ids and the class names
    (sorted sub-folder names, as Keras's image_dataset_from_directory)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise JaxdlError(f"image folder {root} is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise JaxdlError(
            f"image folder {root} has no class sub-folders; expected {root}/CLASS_NAME/IMAGE.jpg "
            f"(one sub-folder per class)"
        )
    files, labels = [], []
    for c, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        files += found
        labels += [c] * len(found)
    if not files:
        raise JaxdlError(
            f"image folder {root}: the class sub-folders {classes[:10]} hold no images "
            f"({', '.join(IMAGE_EXTENSIONS)})"
        )
    return files, np.asarray(labels, np.int32), classes


def decode_image(
    path, *, size: tuple[int, int], color_mode: str = "rgb", interpolation: str = "bilinear"
) -> np.ndarray:
    """Decode an image file with Pillow to float32 [H, W, C] in [0, 1], resized to size (H, W).

    color_mode converts as Keras does: a grayscale file read as 'rgb' repeats its channel, an RGB
    file read as 'grayscale' is converted to luminance (ITU-R 601-2), transparency is dropped for
    'rgb'. A file Pillow cannot decode raises OSError (PIL.UnidentifiedImageError is one)."""
    from PIL import Image

    mode, _ = COLOR_MODES[color_mode]
    resample = {
        "bilinear": Image.Resampling.BILINEAR,
        "nearest": Image.Resampling.NEAREST,
        "bicubic": Image.Resampling.BICUBIC,
    }[interpolation]
    with Image.open(path) as img:
        img = img.convert(mode)
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), resample)
        x = np.asarray(img, np.float32) / 255.0
    return x[..., None] if x.ndim == 2 else x


class ImageFolder:
    """Images decoded on demand: `[i] -> {'x': float32 [H, W, C] in [0, 1], 'y': int32}`.

    on_error: 'raise' (a corrupt file is an error naming it, when it is read) or 'skip' (every
    file is decoded once here and the unreadable ones are left out; `skipped` lists them)."""

    def __init__(
        self,
        files,
        labels,
        *,
        size=(256, 256),
        color_mode: str = "rgb",
        interpolation: str = "bilinear",
        on_error: str = "raise",
    ):
        if color_mode not in COLOR_MODES:
            raise unknown_name("color_mode", color_mode, COLOR_MODES)
        if on_error not in ("raise", "skip"):
            raise JaxdlError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.size, self.color_mode, self.interpolation = tuple(size), color_mode, interpolation
        self.files, self.labels = list(files), np.asarray(labels, np.int32)
        self.skipped: list[Path] = []
        if on_error == "skip":
            ok = []
            for i, f in enumerate(self.files):
                try:
                    self._decode(f)
                    ok.append(i)
                except OSError:
                    self.skipped.append(f)
            self.files, self.labels = [self.files[i] for i in ok], self.labels[ok]

    @property
    def y(self) -> np.ndarray:
        return self.labels

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.size, COLOR_MODES[self.color_mode][1])

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, f):
        return decode_image(
            f, size=self.size, color_mode=self.color_mode, interpolation=self.interpolation
        )

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        f = self.files[i]
        try:
            x = self._decode(f)
        except OSError as e:
            raise JaxdlError(
                f"cannot decode image {f}: {e}; pass on_error='skip' (folder:PATH,on_error=skip) "
                f"to leave unreadable files out"
            ) from None
        return {"x": x, "y": self.labels[i]}

    def subset(self, index) -> ImageFolder:
        out = ImageFolder(
            [], [], size=self.size, color_mode=self.color_mode, interpolation=self.interpolation
        )
        index = np.asarray(index, np.int64)
        out.files, out.labels = [self.files[i] for i in index], self.labels[index]
        return out


_FOLDER_OPTIONS = {"size": parse_size, "color": str, "on_error": str, "interpolation": str}


def load_image_folder(
    *, arg=None, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> Splits:
    """`folder:PATH[,size=HxW,color=rgb,on_error=raise,interpolation=bilinear]` (size 256x256 by
    default, as Keras). PATH holds one sub-folder per class, or train/ and test/ (and optionally
    val/ or validation/) folders that each hold one sub-folder per class; otherwise the images are
    split (stratified, seeded) by val_fraction and test_fraction."""
    path, opts = spec_options("folder", arg, _FOLDER_OPTIONS)
    root = Path(path).expanduser()
    kw = dict(
        size=opts.get("size", (256, 256)),
        color_mode=opts.get("color", "rgb"),
        interpolation=opts.get("interpolation", "bilinear"),
        on_error=opts.get("on_error", "raise"),
    )
    subdirs = {d.name for d in root.iterdir() if d.is_dir()} if root.is_dir() else set()
    if {"train", "test"} <= subdirs:
        files, labels, classes = list_image_folder(root / "train")
        train = ImageFolder(files, labels, **kw)
        test_files, test_labels, test_classes = list_image_folder(root / "test")
        if test_classes != classes:
            raise JaxdlError(
                f"folder: {root}/test has classes {test_classes}, {root}/train has {classes}"
            )
        test = ImageFolder(test_files, test_labels, **kw)
        val_dir = next((root / d for d in ("val", "validation") if d in subdirs), None)
        if val_dir is not None:
            val = ImageFolder(*list_image_folder(val_dir)[:2], **kw)
        else:
            train_idx, val_idx = split_indices(train.labels, (val_fraction,), seed)
            train, val = train.subset(train_idx), train.subset(val_idx)
        skipped = train.skipped + test.skipped + val.skipped
    else:
        files, labels, classes = list_image_folder(root)
        full = ImageFolder(files, labels, **kw)
        if not test_fraction:
            raise JaxdlError(f"folder: {root} has no test/ folder; test_fraction must be > 0")
        train_idx, val_idx, test_idx = split_indices(
            full.labels, (val_fraction, test_fraction), seed
        )
        train, val, test = full.subset(train_idx), full.subset(val_idx), full.subset(test_idx)
        skipped = full.skipped
    warn_one_class(root.name, len(classes), classes)
    return Splits(
        name=root.name,
        train=train,
        val=val if len(val) else None,
        test=test,
        num_classes=len(classes),
        input_shape=train.input_shape,
        class_names=classes,
        info={"skipped": [str(p) for p in skipped], "num_skipped": len(skipped)},
    )


# ---- CSV tables ----------------------------------------------------------------------------------


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
    out = _make_splits(
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


# ---- TFDS ----------------------------------------------------------------------------------------


class TfdsSource:
    """A split of a TFDS data source (ArrayRecord, random access) as {'x', 'y'} rows: images
    become float32 in [0, 1] (resized to `size` (H, W) with Pillow, bilinear, if given: needed
    for datasets of varying image sizes such as imagenette), labels int32."""

    def __init__(self, data_source, input_key: str, label_key: str, size=None):
        self.data_source, self.input_key, self.label_key = data_source, input_key, label_key
        self.size = tuple(size) if size else None

    def __len__(self) -> int:
        return len(self.data_source)

    def _convert(self, record) -> dict[str, np.ndarray]:
        x = np.asarray(record[self.input_key])
        if self.size and x.shape[:2] != self.size:
            from PIL import Image

            img = Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x)
            img = img.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
            x = np.asarray(img).reshape(*self.size, x.shape[-1])
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        return {"x": x, "y": np.asarray(record[self.label_key], np.int32)}

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self._convert(self.data_source[int(i)])


def tfds_not_prepared(
    name: str, builder, data_dir: str | None, download: bool, err: Exception
) -> JaxdlError:
    """The error for a TFDS dataset that data_source could not open, saying how to prepare it."""
    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    first = str(err).splitlines()[0] if str(err) else ""
    if builder.is_prepared():  # prepared, but not in a random-access format
        why = f"is prepared in {builder.data_dir} but cannot be read at random ({first})"
    elif download:
        why = f"is not prepared (no {builder.data_dir}) and could not be downloaded "
        why += f"({type(err).__name__}: {first})"
    else:
        why = f"is not prepared (no {builder.data_dir}) and downloading is off"
    return JaxdlError(
        f"tfds:{name} {why}. Prepare it in ArrayRecord format where there is network access: "
        f"`tfds build {name} --file_format=array_record --data_dir {where}` "
        f"(or tfds:{name},download=1), and put the resulting {name}/ folder in {where}; "
        f"datasets with manual downloads (e.g. imagenet2012) need their archives in "
        f"{where}/downloads/manual/ first. TFDS_DATA_DIR or tfds:{name},data_dir=PATH "
        f"selects another folder."
    )


def load_tfds(
    *, arg=None, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> Splits:
    """`tfds:NAME[,data_dir=PATH,download=1,size=HxW]` through `tfds.data_source` (random access, no
    TensorFlow). The dataset's (input, label) supervised keys give x and y. Splits: TFDS's
    'train' (minus a seeded random val_fraction unless it has a 'validation' split) and 'test'
    (or 'validation' when there is no test split, as for imagenet2012). A text dataset
    (a single Text feature, e.g. tiny_shakespeare) gives character-level next-token windows."""
    import tensorflow_datasets as tfds

    name, opts = spec_options(
        "tfds",
        arg,
        {
            "data_dir": str,
            "download": lambda v: v.lower() in ("1", "true", "yes"),
            "seq_len": int,
            "size": parse_size,
        },
    )
    data_dir = opts.get("data_dir")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends
        known = tfds.list_builders(with_community_datasets=False)
        raise unknown_name("TFDS dataset", name, known) from e
    splits = set(builder.info.splits.keys()) if builder.info.splits else set()

    def source(split):
        try:
            return tfds.data_source(
                name, split=split, data_dir=data_dir, download=opts.get("download", False)
            )
        except Exception as e:  # not prepared / wrong format / no network: one clear message
            raise tfds_not_prepared(name, builder, data_dir, opts.get("download", False), e) from e

    test_split = "test" if "test" in splits or not splits else "validation"
    features = builder.info.features
    if builder.info.supervised_keys is None and list(features.keys()) == ["text"]:
        return _tfds_text(name, source, splits, opts.get("seq_len", 128))
    if builder.info.supervised_keys is None:
        raise JaxdlError(
            f"tfds:{name} has no supervised (input, label) keys; "
            f"its features are {list(features.keys())}"
        )
    in_key, label_key = builder.info.supervised_keys[:2]
    size = opts.get("size")
    train = TfdsSource(source("train"), in_key, label_key, size)
    test = TfdsSource(source(test_split), in_key, label_key, size)
    if "validation" in splits and test_split != "validation":
        val = TfdsSource(source("validation"), in_key, label_key, size)
    else:
        perm = np.random.default_rng(seed).permutation(len(train))
        n_val = round(val_fraction * len(train))
        val = Subset(train, np.sort(perm[:n_val])) if n_val else None
        train = Subset(train, np.sort(perm[n_val:]))
    label = features[label_key]
    num_classes = int(getattr(label, "num_classes", 0) or 0)
    if not num_classes:
        raise JaxdlError(
            f"tfds:{name}: label {label_key!r} is not a ClassLabel ({type(label).__name__})"
        )
    shape = tuple(features[in_key].shape)
    if size:
        shape = (*size, shape[-1])
    elif None in shape:
        raise JaxdlError(
            f"tfds:{name} has images of varying size {shape}; "
            f"give one, e.g. tfds:{name},size=160x160"
        )
    return Splits(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        input_shape=shape,
        class_names=list(getattr(label, "names", [])) or [str(i) for i in range(num_classes)],
        info={"tfds_version": str(builder.info.version)},
    )


def _tfds_text(name, source, splits, seq_len):
    """Text datasets: every record's text of a split, concatenated, as character windows."""
    from jaxdl.data.text import CharVocab, lm_windows

    def text(split):
        ds = source(split)
        return "".join(np.asarray(ds[i]["text"]).item().decode("utf-8") for i in range(len(ds)))

    parts = {s: text(s) for s in ("train", "validation", "test") if s in splits}
    vocab = CharVocab.from_text("".join(parts.values()))
    windows = {s: lm_windows(vocab.encode(t), seq_len) for s, t in parts.items()}
    return Splits(
        name=name,
        train=windows["train"],
        val=windows.get("validation"),
        test=windows.get("test", windows.get("validation")),
        num_classes=len(vocab),
        input_shape=(seq_len,),
        info={"vocab": vocab},
    )


DATASETS: dict[str, Callable[..., Splits]] = {
    "digits": load_digits,
    "mnist_idx": load_mnist_idx,
    "folder": load_image_folder,
    "csv": load_csv,
    "tfds": load_tfds,
}


def register_dataset(kind: str, loader: Callable[..., Splits]) -> None:
    """Add a dataset kind; `loader(*, arg, seed, val_fraction, test_fraction) -> Splits`."""
    DATASETS[kind] = loader


def load_dataset(
    spec: str, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> Splits:
    """Load `KIND[:ARGUMENT]`, e.g. 'digits', 'mnist_idx:../shared/data/mnist', 'tfds:mnist',
    'folder:~/cats_vs_dogs,size=180x180'."""
    kind, _, arg = spec.partition(":")
    if kind not in DATASETS:
        raise unknown_name("dataset", kind, DATASETS)
    return DATASETS[kind](
        arg=arg or None, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
    )


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


def load_mnist(data: str | os.PathLike | None = None, *, seed: int = 0, **kwargs) -> Splits:
    """MNIST from the IDX folder `data`, by default ../shared/data/mnist (or
    $JAXDL_SHARED_DATA/mnist): the one place experiments find it."""
    folder = Path(data) if data else (shared_data_dir() or Path("../shared/data")) / "mnist"
    if not folder.is_dir():
        raise JaxdlError(
            f"MNIST IDX folder {folder} not found: pass --data PATH or set JAXDL_SHARED_DATA"
        )
    return load_dataset(f"mnist_idx:{folder}", seed=seed, **kwargs)
