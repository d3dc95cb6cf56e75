"""`tfds:NAME[,data_dir=PATH,download=1,size=HxW,seq_len=T]`: a prepared TFDS dataset, read at
random through `tfds.data_source` (ArrayRecord, no TensorFlow)."""

from __future__ import annotations

import os

import numpy as np

from jaxdl.data.core import Splits, Subset
from jaxdl.data.spec import parse_size, spec_options
from jaxdl.data.text import CharVocab, lm_windows
from jaxdl.errors import JaxdlError, unknown_name


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
