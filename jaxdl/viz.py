"""Pictures for experiments: training curves, confusion matrices, image grids (samples,
reconstructions, interpolations), written as PNG (matplotlib, Agg backend: no display needed)
and, for image grids, to TensorBoard (tensorboardX).

    save_history(history, run_dir / "curves.png")
    save_confusion_matrix(cm, run_dir / "confusion.png", class_names)
    save_image_grid(images, run_dir / "samples.png", ncols=8)
    save_run_pictures(run_dir, history, confusion=cm)   # what an experiment writes; never raises

`jaxdl plot WORKDIR` redraws a run's curves from its log.csv (`history_from_csv`).
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxdl.errors import JaxdlError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _target(path):
    if hasattr(path, "write"):  # a file object (e.g. io.BytesIO): matplotlib writes into it
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def image_grid(
    images, ncols: int | None = None, *, value_range: tuple[float, float] = (0.0, 1.0), pad: int = 1
) -> np.ndarray:
    """images [N, H, W] or [N, H, W, C] (C 1 or 3) -> one uint8 picture [rows*(H+pad)+pad,
    cols*(W+pad)+pad, C], row-major, values mapped from `value_range` to 0..255 (clipped) and
    padding white. ncols defaults to ceil(sqrt(N))."""
    x = np.asarray(images, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or len(x) == 0:
        raise JaxdlError(
            f"image_grid: images must be [N, H, W] or [N, H, W, C] with C 1 or 3 "
            f"and N >= 1, got shape {x.shape}"
        )
    lo, hi = value_range
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    n, h, w, c = x.shape
    cols = ncols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        out[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + q * (w + pad) : pad + q * (w + pad) + w,
        ] = x[i]
    return (out * 255 + 0.5).astype(np.uint8)


def save_image_grid(
    images,
    path,
    ncols: int | None = None,
    *,
    value_range=(0.0, 1.0),
    title: str | None = None,
    scale: int = 3,
) -> Path:
    """Write `image_grid(images)` as a PNG, each pixel drawn `scale` x `scale`."""
    from PIL import Image

    grid = image_grid(images, ncols, value_range=value_range)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    if title:
        plt = _pyplot()
        fig = plt.figure(figsize=(img.width / 100, img.height / 100 + 0.4), dpi=100)
        plt.imshow(np.asarray(img), cmap="gray", vmin=0, vmax=255)
        plt.axis("off")
        plt.title(title, fontsize=9)
        fig.savefig(_target(path), dpi=100, bbox_inches="tight")
        plt.close(fig)
        return Path(path)
    img.save(_target(path))
    return Path(path)


def event_writer(logdir, *, purge_step: int | None = None):
    """The TensorBoard event-file writer (tensorboardX, no TensorFlow) for `logdir`: the one
    place jaxdl opens one (the TensorBoard callback and `log_image_grid` use it). Close it, or use
    it as a context manager. purge_step: events from this step on are dropped (a resumed run)."""
    from tensorboardX import SummaryWriter

    return SummaryWriter(str(logdir), purge_step=purge_step)


def log_image_grid(logdir, tag: str, images, step: int, *, value_range=(0.0, 1.0)) -> None:
    """Add an image grid to the TensorBoard event file in `logdir` (its Images tab)."""
    with event_writer(logdir) as w:
        w.add_image(tag, image_grid(images, value_range=value_range), step, dataformats="HWC")


class PictureWarning(UserWarning):
    """A picture could not be drawn; the run goes on without it."""


MAX_PANELS_PER_ROW = 3


def panel_grid(n: int, *, width: float = 4.2, height: float = 3.3):
    """(figure, flat list of n axes) in rows of at most MAX_PANELS_PER_ROW panels (no strips);
    unused panels of the last row are hidden."""
    plt = _pyplot()
    ncols = min(n, MAX_PANELS_PER_ROW)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _curve(ax, x, y, label):
    # markers make the points of short runs visible (a line needs two points)
    ax.plot(x, y, marker="o" if len(y) <= 40 else None, markersize=4, label=label)


def save_history(
    history, path, keys: Sequence[str] | None = None, title: str | None = None
) -> Path:
    """Training curves, one panel per metric (rows of at most three), the validation curve
    (val_KEY) beside the training one, each point marked for short runs. `history`: a History,
    its dict {key: [per-epoch values]}, or `history_from_csv(log.csv)`."""
    h: Mapping[str, list] = getattr(history, "history", history)
    keys = list(keys) if keys else [k for k in h if not k.startswith("val_") and k != "lr"]
    keys += [k for k in h if k.startswith("val_") and k[4:] not in h and k not in keys]
    keys.sort(key=lambda k: k not in ("loss", "val_loss"))  # the loss first, as Keras shows it
    if not keys:
        raise JaxdlError(f"save_history: nothing to plot; history has keys {sorted(h)}")
    for k in keys:
        if k not in h:
            raise JaxdlError(f"save_history: no {k!r} in the history; it has {sorted(h)}")
        if len(h[k]) == 0:
            raise JaxdlError(f"save_history: {k!r} has no values (no epoch finished)")
    plt = _pyplot()
    fig, axes = panel_grid(len(keys))
    for ax, k in zip(axes, keys, strict=True):
        epochs = np.arange(1, len(h[k]) + 1)
        _curve(ax, epochs, h[k], "train" if f"val_{k}" in h else k)
        if f"val_{k}" in h:
            _curve(ax, np.arange(1, len(h[f"val_{k}"]) + 1), h[f"val_{k}"], "validation")
        ax.set_xlabel("epoch")
        ax.set_title(k)
        ax.grid(alpha=0.3)
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(_target(path), dpi=100, format="png")
    plt.close(fig)
    return path if hasattr(path, "write") else Path(path)


def save_confusion_matrix(
    cm, path, class_names: Sequence[str] | None = None, title: str = "confusion matrix"
) -> Path:
    """cm [C, C] (rows: true class, columns: predicted) as an annotated heat map."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise JaxdlError(f"save_confusion_matrix: cm must be square [C, C], got {cm.shape}")
    names = list(class_names) if class_names else [str(i) for i in range(len(cm))]
    plt = _pyplot()
    size = max(4.0, 0.45 * len(cm) + 1.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(cm)):
        for j in range(len(cm)):
            ax.text(
                j,
                i,
                f"{cm[i, j]:g}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    ax.set_xticks(range(len(cm)), names, rotation=45)
    ax.set_yticks(range(len(cm)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(_target(path), dpi=100)
    plt.close(fig)
    return Path(path)


def history_from_csv(path) -> dict[str, list[float]]:
    """{column: [per-epoch values]} of a CSVLogger file (`jaxdl train --workdir W` writes
    W/log.csv); the epoch column is dropped, empty cells skipped."""
    path = Path(path)
    if not path.is_file():
        raise JaxdlError(f"{str(path)!r} is not a file: expected a CSV log (log.csv of a run)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise JaxdlError(f"{str(path)!r} has no epoch rows yet: nothing to plot")
    out: dict[str, list[float]] = {}
    for name in rows[0]:
        if name in (None, "epoch"):
            continue
        try:
            values = [float(r[name]) for r in rows if r.get(name) not in (None, "")]
        except ValueError:
            continue  # a text column
        if values:
            out[name] = values
    if not out:
        raise JaxdlError(f"{str(path)!r} has no numeric columns to plot")
    return out


def save_run_pictures(
    out,
    history=None,
    *,
    confusion=None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> list[Path]:
    """What an experiment writes to its run directory `out`: curves.png (train and validation)
    from `history` and confusion_matrix.png from `confusion` where given. A picture that cannot
    be drawn (no matplotlib, a bad backend, nothing to plot) is a PictureWarning, never an
    error: the run's results stand without it. Returns the paths written."""
    out = Path(out)
    jobs = []
    if history is not None:
        jobs.append(("curves.png", lambda p: save_history(history, p, title=title)))
    if confusion is not None:
        jobs.append(
            (
                "confusion_matrix.png",
                lambda p: save_confusion_matrix(
                    confusion, p, class_names, title=f"{title}: test set" if title else "test set"
                ),
            )
        )
    written = []
    for name, draw in jobs:
        try:
            written.append(draw(out / name))
        except Exception as e:  # a picture never breaks a run
            warnings.warn(
                f"could not draw {out / name}: {type(e).__name__}: {e}",
                PictureWarning,
                stacklevel=2,
            )
    return written


__all__ = [
    "PictureWarning",
    "panel_grid",
    "history_from_csv",
    "save_run_pictures",
    "image_grid",
    "save_image_grid",
    "event_writer",
    "log_image_grid",
    "save_history",
    "save_confusion_matrix",
]
