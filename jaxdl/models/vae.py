"""Variational autoencoder (Kingma and Welling, 2014, "Auto-encoding variational Bayes").

The encoder gives a diagonal Gaussian q(z|x) = N(mean, exp(logvar)); a code is drawn with the
reparameterisation trick z = mean + exp(logvar / 2) * eps, eps ~ N(0, I), so the sample is a
differentiable function of the encoder's outputs; the decoder gives Bernoulli logits p(x|z).
Training maximises the evidence lower bound

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)),
    KL = -1/2 sum_j (1 + logvar_j - mean_j^2 - exp(logvar_j))     (the paper's appendix B)

(`jaxdl.train.generative.ELBOTask` is its negative, per example, in nats). New digits come from
decoding z ~ N(0, I) (`sample`); `interpolate` decodes the straight line between two codes.
The bodies are the autoencoder's (dense or conv rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError, check_positive
from jaxdl.models.autoencoder import Decoder, Encoder, body_kwargs, check_body
from jaxdl.models.registry import register
from jaxdl.nn.shapes import check_input


@dataclass(frozen=True)
class VAEConfig:
    input_shape: tuple[int, ...] = (28, 28, 1)
    kind: str = "dense"  # 'dense' | 'conv'
    latent_dim: int = 16
    hidden: tuple[int, ...] = (512, 256)
    features: tuple[int, ...] = (32, 64)
    kernel_size: int = 3
    activation: str = "relu"
    batch_norm: bool = False


class VAE(nnx.Module):
    """x: [B, *input_shape] -> {'logits': [B, *input_shape], 'mean': [B, latent_dim],
    'logvar': [B, latent_dim]}.

    With random streams (`rngs`, as the training step passes) z is sampled; without, z = mean,
    so evaluation is deterministic."""

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        c = config
        if not isinstance(c.latent_dim, int) or c.latent_dim < 1:
            raise JaxdlError(f"vae: latent_dim must be a positive integer, got {c.latent_dim!r}")
        check_body("vae", c.kind, c.input_shape, c.hidden, c.features)
        self.config = c
        # one head of 2 * latent_dim outputs: [mean, logvar]
        self.encoder = Encoder(c.input_shape, 2 * c.latent_dim, **body_kwargs(c), rngs=rngs)
        self.decoder = Decoder(c.latent_dim, c.input_shape, **body_kwargs(c), rngs=rngs)

    def encode(self, x, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
        """x -> (mean, logvar), each [B, latent_dim]."""
        check_input(x, self.config.input_shape, model="vae")
        mean, logvar = jnp.split(self.encoder(x, train=train), 2, axis=-1)
        return mean, logvar

    def decode(self, z, *, train: bool = False) -> jax.Array:
        """z: [B, latent_dim] -> Bernoulli logits [B, *input_shape]."""
        check_input(z, (self.config.latent_dim,), model="vae", what="code z")
        return self.decoder(z, train=train)

    def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
        mean, logvar = self.encode(x, train=train)
        if rngs is None:
            z = mean
        else:
            eps = jax.random.normal(rngs(), mean.shape, mean.dtype)
            z = mean + jnp.exp(0.5 * logvar) * eps
        return {"logits": self.decode(z, train=train), "mean": mean, "logvar": logvar}

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """n new images in [0, 1], decoded from z ~ N(0, I) drawn with `key` (same key, same
        images): [n, *input_shape]."""
        check_positive("n", n, integer=True)
        z = jax.random.normal(key, (n, self.config.latent_dim))
        return jax.nn.sigmoid(self.decode(z))

    def interpolate(self, x_a, x_b, steps: int = 8) -> jax.Array:
        """Images along the line between the codes (means) of x_a and x_b, each [*input_shape]:
        [steps, *input_shape], the first decodes x_a's code, the last x_b's."""
        if steps < 2:
            raise JaxdlError(f"vae.interpolate: steps must be >= 2, got {steps}")
        (m_a, _), (m_b, _) = self.encode(x_a[None]), self.encode(x_b[None])
        t = jnp.linspace(0.0, 1.0, steps)[:, None]
        return jax.nn.sigmoid(self.decode((1.0 - t) * m_a + t * m_b))


def kl_divergence(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, I)) per example: [B, D] -> [B] (Kingma and Welling,
    appendix B)."""
    return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mean) - jnp.exp(logvar), axis=-1)


register(
    "vae",
    VAE,
    VAEConfig(),
    family="vae",
    task="vae",
    test_overrides={"input_shape": (8, 8, 1), "hidden": (16,), "latent_dim": 4},
    description="variational autoencoder, dense 784-512-256, 16-d Gaussian code",
)
register(
    "conv_vae",
    VAE,
    VAEConfig(kind="conv", latent_dim=16),
    family="vae",
    task="vae",
    test_overrides={"input_shape": (8, 8, 1), "features": (4, 8), "latent_dim": 4},
    description="variational autoencoder with the convolutional body",
)

__all__ = ["VAE", "VAEConfig", "kl_divergence"]
