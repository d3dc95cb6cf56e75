"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with deep
convolutional neural networks", Fig. 2) as one tower on 227x227x3, the course's table:
62,378,344 parameters for 1000 classes (published).

    conv 96@11x11/4 valid -> max 3/2 -> conv 256@5x5 same -> max 3/2 -> conv 384@3x3 ->
    conv 384@3x3 -> conv 256@3x3 -> max 3/2 (6x6x256) -> fc 4096 -> fc 4096 -> fc classes

By default local response normalisation is left out (later work found it adds nothing;
torchvision omits it too); dropout 0.5 follows each hidden fc layer, as in the paper.

The paper's own layout is `alexnet_paper` (`lrn=True, towers=2`): response normalisation
(section 3.3: k=2, n=5, alpha=1e-4, beta=0.75) after the ReLU of conv1 and conv2, before their
pools, and the two-GPU split (section 3.2, Fig. 2) as grouped convolutions: conv2, conv4 and
conv5 see only the maps of their own tower (groups=2), conv3 and the fc layers see both.
60,965,224 parameters for 1000 classes (the paper: "60 million").
"""

from __future__ import annotations

from dataclasses import dataclass

from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.blocks import ClassifierConfig, ConvNet, make_head
from jaxdl.nn.conv import ConvBN, MaxPool, conv_output_size
from jaxdl.nn.norm import LocalResponseNorm


@dataclass(frozen=True)
class AlexNetConfig(ClassifierConfig):
    input_shape: tuple[int, int, int] = (227, 227, 3)
    dropout: float = 0.5
    widths: tuple[int, ...] = (96, 256, 384, 384, 256)
    fc: tuple[int, ...] = (4096, 4096)
    lrn: bool = False  # local response normalisation after conv1 and conv2 (the paper)
    towers: int = 1  # 2: the paper's two-GPU split (conv2, conv4, conv5 grouped)


class AlexNet(ConvNet):
    """x: [B, H, W, C] (H, W >= 67) -> [B, num_classes]. Parameters `conv1`..`conv5` (each
    `conv/kernel`, `conv/bias`), `head/hidden/0`, `head/hidden/1`, `head/fc`."""

    family = "alexnet"
    min_size = 67  # the smallest input that leaves a 1x1 map after the third pool

    def __init__(self, config: AlexNetConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        self.check_config()
        w = c.widths
        if c.towers not in (1, 2):
            raise JaxdlError(f"alexnet: towers must be 1 or 2 (the paper's split), got {c.towers}")
        conv = lambda i, o, k, s=1, p="same", g=1: ConvBN(
            i, o, k, stride=s, padding=p, groups=g, bn=None, rngs=rngs
        )
        t = c.towers
        self.conv1 = conv(c.input_shape[2], w[0], 11, 4, "valid")
        self.norm1 = LocalResponseNorm() if c.lrn else None
        self.pool1 = MaxPool(3, 2)
        self.conv2 = conv(w[0], w[1], 5, p=2, g=t)
        self.norm2 = LocalResponseNorm() if c.lrn else None
        self.pool2 = MaxPool(3, 2)
        self.conv3 = conv(w[1], w[2], 3, p=1)
        self.conv4 = conv(w[2], w[3], 3, p=1, g=t)
        self.conv5 = conv(w[3], w[4], 3, p=1, g=t)
        self.pool5 = MaxPool(3, 2)
        side = [conv_output_size(n, 11, 4) for n in c.input_shape[:2]]
        for _ in range(3):
            side = [conv_output_size(n, 3, 2) for n in side]
        self.head = make_head(c, side[0] * side[1] * w[4], pool="flatten", hidden=c.fc, rngs=rngs)

    def features(self, x, *, train=False, rngs=None):
        norm = lambda n, h: h if n is None else n(h)
        f1 = self.pool1(norm(self.norm1, self.conv1(x)))
        f2 = self.pool2(norm(self.norm2, self.conv2(f1)))
        f5 = self.pool5(self.conv5(self.conv4(self.conv3(f2))))
        return {"stage1": f1, "stage2": f2, "stage3": f5}


register(
    "alexnet",
    AlexNet,
    AlexNetConfig(),
    family="alexnet",
    task="classify",
    test_overrides={"input_shape": (67, 67, 3), "widths": (8, 8, 8, 8, 8), "fc": (16, 16)},
    description="AlexNet (Krizhevsky et al. 2012), single tower, 227x227",
)
register(
    "alexnet_paper",
    AlexNet,
    AlexNetConfig(lrn=True, towers=2),
    family="alexnet",
    task="classify",
    test_overrides={"input_shape": (67, 67, 3), "widths": (8, 8, 8, 8, 8), "fc": (16, 16)},
    description="AlexNet as in the paper: two towers (grouped conv2/4/5) and local response "
    "normalisation, 60,965,224 params",
)
