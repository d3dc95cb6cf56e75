"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
recognition", Fig. 2), with full C3 connectivity (the common modern reading; the paper's sparse
C3 table is not reproduced): 61,706 parameters for 10 classes (REFERENCE.md).

    32x32x1 -> C1 conv 6@5x5 -> S2 pool 2 -> C3 conv 16@5x5 -> S4 pool 2 -> C5 120 -> F6 84 -> 10

Smaller inputs: LeCun placed the 28x28 MNIST digits in the centre of a 32x32 field, so an input
of side 28..31 is zero-padded (centred) to 32x32; a smaller one (scikit-learn's 8x8 digits) is
bilinearly resized to 32x32 (`fit='auto'`; 'pad' or 'resize' force one). Inputs of 32 or more
are used as they are (C5 then sees more than 5x5 and is a Linear on the flattened maps).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.blocks import ClassifierConfig, ConvNet, make_head
from jaxdl.nn.conv import AvgPool, ConvBN, MaxPool, conv_output_size

FIELD = 32  # LeNet-5's input field


@dataclass(frozen=True)
class LeNetConfig(ClassifierConfig):
    input_shape: tuple[int, int, int] = (32, 32, 1)
    num_classes: int = 10
    activation: str = "tanh"  # the paper's squashing function (a scaled tanh)
    pool: str = "avg"  # the paper's subsampling; 'max' is the common modern choice
    widths: tuple[int, int] = (6, 16)  # C1, C3 feature maps
    fc: tuple[int, int] = (120, 84)  # C5, F6
    fit: str = "auto"  # 'auto' | 'pad' | 'resize' for inputs smaller than 32x32


def fit_to_field(x, fit: str):
    """[B, h, w, C] with h, w <= 32 -> [B, 32, 32, C] by centred zero padding or resizing."""
    h, w = x.shape[1:3]
    if h >= FIELD and w >= FIELD:
        return x
    mode = ("pad" if min(h, w) >= 28 else "resize") if fit == "auto" else fit
    if mode == "pad":
        ph, pw = FIELD - h, FIELD - w
        return jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    return jax.image.resize(x, (x.shape[0], FIELD, FIELD, x.shape[3]), "bilinear")


class LeNet5(ConvNet):
    """x: [B, H, W, C] (H, W >= 8; below 32 fitted to 32) -> [B, num_classes] logits.
    Parameters `c1/conv`, `c3/conv`, `head/hidden/0` (C5), `head/hidden/1` (F6), `head/fc`."""

    family = "lenet"
    min_size = 8

    def __init__(self, config: LeNetConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        self.check_config()
        if c.fit not in ("auto", "pad", "resize"):
            raise JaxdlError(f"lenet: fit must be 'auto', 'pad' or 'resize', got {c.fit!r}")
        if c.pool not in ("avg", "max"):
            raise JaxdlError(f"lenet: pool must be 'avg' or 'max', got {c.pool!r}")
        pool = AvgPool if c.pool == "avg" else MaxPool
        cin = c.input_shape[2]
        self.c1 = ConvBN(
            cin, c.widths[0], 5, padding="valid", bn=None, activation=c.activation, rngs=rngs
        )
        self.s2 = pool(2)
        self.c3 = ConvBN(
            c.widths[0],
            c.widths[1],
            5,
            padding="valid",
            bn=None,
            activation=c.activation,
            rngs=rngs,
        )
        self.s4 = pool(2)
        side = [max(n, FIELD) for n in c.input_shape[:2]]
        for _ in range(2):  # conv 5 valid, pool 2
            side = [conv_output_size(conv_output_size(n, 5), 2, 2) for n in side]
        self.head = make_head(
            c,
            side[0] * side[1] * c.widths[1],
            pool="flatten",
            hidden=c.fc,
            hidden_activation=c.activation,
            rngs=rngs,
        )

    def features(self, x, *, train=False, rngs=None):
        x = fit_to_field(x, self.config.fit)
        c1 = self.c1(x)
        s2 = self.s2(c1)
        c3 = self.c3(s2)
        return {"c1": c1, "s2": s2, "c3": c3, "s4": self.s4(c3)}


register(
    "lenet5",
    LeNet5,
    LeNetConfig(),
    family="lenet",
    task="classify",
    test_overrides={"input_shape": (28, 28, 1), "dropout": 0.3},
    description="LeNet-5 (LeCun et al. 1998), 32x32x1, full C3, 61,706 params",
)
