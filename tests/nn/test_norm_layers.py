"""Layer / group / instance normalisation and local response normalisation (jaxdl.nn.norm):
equal to Keras 3's LayerNormalization / GroupNormalization with copied weights, and LRN equal to
the AlexNet formula and to tf.nn.local_response_normalization's definition, both computed by
hand in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.compose import Chain
from jaxdl.nn.norm import GroupNorm, InstanceNorm, LayerNorm, LocalResponseNorm, local_response_norm


@pytest.fixture(scope="module")
def keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("Keras parity needs KERAS_BACKEND=jax")
    return keras


def _rand(shape, seed=0):
    return np.random.default_rng(seed).normal(2.0, 3.0, shape).astype(np.float32)


def _set(layer, gamma, beta):
    layer.scale[...] = jnp.asarray(gamma)
    layer.bias[...] = jnp.asarray(beta)


@pytest.mark.parametrize("axis,shape", [(-1, (3, 5, 7)), ((1, 2), (2, 4, 6, 3)), (1, (2, 4, 6))])
def test_layer_norm_equals_keras(keras, axis, shape):
    x = _rand(shape)
    ref = keras.layers.LayerNormalization(axis=axis)
    ref.build(x.shape)
    feats = tuple(shape[a] for a in ((axis,) if isinstance(axis, int) else axis))
    g, b = _rand(feats, 1), _rand(feats, 2)
    ref.set_weights([g, b])
    ours = LayerNorm(feats if len(feats) > 1 else feats[0], axis=axis)
    _set(ours, g, b)
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(x))), np.asarray(ref(x)), atol=2e-5)


@pytest.mark.parametrize("groups,shape", [(2, (2, 5, 6, 8)), (4, (3, 7, 8)), (8, (2, 3, 4, 8))])
def test_group_norm_equals_keras(keras, groups, shape):
    x = _rand(shape)
    ref = keras.layers.GroupNormalization(groups=groups)
    ref.build(x.shape)
    g, b = _rand(shape[-1:], 1), _rand(shape[-1:], 2)
    ref.set_weights([g, b])
    ours = GroupNorm(shape[-1], groups)
    _set(ours, g, b)
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(x))), np.asarray(ref(x)), atol=2e-5)


def test_instance_norm_equals_keras_groups_minus_one(keras):
    x = _rand((2, 6, 5, 4))
    ref = keras.layers.GroupNormalization(groups=-1)
    ref.build(x.shape)
    g, b = _rand((4,), 1), _rand((4,), 2)
    ref.set_weights([g, b])
    for ours in (InstanceNorm(4), GroupNorm(4, -1)):
        _set(ours, g, b)
        np.testing.assert_allclose(np.asarray(ours(jnp.asarray(x))), np.asarray(ref(x)), atol=2e-5)
    # instance norm: every (example, channel) has mean beta and std ~gamma over space
    y = np.asarray(InstanceNorm(4)(jnp.asarray(x)))
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1.0, atol=2e-4)  # eps 1e-3 against var ~9


def test_norm_layers_compose_and_count():
    m = Chain(ln=LayerNorm(8), gn=GroupNorm(8, 2), inorm=InstanceNorm(8), lrn=LocalResponseNorm())
    y = m(jnp.ones((2, 3, 3, 8)) * jnp.arange(8.0), train=True, rngs=nnx.Rngs(0))
    assert y.shape == (2, 3, 3, 8) and bool(jnp.all(jnp.isfinite(y)))
    assert (
        LayerNorm(8, use_bias=False).bias is None and GroupNorm(8, 2, use_scale=False).scale is None
    )


def test_norm_bad_input():
    with pytest.raises(JaxdlError, match="groups must divide"):
        GroupNorm(10, 4)
    with pytest.raises(JaxdlError, match=r"\[B, \.\.\., 8\]"):
        GroupNorm(8, 2)(jnp.ones((2, 4, 6)))
    with pytest.raises(JaxdlError, match="built for"):
        LayerNorm(5)(jnp.ones((2, 4)))
    with pytest.raises(JaxdlError, match="axis 3 is outside"):
        LayerNorm(4, axis=3)(jnp.ones((2, 4)))
    with pytest.raises(JaxdlError, match="positive odd"):
        LocalResponseNorm(n=4)


def _lrn_paper(a, n, k, alpha, beta):
    """Krizhevsky et al. 2012, section 3.3, literally: sums from max(0, i - n/2) to
    min(N - 1, i + n/2)."""
    N = a.shape[-1]
    b = np.empty_like(a, dtype=np.float64)
    for i in range(N):
        lo, hi = max(0, i - n // 2), min(N - 1, i + n // 2)
        s = np.sum(a[..., lo : hi + 1].astype(np.float64) ** 2, axis=-1)
        b[..., i] = a[..., i] / (k + alpha * s) ** beta
    return b


def _lrn_tf(x, depth_radius, bias, alpha, beta):
    """tf.nn.local_response_normalization's documented definition: sqr_sum[a, b, c, d] =
    sum(input[a, b, c, d - depth_radius : d + depth_radius + 1] ** 2);
    output = input / (bias + alpha * sqr_sum) ** beta."""
    x = x.astype(np.float64)
    out = np.empty_like(x)
    for d in range(x.shape[-1]):
        sl = x[..., max(0, d - depth_radius) : d + depth_radius + 1]
        out[..., d] = x[..., d] / (bias + alpha * np.sum(sl**2, axis=-1)) ** beta
    return out


def test_local_response_norm_paper_and_tf_definition():
    x = _rand((2, 3, 4, 11)) * 30  # large enough that the normaliser matters
    ours = np.asarray(LocalResponseNorm()(jnp.asarray(x)))  # AlexNet: k=2, n=5, 1e-4, 0.75
    np.testing.assert_allclose(ours, _lrn_paper(x, 5, 2.0, 1e-4, 0.75), rtol=1e-5)
    np.testing.assert_allclose(ours, _lrn_tf(x, 2, 2.0, 1e-4, 0.75), rtol=1e-5)
    assert np.max(np.abs(ours - x / 2**0.75)) > 1e-2  # the neighbours change the result
    other = np.asarray(local_response_norm(jnp.asarray(x), 3, 1.0, 1e-3, 0.5))
    np.testing.assert_allclose(other, _lrn_tf(x, 1, 1.0, 1e-3, 0.5), rtol=1e-5)
    g = jax.grad(lambda v: local_response_norm(v).sum())(jnp.asarray(x))
    assert bool(jnp.all(jnp.isfinite(g)))
