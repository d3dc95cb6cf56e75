"""A variational autoencoder on MNIST (the 10,000 t10k images in ../shared/data/mnist, split
7,200 train / 800 validation / 2,000 test), trained on the negative ELBO (reconstruction nats
+ KL nats per image, Kingma and Welling, 2014). Writes training curves, 64 samples decoded from
z ~ N(0, I), interpolations between test digits (each row: one pair, left to right), test
reconstructions, and a TensorBoard event file to --out.

    JAXDL_SHARED_DATA=/path/to/data python experiments/vae_mnist.py \
        [--kind dense|conv] [--latent-dim 16] [--epochs 20] [--beta 1.0] [--smoke]

The pixels are MNIST's grey levels in [0, 1] used as Bernoulli targets (not binarised), so the
nats are not comparable with binarised-MNIST log-likelihoods in the literature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import tyro
from _common import fit_mnist

from jaxdl.functional import pure
from jaxdl.train.generative import ELBOTask
from jaxdl.viz import log_image_grid, save_history, save_image_grid


@dataclass(frozen=True)
class Config:
    kind: str = "dense"  # 'dense' (vae) or 'conv' (conv_vae)
    latent_dim: int = 16
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0  # weight of the KL term (1: the VAE's ELBO)
    seed: int = 0
    data: str = ""  # folder of MNIST IDX files; default ../shared/data/mnist
    out: str = "runs/vae_mnist"
    smoke: bool = False  # 256 training images, 1 epoch


def main(cfg: Config) -> dict:
    kinds = {"dense": "vae", "conv": "conv_vae"}
    name, t, h, dt, test = fit_mnist(cfg, kinds, ELBOTask(cfg.beta))
    ev = t.evaluate(test)  # z = mean: the decoder's reconstruction term at the code's centre
    vae = t.model
    # the bound itself: z sampled with the reparameterisation, one draw per test image
    apply, params, state = pure(vae)
    sampled, _ = jax.jit(lambda x, k: apply(params, state, x, key=k))(
        test.x, jax.random.key(cfg.seed)
    )
    neg_elbo = float(np.mean(ELBOTask(cfg.beta).loss(sampled, {"x": test.x})))

    out = Path(cfg.out)
    save_history(
        h,
        out / "curves.png",
        keys=["loss", "reconstruction", "kl"],
        title=f"{name}: -ELBO = reconstruction + KL (nats per image)",
    )
    samples = np.asarray(vae.sample(jax.random.key(cfg.seed), 64))
    save_image_grid(samples, out / "samples.png", ncols=8, title="decoded from z ~ N(0, I)")
    rows = [
        np.asarray(vae.interpolate(test.x[2 * i], test.x[2 * i + 1], steps=10)) for i in range(6)
    ]
    save_image_grid(
        np.concatenate(rows),
        out / "interpolation.png",
        ncols=10,
        title="straight lines between the codes of two test digits",
    )
    recon = np.asarray(jax.nn.sigmoid(vae(test.x[:16])["logits"]))
    save_image_grid(
        np.concatenate([test.x[:16], recon]),
        out / "reconstructions.png",
        ncols=16,
        title="test digits (top) and reconstructions (bottom)",
    )
    log_image_grid(out / "tb", "samples", samples, cfg.epochs)
    print(
        f"test -ELBO {neg_elbo:.2f} nats per image (sampled z); at z = mean: reconstruction "
        f"{ev['reconstruction']:.2f} + KL {ev['kl']:.2f}  train time {dt:.1f}s  pictures in {out}"
    )
    return {
        "test_neg_elbo": neg_elbo,
        "test_reconstruction_at_mean": ev["reconstruction"],
        "test_kl": ev["kl"],
        "train_time_s": dt,
    }


if __name__ == "__main__":
    main(tyro.cli(Config))
