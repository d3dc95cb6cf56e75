"""CIFAR-10 (32x32x3, 50,000 train / 10,000 test) with a small VGG-style net (three stages of
two 3x3 conv + BN, 32-64-128 filters, max pooling, a 256-unit fc layer) and with resnet18,
through TFDS (`tfds.data_source('cifar10')`, no TensorFlow needed to read).

    python experiments/cnn_cifar10.py [--models vgg_small resnet18] [--epochs 15]
        [--augment "" "flip,crop=4"]   # each model without and with augmentation (the default)
    python experiments/cnn_cifar10.py --smoke     # synthetic data, seconds

TFDS data must be prepared once where the internet can be reached, e.g.
`tfds build cifar10` (or `python -c "import tensorflow_datasets as tfds;
tfds.builder('cifar10').download_and_prepare()"`), then copied to ~/tensorflow_datasets or
pointed to with --data-dir. This machine is offline, so only `--smoke` was run here.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from rich.console import Console

from jaxdl import create_model
from jaxdl.data import ArrayDataset, num_batches, parse_augment
from jaxdl.errors import JaxdlError
from jaxdl.parallel import make_mesh
from jaxdl.train import Trainer, make_schedule
from jaxdl.viz import save_run_pictures

CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

# name -> (registered model, config overrides)
MODELS = {
    "vgg_small": (
        "vgg11_bn",
        {"stages": ((32, 32), (64, 64), (128, 128)), "fc": (256,), "dropout": 0.3},
    ),
    "resnet18": ("resnet18", {}),
}


@dataclass(frozen=True)
class Config:
    models: tuple[str, ...] = ("vgg_small", "resnet18")
    augment: tuple[str, ...] = ("", "flip,crop=4")
    """Each model is trained once per augmentation spec ('' = none; see jaxdl.data.augment)."""
    epochs: int = 15
    batch_size: int = 128
    lr: float = 1e-3
    data_dir: str | None = None
    """TFDS data folder (default: TFDS's, ~/tensorflow_datasets)."""
    seed: int = 0
    smoke: bool = False
    out: str = "runs/cnn_cifar10"
    """Run directory: one folder of pictures per model and augmentation (curves.png with the
    test set as the validation curve, no selection is made on it; confusion_matrix.png)."""
    """Synthetic 32x32x3 data (class-dependent colour blobs), tiny widths, one epoch."""


def load_cifar10(data_dir: str | None):
    """(train, test) ArrayDatasets from TFDS, images scaled to [0, 1]."""
    import tensorflow_datasets as tfds

    try:
        sources = tfds.data_source("cifar10", data_dir=data_dir, download=False)
    except Exception as e:  # TFDS raises several kinds when the data is not prepared
        raise JaxdlError(
            "cifar10 is not prepared for TFDS here (offline?). Run `tfds build cifar10` where the "
            "internet can be reached and copy the folder, or pass --data-dir. "
            f"({type(e).__name__}: {e})"
        ) from e

    def arrays(split):
        src = sources[split]
        x = np.stack([src[i]["image"] for i in range(len(src))]).astype(np.float32) / 255.0
        y = np.array([src[i]["label"] for i in range(len(src))], np.int32)
        return ArrayDataset(x, y)

    return arrays("train"), arrays("test")


def synthetic(n: int, seed: int):
    """Images whose class sets which quadrant holds a bright blob, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.int32)
    x = rng.normal(0.0, 0.3, (n, 32, 32, 3)).astype(np.float32)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 4)
        x[i, 8 * r : 8 * r + 8, 8 * q : 8 * q + 8, c % 3] += 2.0
    return ArrayDataset(x, y)


def main(cfg: Config) -> dict:
    unknown = sorted(set(cfg.models) - set(MODELS))
    if unknown:
        raise JaxdlError(f"--models: unknown {unknown}; choose from {sorted(MODELS)}")
    if cfg.smoke:
        train, test, epochs = synthetic(512, cfg.seed), synthetic(256, cfg.seed + 1), 1
    else:
        (train, test), epochs = load_cifar10(cfg.data_dir), cfg.epochs
    console, results = Console(highlight=False), {}
    runs = [(key, spec) for key in cfg.models for spec in cfg.augment]
    for key, spec in runs:
        name, overrides = MODELS[key]
        overrides = dict(overrides, input_shape=(32, 32, 3), num_classes=10)
        if cfg.smoke:  # seconds, not minutes: a few narrow blocks
            overrides.update(
                {
                    "vgg_small": {"stages": ((8,), (16,)), "fc": (32,)},
                    "resnet18": {"layers": (1, 1), "widths": (8, 16), "stem_width": 8},
                }[key]
            )
        model = create_model(name, **overrides)
        steps = epochs * num_batches(len(train), cfg.batch_size)
        trainer = Trainer(
            model,
            optimizer="adam",
            seed=cfg.seed,
            mesh=make_mesh(num_devices=1),
            learning_rate=make_schedule("cosine", cfg.lr, total_steps=steps),
            augment=parse_augment(spec) if spec else None,
        )
        t0 = time.perf_counter()
        h = trainer.fit(
            train,
            epochs=epochs,
            batch_size=cfg.batch_size,
            validation_data=test,
            verbose=0 if cfg.smoke else 1,
        )
        dt = time.perf_counter() - t0
        ev = trainer.evaluate(test, detailed=True)
        label = f"{key} + {spec}" if spec else key
        slug = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")
        save_run_pictures(
            Path(cfg.out) / slug,
            h,
            confusion=ev["confusion_matrix"],
            class_names=CLASSES,
            title=f"{label} on CIFAR-10" + (" (synthetic)" if cfg.smoke else ""),
        )
        console.print(
            f"{label}: test accuracy {ev['accuracy']:.4f}, loss {ev['loss']:.4f}, "
            f"train time {dt:.1f}s"
        )
        results[label] = {
            "test_accuracy": float(ev["accuracy"]),
            "test_loss": float(ev["loss"]),
            "train_time_s": dt,
        }
    return results


if __name__ == "__main__":
    main(tyro.cli(Config))
