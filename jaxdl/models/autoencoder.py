"""Autoencoders, and the encoder / decoder bodies the VAE and DCGAN reuse.

An autoencoder maps x to a code z = encode(x) of `latent_dim` numbers and back to a
reconstruction decode(z) of x's shape; training minimises a reconstruction loss (per-pixel binary
cross-entropy on [0, 1] images, or MSE: `jaxdl.train.generative.ReconstructionTask`).

Two bodies, chosen by `kind` in the config (variants are rows, docs/design.md, decision 2):

- 'dense': flatten, Linear layers of widths `hidden`, a Linear to the code; the decoder mirrors
  the widths and reshapes to the input shape.
- 'conv': one k x k convolution with stride 2 per entry of `features` (H, W halve each time), a
  Linear to the code; the decoder projects the code to an (H / 2^n, W / 2^n, features[-1]) map
  and mirrors with stride-2 transposed convolutions, the DCGAN layout (Radford et al., 2016,
  "Unsupervised representation learning with deep convolutional GANs", section 3): no pooling,
  batch normalisation (optional) everywhere except the encoder's input layer and the decoder's
  output layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import jax
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.activations import get_activation
from jaxdl.nn.shapes import check_input

KINDS = ("dense", "conv")


def _batch_norm(n: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(n, momentum=0.99, epsilon=1e-3, rngs=rngs)  # Keras defaults


def check_body(model: str, kind: str, input_shape, hidden, features) -> None:
    """Validate a dense/conv body against the input shape (a clear error naming the field)."""
    if kind not in KINDS:
        raise JaxdlError(f"{model}: kind must be one of {KINDS}, got {kind!r}")
    if kind == "dense" and any(h < 1 for h in hidden):
        raise JaxdlError(f"{model}: hidden widths must be >= 1, got {hidden}")
    if kind == "conv":
        if len(input_shape) != 3:
            raise JaxdlError(f"{model}: kind='conv' needs input_shape (H, W, C), got {input_shape}")
        if not features or any(f < 1 for f in features):
            raise JaxdlError(
                f"{model}: features must be a non-empty tuple of channel counts >= 1, "
                f"got {features}"
            )
        div = 2 ** len(features)
        h, w, _ = input_shape
        if h % div or w % div:
            raise JaxdlError(
                f"{model}: input_shape {input_shape} must have H and W divisible by "
                f"2^len(features) = {div} ({len(features)} stride-2 layers); got H={h}, W={w}"
            )


class Encoder(nnx.Module):
    """x: [B, *input_shape] -> [B, out_dim]. `kind` 'dense' (widths `hidden`) or 'conv' (one
    stride-2 conv per entry of `features`); batch norm, when on, after every layer but the first."""

    def __init__(
        self,
        input_shape,
        out_dim: int,
        *,
        kind: str = "dense",
        hidden=(256,),
        features=(32, 64),
        kernel_size: int = 3,
        activation: str = "relu",
        batch_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        self.kind = kind
        self.act = get_activation(activation)
        layers, norms = [], []
        if kind == "dense":
            n = prod(input_shape)
            for i, width in enumerate(hidden):
                layers.append(nnx.Linear(n, width, rngs=rngs))
                norms.append(_batch_norm(width, rngs) if batch_norm and i > 0 else None)
                n = width
        else:
            c = input_shape[-1]
            for i, f in enumerate(features):
                layers.append(
                    nnx.Conv(c, f, (kernel_size, kernel_size), strides=2, padding="SAME", rngs=rngs)
                )
                norms.append(_batch_norm(f, rngs) if batch_norm and i > 0 else None)
                c = f
            n = c * prod(input_shape[:2]) // 4 ** len(features)
        self.layers = nnx.List(layers)
        self.norms = nnx.List(norms)
        self.out = nnx.Linear(n, out_dim, rngs=rngs)

    def __call__(self, x, *, train: bool = False, rngs=None):
        h = x.reshape(x.shape[0], -1) if self.kind == "dense" else x
        for layer, norm in zip(self.layers, self.norms, strict=False):
            h = layer(h)
            if norm is not None:
                h = norm(h, use_running_average=not train)
            h = self.act(h)
        return self.out(h.reshape(h.shape[0], -1))


class Decoder(nnx.Module):
    """z: [B, latent_dim] -> [B, *output_shape], the mirror of `Encoder` with the same arguments:
    dense widths reversed, or a projection to (H / 2^n, W / 2^n, features[-1]) followed by
    stride-2 transposed convolutions through features reversed to the output channels. The last
    layer is linear, then `output_activation` (None: logits)."""

    def __init__(
        self,
        latent_dim: int,
        output_shape,
        *,
        kind: str = "dense",
        hidden=(256,),
        features=(32, 64),
        kernel_size: int = 3,
        activation: str = "relu",
        batch_norm: bool = False,
        output_activation: str | None = None,
        rngs: nnx.Rngs,
    ):
        self.kind = kind
        self.output_shape = tuple(output_shape)
        self.act = get_activation(activation)
        self.out_act = get_activation(output_activation)
        layers, norms = [], []
        if kind == "dense":
            n = latent_dim
            for width in reversed(hidden):
                layers.append(nnx.Linear(n, width, rngs=rngs))
                norms.append(_batch_norm(width, rngs) if batch_norm else None)
                n = width
            self.project = None
            self.out = nnx.Linear(n, prod(output_shape), rngs=rngs)
        else:
            div = 2 ** len(features)
            self.start = (output_shape[0] // div, output_shape[1] // div, features[-1])
            self.project = nnx.Linear(latent_dim, prod(self.start), rngs=rngs)
            self.project_norm = _batch_norm(features[-1], rngs) if batch_norm else None
            chans = list(reversed(features))
            for c_in, c_out in zip(chans[:-1], chans[1:], strict=False):
                layers.append(
                    nnx.ConvTranspose(
                        c_in,
                        c_out,
                        (kernel_size, kernel_size),
                        strides=2,
                        padding="SAME",
                        rngs=rngs,
                    )
                )
                norms.append(_batch_norm(c_out, rngs) if batch_norm else None)
            self.out = nnx.ConvTranspose(
                chans[-1],
                output_shape[-1],
                (kernel_size, kernel_size),
                strides=2,
                padding="SAME",
                rngs=rngs,
            )
        self.layers = nnx.List(layers)
        self.norms = nnx.List(norms)

    def __call__(self, z, *, train: bool = False, rngs=None):
        h = z
        if self.project is not None:
            h = self.project(z).reshape(z.shape[0], *self.start)
            if self.project_norm is not None:
                h = self.project_norm(h, use_running_average=not train)
            h = self.act(h)
        for layer, norm in zip(self.layers, self.norms, strict=False):
            h = layer(h)
            if norm is not None:
                h = norm(h, use_running_average=not train)
            h = self.act(h)
        return self.out_act(self.out(h).reshape(z.shape[0], *self.output_shape))


def body_kwargs(config) -> dict:
    """The Encoder/Decoder arguments a generative config carries."""
    return dict(
        kind=config.kind,
        hidden=config.hidden,
        features=config.features,
        kernel_size=config.kernel_size,
        activation=config.activation,
        batch_norm=config.batch_norm,
    )


@dataclass(frozen=True)
class AutoencoderConfig:
    input_shape: tuple[int, ...] = (28, 28, 1)
    kind: str = "dense"  # 'dense' | 'conv'
    latent_dim: int = 32
    hidden: tuple[int, ...] = (256, 128)  # dense: encoder widths (the decoder mirrors them)
    features: tuple[int, ...] = (32, 64)  # conv: encoder channels, one stride-2 conv each
    kernel_size: int = 3
    activation: str = "relu"
    batch_norm: bool = False


class Autoencoder(nnx.Module):
    """x: [B, *input_shape] -> reconstruction logits [B, *input_shape] (sigmoid gives pixels in
    [0, 1]; `ReconstructionTask('bce')` trains them). `encode`: -> [B, latent_dim]."""

    def __init__(self, config: AutoencoderConfig, *, rngs: nnx.Rngs):
        c = config
        if c.latent_dim < 1:
            raise JaxdlError(f"autoencoder: latent_dim must be >= 1, got {c.latent_dim}")
        check_body("autoencoder", c.kind, c.input_shape, c.hidden, c.features)
        self.config = c
        self.encoder = Encoder(c.input_shape, c.latent_dim, **body_kwargs(c), rngs=rngs)
        self.decoder = Decoder(c.latent_dim, c.input_shape, **body_kwargs(c), rngs=rngs)

    def encode(self, x, *, train: bool = False) -> jax.Array:
        check_input(x, self.config.input_shape, model="autoencoder")
        return self.encoder(x, train=train)

    def decode(self, z, *, train: bool = False) -> jax.Array:
        check_input(z, (self.config.latent_dim,), model="autoencoder", what="code z")
        return self.decoder(z, train=train)

    def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
        return self.decode(self.encode(x, train=train), train=train)

    def reconstruct(self, x) -> jax.Array:
        """Reconstructed pixels in [0, 1] (inference mode)."""
        return jax.nn.sigmoid(self(x))


register(
    "autoencoder",
    Autoencoder,
    AutoencoderConfig(),
    family="autoencoder",
    task="reconstruct",
    test_overrides={"input_shape": (8, 8, 1), "hidden": (16,), "latent_dim": 4},
    description="dense autoencoder 784-256-128-32 (mirrored decoder)",
)
register(
    "conv_autoencoder",
    Autoencoder,
    AutoencoderConfig(kind="conv", latent_dim=16),
    family="autoencoder",
    task="reconstruct",
    test_overrides={
        "input_shape": (8, 8, 1),
        "features": (4, 8),
        "latent_dim": 4,
        "batch_norm": True,
    },
    description="convolutional autoencoder: 2 stride-2 3x3 convs, stride-2 transposed decoder",
)

__all__ = [
    "Autoencoder",
    "AutoencoderConfig",
    "Encoder",
    "Decoder",
    "KINDS",
    "body_kwargs",
    "check_body",
]
