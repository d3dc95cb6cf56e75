"""What the MNIST generative experiments (autoencoder_mnist.py, vae_mnist.py) share: the data,
the choice of model by --kind, and a timed fit with validation. Imported by the scripts, which
run from this folder (`python experiments/NAME.py`), so it is found beside them."""

from __future__ import annotations

import time

from jaxdl import create_model
from jaxdl.data import load_mnist
from jaxdl.errors import JaxdlError
from jaxdl.train import Trainer


def fit_mnist(cfg, kinds: dict[str, str], task):
    """Load MNIST from `cfg.data` (256/64/128 images with `cfg.smoke`), build the registered
    model `kinds[cfg.kind]` with `cfg.latent_dim`, and train it on `task` with Adam for
    `cfg.epochs` (1 with `cfg.smoke`), validating each epoch.

    Returns (model name, trainer, history, training seconds, test split)."""
    name = kinds.get(cfg.kind)
    if name is None:
        choices = " or ".join(repr(k) for k in kinds)
        raise JaxdlError(f"--kind must be {choices}, got {cfg.kind!r}")
    splits = load_mnist(cfg.data, seed=cfg.seed)
    if cfg.smoke:
        splits = splits.head(256, 64, 128)
    model = create_model(name, latent_dim=cfg.latent_dim)
    trainer = Trainer(model, task=task, learning_rate=cfg.lr, seed=cfg.seed)
    t0 = time.perf_counter()
    history = trainer.fit(
        splits.train,
        epochs=1 if cfg.smoke else cfg.epochs,
        batch_size=cfg.batch_size,
        validation_data=splits.val,
        verbose=1,
    )
    return name, trainer, history, time.perf_counter() - t0, splits.test
