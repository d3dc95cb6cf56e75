"""Training generative models.

- `ReconstructionTask`: an autoencoder's loss against its own input (batch['x']), per-pixel
  binary cross-entropy on logits ('bce', for images in [0, 1]) or mean squared error ('mse').
- `ELBOTask`: the VAE's negative evidence lower bound per example, in nats: reconstruction
  -log p(x|z) summed over pixels (Bernoulli) plus beta * KL(q(z|x) || N(0, I)); reports the
  two terms apart.

Both are `Task`s, so `Trainer` fits autoencoders and VAEs like any other model. A GAN has two
networks and two optimizers: `GANTask` gives the engine its state (two optimizer states) and its
step (the discriminator, then the generator against the updated discriminator, with the
non-saturating loss) in one pure function, so `Trainer` (or `GANTrainer`, its DCGAN defaults)
runs it with the mesh, callbacks, checkpoints and resume of every other model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.data.core import ArrayDataset
from jaxdl.data.pipeline import Pipeline
from jaxdl.errors import JaxdlError, check_positive, unknown_name
from jaxdl.functional import make_apply, named_leaves, path_str
from jaxdl.models.vae import kl_divergence
from jaxdl.train.loop import Trainer
from jaxdl.train.optim import param_groups
from jaxdl.train.state import TrainState
from jaxdl.train.steps import guard_metrics, select
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

    def means(self):
        return {"pixel_mse": "mse_sum"}

    def example_metrics(self, outputs, batch):
        pixels = jax.nn.sigmoid(_flat(outputs)) if self.kind == "bce" else _flat(outputs)
        return {"pixel_mse": jnp.mean(jnp.square(pixels - _flat(batch["x"])), axis=-1)}


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

    def means(self):
        return {"reconstruction": "rec_sum", "kl": "kl_sum"}

    def example_metrics(self, outputs, batch):
        rec, kl = self.terms(outputs, batch)
        return {"reconstruction": rec, "kl": kl}


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


def _only(tree, prefix: str):
    """`tree` with every leaf outside `prefix` ('generator/...') behind a stop_gradient."""
    return jax.tree_util.tree_map_with_path(
        lambda path, a: a if path_str(path).startswith(prefix) else jax.lax.stop_gradient(a), tree
    )


class GANTask(Task):
    """A GAN (Goodfellow et al., 2014; DCGAN: Radford et al., 2016) as a task of the one engine:
    the model has `.generator` (z [B, latent_dim] -> images) and `.discriminator` (images ->
    one logit); the train state's params and model state are the whole model's, and its
    `opt_state` is {'g': ..., 'd': ...}: the trainer's optimizer (or `g_tx` / `d_tx`) applied
    to each network alone (the other frozen, `param_groups`).

    One step: a discriminator update on a real batch batch['x'] [B, ...] (in the generator's
    range) and B fakes, then a generator update on fresh noise against the updated
    discriminator, with the non-saturating loss. Metrics (per-step means, averaged over the
    epoch's steps): d_loss, g_loss, and the mean D(x) and D(G(z)) probabilities."""

    METRICS = ("d_loss", "g_loss", "d_real", "d_fake")

    def __init__(self, latent_dim: int, *, g_tx=None, d_tx=None):
        check_positive("latent_dim", latent_dim, integer=True)
        self.latent_dim, self.g_tx, self.d_tx = latent_dim, g_tx, d_tx
        self._txs = None

    # ---- engine hooks ---------------------------------------------------------------------
    def create_state(self, params, model_state, tx, seed, *, ema=False, loss_scale=None, **_):
        if ema or loss_scale is not None:
            raise JaxdlError(
                "GAN training supports neither ema_decay nor fp16 loss scaling; use "
                "mixed_precision='bf16' or none"
            )
        names = {p.split("/")[0] for p in named_leaves(params)}
        if not {"generator", "discriminator"} <= names:
            raise JaxdlError(
                f"GANTask: the model needs .generator and .discriminator, got parts {sorted(names)}"
            )
        g = param_groups(self.g_tx or tx, params, {"^discriminator/": 0.0})
        d = param_groups(self.d_tx or tx, params, {"^generator/": 0.0})
        self._txs = (g, d)
        st = TrainState.create(params, model_state, optax.identity(), seed)
        return st.replace(opt_state={"g": g.init(params), "d": d.init(params)})

    def make_step(self, *, graphdef, policy, regularizers=(), augment=None, **_):
        if regularizers or augment is not None:
            raise JaxdlError("GAN training takes no regularizers or augment option")
        g_apply = policy.wrap(make_apply(graphdef, method="generator"))
        d_apply = policy.wrap(make_apply(graphdef, method="discriminator"))
        g_tx, d_tx = self._txs
        latent = self.latent_dim

        def gan_step(st: TrainState, batch):
            real, w = batch["x"], batch["weight"]
            n = real.shape[0]
            k_d, k_g = jax.random.split(jax.random.fold_in(st.rng, st.step))
            z_d = jax.random.normal(k_d, (n, latent))
            fake, ms = g_apply(st.params, st.model_state, z_d, train=True)
            fake = jax.lax.stop_gradient(fake)

            def d_loss_fn(params):
                p = _only(params, "discriminator/")
                real_logits, ms1 = d_apply(p, ms, real, train=True)
                fake_logits, ms1 = d_apply(p, ms1, fake, train=True)
                d_loss, _ = gan_losses(real_logits, fake_logits, w)
                return d_loss, (ms1, real_logits, fake_logits)

            (d_loss, (ms, real_logits, fake_logits)), grads = jax.value_and_grad(
                d_loss_fn, has_aux=True
            )(st.params)
            updates, d_opt = d_tx.update(grads, st.opt_state["d"], st.params)
            params = optax.apply_updates(st.params, updates)
            z_g = jax.random.normal(k_g, (n, latent))

            def g_loss_fn(params):
                p = _only(params, "generator/")
                fake, ms1 = g_apply(p, ms, z_g, train=True)
                # D in training mode (batch statistics), as in the D update; its running
                # statistics are not advanced by the generator's pass
                logits, _ = d_apply(p, ms1, fake, train=True)
                return jnp.mean(jax.nn.softplus(-logits[:, 0])), ms1

            (g_loss, ms), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(params)
            updates, g_opt = g_tx.update(grads, st.opt_state["g"], params)
            params = optax.apply_updates(params, updates)

            wsum = jnp.maximum(jnp.sum(w), 1.0)
            m = {
                "d_loss": d_loss,
                "g_loss": g_loss,
                "d_real": jnp.sum(jax.nn.sigmoid(real_logits[:, 0]) * w) / wsum,
                "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits[:, 0])),
            }
            failed = ~(jnp.isfinite(d_loss) & jnp.isfinite(g_loss))
            healthy = st.nonfinite == 0
            new = {"params": params, "model_state": ms, "opt_state": {"g": g_opt, "d": d_opt}}
            old = {"params": st.params, "model_state": st.model_state, "opt_state": st.opt_state}
            st = st.replace(
                step=st.step + 1,
                nonfinite=jnp.where(failed & healthy, 1, st.nonfinite).astype(jnp.int32),
                **select(~failed & healthy, new, old),
            )
            metrics = {f"{k}_sum": v for k, v in m.items()} | {"steps": jnp.ones((), jnp.float32)}
            return st, guard_metrics(metrics, failed, st.step - 1)

        return gan_step

    def make_eval_step(self, apply):
        raise JaxdlError(
            "a GAN has no evaluation loss to report (its losses move with both networks); "
            "score samples instead, e.g. inception_score(classifier probabilities)"
        )

    def check_input(self, apply, state, x) -> None:
        """Real examples must have the generator's output shape."""
        g_shape = jax.eval_shape(
            lambda p, s: apply(p, s, jnp.zeros((1, self.latent_dim)), method="generator")[0],
            state.params,
            state.model_state,
        ).shape[1:]
        if tuple(x.shape[1:]) != tuple(g_shape):
            raise JaxdlError(
                f"GAN data: examples have shape {tuple(x.shape[1:])}, but the generator makes "
                f"images of shape {tuple(g_shape)}; set the model's input_shape to the data's"
            )

    def check_callbacks(self, callbacks) -> None:
        for c in callbacks:
            monitor = getattr(c, "monitor", None)
            if monitor is not None and monitor.removeprefix("val_") not in self.METRICS:
                raise JaxdlError(
                    f"{type(c).__name__} monitors {monitor!r}, which a GAN does not report; "
                    f"monitor one of {', '.join(self.METRICS)}"
                )

    # ---- metrics --------------------------------------------------------------------------
    def init_metrics(self):
        z = lambda: jnp.zeros((), jnp.float32)  # noqa: E731
        return {f"{k}_sum": z() for k in self.METRICS} | {"steps": z()}

    def compute(self, acc, detailed: bool = False):
        acc = jax.device_get(acc)
        n = max(float(acc["steps"]), 1.0)
        return {k: float(acc[f"{k}_sum"]) / n for k in self.METRICS}


def check_gan_data(model, x_shape: tuple[int, ...]) -> None:
    """The generator must make images of the data's shape: raise a clear error otherwise."""
    g_shape = tuple(model.config.input_shape)
    if tuple(x_shape) != g_shape:
        raise JaxdlError(
            f"GAN data: examples have shape {tuple(x_shape)}, but the generator makes images of "
            f"shape {g_shape}; set the model's input_shape to the data's"
        )


class GANTrainer(Trainer):
    """`Trainer` with a `GANTask` and the DCGAN defaults: Adam(2e-4, beta1 0.5) for both
    networks, as in Radford et al. Data: images scaled to the generator's range ([-1, 1] for
    tanh), as an `ArrayDataset` or an array. Everything a Trainer has (mesh, callbacks,
    checkpoints, bit-exact resume) works here."""

    def __init__(
        self,
        model: nnx.Module,
        *,
        g_tx: optax.GradientTransformation | None = None,
        d_tx: optax.GradientTransformation | None = None,
        learning_rate: float = 2e-4,
        b1: float = 0.5,
        seed: int = 0,
        **trainer_options,
    ):
        self.config = model.config
        super().__init__(
            model,
            task=GANTask(model.config.latent_dim, g_tx=g_tx, d_tx=d_tx),
            optimizer="adam",
            learning_rate=learning_rate,
            optimizer_options={"b1": b1},
            seed=seed,
            **trainer_options,
        )

    @property
    def generator(self) -> nnx.Module:
        return self.model.generator

    @property
    def discriminator(self) -> nnx.Module:
        return self.model.discriminator

    def generate(self, key: jax.Array, n: int) -> np.ndarray:
        """n images from the current generator (inference mode): [n, *input_shape]."""
        check_positive("n", n, integer=True)
        z = jax.random.normal(key, (n, self.config.latent_dim))
        return np.asarray(self.generator(z))

    def fit(self, data, *, epochs: int = 1, batch_size: int = 64, on_epoch_end=None, **options):
        """Train for `epochs`; per-epoch means of the step metrics land in the History.
        `on_epoch_end(epoch, logs)`: a shortcut for a LambdaCallback; other options as
        `Trainer.fit` (callbacks, verbose, ...)."""
        if on_epoch_end is not None:
            from jaxdl.train.callbacks import LambdaCallback

            options["callbacks"] = [
                *options.get("callbacks", ()),
                LambdaCallback(on_epoch_end=on_epoch_end),
            ]
        if not isinstance(data, (ArrayDataset, Pipeline)):
            x = np.asarray(data)
            data = ArrayDataset(x, np.zeros(len(x), np.int32))
        if len(data) == 0:
            raise JaxdlError("GAN data is empty")
        if hasattr(data, "x"):
            check_gan_data(self, np.shape(data.x)[1:])
        return super().fit(data, epochs=epochs, batch_size=batch_size, **options)


__all__ = [
    "ReconstructionTask",
    "ELBOTask",
    "inception_score",
    "GANTask",
    "gan_losses",
    "check_gan_data",
    "GANTrainer",
]
