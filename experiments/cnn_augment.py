"""Augmentation against over-fitting: the same CNN trained twice on a small training set (a few
hundred real MNIST digits), without and with on-the-fly augmentation in the train step; the
gap between training and validation accuracy is measured each epoch and plotted.

    python experiments/cnn_augment.py [--train-size 500] [--epochs 40] \
        [--augment rotate=0.05,zoom=0.1,shift=0.1]

Training accuracy is measured on the clean (non-augmented) training images after each epoch, so
the two runs are compared on the same footing. The model is `lenet5` when the registry has it,
else an MLP (the script says so). Data: ../shared/data/mnist (t10k IDX files), else scikit-learn's
8x8 digits. Writes the curves to `--out` (PNG) and returns the final figures.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from jaxdl.data import load_dataset, parse_augment, shared_data_dir
from jaxdl.models import create_model
from jaxdl.models.registry import get_entry
from jaxdl.train import Trainer
from jaxdl.train.callbacks import Callback


@dataclass(frozen=True)
class Config:
    train_size: int = 500
    """Training examples (a small set, so that the model can over-fit it)."""
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    augment: str = "rotate=0.05,zoom=0.1,shift=0.1"
    """No flips: mirrored digits are other symbols."""
    model: str = "lenet5"
    seed: int = 0
    out: str = "docs/cnn_augment.png"
    smoke: bool = False


class CleanAccuracy(Callback):
    """Accuracy on fixed clean data after every epoch (the training history holds augmented
    batches)."""

    def __init__(self, data):
        self.data, self.values = data, []

    def on_epoch_end(self, epoch, logs=None):
        self.values.append(self.trainer.evaluate(self.data)["accuracy"])


def pick_model(name: str, splits) -> tuple[str, object]:
    fields = {f.name for f in dataclasses.fields(get_entry(name).config)}
    over = {
        k: v
        for k, v in {"input_shape": splits.input_shape, "num_classes": splits.num_classes}.items()
        if k in fields
    }
    return name, create_model(name, **over)


def run(cfg: Config, splits, train, augment) -> dict:
    name, model = pick_model(cfg.model, splits)
    trainer = Trainer(
        model,
        learning_rate=cfg.lr,
        seed=cfg.seed,
        augment=parse_augment(augment) if augment else None,
    )
    clean_train, val = CleanAccuracy(train), CleanAccuracy(splits.val)
    t0 = time.perf_counter()
    trainer.fit(
        train, epochs=cfg.epochs, batch_size=cfg.batch_size, callbacks=[clean_train, val], verbose=0
    )
    return {
        "model": name,
        "train": clean_train.values,
        "val": val.values,
        "time_s": time.perf_counter() - t0,
        "test": trainer.evaluate(splits.test)["accuracy"],
    }


def plot(runs: dict, path: Path, title: str):
    """Accuracy curves of both runs beside their train - validation gap, each epoch marked."""
    from jaxdl.viz import panel_grid

    fig, (ax, gap) = panel_grid(2, width=5.5, height=4.0)
    for (label, r), color in zip(runs.items(), ("tab:red", "tab:blue"), strict=False):
        ep = np.arange(1, len(r["train"]) + 1)
        style = {"color": color, "marker": "o", "markersize": 3}
        ax.plot(ep, r["train"], label=f"{label}: train (clean)", **style)
        ax.plot(ep, r["val"], linestyle="--", label=f"{label}: validation", **style)
        gap.plot(ep, np.subtract(r["train"], r["val"]), label=label, **style)
    ax.set(xlabel="epoch", ylabel="accuracy", title=title)
    gap.set(xlabel="epoch", ylabel="train - validation accuracy", title="generalisation gap")
    ax.legend(fontsize=8)
    gap.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt  # Agg, chosen by panel_grid

    plt.close(fig)


def main(cfg: Config) -> dict:
    if cfg.smoke:
        cfg = dataclasses.replace(cfg, train_size=64, epochs=2)
    shared = shared_data_dir()
    mnist = shared / "mnist" if shared else None
    spec = (
        f"mnist_idx:{mnist}"
        if mnist and (mnist / "t10k-images-idx3-ubyte.gz").exists()
        else "digits"
    )
    splits = load_dataset(spec, seed=cfg.seed, val_fraction=0.2, test_fraction=0.2)
    rng = np.random.default_rng(cfg.seed)
    train = splits.train.subset(np.sort(rng.permutation(len(splits.train))[: cfg.train_size]))
    print(
        f"{spec}: {len(train)} training / {len(splits.val)} validation / "
        f"{len(splits.test)} test images"
    )
    runs = {
        "no augmentation": run(cfg, splits, train, ""),
        f"augment {cfg.augment}": run(cfg, splits, train, cfg.augment),
    }
    out = {}
    for label, r in runs.items():
        tail = slice(-max(1, cfg.epochs // 10), None)  # the mean of the last tenth of the epochs
        tr, va = float(np.mean(r["train"][tail])), float(np.mean(r["val"][tail]))
        print(
            f"{label:45s} train {tr:.4f}  val {va:.4f}  gap {tr - va:+.4f}  test {r['test']:.4f}  "
            f"({r['time_s']:.0f}s, {r['model']})"
        )
        key = "aug" if label.startswith("augment") else "plain"
        out.update(
            {f"{key}_train": tr, f"{key}_val": va, f"{key}_gap": tr - va, f"{key}_test": r["test"]}
        )
    plot(
        runs,
        Path(cfg.out),
        f"{runs['no augmentation']['model']} on {len(train)} {splits.name} images",
    )
    print(f"curves saved to {cfg.out}")
    return out


if __name__ == "__main__":
    main(tyro.cli(Config))
