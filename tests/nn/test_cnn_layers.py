"""Convolution arithmetic and the course's worked examples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.bench.summary import summarize
from jaxdl.errors import JaxdlError
from jaxdl.functional import param_counts
from jaxdl.nn import (
    AvgPool,
    ConvBN,
    Flatten,
    MaxPool,
    SeparableConv,
    avg_pool,
    conv_output_size,
    conv_params,
    global_pool,
    max_pool,
    receptive_field,
)


def _conv(cin, cout, k, **kw):
    return ConvBN(cin, cout, k, bn=None, activation=None, rngs=nnx.Rngs(0), **kw)


def test_vertical_edge_5x5():
    """A 5x5 image, bright left half, dark right; the 3x3 vertical-edge kernel [1 0 -1] per row
    (cross-correlation, as in every framework) gives 3x3 'valid' output lighting up at the edge."""
    img = jnp.array([[10, 10, 10, 0, 0]] * 5, jnp.float32)[None, :, :, None]
    conv = _conv(1, 1, 3, padding="valid")
    conv.conv.kernel[...] = jnp.array([[1, 0, -1]] * 3, jnp.float32)[:, :, None, None]
    conv.conv.bias[...] = jnp.zeros((1,))
    out = conv(img)[0, :, :, 0]
    np.testing.assert_array_equal(np.asarray(out), [[0, 30, 30]] * 3)
    # 'same' keeps 5x5; the border columns see the zero padding
    conv_same = _conv(1, 1, 3)
    conv_same.conv.kernel[...] = conv.conv.kernel[...]
    conv_same.conv.bias[...] = jnp.zeros((1,))
    out = conv_same(img)[0, :, :, 0]
    np.testing.assert_array_equal(np.asarray(out[2]), [-30, 0, 30, 30, 0])


# The 3-channel example: an RGB 3x3 patch, one kernel per channel, bias 1; the channel sums
# 148 + (-8) + (-166) plus the bias give -25.
PATCH = np.array(
    [
        [[156, 155, 156], [153, 154, 157], [149, 151, 155]],  # R
        [[167, 166, 167], [164, 165, 168], [160, 162, 166]],  # G
        [[163, 162, 163], [160, 161, 164], [156, 158, 161]],  # B
    ],
    np.float32,
)
KERNELS = np.array(
    [
        [[-1, -1, 1], [0, 1, -1], [0, 1, 1]],
        [[1, 0, 0], [1, -1, -1], [1, 0, -1]],
        [[-1, 0, 0], [0, 0, -1], [0, 0, 1]],
    ],
    np.float32,
)


def test_three_channel_example_gives_minus_25():
    per_channel = (PATCH * KERNELS).sum(axis=(1, 2))
    np.testing.assert_array_equal(per_channel, [148, -8, -166])
    conv = _conv(3, 1, 3, padding="valid")
    conv.conv.kernel[...] = jnp.asarray(KERNELS.transpose(1, 2, 0)[:, :, :, None])
    conv.conv.bias[...] = jnp.ones((1,))
    x = jnp.asarray(PATCH.transpose(1, 2, 0))[None]
    assert conv(x).shape == (1, 1, 1, 1)
    assert float(conv(x)[0, 0, 0, 0]) == -25.0


def test_804554_parameter_network():
    """28x28x1 -> Conv 32 3x3 same -> MaxPool 2 -> Flatten -> Dense 128 -> Dense 10."""
    rngs = nnx.Rngs(0)
    net = nnx.Sequential(
        ConvBN(1, 32, 3, bn=None, rngs=rngs),
        MaxPool(2),
        Flatten(),
        nnx.Linear(14 * 14 * 32, 128, rngs=rngs),
        jax.nn.relu,
        nnx.Linear(128, 10, rngs=rngs),
    )
    counts = param_counts(net)
    assert counts["trainable"] == 804_554
    assert counts["trainable"] == conv_params(3, 1, 32) + (6272 + 1) * 128 + (128 + 1) * 10
    assert net(jnp.zeros((2, 28, 28, 1))).shape == (2, 10)


@pytest.mark.parametrize("padding", ["valid", "same", "same_symmetric", 2])
@pytest.mark.parametrize(
    "n,k,s,d",
    [
        (5, 3, 1, 1),
        (28, 3, 2, 1),
        (227, 11, 4, 1),
        (32, 5, 1, 1),
        (17, 3, 1, 2),
        (6, 2, 1, 1),
        (8, 4, 3, 1),
        (224, 7, 2, 1),
        (10, 1, 2, 1),
    ],
)
def test_output_size_formula_matches_the_conv(padding, n, k, s, d):
    conv = _conv(1, 2, k, stride=s, padding=padding, dilation=d)
    shape = jax.eval_shape(lambda x: conv(x), jax.ShapeDtypeStruct((1, n, n, 1), jnp.float32)).shape
    assert shape == (1, *(conv_output_size(n, k, s, padding, d),) * 2, 2)
    if padding == "valid":
        assert shape[1] == (n - d * (k - 1) - 1) // s + 1
    if padding == "same" or (padding == "same_symmetric" and k % 2 == 1):
        assert shape[1] == -(-n // s)  # ceil(n / s)


def test_conv1d_for_sequences():
    conv = ConvBN(4, 8, 5, stride=2, padding="valid", ndim=1, bn=None, rngs=nnx.Rngs(0))
    y = conv(jnp.ones((3, 50, 4)))
    assert y.shape == (3, conv_output_size(50, 5, 2), 8)
    assert param_counts(conv)["trainable"] == (5 * 4 + 1) * 8


@pytest.mark.parametrize("depth,expected", [(1, 3), (2, 5), (3, 7)])
def test_receptive_field_of_stacked_3x3(depth, expected):
    assert receptive_field([(3, 1)] * depth) == expected
    # measured: the input pixels that influence the centre output of `depth` stacked 3x3 convs
    rngs = nnx.Rngs(1)
    convs = [ConvBN(1, 1, 3, bn=None, activation=None, rngs=rngs) for _ in range(depth)]
    for c in convs:
        c.conv.kernel[...] = jnp.ones_like(c.conv.kernel[...])

    def centre(x):
        for c in convs:
            x = c(x)
        return x[0, 7, 7, 0]

    g = jax.grad(centre)(jnp.zeros((1, 15, 15, 1)))[0, :, :, 0]
    rows, cols = np.nonzero(np.asarray(g))
    assert rows.max() - rows.min() + 1 == expected and cols.max() - cols.min() + 1 == expected
    assert receptive_field([(3, 2), (3, 2)]) == 7  # strides widen it


def test_param_count_formula_groups_and_separable():
    dw = ConvBN(32, 32, 3, groups=32, bn=None, rngs=nnx.Rngs(0))
    assert param_counts(dw)["trainable"] == conv_params(3, 32, 32, groups=32) == (9 + 1) * 32
    sep = SeparableConv(32, 64, rngs=nnx.Rngs(0))
    assert param_counts(sep)["trainable"] == 9 * 32 + 32 * 64
    bn = ConvBN(3, 16, 3, rngs=nnx.Rngs(0))  # BN: no conv bias, gamma and beta trainable
    assert param_counts(bn) == {
        "trainable": 27 * 16 + 32,
        "non_trainable": 32,
        "total": 27 * 16 + 64,
    }
    with pytest.raises(JaxdlError, match="groups"):
        ConvBN(6, 8, 3, groups=4, rngs=nnx.Rngs(0))
    with pytest.raises(JaxdlError, match="padding"):
        ConvBN(3, 8, 3, padding="full", rngs=nnx.Rngs(0))


def test_pooling_values():
    x = jnp.arange(16, dtype=jnp.float32).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(max_pool(x, 2)[0, :, :, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(avg_pool(x, 2)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(global_pool(x, "max"), [[15.0]])
    np.testing.assert_array_equal(global_pool(x, "avg"), [[7.5]])
    # padding: counted in the average (torch default) or not (Keras)
    ones = jnp.ones((1, 3, 3, 1))
    assert float(avg_pool(ones, 3, 1, 1)[0, 0, 0, 0]) == pytest.approx(4 / 9)
    assert float(avg_pool(ones, 3, 1, 1, count_include_pad=False)[0, 0, 0, 0]) == 1.0
    # ceil mode keeps the last partial window (GoogLeNet: 112 -> 56)
    assert max_pool(jnp.zeros((1, 112, 112, 1)), 3, 2, ceil_mode=True).shape[1] == 56
    assert max_pool(jnp.zeros((1, 112, 112, 1)), 3, 2).shape[1] == 55
    assert MaxPool(2)(x).shape == AvgPool(2)(x).shape == (1, 2, 2, 1)
    with pytest.raises(JaxdlError, match="pooling"):
        global_pool(x, "sum")


@pytest.mark.parametrize("padding,stride", [("same", 1), ("valid", 2), ("same", 2)])
def test_conv_matches_keras(padding, stride):
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 10, 3)).astype(np.float32)
    layer = keras.layers.Conv2D(
        4, 3, strides=stride, padding="valid" if padding == "valid" else "same"
    )
    ref = np.asarray(layer(x))
    conv = _conv(3, 4, 3, stride=stride, padding=padding)
    conv.conv.kernel[...] = jnp.asarray(layer.kernel.numpy())
    conv.conv.bias[...] = jnp.asarray(layer.bias.numpy())
    np.testing.assert_allclose(np.asarray(conv(jnp.asarray(x))), ref, rtol=1e-5, atol=1e-5)


def test_summary_of_composed_network_reports_macs():
    rngs = nnx.Rngs(0)
    net = nnx.Sequential(
        ConvBN(1, 32, 3, bn=None, rngs=rngs), MaxPool(2), Flatten(), nnx.Linear(6272, 10, rngs=rngs)
    )

    class Wrap(nnx.Module):
        def __init__(self):
            self.net = net

        def __call__(self, x, *, train=False, rngs=None):
            return self.net(x)

    s = summarize(Wrap(), jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32))
    assert s.macs == 28 * 28 * 32 * 9 + 6272 * 10
