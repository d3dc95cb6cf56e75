"""Convolutions and pooling against Keras 3 (JAX backend) over seeded random configurations and
grids of H, F, S and dilation: output sizes (the course's 'same': ceil(H / S), the extra pixel
at the end) and values with copied weights. The worst error per family is printed (-s)."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.nn.conv import (
    ConvBN,
    avg_pool,
    conv_output_size,
    conv_transpose_output_size,
    max_pool,
    same_pads,
)

keras = pytest.importorskip("keras")


def _ours(cin, cout, k, s, pad, d, groups, ndim):
    return ConvBN(
        cin,
        cout,
        k,
        stride=s,
        padding=pad,
        dilation=d,
        groups=groups,
        bn=None,
        activation=None,
        ndim=ndim,
        rngs=nnx.Rngs(0),
    )


def _configs(n, seed):
    """Random (ndim, H, k, s, d, padding, depthwise) with Keras's constraints (no stride > 1
    with dilation > 1; causal only in 1-D; valid only where the window fits)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        ndim = int(rng.integers(1, 3))
        h, k, s, d = (int(rng.integers(a, b)) for a, b in ((4, 13), (1, 6), (1, 4), (1, 3)))
        if s > 1 and d > 1:
            continue
        pad = str(rng.choice(["valid", "same", "causal"] if ndim == 1 else ["valid", "same"]))
        if pad == "valid" and d * (k - 1) + 1 > h:
            continue
        depthwise = bool(rng.integers(0, 2)) and pad != "causal"  # Keras: causal in Conv1D only
        out.append((ndim, h, k, s, d, pad, depthwise))
    return out


def test_conv_random_configurations_equal_keras():
    worst, rng = 0.0, np.random.default_rng(1)
    for ndim, h, k, s, d, pad, depthwise in _configs(12, 0):
        cin = 4
        shape = (2, h, cin) if ndim == 1 else (2, h, h + 1, cin)
        x = rng.normal(size=shape).astype(np.float32)
        if depthwise:
            cls = keras.layers.DepthwiseConv1D if ndim == 1 else keras.layers.DepthwiseConv2D
            layer = cls(k, strides=s, padding=pad, dilation_rate=d, bias_initializer="he_normal")
            ref = np.asarray(layer(x))
            kernel = layer.kernel.numpy().reshape(*layer.kernel.shape[:-2], 1, cin)
            ours = _ours(cin, cin, k, s, pad, d, cin, ndim)
        else:
            cls = keras.layers.Conv1D if ndim == 1 else keras.layers.Conv2D
            layer = cls(6, k, strides=s, padding=pad, dilation_rate=d, bias_initializer="he_normal")
            ref = np.asarray(layer(x))
            kernel = layer.kernel.numpy()
            ours = _ours(cin, 6, k, s, pad, d, 1, ndim)
        ours.conv.kernel[...] = jnp.asarray(kernel)
        ours.conv.bias[...] = jnp.asarray(layer.bias.numpy())
        y = np.asarray(ours(jnp.asarray(x)))
        assert y.shape == ref.shape, (ndim, h, k, s, d, pad, depthwise)
        assert y.shape[1] == conv_output_size(h, k, s, pad, d)
        worst = max(worst, float(np.abs(y - ref).max()))
    print(f"conv (1-D/2-D, groups 1 / depthwise, valid/same/causal): worst |diff| {worst:.2e}")
    assert worst < 1e-4


def test_pooling_random_configurations_equal_keras():
    rng = np.random.default_rng(2)
    worst = 0.0
    for _ in range(12):
        ndim, h = int(rng.integers(1, 3)), int(rng.integers(4, 13))
        k, s = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        pad = str(rng.choice(["valid", "same"]))
        if pad == "valid" and k > h:
            continue
        x = rng.normal(size=(2, h, 3) if ndim == 1 else (2, h, h + 2, 3)).astype(np.float32)
        for kind in ("max", "avg"):
            name = ("MaxPooling" if kind == "max" else "AveragePooling") + f"{ndim}D"
            ref = np.asarray(getattr(keras.layers, name)(k, strides=s, padding=pad)(x))
            if kind == "max":
                y = max_pool(jnp.asarray(x), k, s, pad)
            else:  # Keras's 'same' average divides by the real pixels under the window
                y = avg_pool(jnp.asarray(x), k, s, pad, count_include_pad=False)
            assert y.shape == ref.shape, (kind, ndim, h, k, s, pad)
            assert y.shape[1] == conv_output_size(h, k, s, pad)
            worst = max(worst, float(np.abs(np.asarray(y) - ref).max()))
    print(f"pooling (max / average, 1-D/2-D, valid/same): worst |diff| {worst:.2e}")
    assert worst < 1e-5


@pytest.mark.parametrize("s", [1, 2, 3, 4])
def test_same_is_ceil_over_a_grid_with_the_extra_pixel_at_the_end(s):
    """The formula: out = ceil(H / S); total padding max((ceil(H/S) - 1) S + d(k - 1) + 1 - H, 0)
    split with the extra pixel at the end, checked by the conv's own output (an impulse)."""
    for h in range(5, 21):
        for k in range(1, 9):
            for d in (1, 2) if s == 1 else (1,):
                out = conv_output_size(h, k, s, "same", d)
                assert out == -(-h // s)
                lo, hi = same_pads(h, k, s, d)
                total = max((-(-h // s) - 1) * s + d * (k - 1) + 1 - h, 0)
                assert (lo + hi, hi - lo) == (total, total % 2)
    # measured on the conv: a one-hot kernel tap reads x[i*s - lo] at output i
    for h, k in ((6, 2), (7, 4), (10, 3)):
        conv = _ours(1, 1, k, s, "same", 1, 1, 1)
        conv.conv.kernel[...] = jnp.zeros((k, 1, 1)).at[0, 0, 0].set(1.0)
        conv.conv.bias[...] = jnp.zeros((1,))
        x = jnp.arange(1.0, h + 1)[None, :, None]
        y = np.asarray(conv(x))[0, :, 0]
        lo, _ = same_pads(h, k, s)
        want = [float(i * s - lo + 1) if i * s - lo >= 0 else 0.0 for i in range(len(y))]
        np.testing.assert_array_equal(y, want)


def test_the_issue_cases_and_the_symmetric_option():
    """H=5, F=2, S=1 'same' gives 5 (it gave 4 under the symmetric rule, still available);
    MaxPool(2, padding='same') pads an odd input at the end."""
    assert conv_output_size(5, 2, 1, "same") == 5
    assert conv_output_size(5, 2, 1, "same_symmetric") == 4
    x = jnp.zeros((1, 5, 5, 1))
    assert _ours(1, 1, 2, 1, "same", 1, 1, 2)(x).shape == (1, 5, 5, 1)
    assert _ours(1, 1, 2, 1, "same_symmetric", 1, 1, 2)(x).shape == (1, 4, 4, 1)
    assert max_pool(x, 2, padding="same").shape == (1, 3, 3, 1)
    # torchvision's grid on an even input at stride 2: 'same' pads (0, 1), symmetric (1, 1)
    assert same_pads(8, 3, 2) == (0, 1)
    one = jnp.arange(8.0)[None, :, None]
    conv = _ours(1, 1, 3, 2, "same_symmetric", 1, 1, 1)
    conv.conv.kernel[...] = jnp.zeros((3, 1, 1)).at[1, 0, 0].set(1.0)
    conv.conv.bias[...] = jnp.zeros((1,))
    np.testing.assert_array_equal(np.asarray(conv(one))[0, :, 0], [0, 2, 4, 6])


def test_transposed_conv_output_size_equals_keras():
    for h, k, s, pad in [
        (4, 3, 2, "same"),
        (5, 2, 2, "valid"),
        (7, 5, 3, "valid"),
        (3, 1, 2, "same"),
    ]:
        layer = keras.layers.Conv2DTranspose(2, k, strides=s, padding=pad)
        shape = layer.compute_output_shape((1, h, h, 3))
        assert shape[1] == conv_transpose_output_size(h, k, s, pad)


def test_bad_padding_options_name_what_is_allowed():
    with pytest.raises(JaxdlError, match="stride > 1 together with dilation > 1"):
        _ours(2, 2, 3, 2, "same", 2, 1, 2)
    with pytest.raises(JaxdlError, match="'causal' is for 1-D"):
        _ours(2, 2, 3, 1, "causal", 1, 1, 2)
    with pytest.raises(JaxdlError, match="padding must be one of .*'same_symmetric'.*got 'full'"):
        _ours(2, 2, 3, 1, "full", 1, 1, 2)
    with pytest.raises(JaxdlError, match="pooling padding"):
        max_pool(jnp.zeros((1, 4, 1)), 2, padding="causal")
