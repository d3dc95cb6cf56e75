"""Fully convolutional networks for semantic segmentation: per-pixel class logits at the input
resolution, x [B, H, W, C] -> [B, H, W, num_classes].

FCN-32s / FCN-16s / FCN-8s (Long, Shelhamer & Darrell 2015, "Fully convolutional networks for
semantic segmentation", section 4 and Fig. 3), on VGG-16 as in the paper's reference Caffe nets
(voc-fcn32s/16s/8s):

    conv1_1 padded by 100 (so any input leaves a map for the 7x7 fc6), VGG-16's 3x3 convs
    (padding 1) and 2x2/2 max pools in ceil mode (Caffe's), fc6 as a 7x7 conv 4096 (valid),
    fc7 as a 1x1 conv 4096 (ReLU, dropout 0.5 each), score_fr: 1x1 conv to the classes;
    32s: one transposed conv (64x64, stride 32) cropped at offset 19;
    16s: 2x transposed conv (4x4/2) of score_fr + score_pool4 (1x1 on pool4, cropped at 5),
         then 32x32/16, cropped at 27;
    8s:  as 16s, then 2x again + score_pool3 (1x1 on pool3, cropped at 9), then 16x16/8,
         cropped at 31.

The transposed convs have no bias and start as bilinear interpolation (`jaxdl.nn.resample.
bilinear_kernel`), learned afterwards as the paper says; the score layers start at zero (the
paper: "we initialize class scoring convolution layers to zero"; `score_init='he'` for a random
start). Counts for 21 classes (PASCAL VOC): fcn32s 136,152,917, of which 134,346,581 without its
64x64 upsampling kernel (the paper's Table 1: 134M for FCN-VGG16), fcn16s 134,815,994, fcn8s
134,489,759 (their final upsampling kernels are smaller).

torchvision's `fcn_resnet50` / `fcn_resnet101`: a ResNet with replace_stride_with_dilation
(False, True, True) (output stride 8), FCNHead on layer4 (3x3 conv 2048 -> 512 without bias,
BN, ReLU, dropout 0.1, 1x1 conv to the classes), optionally the same head on layer3 (1024 ->
256) as an auxiliary classifier, bilinear upsampling (align_corners=False) to the input size.
torchvision's weights meta `num_params` (with the auxiliary head, 21 classes): fcn_resnet50
35,322,218, fcn_resnet101 54,314,346; without it 32,957,013 and 51,949,141.

The auxiliary head (`aux=True`) is used in training only: there `__call__` returns
(logits, aux_logits), in evaluation the logits; `jaxdl.models.inception.aux_loss(outputs,
labels, 0.5)` is torchvision's training loss (labels [B, H, W]).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.models.resnet import ResNet, ResNetConfig
from jaxdl.models.vgg import CONFIGS
from jaxdl.nn.activations import get_activation
from jaxdl.nn.conv import TORCH_BN, ConvBN, MaxPool, conv_init
from jaxdl.nn.resample import bilinear_init


def _check_input(model, x) -> None:
    c = model.config
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 4 or shape[3] != c.input_shape[2]:
        raise JaxdlError(
            f"{model.family}: input must be [B, H, W, {c.input_shape[2]}] (NHWC), got {shape}"
        )
    if min(shape[1:3]) < model.min_size:
        raise JaxdlError(
            f"{model.family}: input {shape[1]}x{shape[2]} is smaller than the minimum "
            f"{model.min_size}x{model.min_size}"
        )


def _crop(x, offset: int, h: int, w: int):
    """Caffe's Crop layer: x[:, offset:offset + h, offset:offset + w]."""
    if x.shape[1] < offset + h or x.shape[2] < offset + w:
        raise JaxdlError(
            f"fcn: cannot crop {h}x{w} at offset {offset} from a {x.shape[1]}x{x.shape[2]} map"
        )
    return x[:, offset : offset + h, offset : offset + w]


@dataclass(frozen=True)
class FCNConfig:
    """FCN on VGG (Long et al. 2015). `stride` 32, 16 or 8 picks FCN-32s/16s/8s."""

    input_shape: tuple[int, int, int] = (500, 500, 3)  # PASCAL VOC images are at most 500x500
    num_classes: int = 21  # PASCAL VOC: 20 classes and background
    stride: int = 32
    stages: tuple[tuple[int, ...], ...] = CONFIGS[16]
    fc: int = 4096  # fc6 / fc7 width
    dropout: float = 0.5
    input_pad: int = 100  # conv1_1's padding in the reference nets
    score_init: str = "zeros"  # 'zeros' (the paper) | 'he'
    classifier_activation: str | None = None  # per pixel; None: logits


class FCN(nnx.Module):
    """x: [B, H, W, C] -> [B, H, W, num_classes]. Parameters `stages/s/j/conv` (VGG's names),
    `fc6/conv`, `fc7/conv`, `score_fr`, `score_pool4`, `score_pool3` (16s, 8s), `upscore`
    (32s) or `upscore2`, `upscore16` (16s) or `upscore2`, `upscore_pool4`, `upscore8` (8s)."""

    family = "fcn"
    min_size = 1

    def __init__(self, config: FCNConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        if c.stride not in (32, 16, 8):
            raise JaxdlError(f"fcn: stride must be 32, 16 or 8 (FCN-32s/16s/8s), got {c.stride}")
        if len(c.stages) != 5:
            raise JaxdlError(f"fcn: stages must give VGG's 5 stages, got {len(c.stages)}")
        if c.score_init not in ("zeros", "he"):
            raise JaxdlError(f"fcn: score_init must be 'zeros' or 'he', got {c.score_init!r}")
        if not 0.0 <= c.dropout < 1.0:
            raise JaxdlError(f"fcn: dropout must be in [0, 1), got {c.dropout}")
        if c.num_classes < 1 or len(c.input_shape) != 3:
            raise JaxdlError(
                f"fcn: needs num_classes >= 1 and input_shape (H, W, C), got "
                f"{c.num_classes}, {c.input_shape}"
            )
        cin, stages = c.input_shape[2], []
        for s, widths in enumerate(c.stages):
            layers = []
            for j, w in enumerate(widths):
                pad = c.input_pad if s == j == 0 else 1
                layers.append(ConvBN(cin, w, 3, padding=pad, bn=None, use_bias=True, rngs=rngs))
                cin = w
            stages.append(nnx.List(layers))
        self.stages = nnx.List(stages)
        self.pool = MaxPool(2, 2, ceil_mode=True)
        self.fc6 = ConvBN(cin, c.fc, 7, padding=0, bn=None, use_bias=True, rngs=rngs)
        self.fc7 = ConvBN(c.fc, c.fc, 1, padding=0, bn=None, use_bias=True, rngs=rngs)
        self.dropout = nnx.Dropout(c.dropout) if c.dropout else None
        init = nnx.initializers.zeros_init() if c.score_init == "zeros" else conv_init
        score = lambda i: nnx.Conv(i, c.num_classes, (1, 1), kernel_init=init, rngs=rngs)
        up = lambda k, s: nnx.ConvTranspose(
            c.num_classes,
            c.num_classes,
            (k, k),
            (s, s),
            padding="VALID",
            use_bias=False,
            kernel_init=bilinear_init,
            rngs=rngs,
        )
        self.score_fr = score(c.fc)
        if c.stride == 32:
            self.upscore = up(64, 32)
        else:
            self.upscore2 = up(4, 2)
            self.score_pool4 = score(c.stages[3][-1])
            if c.stride == 16:
                self.upscore16 = up(32, 16)
            else:
                self.upscore_pool4 = up(4, 2)
                self.score_pool3 = score(c.stages[2][-1])
                self.upscore8 = up(16, 8)
        self.act = get_activation(c.classifier_activation)

    def features(self, x, *, train: bool = False, rngs=None):
        """The pooled map of each VGG stage (`pool1`..`pool5`) and `fc7`."""
        out = {}
        for i, stage in enumerate(self.stages):
            for layer in stage:
                x = layer(x, train=train)
            x = self.pool(x)
            out[f"pool{i + 1}"] = x
        for name in ("fc6", "fc7"):
            x = getattr(self, name)(x, train=train)
            if self.dropout is not None:
                x = self.dropout(x, deterministic=not train, rngs=rngs)
            out[name] = x
        return out

    def __call__(self, x, *, train: bool = False, rngs=None):
        _check_input(self, x)
        h, w = x.shape[1:3]
        f = self.features(x, train=train, rngs=rngs)
        score = self.score_fr(f["fc7"])
        if self.config.stride == 32:
            y = _crop(self.upscore(score), 19, h, w)
        else:
            up2 = self.upscore2(score)
            fuse = up2 + _crop(self.score_pool4(f["pool4"]), 5, *up2.shape[1:3])
            if self.config.stride == 16:
                y = _crop(self.upscore16(fuse), 27, h, w)
            else:
                up4 = self.upscore_pool4(fuse)
                fuse = up4 + _crop(self.score_pool3(f["pool3"]), 9, *up4.shape[1:3])
                y = _crop(self.upscore8(fuse), 31, h, w)
        return self.act(y)


@dataclass(frozen=True)
class FCNResNetConfig:
    """torchvision's fcn_resnet50 / fcn_resnet101."""

    input_shape: tuple[int, int, int] = (520, 520, 3)  # the weights' evaluation resize
    num_classes: int = 21
    layers: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    aux: bool = True  # the auxiliary FCNHead on layer3 (torchvision's weights carry it)
    dropout: float = 0.1
    classifier_activation: str | None = None


class FCNHead(nnx.Module):
    """torchvision's FCNHead: 3x3 conv cin -> cin/4 (padding 1, no bias), BN, ReLU, dropout,
    1x1 conv to the classes. [B, h, w, cin] -> [B, h, w, num_classes]. Parameters `conv`
    (`conv`, `bn`), `classifier`."""

    def __init__(self, cin: int, num_classes: int, *, dropout: float, rngs: nnx.Rngs):
        self.conv = ConvBN(cin, cin // 4, 3, padding=1, bn=TORCH_BN, rngs=rngs)
        self.dropout = nnx.Dropout(dropout) if dropout else None
        self.classifier = nnx.Conv(cin // 4, num_classes, (1, 1), kernel_init=conv_init, rngs=rngs)

    def __call__(self, x, *, train: bool = False, rngs=None):
        x = self.conv(x, train=train)
        if self.dropout is not None:
            x = self.dropout(x, deterministic=not train, rngs=rngs)
        return self.classifier(x)


def _upsample(y, h: int, w: int):
    """torch's F.interpolate(mode='bilinear', align_corners=False) to [h, w] (an upscaling,
    so jax.image.resize's antialiasing does not apply; edges repeat the border pixel)."""
    return jax.image.resize(y, (y.shape[0], h, w, y.shape[3]), "bilinear")


class FCNResNet(nnx.Module):
    """x: [B, H, W, C] -> [B, H, W, num_classes] (and the auxiliary logits in training with
    `aux`). Parameters `backbone/...` (jaxdl's ResNet without top: `stem`, `stages`),
    `classifier/...`, `aux_classifier/...` (FCNHead). Features: the backbone's (stage3 and stage4
    at stride 8)."""

    family = "fcn"
    min_size = 32

    def __init__(self, config: FCNResNetConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        if c.num_classes < 1 or len(c.input_shape) != 3:
            raise JaxdlError(
                f"fcn: needs num_classes >= 1 and input_shape (H, W, C), got "
                f"{c.num_classes}, {c.input_shape}"
            )
        if not 0.0 <= c.dropout < 1.0:
            raise JaxdlError(f"fcn: dropout must be in [0, 1), got {c.dropout}")
        if len(c.layers) != 4:
            raise JaxdlError(f"fcn: layers must give ResNet's 4 stages, got {c.layers}")
        self.backbone = ResNet(
            ResNetConfig(
                input_shape=c.input_shape,
                include_top=False,
                layers=c.layers,
                widths=c.widths,
                stem_width=c.stem_width,
                replace_stride_with_dilation=(False, True, True),
            ),
            rngs=rngs,
        )
        out = c.widths[3] * 4
        self.classifier = FCNHead(out, c.num_classes, dropout=c.dropout, rngs=rngs)
        self.aux_classifier = (
            FCNHead(c.widths[2] * 4, c.num_classes, dropout=c.dropout, rngs=rngs) if c.aux else None
        )
        self.act = get_activation(c.classifier_activation)

    def features(self, x, *, train: bool = False, rngs=None):
        return self.backbone.features(x, train=train)

    def __call__(self, x, *, train: bool = False, rngs=None):
        _check_input(self, x)
        h, w = x.shape[1:3]
        f = self.features(x, train=train)
        y = self.act(_upsample(self.classifier(f["stage4"], train=train, rngs=rngs), h, w))
        if not (train and self.aux_classifier is not None):
            return y
        aux = self.aux_classifier(f["stage3"], train=train, rngs=rngs)
        return y, self.act(_upsample(aux, h, w))


_PAPER = "Long et al. 2015, VGG-16"
for _s in (32, 16, 8):
    register(
        f"fcn{_s}s",
        FCN,
        FCNConfig(stride=_s),
        family="fcn",
        task="segment",
        # he-initialised scores: the paper's zero scores leave every other gradient zero
        test_overrides={
            "stages": ((4,), (4,), (6,), (6,), (8,)),
            "fc": 8,
            "num_classes": 3,
            "input_shape": (24, 24, 3),
            "score_init": "he",
        },
        description=f"FCN-{_s}s ({_PAPER}), 21 classes, per-pixel logits",
    )
for _name, _layers in (("fcn_resnet50", (3, 4, 6, 3)), ("fcn_resnet101", (3, 4, 23, 3))):
    register(
        _name,
        FCNResNet,
        FCNResNetConfig(layers=_layers),
        family="fcn",
        task="segment",
        test_overrides={
            "layers": (1, 1, 1, 1),
            "widths": (4, 4, 8, 8),
            "stem_width": 4,
            "num_classes": 3,
            "input_shape": (32, 32, 3),
        },
        description=f"torchvision {_name}: dilated ResNet (output stride 8), FCNHead + aux head",
    )

__all__ = ["FCN", "FCNConfig", "FCNHead", "FCNResNet", "FCNResNetConfig"]
