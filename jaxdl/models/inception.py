"""The Inception family: GoogLeNet (Szegedy et al. 2015, Table 1), Inception-v3 (Szegedy et al.
2016) and Inception-ResNet-v2 (Szegedy et al. 2017), built from jaxdl.nn.inception's modules.

Counts (1000 classes): googlenet 6,624,904 without its two auxiliary heads (torchvision's
layout, BN after every conv, the "5x5" branch with a 3x3 kernel) and 13,004,888 with them;
inception_v3 23,834,568 without the auxiliary head (torchvision), 27,161,264 with it; with
`bn_scale=False` (Keras: BN without gamma) 23,817,352; inception_resnet_v2 55,843,464 (timm),
Keras's 55,813,192 trainable with `bn_scale=False`.

Padding: GoogLeNet's strided stem conv pads as torchvision ('same_symmetric'); every other
'same' conv has stride 1 and an odd kernel, where 'same' and 'same_symmetric' agree; strided
convs of v3 and Inception-ResNet-v2 are 'valid' (torchvision, timm and Keras alike).

Auxiliary heads (`aux_logits=True`) are active in training only: there `__call__` returns
(logits, aux_1, ...), in evaluation only the logits; `aux_loss` combines them as the papers do.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn import inception as I
from jaxdl.nn.blocks import ClassifierConfig, ConvNet, Head, make_head
from jaxdl.nn.conv import BN, SAME_SYMMETRIC, AvgPool, ConvBN, MaxPool, conv_output_size
from jaxdl.nn.resample import AdaptiveAvgPool


@dataclass(frozen=True)
class InceptionConfig(ClassifierConfig):
    input_shape: tuple[int, int, int] = (299, 299, 3)
    version: str = "v3"  # 'v1' (GoogLeNet) | 'v3' | 'resnet_v2'
    dropout: float = 0.5
    aux_logits: bool = False
    aux_weight: float = 0.3  # GoogLeNet's weight of each auxiliary loss (v3 uses 0.4 in torch refs)
    bn_scale: bool = True  # False: BN without gamma (Keras InceptionV3, InceptionResNetV2)
    width_mult: float = 1.0  # scales every conv width (tiny test configs); 1.0 is the paper
    k5: int = 3  # GoogLeNet's "5x5" branch kernel: 3 in torchvision, 5 in the paper
    repeats: tuple[int, int, int] = (10, 20, 10)  # Inception-ResNet-v2's A, B, C blocks
    # v3's 3x3/1 average pools: True divides by 9 at the border too (torchvision), False by the
    # number of real pixels (Keras/TF 'same' pooling). Inception-ResNet-v2's one average pool
    # (mixed_5b) excludes the padding in both timm and Keras.
    count_include_pad: bool = True
    # GoogLeNet's auxiliary heads: 'paper' pools 5x5/3 (Szegedy et al. 2015, section 5);
    # 'adaptive' pools adaptively to 4x4 as torchvision does, so its converted aux heads give
    # torchvision's outputs for any input size (the windows differ even at 224: 14 -> 4 is
    # 5x5/3 in the paper, torch's bins [0, 4), [3, 7), [7, 11), [10, 14))
    aux_pool: str = "paper"


class AuxHead(nnx.Module):
    """Auxiliary classifier on an intermediate map: 5x5/3 average pool (or, `adaptive`,
    torchvision's adaptive average pool to 4x4) -> 1x1 conv 128 -> [5x5 conv 768 (v3)] -> Head.
    [B, H, W, cin] -> [B, num_classes]."""

    def __init__(
        self,
        cin: int,
        side: int,
        num_classes: int,
        *,
        v3: bool,
        ch,
        bn: BN,
        adaptive: bool = False,
        rngs: nnx.Rngs,
    ):
        self.pool = AdaptiveAvgPool(4) if adaptive else AvgPool(5, 3)
        side = 4 if adaptive else conv_output_size(side, 5, 3)
        convs = [ConvBN(cin, ch(128), 1, bn=bn, rngs=rngs)]
        if v3:
            convs.append(ConvBN(ch(128), ch(768), 5, padding="valid", bn=bn, rngs=rngs))
            self.head = Head(ch(768), num_classes, rngs=rngs)
        else:
            self.head = Head(
                side * side * ch(128),
                num_classes,
                pool="flatten",
                hidden=(ch(1024),),
                dropout=0.7,
                rngs=rngs,
            )
        self.convs = nnx.List(convs)

    def __call__(self, x, *, train: bool = False, rngs=None):
        x = self.pool(x)
        for conv in self.convs:
            x = conv(x, train=train)
        return self.head(x, train=train, rngs=rngs)


def _stem(cin: int, ch, bn: BN, rngs, *, v1: bool):
    """GoogLeNet: 7x7/2 64, max 3/2, 1x1 64, 3x3 192, max 3/2. v3 / Inception-ResNet-v2: 3x3/2
    32, 3x3 32, 3x3 64, max 3/2, 1x1 80, 3x3 192, max 3/2 (valid convs)."""
    c = lambda i, o, k, s=1, p="same": ConvBN(
        ch(i) if i != cin else i, ch(o), k, stride=s, padding=p, bn=bn, rngs=rngs
    )
    if v1:
        pool = lambda: MaxPool(3, 2, ceil_mode=True)
        stem = c(cin, 64, 7, 2, SAME_SYMMETRIC)  # torchvision's padding=3
        return [stem, pool(), c(64, 64, 1), c(64, 192, 3), pool()], ch(192)
    return [
        c(cin, 32, 3, 2, "valid"),
        c(32, 32, 3, 1, "valid"),
        c(32, 64, 3),
        MaxPool(3, 2),
        c(64, 80, 1),
        c(80, 192, 3, 1, "valid"),
        MaxPool(3, 2),
    ], ch(192)


class Inception(ConvNet):
    """x: [B, H, W, C] -> [B, num_classes] (and the auxiliary logits in training when
    `aux_logits`). Parameters `stem/i/conv|bn`, `blocks/<name>/...` (GoogLeNet 3a..5b, v3
    5b..7c, Inception-ResNet-v2 5b, a_i, 6a, b_i, 7a, c_i, 7b), `aux/i/...`, `head/fc`.
    Features: one map per grid size (`stride8`, `stride16`, `stride32`)."""

    family = "inception"

    def __init__(self, config: InceptionConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        if c.version not in ("v1", "v3", "resnet_v2"):
            raise JaxdlError(
                f"inception: version must be 'v1', 'v3' or 'resnet_v2', got {c.version!r}"
            )
        if c.aux_logits and c.version == "resnet_v2":
            raise JaxdlError("inception: Inception-ResNet-v2 has no auxiliary head (aux_logits)")
        if c.aux_pool not in ("paper", "adaptive"):
            raise JaxdlError(
                f"inception: aux_pool must be 'paper' or 'adaptive', got {c.aux_pool!r}"
            )
        if c.aux_pool == "adaptive" and c.version != "v1":
            raise JaxdlError(
                "inception: aux_pool='adaptive' is GoogLeNet's (version 'v1') torchvision layout; "
                f"version {c.version!r} pools its auxiliary head 5x5/3 in torchvision too"
            )
        self.min_size = 32 if c.version == "v1" else 75
        self.check_config()
        bn = BN(0.99, 1e-3, scale=c.bn_scale)
        ch = (lambda n: n) if c.width_mult == 1.0 else (lambda n: max(1, round(n * c.width_mult)))
        kw = dict(ch=ch, bn=bn, rngs=rngs)
        stem, cin = _stem(c.input_shape[2], ch, bn, rngs, v1=c.version == "v1")
        self.stem = nnx.List(stem)
        blocks, aux_at = {}, {}

        def add(name, built):
            nonlocal cin
            blocks[name], cin = built
            return cin

        if c.version == "v1":
            table = {
                "3a": (64, 96, 128, 16, 32, 32),
                "3b": (128, 128, 192, 32, 96, 64),
                "4a": (192, 96, 208, 16, 48, 64),
                "4b": (160, 112, 224, 24, 64, 64),
                "4c": (128, 128, 256, 24, 64, 64),
                "4d": (112, 144, 288, 32, 64, 64),
                "4e": (256, 160, 320, 32, 128, 128),
                "5a": (256, 160, 320, 32, 128, 128),
                "5b": (384, 192, 384, 48, 128, 128),
            }
            for name, widths in table.items():
                add(name, I.inception_v1(cin, *widths, k5=c.k5, **kw))
                if name in ("4a", "4d"):
                    aux_at[name] = cin
            ends = ("3b", "4e", "5b")
            pools = {"3b": MaxPool(3, 2, ceil_mode=True), "4e": MaxPool(2, 2, ceil_mode=True)}
        elif c.version == "v3":
            pad = dict(count_include_pad=c.count_include_pad)
            for name, pf in (("5b", 32), ("5c", 64), ("5d", 64)):
                add(name, I.inception_a(cin, pf, **pad, **kw))
            add("6a", I.inception_b(cin, **kw))
            for name, c7 in (("6b", 128), ("6c", 160), ("6d", 160), ("6e", 192)):
                add(name, I.inception_c(cin, c7, **pad, **kw))
            aux_at["6e"] = cin
            add("7a", I.inception_d(cin, **kw))
            for name in ("7b", "7c"):
                e = I.InceptionE(cin, **pad, **kw)
                add(name, (e, e.out_channels))
            ends, pools = ("5d", "6e", "7c"), {}
        else:
            na, nb, nc = c.repeats
            add("5b", I.mixed_5b(cin, **kw))
            for i in range(na):
                add(f"a{i}", I.block35(cin, scale=0.17, **kw))
            add("6a", I.mixed_6a(cin, **kw))
            for i in range(nb):
                add(f"b{i}", I.block17(cin, scale=0.10, **kw))
            end_b = f"b{nb - 1}"
            add("7a", I.mixed_7a(cin, **kw))
            for i in range(nc):
                last = i == nc - 1  # the last block8: scale 1, no ReLU (Keras, timm)
                add(f"c{i}", I.block8(cin, scale=1.0 if last else 0.20, activation=not last, **kw))
            blocks["7b"] = ConvBN(cin, ch(1536), 1, bn=bn, rngs=rngs)
            cin = ch(1536)
            ends, pools = (f"a{na - 1}", end_b, "7b"), {}
        self.blocks = nnx.Dict(blocks)
        self.ends = ends  # the last block of each grid size (8, 16, 32)
        self.pools = nnx.Dict(pools)  # GoogLeNet's grid reductions between its modules
        self.order = tuple(blocks)
        self.out_channels = cin
        side = self._grid_side(c.input_shape[0], c.version)
        self.aux = (
            nnx.Dict(
                {
                    k: AuxHead(
                        v,
                        side,
                        c.num_classes,
                        v3=c.version == "v3",
                        ch=ch,
                        bn=bn,
                        adaptive=c.aux_pool == "adaptive",
                        rngs=rngs,
                    )
                    for k, v in aux_at.items()
                }
            )
            if c.aux_logits and c.include_top
            else None
        )
        self.head = make_head(c, cin, rngs=rngs)

    @staticmethod
    def _grid_side(n: int, version: str) -> int:
        """Side of the 17x17 / 14x14 grid the auxiliary heads see, for an input side n."""
        if version == "v1":
            n = conv_output_size(n, 7, 2, SAME_SYMMETRIC)
            for _ in range(3):
                n = -(-(n - 3) // 2) + 1  # ceil-mode 3/2 pools
            return n
        for k, s in ((3, 2), (3, 1), (3, 2), (3, 1), (3, 2), (3, 2)):
            n = conv_output_size(n, k, s)
        return n

    def _run(self, x, train, rngs, aux: list | None):
        for layer in self.stem:
            x = layer(x, train=train) if isinstance(layer, ConvBN) else layer(x)
        out = {}
        for name in self.order:
            x = self.blocks[name](x, train=train)
            if aux is not None and self.aux is not None and name in self.aux:
                aux.append(self.aux[name](x, train=train, rngs=rngs))
            if name in self.ends:
                out[f"stride{8 * 2 ** len(out)}"] = x
                if name in self.pools:
                    x = self.pools[name](x)
        return out

    def features(self, x, *, train=False, rngs=None):
        return self._run(x, train, rngs, None)

    def __call__(self, x, *, train: bool = False, rngs=None):
        if not (train and self.aux is not None):
            return super().__call__(x, train=train, rngs=rngs)
        self.check(x)
        aux = []
        feats = self._run(x, train, rngs, aux)
        return (self.head(feats["stride32"], train=train, rngs=rngs), *aux)


def aux_loss(outputs, labels, weight: float) -> jnp.ndarray:
    """Cross-entropy of the main logits plus `weight` times that of each auxiliary head.
    outputs: logits [B, K] or a tuple (logits, aux...) from training; labels [B] ints."""
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    ce = lambda z: optax.softmax_cross_entropy_with_integer_labels(z, labels).mean()
    return ce(outputs[0]) + weight * sum((ce(a) for a in outputs[1:]), 0.0)


register(
    "googlenet",
    Inception,
    InceptionConfig(input_shape=(224, 224, 3), version="v1", dropout=0.2),
    family="inception",
    task="classify",
    test_overrides={
        "input_shape": (80, 80, 3),
        "width_mult": 0.125,
        "aux_logits": True,
        "num_classes": 10,
    },
    description="GoogLeNet / Inception-v1 (Szegedy et al. 2015, Table 1)",
)
register(
    "inception_v3",
    Inception,
    InceptionConfig(version="v3"),
    family="inception",
    task="classify",
    test_overrides={"input_shape": (75, 75, 3), "width_mult": 0.0625, "num_classes": 10},
    description="Inception-v3 (Szegedy et al. 2016), 299x299",
)
register(
    "inception_resnet_v2",
    Inception,
    InceptionConfig(version="resnet_v2", dropout=0.2),
    family="inception",
    task="classify",
    test_overrides={"input_shape": (75, 75, 3), "width_mult": 0.0625, "repeats": (1, 1, 2)},
    description="Inception-ResNet-v2 (Szegedy et al. 2017), 299x299",
)
