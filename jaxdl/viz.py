"""Pictures for experiments: training curves, confusion matrices, image grids (samples,
reconstructions, interpolations), written as PNG (matplotlib, Agg backend: no display needed)
and, for image grids, to TensorBoard (tensorboardX).

    save_history(history, run_dir / "curves.png")
    save_confusion_matrix(cm, run_dir / "confusion.png", class_names)
    save_image_grid(images, run_dir / "samples.png", ncols=8)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxdl.errors import JaxdlError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _target(path) -> Path:
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


def save_history(
    history, path, keys: Sequence[str] | None = None, title: str | None = None
) -> Path:
    """Training curves, one panel per metric, the validation curve (val_KEY) beside the
    training one. `history`: a History or its dict {key: [per-epoch values]}."""
    h: Mapping[str, list] = getattr(history, "history", history)
    keys = list(keys) if keys else [k for k in h if not k.startswith("val_") and k != "lr"]
    if not keys:
        raise JaxdlError(f"save_history: nothing to plot; history has keys {sorted(h)}")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=False):
        if k not in h:
            raise JaxdlError(f"save_history: no {k!r} in the history; it has {sorted(h)}")
        epochs = np.arange(1, len(h[k]) + 1)
        ax.plot(epochs, h[k], label="train" if f"val_{k}" in h else k)
        if f"val_{k}" in h:
            ax.plot(epochs, h[f"val_{k}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(k)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(_target(path), dpi=100)
    plt.close(fig)
    return Path(path)


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


__all__ = [
    "image_grid",
    "save_image_grid",
    "event_writer",
    "log_image_grid",
    "save_history",
    "save_confusion_matrix",
]
