"""An MLP on the 1,797 real 8x8 digits bundled with scikit-learn: training curves, test metrics
and the confusion matrix, printed and drawn to --out (curves.png, confusion_matrix.png). Needs no
download.

    python experiments/mlp_digits.py [--epochs 30] [--hidden 128 64] [--optimizer adam]
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import tyro
from rich.console import Console

from jaxdl import create_model
from jaxdl.data import load_digits
from jaxdl.train import Trainer
from jaxdl.viz import save_run_pictures


@dataclass(frozen=True)
class Config:
    epochs: int = 30
    batch_size: int = 32
    hidden: tuple[int, ...] = (128, 64)
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 1e-3
    dropout: float = 0.0
    seed: int = 0
    smoke: bool = False
    out: str = "runs/mlp_digits"
    """Run directory for the pictures."""


def main(cfg: Config) -> dict:
    splits = load_digits(seed=cfg.seed)
    model = create_model(
        "mlp",
        input_shape=splits.input_shape,
        hidden=cfg.hidden,
        activation=cfg.activation,
        dropout=cfg.dropout,
    )
    t = Trainer(model, optimizer=cfg.optimizer, learning_rate=cfg.lr, seed=cfg.seed)
    t0 = time.perf_counter()
    h = t.fit(
        splits.train,
        epochs=3 if cfg.smoke else cfg.epochs,
        batch_size=cfg.batch_size,
        validation_data=splits.val,
        verbose=1,
    )
    dt = time.perf_counter() - t0
    ev = t.evaluate(splits.test, detailed=True)
    c = Console(highlight=False)
    c.print(
        f"test accuracy {ev['accuracy']:.4f}  loss {ev['loss']:.4f}  "
        f"F1 (macro) {ev['f1_macro']:.4f}  "
        f"train time {dt:.1f}s"
    )
    c.print("confusion matrix (rows: true, columns: predicted):")
    for row in ev["confusion_matrix"]:
        c.print(" ".join(f"{v:3d}" for v in row))
    title = f"mlp {'-'.join(map(str, cfg.hidden))} on digits"
    save_run_pictures(cfg.out, h, confusion=ev["confusion_matrix"], title=title)
    c.print(f"pictures in {cfg.out}")
    return {"test_accuracy": ev["accuracy"], "test_loss": ev["loss"], "train_time_s": dt}


if __name__ == "__main__":
    main(tyro.cli(Config))
