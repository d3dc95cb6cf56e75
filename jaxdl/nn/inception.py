"""Inception modules: parallel branches concatenated on channels.

- v1 (Szegedy et al. 2015, "Going deeper with convolutions", Table 1): 1x1 | 1x1-3x3 | 1x1-5x5
  | pool-1x1.
- v3 (Szegedy et al. 2016, "Rethinking the Inception architecture", Figs. 5-7 and 10): A (5x5
  as two 3x3), B and D (grid reductions), C (n x n factorised into 1xn, nx1 with n = 7) and E
  (expanded 1x3 / 3x1 outputs), in torchvision's channel layout.
- Inception-ResNet-v2 (Szegedy et al. 2017, "Inception-v4, Inception-ResNet", Figs. 16-18):
  A (block35), B (block17), C (block8), each branches -> 1x1 conv (with bias) to the input
  width, scaled and added to the input.

Every builder takes `ch`, a function applied to every conv width (identity for the published
nets, a width multiplier for tiny test configs), and returns (module, output channels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.nn.conv import BN, AvgPool, ConvBN, MaxPool

Ch = Callable[[int], int]


class Branches(nnx.Module):
    """Run each branch (a sequence of ConvBN / pooling layers) on x and concatenate the results
    on channels. x: [B, H, W, cin] -> [B, H', W', sum of branch widths]. Parameters
    `branches/i/j/conv`, `branches/i/j/bn`."""

    def __init__(self, branches: Sequence[Sequence[nnx.Module]]):
        self.branches = nnx.List([nnx.List(list(b)) for b in branches])

    def __call__(self, x, *, train: bool = False, rngs=None):
        outs = []
        for branch in self.branches:
            h = x
            for layer in branch:
                h = layer(h, train=train, rngs=rngs)
            outs.append(h)
        return jnp.concatenate(outs, axis=-1)


class _Chain:
    """Builds one branch: `chain(64, 1).then(96, 3)` tracks input channels between convs."""

    def __init__(self, cin: int, ch: Ch, bn: BN, rngs: nnx.Rngs):
        self.cin, self.ch, self.bn, self.rngs, self.layers = cin, ch, bn, rngs, []

    def conv(self, cout: int, kernel, stride: int = 1, padding="same"):
        cout = self.ch(cout)
        self.layers.append(
            ConvBN(
                self.cin, cout, kernel, stride=stride, padding=padding, bn=self.bn, rngs=self.rngs
            )
        )
        self.cin = cout
        return self

    def pool(self, layer: nnx.Module):
        self.layers.append(layer)
        return self


def _builder(cin: int, ch: Ch, bn: BN, rngs: nnx.Rngs):
    return lambda: _Chain(cin, ch, bn, rngs)


def _finish(chains: Sequence[_Chain]) -> tuple[Branches, int]:
    return Branches([c.layers for c in chains]), sum(c.cin for c in chains)


def inception_v1(cin, c1, c3r, c3, c5r, c5, pool_proj, *, k5: int = 5, ch: Ch, bn: BN, rngs):
    """GoogLeNet's module (Table 1 columns #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool
    proj). torchvision uses k5=3 in the "5x5" branch (a known slip kept for its weights)."""
    b = _builder(cin, ch, bn, rngs)
    return _finish(
        [
            b().conv(c1, 1),
            b().conv(c3r, 1).conv(c3, 3),
            b().conv(c5r, 1).conv(c5, k5),
            b().pool(MaxPool(3, 1, padding=1, ceil_mode=True)).conv(pool_proj, 1),
        ]
    )


def inception_a(cin, pool_features, *, count_include_pad: bool = True, ch: Ch, bn: BN, rngs):
    """v3 Fig. 5 (35x35): 1x1 64 | 1x1 48, 5x5 64 | 1x1 64, 3x3 96, 3x3 96 | avg, 1x1.
    `count_include_pad`: whether the 3x3/1 average pool divides by 9 at the border
    (torchvision) or by the number of real pixels under the window (Keras 'same')."""
    b = _builder(cin, ch, bn, rngs)
    pool = AvgPool(3, 1, padding=1, count_include_pad=count_include_pad)
    return _finish(
        [
            b().conv(64, 1),
            b().conv(48, 1).conv(64, 5),
            b().conv(64, 1).conv(96, 3).conv(96, 3),
            b().pool(pool).conv(pool_features, 1),
        ]
    )


def inception_b(cin, *, ch: Ch, bn: BN, rngs):
    """v3 grid reduction 35 -> 17 (Fig. 10): 3x3/2 384 | 1x1 64, 3x3 96, 3x3/2 96 | max 3/2."""
    b = _builder(cin, ch, bn, rngs)
    chains = [
        b().conv(384, 3, 2, "valid"),
        b().conv(64, 1).conv(96, 3).conv(96, 3, 2, "valid"),
        b().pool(MaxPool(3, 2)),
    ]
    chains[2].cin = cin
    return _finish(chains)


def inception_c(cin, c7, *, count_include_pad: bool = True, ch: Ch, bn: BN, rngs):
    """v3 Fig. 6 (17x17, n = 7): 1x1 192 | 1x1 c7, 1x7, 7x1 192 | 1x1 c7, 7x1, 1x7, 7x1, 1x7
    192 | avg, 1x1 192 (`count_include_pad` as in `inception_a`)."""
    b = _builder(cin, ch, bn, rngs)
    pool = AvgPool(3, 1, padding=1, count_include_pad=count_include_pad)
    return _finish(
        [
            b().conv(192, 1),
            b().conv(c7, 1).conv(c7, (1, 7)).conv(192, (7, 1)),
            b().conv(c7, 1).conv(c7, (7, 1)).conv(c7, (1, 7)).conv(c7, (7, 1)).conv(192, (1, 7)),
            b().pool(pool).conv(192, 1),
        ]
    )


def inception_d(cin, *, ch: Ch, bn: BN, rngs):
    """v3 grid reduction 17 -> 8: 1x1 192, 3x3/2 320 | 1x1 192, 1x7, 7x1, 3x3/2 192 | max 3/2."""
    b = _builder(cin, ch, bn, rngs)
    chains = [
        b().conv(192, 1).conv(320, 3, 2, "valid"),
        b().conv(192, 1).conv(192, (1, 7)).conv(192, (7, 1)).conv(192, 3, 2, "valid"),
        b().pool(MaxPool(3, 2)),
    ]
    chains[2].cin = cin
    return _finish(chains)


class InceptionE(nnx.Module):
    """v3 Fig. 7 (8x8): 1x1 320 | 1x1 384 -> (1x3 384 ; 3x1 384) | 1x1 448, 3x3 384 ->
    (1x3 384 ; 3x1 384) | avg, 1x1 192; the split branches fan out into two outputs.
    [B, 8, 8, cin] -> [B, 8, 8, 2048]. Parameters `b1`, `b3`, `b3_a`, `b3_b`, `dbl`, `dbl_a`,
    `dbl_b`, `pool` (`count_include_pad` as in `inception_a`)."""

    def __init__(self, cin: int, *, count_include_pad: bool = True, ch: Ch, bn: BN, rngs: nnx.Rngs):
        conv = lambda i, o, k: ConvBN(i, o, k, bn=bn, rngs=rngs)
        self.b1 = conv(cin, ch(320), 1)
        self.b3 = conv(cin, ch(384), 1)
        self.b3_a, self.b3_b = conv(ch(384), ch(384), (1, 3)), conv(ch(384), ch(384), (3, 1))
        self.dbl = Branches([[conv(cin, ch(448), 1), conv(ch(448), ch(384), 3)]])
        self.dbl_a, self.dbl_b = conv(ch(384), ch(384), (1, 3)), conv(ch(384), ch(384), (3, 1))
        pool = AvgPool(3, 1, padding=1, count_include_pad=count_include_pad)
        self.pool = Branches([[pool, conv(cin, ch(192), 1)]])
        self.out_channels = ch(320) + 4 * ch(384) + ch(192)

    def __call__(self, x, *, train: bool = False, rngs=None):
        t = dict(train=train)
        b3, dbl = self.b3(x, **t), self.dbl(x, **t)
        return jnp.concatenate(
            [
                self.b1(x, **t),
                self.b3_a(b3, **t),
                self.b3_b(b3, **t),
                self.dbl_a(dbl, **t),
                self.dbl_b(dbl, **t),
                self.pool(x, **t),
            ],
            -1,
        )


class ResidualInception(nnx.Module):
    """Inception-ResNet block: x + scale * up(concat(branches(x))), then ReLU (unless
    `activation=False`, the last block8). `up` is a 1x1 conv with bias and no BN.
    [B, H, W, C] -> [B, H, W, C]. Parameters `branches/...`, `up`."""

    def __init__(
        self,
        branches: Branches,
        width: int,
        cout: int,
        scale: float,
        *,
        activation: bool = True,
        rngs: nnx.Rngs,
    ):
        self.branches = branches
        self.up = nnx.Conv(width, cout, (1, 1), rngs=rngs)
        self.scale, self.activation = scale, activation

    def __call__(self, x, *, train: bool = False, rngs=None):
        h = x + self.scale * self.up(self.branches(x, train=train))
        return jax.nn.relu(h) if self.activation else h


def block35(cin, *, scale: float, ch: Ch, bn: BN, rngs):
    """Inception-ResNet-A (35x35): 1x1 32 | 1x1 32, 3x3 32 | 1x1 32, 3x3 48, 3x3 64."""
    b = _builder(cin, ch, bn, rngs)
    br, w = _finish(
        [b().conv(32, 1), b().conv(32, 1).conv(32, 3), b().conv(32, 1).conv(48, 3).conv(64, 3)]
    )
    return ResidualInception(br, w, cin, scale, rngs=rngs), cin


def block17(cin, *, scale: float, ch: Ch, bn: BN, rngs):
    """Inception-ResNet-B (17x17): 1x1 192 | 1x1 128, 1x7 160, 7x1 192."""
    b = _builder(cin, ch, bn, rngs)
    br, w = _finish([b().conv(192, 1), b().conv(128, 1).conv(160, (1, 7)).conv(192, (7, 1))])
    return ResidualInception(br, w, cin, scale, rngs=rngs), cin


def block8(cin, *, scale: float, activation: bool = True, ch: Ch, bn: BN, rngs):
    """Inception-ResNet-C (8x8): 1x1 192 | 1x1 192, 1x3 224, 3x1 256."""
    b = _builder(cin, ch, bn, rngs)
    br, w = _finish([b().conv(192, 1), b().conv(192, 1).conv(224, (1, 3)).conv(256, (3, 1))])
    return ResidualInception(br, w, cin, scale, activation=activation, rngs=rngs), cin


def mixed_5b(cin, *, ch: Ch, bn: BN, rngs):
    """Inception-ResNet-v2's stem end: 1x1 96 | 1x1 48, 5x5 64 | 1x1 64, 3x3 96, 3x3 96 |
    avg (padding not counted), 1x1 64 -> 320 channels."""
    b = _builder(cin, ch, bn, rngs)
    return _finish(
        [
            b().conv(96, 1),
            b().conv(48, 1).conv(64, 5),
            b().conv(64, 1).conv(96, 3).conv(96, 3),
            b().pool(AvgPool(3, 1, padding=1, count_include_pad=False)).conv(64, 1),
        ]
    )


def mixed_6a(cin, *, ch: Ch, bn: BN, rngs):
    """Reduction-A (35 -> 17), k, l, m, n = 256, 256, 384, 384: 3x3/2 384 | 1x1 256, 3x3 256,
    3x3/2 384 | max 3/2."""
    b = _builder(cin, ch, bn, rngs)
    chains = [
        b().conv(384, 3, 2, "valid"),
        b().conv(256, 1).conv(256, 3).conv(384, 3, 2, "valid"),
        b().pool(MaxPool(3, 2)),
    ]
    chains[2].cin = cin
    return _finish(chains)


def mixed_7a(cin, *, ch: Ch, bn: BN, rngs):
    """Reduction-B (17 -> 8): 1x1 256, 3x3/2 384 | 1x1 256, 3x3/2 288 | 1x1 256, 3x3 288,
    3x3/2 320 | max 3/2."""
    b = _builder(cin, ch, bn, rngs)
    chains = [
        b().conv(256, 1).conv(384, 3, 2, "valid"),
        b().conv(256, 1).conv(288, 3, 2, "valid"),
        b().conv(256, 1).conv(288, 3).conv(320, 3, 2, "valid"),
        b().pool(MaxPool(3, 2)),
    ]
    chains[3].cin = cin
    return _finish(chains)
