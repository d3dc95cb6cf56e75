"""Hyperparameter search for an MLP on the 1,797 real 8x8 digits bundled with scikit-learn (no
download), in three forms, then the bias and variance of the chosen model:

1. grid search over learning rate x width x optimizer (each trial a `Trainer` run);
2. random search over learning rate (log-uniform), width, depth, batch size, epochs, optimizer;
3. the JAX-native form: learning rates x seeds trained together, `jax.vmap` over one compiled
   program (`jaxdl.train.hparam.train_vmapped`);
4. the bias-variance decomposition (zero-one loss, Domingos 2000) of the grid's best config over
   bootstrap resamples of the training set, on the test set.

Ranked by validation accuracy; the test set is used once, for the chosen config. Writes a
results table to the terminal, one PNG per search, and the chosen config's training curves and
test confusion matrix to --out.

    python experiments/hparam_search.py [--epochs 20] [--random-trials 8] [--rounds 10] [--smoke]
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from flax import nnx
from rich.console import Console

from jaxdl import create_model
from jaxdl.data import load_digits
from jaxdl.parallel import make_mesh
from jaxdl.train import Trainer
from jaxdl.train.bias_variance import bias_variance
from jaxdl.train.hparam import IntUniform, LogUniform, grid_search, random_search, train_vmapped
from jaxdl.viz import save_confusion_matrix, save_history


@dataclass(frozen=True)
class Config:
    epochs: int = 20  # per trial of the grid and the vmapped search
    random_trials: int = 8
    rounds: int = 10  # bootstrap rounds for bias-variance
    seed: int = 0
    out: str = "runs/hparam_search"
    smoke: bool = False  # a few trials of a few epochs


@dataclass(frozen=True)
class MLPRun:
    """One trial: every field is searchable."""

    lr: float = 1e-3
    epochs: int = 20
    batch_size: int = 32
    width: int = 64
    depth: int = 2
    optimizer: str = "adam"
    seed: int = 0


def main(cfg: Config) -> dict:
    splits = load_digits(seed=cfg.seed)
    mesh = make_mesh(num_devices=1)  # small models: one device, no sharding overhead
    console = Console(highlight=False, width=140)

    def build(run: MLPRun, rngs: nnx.Rngs):
        return create_model(
            "mlp", input_shape=splits.input_shape, hidden=(run.width,) * run.depth, rngs=rngs
        )

    def fit(run: MLPRun, train, val=None):
        t = Trainer(
            build(run, nnx.Rngs(run.seed)),
            optimizer=run.optimizer,
            learning_rate=run.lr,
            seed=run.seed,
            mesh=mesh,
        )
        t.fit(train, epochs=run.epochs, batch_size=run.batch_size, validation_data=val, verbose=0)
        return t

    def trial(run: MLPRun) -> dict:
        ev = fit(run, splits.train).evaluate(splits.val)
        return {"val_accuracy": ev["accuracy"], "val_loss": ev["loss"]}

    out = Path(cfg.out)
    epochs = 2 if cfg.smoke else cfg.epochs
    base = MLPRun(epochs=epochs, seed=cfg.seed)

    # 1. grid
    space = (
        {"lr": [1e-3, 1e-1], "optimizer": ["adam", "sgd"]}
        if cfg.smoke
        else {"lr": [1e-3, 1e-2, 1e-1], "width": [32, 128], "optimizer": ["adam", "sgd"]}
    )
    t0 = time.perf_counter()
    g = grid_search(trial, base, space, metric="val_accuracy")
    t_grid = time.perf_counter() - t0
    console.print(g.table(f"grid search: {len(g.trials)} trials, {t_grid:.0f}s"))
    g.plot(out / "grid_search.png")

    # 2. random
    rspace = {
        "lr": LogUniform(1e-4, 1e-1),
        "width": [16, 32, 64, 128, 256],
        "depth": IntUniform(1, 3),
        "batch_size": [16, 32, 64, 128],
        "epochs": IntUniform(2, 3) if cfg.smoke else IntUniform(5, 30),
        "optimizer": ["adam", "sgd", "momentum", "rmsprop"],
    }
    r = random_search(
        trial,
        base,
        rspace,
        2 if cfg.smoke else cfg.random_trials,
        metric="val_accuracy",
        seed=cfg.seed,
    )
    console.print(r.table("random search"))
    r.plot(out / "random_search.png")

    # 3. vmapped: learning rates x seeds in one program
    lrs = np.geomspace(1e-4, 1e-1, 2 if cfg.smoke else 7).tolist()
    seeds = [0, 1] if cfg.smoke else [0, 1, 2]
    pairs = list(itertools.product(lrs, seeds))
    v = train_vmapped(
        lambda rngs: build(base, rngs),
        splits.train,
        learning_rates=[p[0] for p in pairs],
        seeds=[p[1] for p in pairs],
        epochs=epochs,
        batch_size=base.batch_size,
        optimizer=base.optimizer,
        validation_data=splits.val,
    )
    vs = v.to_search("val_accuracy")
    console.print(
        f"vmapped: {len(pairs)} runs ({len(lrs)} learning rates x {len(seeds)} seeds) of "
        f"{epochs} epochs in one compiled program: {v.seconds:.1f}s including compilation"
    )
    for lr in lrs:
        accs = [t.metrics["val_accuracy"] for t in vs.trials if t.overrides["lr"] == lr]
        console.print(f"  lr {lr:.2e}: val accuracy {np.mean(accs):.4f} +- {np.std(accs):.4f}")
    vs.plot(out / "vmapped_lr_seed.png")

    # 4. the chosen config: test accuracy, bias and variance
    best = g.best_config
    chosen = fit(best, splits.train, val=splits.val)  # its curves show the validation too
    ev = chosen.evaluate(splits.test, detailed=True)
    test_acc = ev["accuracy"]
    chosen_text = ", ".join(f"{k}={v}" for k, v in g.best.overrides.items())
    save_history(chosen.history, out / "best_curves.png", title=f"best grid config: {chosen_text}")
    save_confusion_matrix(
        ev["confusion_matrix"],
        out / "best_confusion.png",
        title=f"best grid config, test accuracy {test_acc:.4f}",
    )
    bv = bias_variance(
        lambda ds, k: fit(best, ds).predict(splits.test.x).argmax(-1),
        splits.train,
        splits.test.y,
        loss="0-1",
        rounds=2 if cfg.smoke else cfg.rounds,
        seed=cfg.seed,
    )
    console.print(f"best grid config {best}: test accuracy {test_acc:.4f}")
    console.print(f"bias-variance over {2 if cfg.smoke else cfg.rounds} bootstrap rounds: {bv}")
    console.print(f"pictures in {out}")
    return {
        "best_config": best,
        "best_val_accuracy": g.best.metrics["val_accuracy"],
        "test_accuracy": test_acc,
        "random_best_val_accuracy": r.best.metrics["val_accuracy"],
        "grid_time_s": t_grid,
        "vmapped_time_s": v.seconds,
        "vmapped_best": vs.best.overrides,
        "bias": bv.bias,
        "variance": bv.variance,
        "expected_01_loss": bv.expected_loss,
    }


if __name__ == "__main__":
    main(tyro.cli(Config))
