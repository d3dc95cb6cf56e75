"""A small Vision Transformer on MNIST (the 10,000 t10k images in ../shared/data/mnist, split
7,000 train / 1,000 validation / 2,000 test): 7x7 patches (a 4x4 grid), class token, learned
positions, pre-LN encoder.

    JAXDL_SHARED_DATA=/path/to/data python experiments/vit_mnist.py [--epochs 15] [--smoke]
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import tyro
from flax import nnx
from rich.console import Console

from jaxdl import create_model
from jaxdl.data import load_dataset, shared_data_dir
from jaxdl.errors import JaxdlError
from jaxdl.functional import count_params
from jaxdl.train import Trainer
from jaxdl.viz import save_run_pictures


@dataclass(frozen=True)
class Config:
    patch_size: int = 7
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 4
    dropout: float = 0.1
    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    smoke: bool = False
    out: str = "runs/vit_mnist"
    """Run directory for the pictures."""


def main(cfg: Config) -> dict:
    data = shared_data_dir()
    if data is None or not (data / "mnist").is_dir():
        raise JaxdlError("mnist IDX files not found; set JAXDL_SHARED_DATA")
    splits = load_dataset(f"mnist_idx:{data / 'mnist'}", seed=cfg.seed)
    train = splits.train
    epochs, layers = cfg.epochs, cfg.num_layers
    if cfg.smoke:
        train = train.subset(slice(0, 512))
        epochs, layers = 1, 1
    model = create_model(
        "vit_ti16",
        input_shape=splits.input_shape,
        num_classes=splits.num_classes,
        patch_size=cfg.patch_size,
        d_model=cfg.d_model,
        num_heads=cfg.num_heads,
        num_layers=layers,
        d_ff=4 * cfg.d_model,
        dropout=cfg.dropout,
        rngs=nnx.Rngs(cfg.seed),
    )
    t = Trainer(model, optimizer="adamw", learning_rate=cfg.lr, seed=cfg.seed)
    t0 = time.perf_counter()
    h = t.fit(
        train, epochs=epochs, batch_size=cfg.batch_size, validation_data=splits.val, verbose=1
    )
    train_s = time.perf_counter() - t0
    ev = t.evaluate(splits.test, detailed=True)
    save_run_pictures(cfg.out, h, confusion=ev["confusion_matrix"], title="ViT on MNIST")
    params = count_params(t.params)
    Console(highlight=False).print(
        f"ViT on MNIST: {params:,} params, test accuracy {ev['accuracy']:.4f}, loss "
        f"{ev['loss']:.4f}, train {train_s:.0f}s ({len(train)} training images, {epochs} epochs)"
    )
    return {
        "test_accuracy": ev["accuracy"],
        "test_loss": ev["loss"],
        "params": params,
        "train_time_s": train_s,
    }


if __name__ == "__main__":
    main(tyro.cli(Config))
