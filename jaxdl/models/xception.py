"""Xception (Chollet 2017, "Xception: deep learning with depthwise separable convolutions",
Fig. 5), in Keras applications' layout: 22,855,952 trainable parameters (22,910,480 with the
BN statistics), 8.4 GMACs at 299.

    entry: 3x3/2 conv 32, 3x3 conv 64 (valid), three residual blocks (128, 256, 728) of
    [ReLU] sep conv, ReLU, sep conv, max 3/2 with a 1x1/2 conv shortcut; middle: 8 blocks of
    3 x (ReLU, sep conv 728) with identity shortcut; exit: block (728, 1024) with shortcut,
    sep conv 1536, ReLU, sep conv 2048, ReLU -> global average pool -> fc.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.blocks import ClassifierConfig, ConvNet, make_head
from jaxdl.nn.conv import BN, ConvBN, MaxPool, SeparableConv, batch_norm


@dataclass(frozen=True)
class XceptionConfig(ClassifierConfig):
    input_shape: tuple[int, int, int] = (299, 299, 3)
    middle_blocks: int = 8
    width_mult: float = 1.0  # scales every width (tiny test configs); 1.0 is the paper
    # the reduction blocks' 3x3/2 max pools: 'same_symmetric' pads 1 on each side (timm, torch);
    # 'same' (Keras's rule; 'same_keras' is its older name) pads (0, 1) on even sizes (equal on
    # odd sizes)
    pool_padding: str = "same_symmetric"


POOL_PADDINGS = ("same_symmetric", "same", "same_keras")


class SepBN(nnx.Module):
    """[ReLU ->] separable conv -> BN (Xception's unit; the ReLU comes first)."""

    def __init__(self, cin: int, cout: int, *, pre_relu: bool, bn: BN, rngs: nnx.Rngs):
        self.sep = SeparableConv(cin, cout, 3, rngs=rngs)
        self.bn = batch_norm(cout, bn, rngs)
        self.pre_relu = pre_relu

    def __call__(self, x, *, train: bool = False, rngs=None):
        if self.pre_relu:
            x = jax.nn.relu(x)
        return self.bn(self.sep(x), use_running_average=not train)


class XceptionBlock(nnx.Module):
    """Units of separable convs, then (reduction blocks) a 3x3/2 max pool with a 1x1/2 conv +
    BN shortcut, or an identity shortcut. [B, H, W, cin] -> [B, H', W', widths[-1]]."""

    def __init__(
        self,
        cin: int,
        widths,
        *,
        reduce: bool,
        first_relu: bool = True,
        pool_padding="same_symmetric",
        bn: BN,
        rngs: nnx.Rngs,
    ):
        units, c = [], cin
        for i, w in enumerate(widths):
            units.append(SepBN(c, w, pre_relu=first_relu or i > 0, bn=bn, rngs=rngs))
            c = w
        self.units = nnx.List(units)
        self.pool = MaxPool(3, 2, padding=pool_padding) if reduce else None
        self.shortcut = (
            ConvBN(cin, c, 1, stride=2, bn=bn, activation=None, rngs=rngs) if reduce else None
        )

    def __call__(self, x, *, train: bool = False, rngs=None):
        h = x
        for unit in self.units:
            h = unit(h, train=train)
        if self.pool is None:
            return x + h
        return self.pool(h) + self.shortcut(x, train=train)


class Xception(ConvNet):
    """x: [B, H, W, C] (H, W >= 71) -> [B, num_classes]. Parameters `stem/0|1`, `blocks/i/units/
    j/sep/depthwise|pointwise`, `blocks/i/units/j/bn`, `blocks/i/shortcut`, `exit/0|1`,
    `head/fc`. Features: `stride4`, `stride8`, `stride16` (after the middle flow), `stride32`."""

    family = "xception"
    min_size = 71

    def __init__(self, config: XceptionConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        self.check_config()
        if c.pool_padding not in POOL_PADDINGS:
            raise JaxdlError(
                f"xception: pool_padding must be one of {POOL_PADDINGS}, got {c.pool_padding!r}"
            )
        bn = BN()
        ch = lambda n: max(1, round(n * c.width_mult))
        self.stem = nnx.List(
            [
                ConvBN(c.input_shape[2], ch(32), 3, stride=2, padding="valid", bn=bn, rngs=rngs),
                ConvBN(ch(32), ch(64), 3, padding="valid", bn=bn, rngs=rngs),
            ]
        )
        spec = [
            (ch(128), (ch(128),) * 2, True, False),
            (ch(256), (ch(256),) * 2, True, True),
            (ch(728), (ch(728),) * 2, True, True),
        ]
        spec += [(ch(728), (ch(728),) * 3, False, True)] * c.middle_blocks
        spec += [(ch(1024), (ch(728), ch(1024)), True, True)]
        cin, blocks = ch(64), []
        for cout, widths, reduce, first_relu in spec:
            blocks.append(
                XceptionBlock(
                    cin,
                    widths,
                    reduce=reduce,
                    first_relu=first_relu,
                    pool_padding=c.pool_padding,
                    bn=bn,
                    rngs=rngs,
                )
            )
            cin = cout
        self.blocks = nnx.List(blocks)
        self.exit = nnx.List(
            [
                SepBN(cin, ch(1536), pre_relu=False, bn=bn, rngs=rngs),
                SepBN(ch(1536), ch(2048), pre_relu=False, bn=bn, rngs=rngs),
            ]
        )
        self.head = make_head(c, ch(2048), rngs=rngs)

    def features(self, x, *, train=False, rngs=None):
        for conv in self.stem:
            x = conv(x, train=train)
        out, stride = {}, 2
        for block in self.blocks:
            if block.pool is not None:
                out[f"stride{stride}"] = x
                stride *= 2
            x = block(x, train=train)
        for unit in self.exit:
            x = jax.nn.relu(unit(x, train=train))
        out[f"stride{stride}"] = x
        return out


register(
    "xception",
    Xception,
    XceptionConfig(),
    family="xception",
    task="classify",
    test_overrides={"input_shape": (71, 71, 3), "width_mult": 0.0625, "middle_blocks": 1},
    description="Xception (Chollet 2017), 299x299, Keras layout",
)
