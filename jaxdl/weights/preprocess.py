"""The input preprocessing each weight source expects, carried with the converted weights.

Inputs are images in [0, 255], RGB, NHWC. `Preprocessing.apply(x)` resizes (with a warning when
the resolution differs from the one the weights were trained at), reorders channels, scales and
normalises, so converted weights are used with one call.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
from flax import nnx

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Preprocessing:
    """x (RGB in [0, 255]) -> x[..., order] * scale - offset, then (x - mean) / std."""

    resolution: int = 224
    channel_order: str = "RGB"  # or "BGR" (Keras 'caffe' mode: VGG, ResNet v1)
    scale: float = 1.0 / 255.0
    offset: float = 0.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    source: str = ""

    def apply(self, x: jax.Array, *, resize: bool = True) -> jax.Array:
        """x: [B, H, W, 3] RGB in [0, 255] -> the model's expected input [B, R, R, 3]."""
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 4 or x.shape[-1] != 3:
            from jaxdl.errors import JaxdlError

            raise JaxdlError(f"preprocessing expects RGB images [B, H, W, 3], got shape {x.shape}")
        if resize and x.shape[1:3] != (self.resolution, self.resolution):
            warnings.warn(
                f"{self.source or 'these'} weights were trained at "
                f"{self.resolution}x{self.resolution}; "
                f"resizing inputs of {x.shape[1]}x{x.shape[2]}",
                stacklevel=2,
            )
            x = jax.image.resize(x, (x.shape[0], self.resolution, self.resolution, 3), "bilinear")
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        x = x * self.scale - self.offset
        return (x - jnp.asarray(self.mean)) / jnp.asarray(self.std)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, s: str) -> Preprocessing:
        d = json.loads(s)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


# The modes of keras.applications.imagenet_utils.preprocess_input, and torchvision's transforms.
KERAS_CAFFE = Preprocessing(
    channel_order="BGR", scale=1.0, mean=CAFFE_BGR_MEAN, source="keras (caffe)"
)
KERAS_TF = Preprocessing(scale=1.0 / 127.5, offset=1.0, source="keras (tf: [-1, 1])")
KERAS_TORCH = Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD, source="keras (torch)")
KERAS_RAW = Preprocessing(scale=1.0, source="keras (model normalises internally)")
TORCHVISION = Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD, source="torchvision")


class PreprocessingLayer(nnx.Module):
    """A parameter-free layer applying a `Preprocessing` to images in [0, 1] (jaxdl's image
    sources), so a pretrained backbone can sit behind it in a Chain. x: [B, R, R, 3] -> same."""

    def __init__(self, prep: Preprocessing):
        self.prep = prep

    def __call__(self, x, *, train: bool = False, rngs=None):
        return self.prep.apply(x * 255.0, resize=False)
