"""Training generative models (SCOPE.md section 9).

- `ReconstructionTask`: an autoencoder's loss against its own input (batch['x']), per-pixel
  binary cross-entropy on logits ('bce', for images in [0, 1]) or mean squared error ('mse').
- `ELBOTask`: the VAE's negative evidence lower bound per example, in nats: reconstruction
  -log p(x|z) summed over pixels (Bernoulli) plus beta * KL(q(z|x) || N(0, I)); reports the
  two terms apart.

Both are `Task`s, so `Trainer` fits autoencoders and VAEs like any other model. A GAN has two
networks and two optimizers, so it gets its own state and step: `GANState` and `make_gan_step`,
one pure function that updates the discriminator and then the generator (against the updated
discriminator) with the non-saturating loss, jitted as one program by `GANTrainer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from jaxdl.data.pipeline import batches
from jaxdl.data.sources import ArrayDataset
from jaxdl.errors import JaxdlError, check_positive, unknown_name
from jaxdl.functional import make_apply, merge, split
from jaxdl.models.vae import kl_divergence
from jaxdl.train.callbacks import History
from jaxdl.train.optim import make_optimizer
from jaxdl.train.tasks import Task


def _flat(a: jax.Array) -> jax.Array:
    return a.reshape(a.shape[0], -1).astype(jnp.float32)


class ReconstructionTask(Task):
    """Loss of reconstruction logits / values [B, ...] against batch['x'] [B, ...], averaged
    over the pixels of each example: 'bce' (outputs are logits; targets in [0, 1]) or 'mse'."""

    LOSSES = ("bce", "mse")

    def __init__(self, loss: str = "bce"):
        if loss not in self.LOSSES:
            raise unknown_name("reconstruction loss", loss, self.LOSSES)
        self.kind = loss

    def loss(self, outputs, batch):
        out, x = _flat(outputs), _flat(batch["x"])
        if self.kind == "bce":
            return jnp.mean(optax.sigmoid_binary_cross_entropy(out, x), axis=-1)
        return jnp.mean(jnp.square(out - x), axis=-1)

    def init_metrics(self):
        return {**super().init_metrics(), "mse_sum": jnp.zeros((), jnp.float32)}

    def update_metrics(self, acc, outputs, batch, per_example, weights, extra_loss=0.0):
        new = super().update_metrics(acc, outputs, batch, per_example, weights, extra_loss)
        pixels = jax.nn.sigmoid(_flat(outputs)) if self.kind == "bce" else _flat(outputs)
        mse = jnp.mean(jnp.square(pixels - _flat(batch["x"])), axis=-1)
        new["mse_sum"] = acc["mse_sum"] + jnp.sum(mse * weights)
        return new

    def compute(self, acc, detailed: bool = False):
        acc = jax.device_get(acc)
        out = super().compute(acc)
        out["pixel_mse"] = float(acc["mse_sum"] / max(float(acc["weight_sum"]), 1e-12))
        return out


class ELBOTask(Task):
    """-ELBO per example (nats): sum over pixels of the Bernoulli cross-entropy of the decoder's
    logits against batch['x'] in [0, 1], plus beta * KL (beta = 1 is the VAE; beta > 1 the
    beta-VAE of Higgins et al., 2017). Outputs: the VAE's {'logits', 'mean', 'logvar'}."""

    def __init__(self, beta: float = 1.0):
        if beta < 0:
            raise JaxdlError(f"ELBOTask: beta must be >= 0, got {beta}")
        self.beta = beta

    def terms(self, outputs, batch) -> tuple[jax.Array, jax.Array]:
        """(reconstruction nats [B], KL nats [B])."""
        rec = jnp.sum(
            optax.sigmoid_binary_cross_entropy(_flat(outputs["logits"]), _flat(batch["x"])), axis=-1
        )
        return rec, kl_divergence(outputs["mean"], outputs["logvar"])

    def loss(self, outputs, batch):
        rec, kl = self.terms(outputs, batch)
        return rec + self.beta * kl

    def init_metrics(self):
        # distinct buffers: the Trainer donates the accumulators
        return {
            **super().init_metrics(),
            "rec_sum": jnp.zeros((), jnp.float32),
            "kl_sum": jnp.zeros((), jnp.float32),
        }

    def update_metrics(self, acc, outputs, batch, per_example, weights, extra_loss=0.0):
        new = super().update_metrics(acc, outputs, batch, per_example, weights, extra_loss)
        rec, kl = self.terms(outputs, batch)
        new["rec_sum"] = acc["rec_sum"] + jnp.sum(rec * weights)
        new["kl_sum"] = acc["kl_sum"] + jnp.sum(kl * weights)
        return new

    def compute(self, acc, detailed: bool = False):
        acc = jax.device_get(acc)
        out = super().compute(acc)
        w = max(float(acc["weight_sum"]), 1e-12)
        out["reconstruction"] = float(acc["rec_sum"] / w)
        out["kl"] = float(acc["kl_sum"] / w)
        return out


def inception_score(probs) -> float:
    """exp(E_x KL(p(y|x) || p(y))) from class probabilities [N, C] a classifier gave N generated
    images (Salimans et al., 2016, "Improved techniques for training GANs", section 4): high
    when each image is confidently one class and the classes are evenly used; 1 at worst, C at
    best. With a small MNIST classifier in place of Inception it scores digit generators."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise JaxdlError(f"inception_score: probs must be [N, C] with N >= 1, got shape {p.shape}")
    p = np.clip(p, 1e-12, 1.0)
    marginal = p.mean(axis=0)
    return float(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(marginal)), axis=1))))


# ---------------------------------------------------------------------------------------------
# GAN


@struct.dataclass
class GANState:
    """Everything a GAN step reads and writes: two networks, two optimizer states, one key."""

    step: jax.Array  # int32 scalar
    g_params: Any
    g_state: Any  # generator BatchNorm statistics
    d_params: Any
    d_state: Any
    g_opt: Any
    d_opt: Any
    rng: jax.Array  # raw uint32[2]; step t uses fold_in(rng, t)


def gan_losses(real_logits, fake_logits, weights) -> tuple[jax.Array, jax.Array]:
    """(discriminator loss, non-saturating generator loss), both means over the batch.

    D minimises -log D(x) - log(1 - D(G(z))); G minimises -log D(G(z)) instead of
    log(1 - D(G(z))), whose gradient vanishes while D rejects the fakes easily (Goodfellow et al.,
    2014, section 3). With logits l: -log sigmoid(l) = softplus(-l), -log(1 - sigmoid(l)) =
    softplus(l). `weights` [B] masks padded real examples."""
    w = weights.astype(jnp.float32)
    d_real = jnp.sum(jax.nn.softplus(-real_logits[:, 0]) * w) / jnp.maximum(jnp.sum(w), 1.0)
    d_loss = d_real + jnp.mean(jax.nn.softplus(fake_logits[:, 0]))
    g_loss = jnp.mean(jax.nn.softplus(-fake_logits[:, 0]))
    return d_loss, g_loss


def make_gan_step(
    g_apply: Callable,
    d_apply: Callable,
    g_tx: optax.GradientTransformation,
    d_tx: optax.GradientTransformation,
    latent_dim: int,
):
    """gan_step(state, batch) -> (state, metrics): one discriminator update on a real batch
    batch['x'] [B, ...] (in the generator's range) and B fakes, then one generator update on
    fresh noise against the updated discriminator. Metrics: d_loss, g_loss, and the mean
    D(x) and D(G(z)) probabilities."""

    def gan_step(st: GANState, batch):
        real, w = batch["x"], batch["weight"]
        n = real.shape[0]
        k_d, k_g = jax.random.split(jax.random.fold_in(st.rng, st.step))
        z_d = jax.random.normal(k_d, (n, latent_dim))
        fake, g_state = g_apply(st.g_params, st.g_state, z_d, train=True)
        fake = jax.lax.stop_gradient(fake)

        def d_loss_fn(d_params):
            real_logits, d_state = d_apply(d_params, st.d_state, real, train=True)
            fake_logits, d_state = d_apply(d_params, d_state, fake, train=True)
            d_loss, _ = gan_losses(real_logits, fake_logits, w)
            return d_loss, (d_state, real_logits, fake_logits)

        (d_loss, (d_state, real_logits, fake_logits)), d_grads = jax.value_and_grad(
            d_loss_fn, has_aux=True
        )(st.d_params)
        d_updates, d_opt = d_tx.update(d_grads, st.d_opt, st.d_params)
        d_params = optax.apply_updates(st.d_params, d_updates)

        z_g = jax.random.normal(k_g, (n, latent_dim))

        def g_loss_fn(g_params):
            fake, new_g_state = g_apply(g_params, g_state, z_g, train=True)
            # D in training mode (batch statistics), as in the D update; its running
            # statistics are not advanced by the generator's pass
            logits, _ = d_apply(d_params, d_state, fake, train=True)
            return jnp.mean(jax.nn.softplus(-logits[:, 0])), new_g_state

        (g_loss, g_state), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(st.g_params)
        g_updates, g_opt = g_tx.update(g_grads, st.g_opt, st.g_params)
        g_params = optax.apply_updates(st.g_params, g_updates)

        wsum = jnp.maximum(jnp.sum(w), 1.0)
        metrics = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": jnp.sum(jax.nn.sigmoid(real_logits[:, 0]) * w) / wsum,
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits[:, 0])),
        }
        st = st.replace(
            step=st.step + 1,
            g_params=g_params,
            g_state=g_state,
            d_params=d_params,
            d_state=d_state,
            g_opt=g_opt,
            d_opt=d_opt,
        )
        return st, metrics

    return gan_step


def check_gan_data(model, x_shape: tuple[int, ...]) -> None:
    """The generator must make images of the data's shape: raise a clear error otherwise."""
    g_shape = tuple(model.config.input_shape)
    if tuple(x_shape) != g_shape:
        raise JaxdlError(
            f"GAN data: examples have shape {tuple(x_shape)}, but the generator makes images of "
            f"shape {g_shape}; set the model's input_shape to the data's"
        )


class GANTrainer:
    """Fits a `DCGAN` (any module with `.generator`, `.discriminator` and `config.latent_dim`,
    `config.input_shape`): two optimizers, Adam(2e-4, beta1 0.5) by default as in Radford et
    al., one jitted step. Data: images scaled to the generator's range ([-1, 1] for tanh)."""

    def __init__(
        self,
        model: nnx.Module,
        *,
        g_tx: optax.GradientTransformation | None = None,
        d_tx: optax.GradientTransformation | None = None,
        learning_rate: float = 2e-4,
        b1: float = 0.5,
        seed: int = 0,
    ):
        self.config = model.config
        self.g_def, g_params, g_state = split(model.generator)
        self.d_def, d_params, d_state = split(model.discriminator)
        self.g_tx = g_tx or make_optimizer("adam", learning_rate, b1=b1)
        self.d_tx = d_tx or make_optimizer("adam", learning_rate, b1=b1)
        self.seed = seed
        self.state = GANState(
            step=jnp.zeros((), jnp.int32),
            g_params=g_params,
            g_state=g_state,
            d_params=d_params,
            d_state=d_state,
            g_opt=self.g_tx.init(g_params),
            d_opt=self.d_tx.init(d_params),
            rng=jax.random.PRNGKey(seed),
        )
        self.step_fn = jax.jit(
            make_gan_step(
                make_apply(self.g_def),
                make_apply(self.d_def),
                self.g_tx,
                self.d_tx,
                self.config.latent_dim,
            ),
            donate_argnums=(0,),
        )

    @property
    def generator(self) -> nnx.Module:
        return merge(self.g_def, self.state.g_params, self.state.g_state)

    @property
    def discriminator(self) -> nnx.Module:
        return merge(self.d_def, self.state.d_params, self.state.d_state)

    def generate(self, key: jax.Array, n: int) -> np.ndarray:
        """n images from the current generator (inference mode): [n, *input_shape]."""
        check_positive("n", n, integer=True)
        z = jax.random.normal(key, (n, self.config.latent_dim))
        return np.asarray(self.generator(z))

    def fit(
        self,
        data: ArrayDataset | np.ndarray,
        *,
        epochs: int = 1,
        batch_size: int = 64,
        verbose: int = 1,
        on_epoch_end: Callable[[int, dict], None] | None = None,
    ) -> History:
        """Train for `epochs`; per-epoch means of the step metrics land in the History."""
        check_positive("epochs", epochs, integer=True)
        check_positive("batch_size", batch_size, integer=True)
        ds = (
            data
            if isinstance(data, ArrayDataset)
            else ArrayDataset(np.asarray(data), np.zeros(len(data), np.int32))
        )
        if len(ds) == 0:
            raise JaxdlError("GAN data is empty")
        check_gan_data(self, ds.x.shape[1:])
        history = History()
        for epoch in range(epochs):
            sums: dict[str, float] = {}
            n = 0
            for batch in batches(ds, batch_size, shuffle=True, seed=self.seed, epoch=epoch):
                self.state, m = self.step_fn(self.state, batch)
                sums = {k: sums.get(k, 0.0) + v for k, v in m.items()}  # stays on device
                n += 1
            logs = {k: float(v) / n for k, v in sums.items()}
            history.on_epoch_end(epoch, logs)
            if verbose:
                print(
                    f"epoch {epoch + 1}/{epochs}  "
                    + "  ".join(f"{k} {v:.4f}" for k, v in logs.items()),
                    flush=True,
                )
            if on_epoch_end is not None:
                on_epoch_end(epoch, logs)
        return history


__all__ = [
    "ReconstructionTask",
    "ELBOTask",
    "inception_score",
    "GANState",
    "gan_losses",
    "make_gan_step",
    "check_gan_data",
    "GANTrainer",
]
