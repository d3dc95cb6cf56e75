"""ResNet-18 on CIFAR-10 with the standard augmentation (horizontal flip, random crop after
4-pixel padding; He et al. 2016, section 4.2) and a cosine schedule: `cnn_cifar10` with ResNet
defaults. CIFAR-10 comes through TFDS (prepare it once where there is network: `tfds build
cifar10`); `--smoke` runs on synthetic data in seconds.

    python experiments/resnet_cifar10.py [--epochs 30] [--augment flip,crop=4]
"""

from __future__ import annotations

from dataclasses import dataclass

import tyro
from cnn_cifar10 import Config as CnnConfig
from cnn_cifar10 import main as cnn_main


@dataclass(frozen=True)
class Config:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    augment: str = "flip,crop=4"
    data_dir: str | None = None
    seed: int = 0
    smoke: bool = False
    out: str = "runs/resnet_cifar10"
    """Run directory for the pictures."""


def main(cfg: Config) -> dict:
    return cnn_main(
        CnnConfig(
            models=("resnet18",),
            augment=(cfg.augment,),
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            data_dir=cfg.data_dir,
            seed=cfg.seed,
            smoke=cfg.smoke,
            out=cfg.out,
        )
    )


if __name__ == "__main__":
    main(tyro.cli(Config))
