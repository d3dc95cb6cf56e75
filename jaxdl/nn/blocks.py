"""Convolutional building blocks, NHWC, each an NNX module.

Residual (He et al. 2016, "Deep Residual Learning", Fig. 5) basic and bottleneck blocks with
ResNeXt groups (Xie et al. 2017) and squeeze-and-excitation (Hu et al. 2018); DenseNet's dense
layer and transition (Huang et al. 2017); the inverted residual / MBConv (Sandler et al. 2018,
Howard et al. 2019, Tan & Le 2019) with SE, hard-swish and stochastic depth; U-Net's double
convolution and up block (Ronneberger et al. 2015); and the shared classifier head with Keras
applications' options (include_top, pooling, classifier activation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.nn.activations import get_activation
from jaxdl.nn.conv import BN, SAME_SYMMETRIC, ConvBN, avg_pool, batch_norm, conv_init, global_pool
from jaxdl.parallel import logical as L


class DropPath(nnx.Module):
    """Stochastic depth (Huang et al. 2016): in training, drop the residual branch of a whole
    sample with probability `rate` and scale survivors by 1 / (1 - rate); identity in eval."""

    def __init__(self, rate: float):
        if not 0.0 <= rate < 1.0:
            raise JaxdlError(f"drop-path rate must be in [0, 1), got {rate}")
        self.rate = rate

    def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
        if not train or self.rate == 0.0:
            return x
        if rngs is None:
            raise JaxdlError("stochastic depth in training needs rngs (e.g. nnx.Rngs(dropout=key))")
        keep = jax.random.bernoulli(
            rngs.dropout(), 1.0 - self.rate, (x.shape[0],) + (1,) * (x.ndim - 1)
        )
        return jnp.where(keep, x / (1.0 - self.rate), 0.0)


class SqueezeExcite(nnx.Module):
    """x * gate(fc2(act(fc1(mean_hw(x))))), the FCs as 1x1 convs with bias (Hu et al. 2018).
    x: [B, H, W, C] -> same. Parameters `fc1` [1, 1, C, rd], `fc2` [1, 1, rd, C]."""

    def __init__(
        self,
        channels: int,
        reduced: int,
        *,
        activation: str = "relu",
        gate: str = "sigmoid",
        rngs: nnx.Rngs,
    ):
        # the squeezed width is small: never split
        self.fc1 = nnx.Conv(
            channels,
            reduced,
            (1, 1),
            kernel_metadata=L.axes(None, None, L.CONV_IN, None),
            bias_metadata=L.axes(None),
            rngs=rngs,
        )
        self.fc2 = nnx.Conv(
            reduced,
            channels,
            (1, 1),
            kernel_metadata=L.axes(None, None, None, L.CONV_OUT),
            bias_metadata=L.axes(L.CONV_OUT),
            rngs=rngs,
        )
        self.act, self.gate = get_activation(activation), get_activation(gate)

    def __call__(self, x, *, train: bool = False, rngs=None):
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class BasicBlock(nnx.Module):
    """ResNet-18/34 block: 3x3 conv (stride) -> 3x3 conv, plus the shortcut (a 1x1 projection
    when shape changes), then ReLU. x: [B, H, W, cin] -> [B, H/stride, W/stride, cout]."""

    expansion = 1

    def __init__(
        self,
        cin: int,
        planes: int,
        stride: int = 1,
        *,
        bn: BN,
        se_reduction: int = 0,
        conv_bias: bool = False,
        rngs: nnx.Rngs,
        **_unused_bottleneck_options,
    ):
        cout = planes
        # torchvision's padding=1 (Keras's ResNets pad the same way, with ZeroPadding2D)
        self.conv1 = ConvBN(
            cin,
            planes,
            3,
            stride=stride,
            padding=SAME_SYMMETRIC,
            bn=bn,
            use_bias=conv_bias,
            rngs=rngs,
        )
        self.conv2 = ConvBN(planes, cout, 3, bn=bn, activation=None, use_bias=conv_bias, rngs=rngs)
        self._se_and_shortcut(cin, cout, stride, bn, se_reduction, conv_bias, rngs)

    def _se_and_shortcut(self, cin, cout, stride, bn, se_reduction, conv_bias, rngs):
        """`se` (optional squeeze-and-excitation) and `downsample` (a 1x1 projection where the
        shape changes), shared by the basic and bottleneck blocks."""
        self.se = SqueezeExcite(cout, cout // se_reduction, rngs=rngs) if se_reduction else None
        self.downsample = (
            ConvBN(
                cin, cout, 1, stride=stride, bn=bn, activation=None, use_bias=conv_bias, rngs=rngs
            )
            if stride != 1 or cin != cout
            else None
        )

    def residual(self, x, train):
        return self.conv2(self.conv1(x, train=train), train=train)

    def __call__(self, x, *, train: bool = False, rngs=None):
        h = self.residual(x, train)
        if self.se is not None:
            h = self.se(h)
        sc = x if self.downsample is None else self.downsample(x, train=train)
        return jax.nn.relu(h + sc)


class Bottleneck(BasicBlock):
    """ResNet-50+ block: 1x1 reduce -> 3x3 (groups, ResNeXt) -> 1x1 expand (x4), plus shortcut.

    The stride sits in the 3x3 (torchvision's "v1.5") or, with `stride_in_1x1`, in the first
    1x1 (the paper and Keras "v1"). width = planes * base_width / 64 * groups."""

    expansion = 4

    def __init__(
        self,
        cin: int,
        planes: int,
        stride: int = 1,
        *,
        bn: BN,
        groups: int = 1,
        base_width: int = 64,
        stride_in_1x1: bool = False,
        se_reduction: int = 0,
        conv_bias: bool = False,
        dilation: int = 1,
        rngs: nnx.Rngs,
    ):
        width = int(planes * base_width / 64) * groups
        cout = planes * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        # a dilated 3x3 (torchvision's replace_stride_with_dilation) pads `dilation` on each side
        dil = {"dilation": dilation, "padding": dilation} if dilation != 1 else {}
        self.conv1 = ConvBN(cin, width, 1, stride=s1, bn=bn, use_bias=conv_bias, rngs=rngs)
        self.conv2 = ConvBN(
            width,
            width,
            3,
            stride=s3,
            groups=groups,
            bn=bn,
            use_bias=conv_bias,
            rngs=rngs,
            **{"padding": SAME_SYMMETRIC, **dil},  # torchvision's padding=1 (= dilation)
        )
        self.conv3 = ConvBN(width, cout, 1, bn=bn, activation=None, use_bias=conv_bias, rngs=rngs)
        self._se_and_shortcut(cin, cout, stride, bn, se_reduction, conv_bias, rngs)

    def residual(self, x, train):
        return self.conv3(self.conv2(self.conv1(x, train=train), train=train), train=train)


class BNActConv(nnx.Module):
    """Pre-activation unit BN -> ReLU -> conv (DenseNet's order). Parameters `bn`, `conv`."""

    def __init__(self, cin: int, cout: int, kernel: int, *, bn: BN, rngs: nnx.Rngs):
        self.bn = batch_norm(cin, bn, rngs, axis=L.CONV_IN)
        self.conv = nnx.Conv(
            cin,
            cout,
            (kernel, kernel),
            padding=((kernel // 2,) * 2,) * 2,
            use_bias=False,
            kernel_init=conv_init,
            kernel_metadata=L.conv_axes(),
            rngs=rngs,
        )

    def __call__(self, x, *, train: bool = False, rngs=None):
        return self.conv(jax.nn.relu(self.bn(x, use_running_average=not train)))


class DenseLayer(nnx.Module):
    """BN-ReLU-1x1 (bn_size * k) -> BN-ReLU-3x3 (k); the k new maps are concatenated to the
    input. x: [B, H, W, c] -> [B, H, W, c + k] (Huang et al. 2017, DenseNet-BC)."""

    def __init__(
        self, cin: int, growth: int, bn_size: int, *, bn: BN, dropout: float = 0.0, rngs: nnx.Rngs
    ):
        self.conv1 = BNActConv(cin, bn_size * growth, 1, bn=bn, rngs=rngs)
        self.conv2 = BNActConv(bn_size * growth, growth, 3, bn=bn, rngs=rngs)
        self.dropout = nnx.Dropout(dropout) if dropout else None

    def __call__(self, x, *, train: bool = False, rngs=None):
        h = self.conv2(self.conv1(x, train=train), train=train)
        if self.dropout is not None:
            h = self.dropout(h, deterministic=not train, rngs=rngs)
        return jnp.concatenate([x, h], axis=-1)


class DenseBlock(nnx.Module):
    """`n` dense layers; x: [B, H, W, c] -> [B, H, W, c + n k]. Parameters `layers/i/...`."""

    def __init__(
        self,
        cin: int,
        n: int,
        growth: int,
        bn_size: int,
        *,
        bn: BN,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        self.layers = nnx.List(
            [
                DenseLayer(cin + i * growth, growth, bn_size, bn=bn, dropout=dropout, rngs=rngs)
                for i in range(n)
            ]
        )
        self.out_channels = cin + n * growth

    def __call__(self, x, *, train: bool = False, rngs=None):
        for layer in self.layers:
            x = layer(x, train=train, rngs=rngs)
        return x


class Transition(nnx.Module):
    """BN-ReLU-1x1 conv (compression) -> 2x2 average pool. [B, H, W, c] -> [B, H/2, W/2, c']."""

    def __init__(self, cin: int, cout: int, *, bn: BN, rngs: nnx.Rngs):
        self.unit = BNActConv(cin, cout, 1, bn=bn, rngs=rngs)

    def __call__(self, x, *, train: bool = False, rngs=None):
        return avg_pool(self.unit(x, train=train), 2)


class InvertedResidual(nnx.Module):
    """MobileNet v2/v3 inverted residual and EfficientNet's MBConv, one module.

    1x1 expand (skipped when cexp == cin) -> kxk depthwise (stride) -> [SE] -> 1x1 linear
    project; identity shortcut (through stochastic depth) when stride 1 and cin == cout.
    `padding` is the depthwise conv's (jaxdl.nn.conv: 'same_symmetric' as torchvision, or
    'same' for Keras weights). x: [B, H, W, cin] -> [B, H/stride, W/stride, cout]."""

    def __init__(
        self,
        cin: int,
        cexp: int,
        cout: int,
        kernel: int = 3,
        stride: int = 1,
        *,
        activation: str = "relu6",
        se_channels: int = 0,
        se_activation: str = "relu",
        se_gate: str = "sigmoid",
        drop_path: float = 0.0,
        padding=SAME_SYMMETRIC,
        bn: BN,
        rngs: nnx.Rngs,
    ):
        self.expand = (
            ConvBN(cin, cexp, 1, bn=bn, activation=activation, rngs=rngs) if cexp != cin else None
        )
        self.depthwise = ConvBN(
            cexp,
            cexp,
            kernel,
            stride=stride,
            padding=padding,
            groups=cexp,
            bn=bn,
            activation=activation,
            rngs=rngs,
        )
        self.se = (
            SqueezeExcite(cexp, se_channels, activation=se_activation, gate=se_gate, rngs=rngs)
            if se_channels
            else None
        )
        self.project = ConvBN(cexp, cout, 1, bn=bn, activation=None, rngs=rngs)
        self.use_residual = stride == 1 and cin == cout
        self.drop_path = DropPath(drop_path) if self.use_residual and drop_path else None

    def __call__(self, x, *, train: bool = False, rngs=None):
        h = x if self.expand is None else self.expand(x, train=train)
        h = self.depthwise(h, train=train)
        if self.se is not None:
            h = self.se(h)
        h = self.project(h, train=train)
        if not self.use_residual:
            return h
        if self.drop_path is not None:
            h = self.drop_path(h, train=train, rngs=rngs)
        return x + h


class DoubleConv(nnx.Module):
    """U-Net's two 3x3 conv + ReLU (valid padding in the paper; optional BN)."""

    def __init__(
        self, cin: int, cout: int, *, padding="valid", bn: BN | None = None, rngs: nnx.Rngs
    ):
        self.conv1 = ConvBN(cin, cout, 3, padding=padding, bn=bn, rngs=rngs)
        self.conv2 = ConvBN(cout, cout, 3, padding=padding, bn=bn, rngs=rngs)

    def __call__(self, x, *, train: bool = False, rngs=None):
        return self.conv2(self.conv1(x, train=train), train=train)


def center_crop(x, h: int, w: int):
    """Crop the centre [h, w] of x: [B, H, W, C] (U-Net's copy-and-crop of the skip)."""
    top, left = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
    return x[:, top : top + h, left : left + w]


class UpBlock(nnx.Module):
    """U-Net expanding step: 2x2 up-convolution halving channels, concatenation with the cropped
    skip connection, double conv.
    ([B, h, w, cin], skip [B, H, W, cin/2]) -> [B, 2h-4, 2w-4, cout] (valid padding)."""

    def __init__(
        self, cin: int, cout: int, *, padding="valid", bn: BN | None = None, rngs: nnx.Rngs
    ):
        self.up = nnx.ConvTranspose(
            cin,
            cin // 2,
            (2, 2),
            (2, 2),
            padding="VALID",
            kernel_init=conv_init,
            kernel_metadata=L.conv_axes(),
            bias_metadata=L.axes(L.CONV_OUT),
            rngs=rngs,
        )
        self.conv = DoubleConv(cin // 2 + cin // 2, cout, padding=padding, bn=bn, rngs=rngs)

    def __call__(self, x, skip, *, train: bool = False, rngs=None):
        x = self.up(x)
        skip = center_crop(skip, x.shape[1], x.shape[2])
        return self.conv(jnp.concatenate([skip, x], axis=-1), train=train)


class Head(nnx.Module):
    """The classifier top: pool ('avg' | 'max' global pooling, or 'flatten') -> hidden Linear +
    activation + dropout layers -> dropout (when there are no hidden layers) -> Linear -> optional
    classifier activation. x: [B, H, W, C] -> [B, num_classes]. Parameters `hidden/i`, `fc`."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        pool: str = "avg",
        hidden: Sequence[int] = (),
        hidden_activation: str = "relu",
        dropout: float = 0.0,
        activation: str | None = None,
        rngs: nnx.Rngs,
    ):
        if num_classes < 1:
            raise JaxdlError(f"num_classes must be >= 1, got {num_classes}")
        self.pool = pool
        widths = [in_features, *hidden]
        self.hidden = nnx.List(
            [
                nnx.Linear(a, b, **L.dense_axes(), rngs=rngs)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.hidden_act = get_activation(hidden_activation)
        self.dropout = nnx.Dropout(dropout) if dropout else None
        self.fc = nnx.Linear(widths[-1], num_classes, **L.dense_axes(L.CLASSES), rngs=rngs)
        self.act = get_activation(activation)

    def __call__(self, x, *, train: bool = False, rngs=None):
        x = x.reshape(x.shape[0], -1) if self.pool == "flatten" else global_pool(x, self.pool)
        for layer in self.hidden:
            x = self.hidden_act(layer(x))
            if self.dropout is not None:
                x = self.dropout(x, deterministic=not train, rngs=rngs)
        if self.dropout is not None and not len(self.hidden):
            x = self.dropout(x, deterministic=not train, rngs=rngs)
        return self.act(self.fc(x))


@dataclass(frozen=True)
class ClassifierConfig:
    """The options every image classifier takes (keras.applications' names in brackets):
    input_shape (H, W, C) [input_shape], num_classes [classes], include_top, pooling
    (None / 'avg' / 'max', used when include_top is False), classifier_activation (None: logits),
    dropout before the last Linear (the family's published rate by default)."""

    input_shape: tuple[int, int, int] = (224, 224, 3)
    num_classes: int = 1000
    include_top: bool = True
    pooling: str | None = None
    classifier_activation: str | None = None
    dropout: float = 0.0


def check_head_options(config, family: str) -> None:
    """Validate the keras.applications-style options every classifier config carries."""
    if config.pooling not in (None, "avg", "max"):
        raise JaxdlError(f"{family}: pooling must be None, 'avg' or 'max', got {config.pooling!r}")
    if not 0.0 <= config.dropout < 1.0:
        raise JaxdlError(f"{family}: dropout must be in [0, 1), got {config.dropout}")
    if config.num_classes < 1:
        raise JaxdlError(f"{family}: num_classes must be >= 1, got {config.num_classes}")


class ConvNet(nnx.Module):
    """Base of the image classifiers: `features(x)` gives a dict of stage outputs (ordered, the
    last one the final feature map); `__call__` adds the top.

    include_top=True: `self.head` (logits, or `classifier_activation` applied). include_top=False:
    the last feature map [B, h, w, C], or [B, C] with pooling 'avg' / 'max' (Keras applications).
    Subclasses set `self.config`, `self.family`, `self.min_size`, `self.head` (None without top)."""

    family: str = "convnet"
    min_size: int = 32

    def check(self, x) -> None:
        """Rank 4, the configured channels, each side at least the family's minimum."""
        c = self.config
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 4:
            raise JaxdlError(f"{self.family}: input must be [B, H, W, C] (NHWC), got shape {shape}")
        if shape[3] != c.input_shape[2]:
            raise JaxdlError(
                f"{self.family}: input has {shape[3]} channel(s), the model was built "
                f"for {c.input_shape[2]} (input_shape={c.input_shape})"
            )
        if min(shape[1:3]) < self.min_size:
            raise JaxdlError(
                f"{self.family}: input {shape[1]}x{shape[2]} is smaller than the "
                f"family's minimum {self.min_size}x{self.min_size}"
            )

    def check_config(self) -> None:
        c = self.config
        if len(c.input_shape) != 3:
            raise JaxdlError(f"{self.family}: input_shape must be (H, W, C), got {c.input_shape}")
        if min(c.input_shape[:2]) < self.min_size:
            raise JaxdlError(
                f"{self.family}: input_shape {c.input_shape} is smaller than the "
                f"family's minimum {self.min_size}x{self.min_size}"
            )
        check_head_options(c, self.family)

    def features(self, x, *, train: bool = False, rngs=None) -> dict[str, jax.Array]:
        raise NotImplementedError  # abstract: every family returns its stage outputs

    def __call__(self, x, *, train: bool = False, rngs=None):
        self.check(x)
        feats = self.features(x, train=train, rngs=rngs)
        h = feats[next(reversed(feats))]
        if self.head is not None:
            return self.head(h, train=train, rngs=rngs)
        return h if self.config.pooling is None else global_pool(h, self.config.pooling)


def make_head(config, in_features: int, *, rngs: nnx.Rngs, **kwargs) -> Head | None:
    """The family's Head from its config (None when include_top is False)."""
    if not config.include_top:
        return None
    return Head(
        in_features,
        config.num_classes,
        dropout=config.dropout,
        activation=config.classifier_activation,
        rngs=rngs,
        **kwargs,
    )


__all__ = [
    "DropPath",
    "SqueezeExcite",
    "BasicBlock",
    "Bottleneck",
    "BNActConv",
    "DenseLayer",
    "DenseBlock",
    "Transition",
    "InvertedResidual",
    "DoubleConv",
    "UpBlock",
    "center_crop",
    "Head",
    "ConvNet",
    "ClassifierConfig",
    "make_head",
    "check_head_options",
]
