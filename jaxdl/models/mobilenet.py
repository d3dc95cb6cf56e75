"""MobileNet v1 (Howard et al. 2017, Table 1), v2 (Sandler et al. 2018, Table 2) and v3
(Howard et al. 2019, Tables 1 and 2), one family written once: a stem conv, a table of blocks
(depthwise-separable for v1, inverted residuals for v2/v3), a last 1x1 conv, a head.

Counts: v1 follows Keras (alpha 1.0: 4,231,976 trainable), v2 and v3 torchvision (3,504,872;
small 2,542,856; large 5,483,032). Padding: by default ('same_symmetric') stride-2 convs pad
symmetrically, as torchvision, the reference of v2/v3; padding='same' (the course's / Keras's
rule; 'same_keras' is its older name) pads as a keras.applications model built for a fixed input
size does:
XLA 'SAME' for v2/v3 (Keras's ZeroPadding2D(correct_pad) + 'valid' is the same for any size),
and for v1 the stem 'SAME' and the stride-2 depthwise convs (0, 1) rows/columns, whatever the
size. 'same_keras_even' is a Keras model built with open H, W (input_shape (None, None, 3), as
MobileNetV3's default): correct_pad then pads as for an even size, (k//2 - 1, k//2), at any
size (`keras_pad`); the strided stem convs without ZeroPadding2D stay 'SAME'.
Channel counts are rounded by `make_divisible`; keras_widths=True rounds v3 as Keras does for
alpha != 1 (stem 16 unscaled, expansions from the scaled input, head width scaled only for
alpha > 1), and v2's block outputs from int(c * alpha). At alpha 1 both rules agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.blocks import ClassifierConfig, ConvNet, InvertedResidual, make_head
from jaxdl.nn.conv import BN, SAME_SYMMETRIC, ConvBN


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round v to a multiple of `divisor`, never more than 10% down (the TF reference code)."""
    new = max(min_value or divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


# v1, Table 1: (pointwise output channels, depthwise stride) of the 13 separable blocks.
V1_BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *[(512, 1)] * 5,
    (1024, 2),
    (1024, 1),
)
# v2, Table 2: (expansion t, output channels c, repeats n, first stride s).
V2_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# v3, Tables 1 (large) and 2 (small): (kernel, expanded, out, SE, activation, stride).
V3_LARGE = (
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hard_swish", 2),
    (3, 200, 80, False, "hard_swish", 1),
    (3, 184, 80, False, "hard_swish", 1),
    (3, 184, 80, False, "hard_swish", 1),
    (3, 480, 112, True, "hard_swish", 1),
    (3, 672, 112, True, "hard_swish", 1),
    (5, 672, 160, True, "hard_swish", 2),
    (5, 960, 160, True, "hard_swish", 1),
    (5, 960, 160, True, "hard_swish", 1),
)
V3_SMALL = (
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hard_swish", 2),
    (5, 240, 40, True, "hard_swish", 1),
    (5, 240, 40, True, "hard_swish", 1),
    (5, 120, 48, True, "hard_swish", 1),
    (5, 144, 48, True, "hard_swish", 1),
    (5, 288, 96, True, "hard_swish", 2),
    (5, 576, 96, True, "hard_swish", 1),
    (5, 576, 96, True, "hard_swish", 1),
)


@dataclass(frozen=True)
class MobileNetConfig(ClassifierConfig):
    version: int = 2  # 1, 2 or 3
    size: str = "large"  # v3 only: 'large' | 'small'
    width_mult: float = 1.0  # alpha
    dropout: float = 0.2
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    padding: str = "same_symmetric"  # torchvision; "same" / "same_keras_even": keras.applications
    keras_widths: bool = False  # Keras's channel rounding for alpha != 1 (v2, v3)


# v1 Keras: ZeroPadding2D(((0, 1), (0, 1))) + 'valid' before every stride-2 depthwise conv.
V1_KERAS_PAD = ((0, 1), (0, 1))
PADDINGS = ("same_symmetric", "same", "same_keras", "same_keras_even")


def keras_pad(padding: str, kernel: int, stride: int):
    """The padding of a conv that keras.applications precedes with ZeroPadding2D(correct_pad)
    when strided: 'same_keras_even' -> (k//2 - 1, k//2) on both axes at stride 2 (correct_pad of
    an input of unknown size), 'same' at stride 1; other paddings unchanged."""
    if padding != "same_keras_even":
        return padding
    return ((kernel // 2 - 1, kernel // 2),) * 2 if stride == 2 else "same"


class MobileNet(ConvNet):
    """x: [B, H, W, C] (H, W >= 32) -> [B, num_classes]. Parameters `stem`, `blocks/i/...`
    (v1: `depthwise`, `pointwise`; v2/v3: `expand`, `depthwise`, `se/fc1|fc2`, `project`),
    `last` (v2/v3), `head/hidden/0` (v3), `head/fc`. Features: the output of each stride level
    (`stride2`, `stride4`, ..., `stride32`), the last one after `last`."""

    family = "mobilenet"
    min_size = 32

    def __init__(self, config: MobileNetConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        self.check_config()
        if c.version not in (1, 2, 3):
            raise JaxdlError(f"mobilenet: version must be 1, 2 or 3, got {c.version}")
        if c.version == 3 and c.size not in ("large", "small"):
            raise JaxdlError(f"mobilenet: size must be 'large' or 'small', got {c.size!r}")
        if c.width_mult <= 0:
            raise JaxdlError(f"mobilenet: width_mult must be positive, got {c.width_mult}")
        if c.padding not in PADDINGS:
            raise JaxdlError(f"mobilenet: padding must be one of {PADDINGS}, got {c.padding!r}")
        keras = c.padding != SAME_SYMMETRIC
        pad = "same" if keras else SAME_SYMMETRIC  # strided convs without ZeroPadding2D (stems)
        bn = BN(c.bn_momentum, c.bn_epsilon)
        ch = lambda n: make_divisible(n * c.width_mult)
        blocks, strides = [], []
        hidden = ()
        if c.version == 1:
            ch = lambda n: int(n * c.width_mult)  # Keras v1 truncates, no rounding to 8
            stem_act, stem = "relu6", ch(32)
            cur = stem
            for cout, s in V1_BLOCKS:
                dw_pad = V1_KERAS_PAD if keras and s == 2 else "same"
                blocks.append(_Separable(cur, ch(cout), s, padding=dw_pad, bn=bn, rngs=rngs))
                strides.append(s)
                cur = ch(cout)
            self.last = None
        elif c.version == 2:
            stem_act, stem = "relu6", ch(32)
            cur = stem
            for t, cout, n, s in V2_BLOCKS:
                out = make_divisible(int(cout * c.width_mult)) if c.keras_widths else ch(cout)
                for i in range(n):
                    blocks.append(
                        InvertedResidual(
                            cur,
                            cur * t,
                            out,
                            3,
                            s if i == 0 else 1,
                            activation="relu6",
                            padding=keras_pad(c.padding, 3, s if i == 0 else 1),
                            bn=bn,
                            rngs=rngs,
                        )
                    )
                    strides.append(s if i == 0 else 1)
                    cur = out
            last = make_divisible(1280 * max(1.0, c.width_mult))
            self.last = ConvBN(cur, last, 1, bn=bn, activation="relu6", rngs=rngs)
            cur = last
        else:
            stem_act, stem = "hard_swish", 16 if c.keras_widths else ch(16)
            cur, prev = stem, 16
            for k, exp, cout, se, act, s in V3_LARGE if c.size == "large" else V3_SMALL:
                # Keras expands the (scaled) input by the table's ratio; torchvision scales exp
                cexp = make_divisible(cur * (exp / prev)) if c.keras_widths else ch(exp)
                prev = cout
                blocks.append(
                    InvertedResidual(
                        cur,
                        cexp,
                        ch(cout),
                        k,
                        s,
                        activation=act,
                        se_channels=make_divisible(cexp // 4) if se else 0,
                        se_activation="relu",
                        se_gate="hard_sigmoid",
                        padding=keras_pad(c.padding, k, s),
                        bn=bn,
                        rngs=rngs,
                    )
                )
                strides.append(s)
                cur = ch(cout)
            last = 6 * cur
            self.last = ConvBN(cur, last, 1, bn=bn, activation="hard_swish", rngs=rngs)
            cur = last
            width = 1280 if c.size == "large" else 1024
            scale = max(1.0, c.width_mult) if c.keras_widths else c.width_mult
            hidden = (make_divisible(width * scale),)
        self.stem = ConvBN(
            c.input_shape[2], stem, 3, stride=2, padding=pad, bn=bn, activation=stem_act, rngs=rngs
        )
        self.blocks = nnx.List(blocks)
        self.strides = tuple(strides)
        self.head = make_head(c, cur, hidden=hidden, hidden_activation="hard_swish", rngs=rngs)

    def features(self, x, *, train=False, rngs=None):
        x = self.stem(x, train=train)
        out, stride = {}, 2
        for block, s in zip(self.blocks, self.strides, strict=True):
            if s > 1:
                out[f"stride{stride}"] = x
                stride *= s
            x = block(x, train=train, rngs=rngs)
        if self.last is not None:
            x = self.last(x, train=train)
        out[f"stride{stride}"] = x
        return out


class _Separable(nnx.Module):
    """MobileNet v1 block: 3x3 depthwise + BN + ReLU6 -> 1x1 pointwise + BN + ReLU6."""

    def __init__(self, cin: int, cout: int, stride: int, *, padding="same", bn: BN, rngs: nnx.Rngs):
        self.depthwise = ConvBN(
            cin,
            cin,
            3,
            stride=stride,
            padding=padding,
            groups=cin,
            bn=bn,
            activation="relu6",
            rngs=rngs,
        )
        self.pointwise = ConvBN(cin, cout, 1, bn=bn, activation="relu6", rngs=rngs)

    def __call__(self, x, *, train: bool = False, rngs=None):
        return self.pointwise(self.depthwise(x, train=train), train=train)


register(
    "mobilenet_v1",
    MobileNet,
    MobileNetConfig(version=1, dropout=1e-3),
    family="mobilenet",
    task="classify",
    test_overrides={
        "input_shape": (32, 32, 3),
        "width_mult": 0.125,
        "dropout": 0.2,
        "num_classes": 10,
    },
    description="MobileNet v1, alpha 1.0 (Howard et al. 2017, Table 1; Keras layout)",
)
register(
    "mobilenet_v2",
    MobileNet,
    MobileNetConfig(version=2, bn_momentum=0.9, bn_epsilon=1e-5),
    family="mobilenet",
    task="classify",
    test_overrides={"input_shape": (32, 32, 3), "width_mult": 0.25, "num_classes": 10},
    description="MobileNet v2 (Sandler et al. 2018, Table 2)",
)
for _size in ("small", "large"):
    register(
        f"mobilenet_v3_{_size}",
        MobileNet,
        MobileNetConfig(version=3, size=_size, bn_momentum=0.99),
        family="mobilenet",
        task="classify",
        test_overrides={"input_shape": (32, 32, 3), "width_mult": 0.25, "num_classes": 10},
        description=f"MobileNet v3 {_size} (Howard et al. 2019, Table "
        f"{1 if _size == 'large' else 2})",
    )
