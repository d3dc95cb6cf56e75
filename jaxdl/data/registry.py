"""The dataset kinds and the one entry point, `load_dataset(spec)` (docs/design.md, decision 8).

A dataset spec is `KIND` or `KIND:ARGUMENT[,OPTION=VALUE...]`:

    digits                          scikit-learn's 1,797 8x8 digits (offline)
    mnist_idx:PATH                  MNIST IDX files in a folder
    tfds:NAME                       any prepared TFDS dataset, through tfds.data_source
    folder:PATH[,size=HxW,color=rgb|grayscale|rgba,on_error=raise|skip]
                                    one sub-folder per class of JPEG/PNG/BMP/GIF images
    csv:PATH[,label=COLUMN]         a table of numeric features and a class column
    text:PATH[,level=char|byte|word,seq_len=T]   next-token windows of a text file

Each kind's loader lives in `jaxdl.data.loaders.<module>`; `load_dataset(spec)` returns `Splits`
(`jaxdl.data.core`). Small sources are in-memory `ArrayDataset`s, large ones (image folders,
TFDS) read or decode rows on demand, in Grain worker processes if asked (`jaxdl.data.pipeline`).
`register_dataset` adds a kind. `shared_data_dir` finds the data folder shared by the checkouts,
and `load_mnist` loads MNIST from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from jaxdl.data.core import Splits
from jaxdl.data.loaders.csv import load_csv
from jaxdl.data.loaders.digits import load_digits
from jaxdl.data.loaders.folder import load_image_folder
from jaxdl.data.loaders.idx import load_mnist_idx
from jaxdl.data.loaders.text import load_text
from jaxdl.data.loaders.tfds import load_tfds
from jaxdl.errors import JaxdlError, unknown_name

DATASETS: dict[str, Callable[..., Splits]] = {
    "digits": load_digits,
    "mnist_idx": load_mnist_idx,
    "folder": load_image_folder,
    "csv": load_csv,
    "tfds": load_tfds,
    "text": load_text,
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
