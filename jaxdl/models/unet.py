"""U-Net (Ronneberger, Fischer & Brox 2015, "U-Net: convolutional networks for biomedical image
segmentation", Fig. 1): a contracting path of double 3x3 valid convs and 2x2 max pools (64 to
1024 channels), an expanding path of 2x2 up-convolutions, concatenation with the cropped
skip connection and double convs, and a 1x1 conv to the classes. 572x572x1 -> 388x388x2,
31,030,658 parameters (published). `padding='same'` (and `batch_norm=True`) give the common
modern variant whose output has the input's size (input side divisible by 2^depth).
"""

from __future__ import annotations

from dataclasses import dataclass

from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.activations import get_activation
from jaxdl.nn.blocks import DoubleConv, UpBlock
from jaxdl.nn.conv import BN, MaxPool, conv_output_size


@dataclass(frozen=True)
class UNetConfig:
    input_shape: tuple[int, int, int] = (572, 572, 1)
    num_classes: int = 2
    width: int = 64  # channels of the first level; doubled at each level down
    depth: int = 4  # number of 2x2 poolings
    padding: str = "valid"  # the paper; 'same' keeps the size
    batch_norm: bool = False
    classifier_activation: str | None = None  # per pixel; None: logits


def unet_output_size(n: int, depth: int = 4, padding: str = "valid") -> int:
    """Output side of U-Net for an input side n (572 -> 388 in the paper); raises if a pool
    would see an odd size, which the crop-and-concatenate cannot align."""
    conv = lambda m: conv_output_size(conv_output_size(m, 3, 1, padding), 3, 1, padding)
    for level in range(depth):
        n = conv(n)
        if n % 2:
            raise JaxdlError(
                f"unet: input side gives an odd size {n} before pool {level + 1}; "
                "choose a side for which every pooled map is even (e.g. 572)"
            )
        n //= 2
    n = conv(n)
    for _ in range(depth):
        n = conv(2 * n)
    return n


class UNet(nnx.Module):
    """x: [B, H, W, C] -> [B, H', W', num_classes] per-pixel logits (H' = unet_output_size(H)).
    Parameters `down/i/conv1|conv2`, `bottom`, `up/i/up` (the 2x2 up-conv), `up/i/conv`,
    `classifier`. `features(x)` gives the contracting path's maps and the bottom."""

    family = "unet"

    def __init__(self, config: UNetConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        if c.padding not in ("valid", "same"):
            raise JaxdlError(f"unet: padding must be 'valid' or 'same', got {c.padding!r}")
        if len(c.input_shape) != 3:
            raise JaxdlError(f"unet: input_shape must be (H, W, C), got {c.input_shape}")
        for n in c.input_shape[:2]:
            unet_output_size(n, c.depth, c.padding)
        bn = BN() if c.batch_norm else None
        widths = [c.width * 2**i for i in range(c.depth + 1)]
        cin, down = c.input_shape[2], []
        for w in widths[:-1]:
            down.append(DoubleConv(cin, w, padding=c.padding, bn=bn, rngs=rngs))
            cin = w
        self.down = nnx.List(down)
        self.pool = MaxPool(2)
        self.bottom = DoubleConv(cin, widths[-1], padding=c.padding, bn=bn, rngs=rngs)
        self.up = nnx.List(
            [
                UpBlock(widths[i + 1], widths[i], padding=c.padding, bn=bn, rngs=rngs)
                for i in reversed(range(c.depth))
            ]
        )
        self.classifier = nnx.Conv(widths[0], c.num_classes, (1, 1), rngs=rngs)
        self.act = get_activation(c.classifier_activation)

    def features(self, x, *, train=False, rngs=None):
        out = {}
        for i, block in enumerate(self.down):
            x = block(x, train=train)
            out[f"level{i + 1}"] = x
            x = self.pool(x)
        out["bottom"] = self.bottom(x, train=train)
        return out

    def __call__(self, x, *, train: bool = False, rngs=None):
        c = self.config
        if x.ndim != 4 or x.shape[3] != c.input_shape[2]:
            raise JaxdlError(f"unet: input must be [B, H, W, {c.input_shape[2]}], got {x.shape}")
        for n in x.shape[1:3]:
            unet_output_size(n, c.depth, c.padding)
        feats = self.features(x, train=train)
        skips = [feats[f"level{i + 1}"] for i in range(c.depth)]
        h = feats["bottom"]
        for block, skip in zip(self.up, reversed(skips), strict=True):
            h = block(h, skip, train=train)
        return self.act(self.classifier(h))


register(
    "unet",
    UNet,
    UNetConfig(),
    family="unet",
    task="segment",
    test_overrides={
        "input_shape": (16, 16, 2),
        "width": 4,
        "depth": 2,
        "padding": "same",
        "batch_norm": True,
        "num_classes": 3,
    },
    description="U-Net (Ronneberger et al. 2015), 572x572x1 -> 388x388x2, valid convs",
)
