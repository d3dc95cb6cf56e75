"""DenseNet-BC (Huang, Liu, van der Maaten & Weinberger 2017, "Densely connected convolutional
networks", Table 1): growth rate k = 32, bottleneck width 4k, compression 0.5.

    stem 7x7/2 conv 2k + BN + ReLU + 3x3/2 max pool -> dense block, transition (x3) ->
    dense block -> BN + ReLU -> global average pool -> fc

Padding is torchvision's (symmetric, 'same_symmetric'; Keras's DenseNets pad the same way with
ZeroPadding2D). densenet121 (6-12-24-16): 7,978,856 parameters, 2.83 GMACs at 224 (torchvision,
Keras trainable).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
from flax import nnx

from jaxdl.models.registry import register
from jaxdl.nn.blocks import ClassifierConfig, ConvNet, DenseBlock, Transition, make_head
from jaxdl.nn.conv import SAME_SYMMETRIC, TORCH_BN, ConvBN, MaxPool, batch_norm


@dataclass(frozen=True)
class DenseNetConfig(ClassifierConfig):
    growth: int = 32
    blocks: tuple[int, ...] = (6, 12, 24, 16)
    stem_width: int = 64  # 2k
    bn_size: int = 4  # bottleneck width = bn_size * k
    compression: float = 0.5
    layer_dropout: float = 0.0  # dropout after each dense layer (the paper, without augmentation)


class DenseNet(ConvNet):
    """x: [B, H, W, C] (H, W >= 32) -> [B, num_classes]. Parameters `stem/conv`, `stem/bn`,
    `blocks/i/layers/j/conv1|conv2` (`bn`, `conv`), `transitions/i/unit`, `norm`, `head/fc`.
    Features: `stem`, `block1`..`block4` (the last after the final BN + ReLU)."""

    family = "densenet"
    min_size = 32

    def __init__(self, config: DenseNetConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        self.check_config()
        self.stem = ConvBN(
            c.input_shape[2],
            c.stem_width,
            7,
            stride=2,
            padding=SAME_SYMMETRIC,
            bn=TORCH_BN,
            rngs=rngs,
        )
        self.pool = MaxPool(3, 2, padding=1)
        cin, blocks, transitions = c.stem_width, [], []
        for i, n in enumerate(c.blocks):
            block = DenseBlock(
                cin, n, c.growth, c.bn_size, bn=TORCH_BN, dropout=c.layer_dropout, rngs=rngs
            )
            blocks.append(block)
            cin = block.out_channels
            if i < len(c.blocks) - 1:
                cout = int(cin * c.compression)
                transitions.append(Transition(cin, cout, bn=TORCH_BN, rngs=rngs))
                cin = cout
        self.blocks = nnx.List(blocks)
        self.transitions = nnx.List(transitions)
        self.norm = batch_norm(cin, TORCH_BN, rngs)
        self.head = make_head(c, cin, rngs=rngs)

    def features(self, x, *, train=False, rngs=None):
        x = self.pool(self.stem(x, train=train))
        out = {"stem": x}
        for i, block in enumerate(self.blocks):
            x = block(x, train=train, rngs=rngs)
            if i < len(self.transitions):
                out[f"block{i + 1}"] = x
                x = self.transitions[i](x, train=train)
        out[f"block{len(self.blocks)}"] = jax.nn.relu(self.norm(x, use_running_average=not train))
        return out


for _depth, _blocks in {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}.items():
    register(
        f"densenet{_depth}",
        DenseNet,
        DenseNetConfig(blocks=_blocks),
        family="densenet",
        task="classify",
        test_overrides={
            "input_shape": (32, 32, 3),
            "growth": 4,
            "blocks": (2, 2),
            "stem_width": 8,
            "dropout": 0.2,
        },
        description=f"DenseNet-{_depth}, k=32, blocks {'-'.join(map(str, _blocks))} "
        "(Huang et al. 2017, Table 1)",
    )
