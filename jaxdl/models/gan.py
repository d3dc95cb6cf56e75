"""DCGAN (Radford, Metz and Chintala, 2016, "Unsupervised representation learning with deep
convolutional generative adversarial networks").

Two networks: the generator G maps z ~ N(0, I) to an image in [-1, 1] (tanh output), the
discriminator D maps an image to one logit, "real". The paper's architecture guidelines
(section 3): strided convolutions instead of pooling, transposed (fractionally strided)
convolutions in G, batch normalisation in both except G's output and D's input layer, ReLU in G,
LeakyReLU (slope 0.2) in D, no hidden fully connected layers. Both are the autoencoder's conv
bodies (`Encoder` / `Decoder`) with those settings, scaled to 28x28 MNIST: G projects z to
7x7x128, then 14x14x64, then 28x28x1; D mirrors it.

`jaxdl.train.generative` trains them with two Adam optimizers (lr 2e-4, beta1 0.5, as in the
paper) in one jitted step, with the non-saturating generator loss -log D(G(z)) (Goodfellow et
al., 2014, section 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
from flax import nnx

from jaxdl.errors import JaxdlError, check_positive
from jaxdl.models.autoencoder import Decoder, Encoder, check_body
from jaxdl.models.registry import register
from jaxdl.nn.shapes import check_input


@dataclass(frozen=True)
class DCGANConfig:
    input_shape: tuple[int, ...] = (28, 28, 1)  # the images G makes and D judges
    latent_dim: int = 100
    features: tuple[int, ...] = (64, 128)  # D's channels per stride-2 layer; G mirrors them
    kernel_size: int = 5  # the paper's 5x5
    batch_norm: bool = True


class Generator(nnx.Module):
    """z: [B, latent_dim] -> images [B, *input_shape] in [-1, 1]."""

    def __init__(self, config: DCGANConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.net = Decoder(
            config.latent_dim,
            config.input_shape,
            kind="conv",
            features=config.features,
            kernel_size=config.kernel_size,
            activation="relu",
            batch_norm=config.batch_norm,
            output_activation="tanh",
            rngs=rngs,
        )

    def __call__(self, z, *, train: bool = False, rngs: nnx.Rngs | None = None):
        check_input(z, (self.config.latent_dim,), model="dcgan generator", what="noise z")
        return self.net(z, train=train)


class Discriminator(nnx.Module):
    """x: [B, *input_shape] -> logit of "real" [B, 1]."""

    def __init__(self, config: DCGANConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.net = Encoder(
            config.input_shape,
            1,
            kind="conv",
            features=config.features,
            kernel_size=config.kernel_size,
            activation="leaky_relu",
            batch_norm=config.batch_norm,
            rngs=rngs,
        )

    def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
        check_input(x, self.config.input_shape, model="dcgan discriminator")
        return self.net(x, train=train)


class DCGAN(nnx.Module):
    """The pair. Calling it runs the discriminator (x: [B, *input_shape] -> [B, 1] logits);
    `generate(key, n)` draws n images."""

    def __init__(self, config: DCGANConfig, *, rngs: nnx.Rngs):
        if config.latent_dim < 1:
            raise JaxdlError(f"dcgan: latent_dim must be >= 1, got {config.latent_dim}")
        check_body("dcgan", "conv", config.input_shape, (), config.features)
        self.config = config
        self.generator = Generator(config, rngs=rngs)
        self.discriminator = Discriminator(config, rngs=rngs)

    def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
        return self.discriminator(x, train=train)

    def generate(self, key: jax.Array, n: int) -> jax.Array:
        """n images in [-1, 1] from z ~ N(0, I) drawn with `key` (inference mode)."""
        check_positive("n", n, integer=True)
        return self.generator(jax.random.normal(key, (n, self.config.latent_dim)))


register(
    "dcgan",
    DCGAN,
    DCGANConfig(),
    family="gan",
    task="gan",
    test_overrides={"input_shape": (8, 8, 1), "latent_dim": 8, "features": (4, 8)},
    description="DCGAN for 28x28x1 (G: z100 -> 7x7x128 -> 14x14x64 -> 28x28x1, tanh; D mirrors)",
)

__all__ = ["DCGAN", "DCGANConfig", "Generator", "Discriminator"]
