"""DCGAN on MNIST (the 10,000 t10k images in ../shared/data/mnist; the 7,200 training ones are
the GAN's data), two Adam optimizers (lr 2e-4, beta1 0.5) in one jitted step, non-saturating
generator loss. Writes the loss curves and D(x) / D(G(z)) per epoch, a grid of 64 samples
after each epoch, and a TensorBoard event file to --out.

Score: an MNIST "inception score" exp(E KL(p(y|x) || p(y))) (Salimans et al., 2016) with a
small MLP classifier trained here on the same training images in place of Inception: 10 at
best (every image one confident digit, all digits equally often), 1 at worst; the real test
images give the ceiling this classifier can reach.

    JAXDL_SHARED_DATA=/path/to/data python experiments/dcgan_mnist.py \
        [--epochs 5] [--features 32 64] [--latent-dim 64] [--smoke]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import tyro

from jaxdl import create_model
from jaxdl.data import load_mnist
from jaxdl.train import Trainer
from jaxdl.train.generative import GANTrainer, inception_score
from jaxdl.viz import log_image_grid, save_history, save_image_grid


@dataclass(frozen=True)
class Config:
    epochs: int = 5
    batch_size: int = 64
    latent_dim: int = 64
    features: tuple[int, ...] = (32, 64)  # D's channels per stride-2 layer (the paper's are wider)
    lr: float = 2e-4
    b1: float = 0.5
    seed: int = 0
    data: str = ""  # folder of MNIST IDX files; default ../shared/data/mnist
    out: str = "runs/dcgan_mnist"
    smoke: bool = False  # 256 training images, 1 epoch


def main(cfg: Config) -> dict:
    splits = load_mnist(cfg.data, seed=cfg.seed)
    train, test = splits.train, splits.test
    if cfg.smoke:
        train, test = train.subset(slice(0, 256)), test.subset(slice(0, 128))
    epochs = 1 if cfg.smoke else cfg.epochs
    out = Path(cfg.out)
    model = create_model("dcgan", latent_dim=cfg.latent_dim, features=cfg.features)
    gan = GANTrainer(model, learning_rate=cfg.lr, b1=cfg.b1, seed=cfg.seed)
    fixed = jax.random.key(1000 + cfg.seed)  # the same 64 codes after every epoch

    def show(epoch, logs):
        imgs = gan.generate(fixed, 64)
        save_image_grid(
            imgs,
            out / f"samples_epoch{epoch + 1:03d}.png",
            ncols=8,
            value_range=(-1, 1),
            title=f"epoch {epoch + 1}: d_loss {logs['d_loss']:.3f}, g_loss {logs['g_loss']:.3f}",
        )
        log_image_grid(out / "tb", "samples", imgs, epoch + 1, value_range=(-1, 1))

    t0 = time.perf_counter()
    h = gan.fit(train.x * 2.0 - 1.0, epochs=epochs, batch_size=cfg.batch_size, on_epoch_end=show)
    dt = time.perf_counter() - t0
    save_history(
        h,
        out / "curves.png",
        keys=["d_loss", "g_loss", "d_real", "d_fake"],
        title="DCGAN: losses and mean D(x), D(G(z)) per epoch",
    )

    # the judge: an MLP digit classifier on the same training images
    clf = Trainer(create_model("mlp", input_shape=(28, 28, 1), hidden=(256,)), seed=cfg.seed)
    clf.fit(train, epochs=2 if cfg.smoke else 10, batch_size=128, verbose=0)
    clf_acc = clf.evaluate(test)["accuracy"]
    fakes = np.concatenate(
        [gan.generate(jax.random.key(i), 500) for i in range(1 if cfg.smoke else 4)]
    )
    probs = lambda x: np.asarray(jax.nn.softmax(clf.predict(x), axis=-1))
    is_fake = inception_score(probs((fakes + 1.0) / 2.0))
    is_real = inception_score(probs(test.x))
    counts = np.bincount(probs((fakes + 1.0) / 2.0).argmax(-1), minlength=10)
    print(
        f"MNIST inception score: generated {is_fake:.2f}, real test images {is_real:.2f} "
        f"(classifier test accuracy {clf_acc:.3f}); digits among the samples {counts.tolist()}; "
        f"GAN train time {dt:.1f}s; pictures in {out}"
    )
    return {
        "inception_score": is_fake,
        "inception_score_real": is_real,
        "classifier_accuracy": clf_acc,
        "d_loss": h.history["d_loss"][-1],
        "g_loss": h.history["g_loss"][-1],
        "train_time_s": dt,
    }


if __name__ == "__main__":
    main(tyro.cli(Config))
