"""ResNet (He, Zhang, Ren & Sun 2016, "Deep residual learning for image recognition", Table 1),
ResNeXt (Xie et al. 2017, "Aggregated residual transformations", Table 1: cardinality x width)
and SE-ResNet (Hu et al. 2018, "Squeeze-and-excitation networks", reduction 16).

Counts follow torchvision ("v1.5": the bottleneck's stride sits in its 3x3 conv, convs have no
bias before BN): resnet50 25,557,032 parameters, 4.09 GMACs at 224. Keras's ResNet50 is "v1"
(stride in the first 1x1, conv biases): `stride_in_1x1=True, conv_bias=True` gives its
25,583,592 trainable parameters (25,636,712 with the BN statistics). seresnet50 follows timm
(SE on the block output before the sum, 1x1-conv FCs with bias): 28,088,024.

Padding is torchvision's (symmetric, 'same_symmetric'; Keras's ResNets pad the same way with
ZeroPadding2D).

    stem: 7x7/2 conv 64 + BN + ReLU, 3x3/2 max pool -> 4 stages (first stride 1, then 2)
    -> global average pool -> fc
"""

from __future__ import annotations

from dataclasses import dataclass

from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.blocks import BasicBlock, Bottleneck, ClassifierConfig, ConvNet, make_head
from jaxdl.nn.conv import SAME_SYMMETRIC, TORCH_BN, ConvBN, MaxPool


@dataclass(frozen=True)
class ResNetConfig(ClassifierConfig):
    block: str = "bottleneck"  # 'basic' (18, 34) | 'bottleneck' (50+)
    layers: tuple[int, ...] = (3, 4, 6, 3)  # blocks per stage
    widths: tuple[int, ...] = (64, 128, 256, 512)  # planes per stage (x4 out for bottleneck)
    stem_width: int = 64
    groups: int = 1  # ResNeXt cardinality
    width_per_group: int = 64  # ResNeXt bottleneck width d
    se_reduction: int = 0  # 16 for SE-ResNet; 0: no SE
    stride_in_1x1: bool = False  # True: the paper's / Keras's v1
    conv_bias: bool = False  # True: Keras's v1 convs with bias
    # torchvision's replace_stride_with_dilation for stages 2..4: a True stage keeps its input
    # resolution (stride 1) and dilates its 3x3 convs instead (FCN / DeepLab: output stride 8)
    replace_stride_with_dilation: tuple[bool, bool, bool] = (False, False, False)


class ResNet(ConvNet):
    """x: [B, H, W, C] (H, W >= 32) -> [B, num_classes]. Parameters `stem/conv`, `stem/bn`,
    `stages/s/b/conv1..3` (`conv`, `bn`), `stages/s/b/downsample`, `stages/s/b/se/fc1|fc2`,
    `head/fc`. Features: `stem` (stride 4) and `stage1`..`stage4` (strides 4, 8, 16, 32)."""

    family = "resnet"
    min_size = 32

    def __init__(self, config: ResNetConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        self.check_config()
        blocks = {"basic": BasicBlock, "bottleneck": Bottleneck}
        if c.block not in blocks:
            raise JaxdlError(f"resnet: block must be 'basic' or 'bottleneck', got {c.block!r}")
        if c.block == "basic" and (c.groups != 1 or c.width_per_group != 64):
            raise JaxdlError("resnet: groups / width_per_group (ResNeXt) need block='bottleneck'")
        if len(c.layers) != len(c.widths):
            raise JaxdlError(f"resnet: layers {c.layers} and widths {c.widths} differ in length")
        block = blocks[c.block]
        # one flag per stage after the first; flags past the last stage must be False
        n = len(c.layers) - 1
        dilate = tuple(c.replace_stride_with_dilation)
        if any(dilate[n:]):
            raise JaxdlError(
                f"resnet: replace_stride_with_dilation has one flag per stage after the first "
                f"({n} here), got {c.replace_stride_with_dilation}"
            )
        dilate = dilate[:n] + (False,) * (n - len(dilate[:n]))
        if any(dilate) and c.block != "bottleneck":
            raise JaxdlError("resnet: replace_stride_with_dilation needs block='bottleneck'")
        opts = dict(bn=TORCH_BN, se_reduction=c.se_reduction, conv_bias=c.conv_bias, rngs=rngs)
        if c.block == "bottleneck":
            opts.update(
                groups=c.groups, base_width=c.width_per_group, stride_in_1x1=c.stride_in_1x1
            )
        self.stem = ConvBN(
            c.input_shape[2],
            c.stem_width,
            7,
            stride=2,
            padding=SAME_SYMMETRIC,
            bn=TORCH_BN,
            use_bias=c.conv_bias,
            rngs=rngs,
        )
        self.pool = MaxPool(3, 2, padding=1)
        cin, stages, dilation = c.stem_width, [], 1
        for s, (n, planes) in enumerate(zip(c.layers, c.widths, strict=True)):
            stage, stride, previous = [], 2 if s > 0 else 1, dilation
            if s > 0 and dilate[s - 1]:  # torchvision: the stage's first block keeps the old
                dilation, stride = dilation * stride, 1  # dilation, the others the new one
            for b in range(n):
                d = previous if b == 0 else dilation
                extra = {"dilation": d} if d != 1 else {}
                stage.append(block(cin, planes, stride if b == 0 else 1, **opts, **extra))
                cin = planes * block.expansion
            stages.append(nnx.List(stage))
        self.stages = nnx.List(stages)
        self.head = make_head(c, cin, rngs=rngs)

    def features(self, x, *, train=False, rngs=None):
        x = self.pool(self.stem(x, train=train))
        out = {"stem": x}
        for s, stage in enumerate(self.stages):
            for block in stage:
                x = block(x, train=train)
            out[f"stage{s + 1}"] = x
        return out


_PAPER = "He et al. 2016, Table 1"
VARIANTS = {
    "resnet18": (ResNetConfig(block="basic", layers=(2, 2, 2, 2)), _PAPER),
    "resnet34": (ResNetConfig(block="basic", layers=(3, 4, 6, 3)), _PAPER),
    "resnet50": (ResNetConfig(layers=(3, 4, 6, 3)), _PAPER),
    "resnet101": (ResNetConfig(layers=(3, 4, 23, 3)), _PAPER),
    "resnet152": (ResNetConfig(layers=(3, 8, 36, 3)), _PAPER),
    "resnext50_32x4d": (
        ResNetConfig(layers=(3, 4, 6, 3), groups=32, width_per_group=4),
        "Xie et al. 2017, Table 1",
    ),
    "resnext101_32x8d": (
        ResNetConfig(layers=(3, 4, 23, 3), groups=32, width_per_group=8),
        "Xie et al. 2017",
    ),
    "seresnet50": (ResNetConfig(layers=(3, 4, 6, 3), se_reduction=16), "Hu et al. 2018, Table 1"),
}
_TINY = {"input_shape": (32, 32, 3), "layers": (1, 1), "widths": (8, 16), "stem_width": 8}
_TINY_GROUPS = {"groups": 2, "width_per_group": 32, "se_reduction": 4}
for _name, (_cfg, _cite) in VARIANTS.items():
    _tiny = _TINY | (_TINY_GROUPS if _cfg.groups > 1 else {})
    register(
        _name,
        ResNet,
        _cfg,
        family="resnet",
        description=f"{_name} ({_cite})",
        task="classify",
        test_overrides=_tiny,
    )
