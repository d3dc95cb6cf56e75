"""EfficientNet-B0..B7 (Tan & Le 2019, "EfficientNet: rethinking model scaling", Table 1 for
B0, compound scaling: width, depth and resolution per variant), MBConv blocks with SE (ratio
1/4 of the block's input channels), SiLU, and stochastic depth rising linearly to 0.2 over the
blocks. Counts follow torchvision: efficientnet_b0 5,288,548 parameters, 0.386 GMACs at 224.
Padding: by default ('same_symmetric') stride-2 convs pad symmetrically, as torchvision, the
reference of the counts; padding='same' (the course's / Keras's rule; 'same_keras' is its older
name) pads as keras.applications
(ZeroPadding2D(correct_pad) + 'valid', equal to XLA 'SAME' for any fixed input size), and
'same_keras_even' as a Keras model built with open H, W (see jaxdl.models.mobilenet.keras_pad).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.mobilenet import PADDINGS, keras_pad, make_divisible
from jaxdl.models.registry import register
from jaxdl.nn.blocks import ClassifierConfig, ConvNet, InvertedResidual, make_head
from jaxdl.nn.conv import BN, ConvBN

# Table 1: (expansion, kernel, first stride, output channels, repeats) per stage of B0.
B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


@dataclass(frozen=True)
class EfficientNetConfig(ClassifierConfig):
    width_mult: float = 1.0
    depth_mult: float = 1.0
    dropout: float = 0.2
    drop_path: float = 0.2  # stochastic depth at the last block, linear from 0
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    padding: str = "same_symmetric"  # torchvision; "same" / "same_keras_even": keras.applications


class EfficientNet(ConvNet):
    """x: [B, H, W, C] (H, W >= 32) -> [B, num_classes]. Parameters `stem`,
    `stages/s/b/expand|depthwise|se|project`, `last`, `head/fc`. Features: `stage1`..`stage7`
    and `last` (the 1x1 conv to 4x the last stage's width, stride 32)."""

    family = "efficientnet"
    min_size = 32

    def __init__(self, config: EfficientNetConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        self.check_config()
        if c.width_mult <= 0 or c.depth_mult <= 0:
            raise JaxdlError(
                f"efficientnet: width_mult and depth_mult must be positive, got "
                f"{c.width_mult}, {c.depth_mult}"
            )
        if c.padding not in PADDINGS:
            raise JaxdlError(f"efficientnet: padding must be one of {PADDINGS}, got {c.padding!r}")
        bn = BN(c.bn_momentum, c.bn_epsilon)
        ch = lambda n: make_divisible(n * c.width_mult)
        repeats = [math.ceil(r * c.depth_mult) for *_, r in B0_STAGES]
        total, idx = sum(repeats), 0
        self.stem = ConvBN(
            c.input_shape[2],
            ch(32),
            3,
            stride=2,
            padding=keras_pad(c.padding, 3, 2),
            bn=bn,
            activation="silu",
            rngs=rngs,
        )
        cur, stages = ch(32), []
        for (t, k, s, cout, _), n in zip(B0_STAGES, repeats, strict=True):
            stage = []
            for i in range(n):
                stage.append(
                    InvertedResidual(
                        cur,
                        cur * t,
                        ch(cout),
                        k,
                        s if i == 0 else 1,
                        activation="silu",
                        se_channels=max(1, cur // 4),
                        se_activation="silu",
                        se_gate="sigmoid",
                        drop_path=c.drop_path * idx / total,
                        padding=keras_pad(c.padding, k, s if i == 0 else 1),
                        bn=bn,
                        rngs=rngs,
                    )
                )
                cur, idx = ch(cout), idx + 1
            stages.append(nnx.List(stage))
        self.stages = nnx.List(stages)
        self.last = ConvBN(cur, 4 * cur, 1, bn=bn, activation="silu", rngs=rngs)
        self.head = make_head(c, 4 * cur, rngs=rngs)

    def features(self, x, *, train=False, rngs=None):
        x = self.stem(x, train=train)
        out = {}
        for s, stage in enumerate(self.stages):
            for block in stage:
                x = block(x, train=train, rngs=rngs)
            out[f"stage{s + 1}"] = x
        out["last"] = self.last(x, train=train)
        return out


# Compound scaling (width, depth, resolution, dropout) per variant, as in the reference code.
VARIANTS = {
    0: (1.0, 1.0, 224, 0.2),
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
    3: (1.2, 1.4, 300, 0.3),
    4: (1.4, 1.8, 380, 0.4),
    5: (1.6, 2.2, 456, 0.4),
    6: (1.8, 2.6, 528, 0.5),
    7: (2.0, 3.1, 600, 0.5),
}
for _b, (_w, _d, _r, _p) in VARIANTS.items():
    register(
        f"efficientnet_b{_b}",
        EfficientNet,
        EfficientNetConfig(
            input_shape=(_r, _r, 3),
            width_mult=_w,
            depth_mult=_d,
            dropout=_p,
            bn_epsilon=1e-5 if _b < 5 else 1e-3,
        ),
        family="efficientnet",
        task="classify",
        test_overrides={
            "input_shape": (32, 32, 3),
            "width_mult": 0.25,
            "depth_mult": 0.3,
            "drop_path": 0.5,
            "num_classes": 10,
        },
        description=f"EfficientNet-B{_b} (Tan & Le 2019), {_r}x{_r}",
    )
