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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from _common import fit_mnist

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
    kinds = {"conv": "conv_autoencoder", "dense": "autoencoder"}
    name, t, h, dt, test = fit_mnist(cfg, kinds, ReconstructionTask("bce"))
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
