"""VGG (Simonyan & Zisserman 2015, "Very deep convolutional networks for large-scale image
recognition", Table 1: configurations A=11, B=13, D=16, E=19 weight layers), and the `_bn`
variants with BatchNorm after every conv (torchvision's vgg*_bn).

Stacks of 3x3 'same' convs (stride 1) separated by 2x2 max pools; the top is flatten ->
fc 4096 -> fc 4096 -> fc classes with dropout 0.5 after each hidden fc (torchvision; Keras's
VGG has no dropout: set dropout=0). vgg16: 138,357,544 parameters, 15.47 GMACs at 224.
"""

from __future__ import annotations

from dataclasses import dataclass

from flax import nnx

from jaxdl.models.registry import register
from jaxdl.nn.blocks import ClassifierConfig, ConvNet, make_head
from jaxdl.nn.conv import TORCH_BN, ConvBN, MaxPool

# Table 1 of the paper: conv widths per stage.
CONFIGS = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


@dataclass(frozen=True)
class VGGConfig(ClassifierConfig):
    dropout: float = 0.5
    stages: tuple[tuple[int, ...], ...] = CONFIGS[16]
    fc: tuple[int, ...] = (4096, 4096)
    batch_norm: bool = False


class VGG(ConvNet):
    """x: [B, H, W, C] (H, W >= 32) -> [B, num_classes]. Parameters
    `stages/s/l/conv/kernel` (and `.../bn/...` for _bn), `head/hidden/0`, `head/hidden/1`,
    `head/fc`. Features: the output of each stage after its pool."""

    family = "vgg"
    min_size = 32

    def __init__(self, config: VGGConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        self.check_config()
        bn = TORCH_BN if c.batch_norm else None
        cin, stages = c.input_shape[2], []
        for widths in c.stages:
            layers = []
            for w in widths:
                layers.append(
                    ConvBN(cin, w, 3, bn=bn, use_bias=True, rngs=rngs)
                )  # torchvision keeps the bias
                cin = w
            stages.append(nnx.List(layers))
        self.stages = nnx.List(stages)
        self.pool = MaxPool(2)
        h, w = (n >> len(c.stages) for n in c.input_shape[:2])
        self.head = make_head(c, h * w * cin, pool="flatten", hidden=c.fc, rngs=rngs)

    def features(self, x, *, train=False, rngs=None):
        out = {}
        for i, stage in enumerate(self.stages):
            for layer in stage:
                x = layer(x, train=train)
            x = self.pool(x)
            out[f"stage{i + 1}"] = x
        return out


for depth, stages in CONFIGS.items():
    for bn in (False, True):
        register(
            f"vgg{depth}{'_bn' if bn else ''}",
            VGG,
            VGGConfig(stages=stages, batch_norm=bn),
            family="vgg",
            task="classify",
            test_overrides={
                "input_shape": (32, 32, 3),
                "stages": ((8,), (8,), (8, 8), (8,), (8,)),
                "fc": (16, 16),
            },
            description=f"VGG-{depth}{' with BatchNorm' if bn else ''} "
            "(Simonyan & Zisserman 2015, Table 1)",
        )
