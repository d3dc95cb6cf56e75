"""An autoencoder on MNIST (the 10,000 t10k images in ../shared/data/mnist, split 7,200 train /
800 validation / 2,000 test): 784 pixels squeezed through a 16-number code and back, trained
on per-pixel binary cross-entropy. Writes training curves, test reconstructions (originals on
odd rows, reconstructions under them) and a TensorBoard event file to --out.

    JAXDL_SHARED_DATA=/path/to/data python experiments/autoencoder_mnist.py \
        [--kind conv|dense] [--latent-dim 16] [--epochs 10] [--smoke]

MNIST: any folder of IDX files works (--data PATH); the full 60k set is
https://yann.lecun.com/exdb/mnist/ (train-images-idx3-ubyte.gz and friends).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from jaxdl import create_model
from jaxdl.data import load_mnist
from jaxdl.errors import JaxdlError
from jaxdl.train import Trainer
from jaxdl.train.generative import ReconstructionTask
from jaxdl.viz import log_image_grid, save_history, save_image_grid


@dataclass(frozen=True)
class Config:
    kind: str = "conv"  # 'conv' (conv_autoencoder) or 'dense' (autoencoder)
    latent_dim: int = 16
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    data: str = ""  # folder of MNIST IDX files; default ../shared/data/mnist
    out: str = "runs/autoencoder_mnist"
    smoke: bool = False  # 256 training images, 1 epoch


def main(cfg: Config) -> dict:
    splits = load_mnist(cfg.data, seed=cfg.seed)
    if cfg.smoke:
        splits = splits.head(256, 64, 128)
    train, val, test = splits.train, splits.val, splits.test
    name = {"conv": "conv_autoencoder", "dense": "autoencoder"}.get(cfg.kind)
    if name is None:
        raise JaxdlError(f"--kind must be 'conv' or 'dense', got {cfg.kind!r}")
    model = create_model(name, latent_dim=cfg.latent_dim)
    t = Trainer(model, task=ReconstructionTask("bce"), learning_rate=cfg.lr, seed=cfg.seed)
    t0 = time.perf_counter()
    h = t.fit(
        train,
        epochs=1 if cfg.smoke else cfg.epochs,
        batch_size=cfg.batch_size,
        validation_data=val,
        verbose=1,
    )
    dt = time.perf_counter() - t0
    ev = t.evaluate(test)

    out = Path(cfg.out)
    save_history(h, out / "curves.png", title=f"{name}, latent {cfg.latent_dim}")
    x = test.x[:32]
    recon = np.asarray(t.model.reconstruct(x))
    pairs = np.concatenate([np.stack([x[i : i + 8], recon[i : i + 8]]) for i in range(0, 32, 8)])
    save_image_grid(
        pairs.reshape(-1, 28, 28, 1),
        out / "reconstructions.png",
        ncols=8,
        title="test digits (odd rows) and their reconstructions",
    )
    log_image_grid(out / "tb", "reconstructions", pairs.reshape(-1, 28, 28, 1), cfg.epochs)
    print(
        f"test bce {ev['loss']:.4f}  pixel mse {ev['pixel_mse']:.4f}  train time {dt:.1f}s  "
        f"pictures in {out}"
    )
    return {"test_bce": ev["loss"], "test_pixel_mse": ev["pixel_mse"], "train_time_s": dt}


if __name__ == "__main__":
    main(tyro.cli(Config))
