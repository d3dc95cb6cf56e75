"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
recognition", Fig. 2). `lenet5` has full C3 connectivity (the common modern reading): 61,706
parameters for 10 classes (published).

`lenet5_paper` is the paper's network (section II.B): S2 and S4 are trainable subsamplings (the
sum of each 2x2 window times a trainable coefficient plus a trainable bias per map, then the
squashing function), C3 connects its 16 maps to the 6 S2 maps through Table I (`C3_TABLE`: six
maps see 3 contiguous maps, six see 4 contiguous, three see 4 discontinuous, one sees all six:
1,516 trainable parameters), the squashing function is 1.7159 tanh(2a/3) (appendix A), and the
output layer is 10 Euclidean RBF units y_i = sum_j (x_j - w_ij)^2 over F6's 84 outputs
(distances: small is likely; use -y as logits). Trainable parameters per the paper's layer
counts: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164 = 60,000; the RBF centres (840)
are fixed as in the paper (`rbf_trainable=True` makes them trainable). The paper's centres are
stylised 7x12 bitmaps of the characters; here they are a fixed random +-1 code per class.

    32x32x1 -> C1 conv 6@5x5 -> S2 pool 2 -> C3 conv 16@5x5 -> S4 pool 2 -> C5 120 -> F6 84 -> 10

Smaller inputs: LeCun placed the 28x28 MNIST digits in the centre of a 32x32 field, so an input
of side 28..31 is zero-padded (centred) to 32x32; a smaller one (scikit-learn's 8x8 digits) is
bilinearly resized to 32x32 (`fit='auto'`; 'pad' or 'resize' force one). Inputs of 32 or more
are used as they are (C5 then sees more than 5x5 and is a Linear on the flattened maps).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.activations import get_activation
from jaxdl.nn.blocks import ClassifierConfig, ConvNet, make_head
from jaxdl.nn.conv import AvgPool, ConvBN, MaxPool, avg_pool, conv_output_size

FIELD = 32  # LeNet-5's input field


@dataclass(frozen=True)
class LeNetConfig(ClassifierConfig):
    input_shape: tuple[int, int, int] = (32, 32, 1)
    num_classes: int = 10
    activation: str = "tanh"  # the paper's squashing function (a scaled tanh)
    pool: str = "avg"  # the paper's subsampling; 'max' is the common modern choice
    widths: tuple[int, int] = (6, 16)  # C1, C3 feature maps
    fc: tuple[int, int] = (120, 84)  # C5, F6
    fit: str = "auto"  # 'auto' | 'pad' | 'resize' for inputs smaller than 32x32
    c3: str = "full"  # 'full' | 'table' (the paper's Table I)
    output: str = "linear"  # 'linear' (logits) | 'rbf' (the paper's Euclidean RBF units)
    rbf_trainable: bool = False  # the paper keeps the RBF centres fixed


# LeCun et al. 1998, Table I: for each of C3's 16 maps, the S2 maps it takes as input.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip


def _fan_in_uniform(key, shape, fan_in):
    """The paper's initialisation (section II.B / appendix): U(-2.4 / F, 2.4 / F), F the fan-in."""
    return jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0) * (2.4 / fan_in)


class SparseConv(nnx.Module):
    """A valid kxk convolution whose output map j sees only the input maps `table[j]` (C3).
    Parameters `kernel` [k, k, connections] (one kxk filter per connection), `bias` [cout].
    x: [B, H, W, cin] -> [B, H-k+1, W-k+1, len(table)]."""

    def __init__(
        self, cin: int, table, kernel: int = 5, *, activation: str = "tanh", rngs: nnx.Rngs
    ):
        ins = [i for row in table for i in row]
        if not ins or min(ins) < 0 or max(ins) >= cin:
            raise JaxdlError(f"SparseConv: table refers to input maps outside 0..{cin - 1}")
        self.cin, self.cout, self.k = cin, len(table), kernel
        self.ins = tuple(ins)
        self.outs = tuple(j for j, row in enumerate(table) for _ in row)
        fan = jnp.asarray([kernel * kernel * len(table[j]) for j in self.outs], jnp.float32)
        self.kernel = nnx.Param(
            _fan_in_uniform(rngs.params(), (kernel, kernel, len(ins)), 1.0) / fan
        )
        self.bias = nnx.Param(jnp.zeros((self.cout,)))
        self.act = get_activation(activation)

    def dense_kernel(self):
        """[k, k, cin, cout] with zeros where the table has no connection."""
        k = jnp.zeros((self.k, self.k, self.cin, self.cout), self.kernel.dtype)
        return k.at[:, :, jnp.asarray(self.ins), jnp.asarray(self.outs)].set(self.kernel[...])

    def __call__(self, x, *, train: bool = False, rngs=None):
        y = jax.lax.conv_general_dilated(
            x,
            self.dense_kernel().astype(x.dtype),
            (1, 1),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return self.act(y + self.bias[...])


class Subsample(nnx.Module):
    """LeNet-5's S2 / S4: per map, act(coef * (sum of the 2x2 window) + bias), stride 2.
    Parameters `coef` [C], `bias` [C]. x: [B, H, W, C] -> [B, H/2, W/2, C]."""

    def __init__(self, channels: int, *, activation: str = "tanh", rngs: nnx.Rngs):
        self.coef = nnx.Param(_fan_in_uniform(rngs.params(), (channels,), 4.0))
        self.bias = nnx.Param(jnp.zeros((channels,)))
        self.act = get_activation(activation)

    def __call__(self, x, *, train: bool = False, rngs=None):
        return self.act(avg_pool(x, 2) * 4.0 * self.coef[...] + self.bias[...])


class RBFCentres(nnx.Variable):
    """Fixed (not trained) RBF parameter vectors: not an nnx.Param, so optimisers skip them."""


class RBF(nnx.Module):
    """Euclidean radial basis units: y_i = sum_j (x_j - w_ij)^2. x: [B, d] -> [B, units].
    Variable `centres` [units, d], initialised to +-1 (the paper's bitmap codes are +-1)."""

    def __init__(self, d: int, units: int, *, trainable: bool = False, rngs: nnx.Rngs):
        code = jnp.where(jax.random.bernoulli(rngs.params(), 0.5, (units, d)), 1.0, -1.0)
        self.centres = nnx.Param(code) if trainable else RBFCentres(code)

    def __call__(self, x, *, train: bool = False, rngs=None):
        c = self.centres[...]
        return jnp.sum(jnp.square(x[:, None, :] - c[None]), axis=-1)


class RBFHead(nnx.Module):
    """The paper's top: flatten -> C5 (Linear + squashing) -> F6 (Linear + squashing) -> RBF.
    Parameters `hidden/0`, `hidden/1`, `rbf/centres`. x: [B, ...] -> [B, units] distances."""

    def __init__(self, d, hidden, units, *, activation, trainable, out_act, rngs: nnx.Rngs):
        widths = [d, *hidden]
        self.hidden = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.act, self.out_act = get_activation(activation), get_activation(out_act)
        self.rbf = RBF(widths[-1], units, trainable=trainable, rngs=rngs)

    def __call__(self, x, *, train: bool = False, rngs=None):
        x = x.reshape(x.shape[0], -1)
        for layer in self.hidden:
            x = self.act(layer(x))
        return self.out_act(self.rbf(x))


def fit_to_field(x, fit: str):
    """[B, h, w, C] with h, w <= 32 -> [B, 32, 32, C] by centred zero padding or resizing."""
    h, w = x.shape[1:3]
    if h >= FIELD and w >= FIELD:
        return x
    mode = ("pad" if min(h, w) >= 28 else "resize") if fit == "auto" else fit
    if mode == "pad":
        ph, pw = FIELD - h, FIELD - w
        return jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    return jax.image.resize(x, (x.shape[0], FIELD, FIELD, x.shape[3]), "bilinear")


class LeNet5(ConvNet):
    """x: [B, H, W, C] (H, W >= 8; below 32 fitted to 32) -> [B, num_classes] logits.
    Parameters `c1/conv`, `c3/conv`, `head/hidden/0` (C5), `head/hidden/1` (F6), `head/fc`."""

    family = "lenet"
    min_size = 8

    def __init__(self, config: LeNetConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        self.check_config()
        if c.fit not in ("auto", "pad", "resize"):
            raise JaxdlError(f"lenet: fit must be 'auto', 'pad' or 'resize', got {c.fit!r}")
        if c.pool not in ("avg", "max", "trainable"):
            raise JaxdlError(f"lenet: pool must be 'avg', 'max' or 'trainable', got {c.pool!r}")
        if c.c3 not in ("full", "table"):
            raise JaxdlError(f"lenet: c3 must be 'full' or 'table', got {c.c3!r}")
        if c.output not in ("linear", "rbf"):
            raise JaxdlError(f"lenet: output must be 'linear' or 'rbf', got {c.output!r}")
        if c.c3 == "table" and tuple(c.widths) != (6, 16):
            raise JaxdlError(f"lenet: c3='table' (Table I) needs widths (6, 16), got {c.widths}")

        def pool(ch):
            if c.pool == "trainable":
                return Subsample(ch, activation=c.activation, rngs=rngs)
            return AvgPool(2) if c.pool == "avg" else MaxPool(2)

        cin = c.input_shape[2]
        self.c1 = ConvBN(
            cin, c.widths[0], 5, padding="valid", bn=None, activation=c.activation, rngs=rngs
        )
        self.s2 = pool(c.widths[0])
        if c.c3 == "table":
            self.c3 = SparseConv(c.widths[0], C3_TABLE, 5, activation=c.activation, rngs=rngs)
        else:
            self.c3 = ConvBN(
                c.widths[0],
                c.widths[1],
                5,
                padding="valid",
                bn=None,
                activation=c.activation,
                rngs=rngs,
            )
        self.s4 = pool(c.widths[1])
        side = [max(n, FIELD) for n in c.input_shape[:2]]
        for _ in range(2):  # conv 5 valid, pool 2
            side = [conv_output_size(conv_output_size(n, 5), 2, 2) for n in side]
        if c.output == "rbf" and c.include_top:
            self.head = RBFHead(
                side[0] * side[1] * c.widths[1],
                c.fc,
                c.num_classes,
                activation=c.activation,
                trainable=c.rbf_trainable,
                out_act=c.classifier_activation,
                rngs=rngs,
            )
            return
        self.head = make_head(
            c,
            side[0] * side[1] * c.widths[1],
            pool="flatten",
            hidden=c.fc,
            hidden_activation=c.activation,
            rngs=rngs,
        )

    def features(self, x, *, train=False, rngs=None):
        x = fit_to_field(x, self.config.fit)
        c1 = self.c1(x)
        s2 = self.s2(c1)
        c3 = self.c3(s2)
        return {"c1": c1, "s2": s2, "c3": c3, "s4": self.s4(c3)}


register(
    "lenet5",
    LeNet5,
    LeNetConfig(),
    family="lenet",
    task="classify",
    test_overrides={"input_shape": (28, 28, 1), "dropout": 0.3},
    description="LeNet-5 (LeCun et al. 1998), 32x32x1, full C3, 61,706 params",
)
register(
    "lenet5_paper",
    LeNet5,
    LeNetConfig(activation="scaled_tanh", pool="trainable", c3="table", output="rbf"),
    family="lenet",
    task="classify",
    test_overrides={},  # 60,000 parameters at 32x32: tiny already
    description="LeNet-5 as in the paper: trainable subsampling, Table I's sparse C3, RBF "
    "output; 60,000 trainable params",
)
