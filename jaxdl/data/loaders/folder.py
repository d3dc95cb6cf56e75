"""`folder:PATH[,size=HxW,color=...,on_error=...,interpolation=...]`: one sub-folder per class of
JPEG/PNG/BMP/GIF images, decoded on demand with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxdl.data.core import Splits, split_indices, warn_one_class
from jaxdl.data.spec import parse_size, spec_options
from jaxdl.errors import JaxdlError, unknown_name

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
