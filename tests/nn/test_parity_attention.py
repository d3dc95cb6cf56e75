"""MultiHeadAttention against keras.layers.MultiHeadAttention (Keras 3, JAX backend) over seeded
random configurations of every option: value_dim != key_dim, a separate key tensor,
output_shape, attention_axes, masks (attention, query, value, causal), returned scores; score
dropout compared for determinism and rate. The worst error is printed (-s)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.nn.attention import MultiHeadAttention, attention_with_scores

keras = pytest.importorskip("keras")

NAMES = {
    "_query_dense": "query",
    "_key_dense": "key",
    "_value_dense": "value",
    "_output_dense": "out",
}


def _copy(km, ours, rng):
    for k_name, o_name in NAMES.items():
        kl, ol = getattr(km, k_name), getattr(ours, o_name)
        kl.bias.assign(rng.normal(size=kl.bias.shape).astype(np.float32))
        ol.kernel[...] = jnp.asarray(kl.kernel.numpy())
        ol.bias[...] = jnp.asarray(kl.bias.numpy())


def test_random_configurations_equal_keras():
    rng = np.random.default_rng(0)
    worst = 0.0
    for i in range(6):
        heads, kd = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        vd = int(rng.choice([kd, kd + 2]))
        out = [None, 5, (2, 3)][i % 3]
        dq, dv, dk = 6, int(rng.integers(2, 7)), int(rng.integers(2, 7))
        t, s = int(rng.integers(2, 6)), int(rng.integers(2, 6))
        q = rng.normal(size=(2, t, dq)).astype(np.float32)
        v = rng.normal(size=(2, s, dv)).astype(np.float32)
        k = rng.normal(size=(2, s, dk)).astype(np.float32)
        km = keras.layers.MultiHeadAttention(heads, kd, value_dim=vd, output_shape=out)
        km(q, v, key=k, return_attention_scores=True)
        ours = MultiHeadAttention(
            heads,
            dq,
            kv_features=dv,
            key_features=dk,
            head_dim=kd,
            value_dim=vd,
            out_features=out,
            rngs=nnx.Rngs(0),
        )
        _copy(km, ours, rng)
        qm = rng.random((2, t)) > 0.3
        vm = rng.random((2, s)) > 0.3
        vm[:, 0] = True
        am = rng.random((2, t, s)) > 0.3
        causal = bool(i % 2) and t <= s
        keras_mask = qm[:, :, None] & vm[:, None, :] & am
        if causal:
            keras_mask &= np.tril(np.ones((t, s), bool))[None]
        ry, rs = km(q, v, key=k, attention_mask=keras_mask, return_attention_scores=True)
        y, sc = ours(
            q,
            v,
            key=k,
            mask=am,
            query_mask=qm,
            value_mask=vm,
            is_causal=causal,
            return_attention_scores=True,
        )
        worst = max(worst, float(np.abs(y - ry).max()), float(np.abs(sc - rs).max()))
        if vd == kd:  # the fast path (no scores) gives the same output where no row is empty
            full = km(q, v, key=k, attention_mask=vm[:, None, :] & am | np.eye(t, s, dtype=bool))
            fast = ours(q, v, key=k, mask=vm[:, None, :] & am | np.eye(t, s, dtype=bool))
            worst = max(worst, float(np.abs(fast - full).max()))
    print(f"MultiHeadAttention (value_dim, key, output_shape, masks): worst |diff| {worst:.2e}")
    assert worst < 1e-5


@pytest.mark.parametrize("axes", [(2,), (1, 3), (-2,), None])
def test_attention_axes_equal_keras(axes):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 2, 6)).astype(np.float32)
    km = keras.layers.MultiHeadAttention(2, 3, attention_axes=axes)
    km(x, x)
    ours = MultiHeadAttention(2, 6, head_dim=3, attention_axes=axes, rngs=nnx.Rngs(0))
    _copy(km, ours, rng)
    ry, rs = km(x, x, return_attention_scores=True)
    y, s = ours(x, return_attention_scores=True)
    assert s.shape == rs.shape
    err = max(float(np.abs(y - ry).max()), float(np.abs(s - rs).max()))
    err = max(err, float(np.abs(ours(x) - ry).max()))
    if axes == (2,):  # Keras's mask layout [B, *other, *Tq, *S]
        m = rng.random((2, 3, 2, 4, 4)) > 0.3
        m[..., 0] = True
        err = max(err, float(np.abs(ours(x, mask=m) - km(x, x, attention_mask=m)).max()))
    print(f"attention_axes={axes}: worst |diff| {err:.2e}")
    assert err < 1e-5


def test_score_dropout_is_deterministic_and_has_its_rate():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 16, 8)).astype(np.float32)
    km = keras.layers.MultiHeadAttention(2, 4, dropout=0.3)
    km(x, x)
    ours = MultiHeadAttention(2, 8, dropout=0.3, rngs=nnx.Rngs(0))
    _copy(km, ours, rng)
    np.testing.assert_allclose(ours(x), km(x, x), atol=1e-5)  # no dropout in evaluation
    a = ours(x, train=True, rngs=nnx.Rngs(dropout=1))
    b = ours(x, train=True, rngs=nnx.Rngs(dropout=1))
    c = ours(x, train=True, rngs=nnx.Rngs(dropout=2))
    np.testing.assert_array_equal(a, b)
    assert float(np.abs(a - c).max()) > 1e-3
    # the rate: with one-hot values the output is the dropped probability row itself
    q = jax.random.normal(jax.random.key(0), (8, 32, 2, 4))
    v = jnp.broadcast_to(jnp.eye(32)[None, :, None, :], (8, 32, 2, 32))
    used, probs = attention_with_scores(q, q, v, dropout=0.3, key=jax.random.key(1))
    used = jnp.swapaxes(used, 1, 2)  # [B, H, T, S]
    dropped = float(jnp.mean(used == 0))
    assert abs(dropped - 0.3) < 0.02
    kept = used != 0
    np.testing.assert_allclose(used[kept], (probs / 0.7)[kept], rtol=1e-5)
    # Keras's own dropout layer drops the same fraction
    k_rate = float(
        np.mean(np.asarray(keras.layers.Dropout(0.3)(np.ones((8, 2, 32, 32)), training=True)) == 0)
    )
    assert abs(k_rate - dropped) < 0.03
    with pytest.raises(JaxdlError, match="rngs"):
        ours(x, train=True)


def test_bad_attention_options():
    x = jnp.zeros((2, 3, 4, 6))
    with pytest.raises(JaxdlError, match=r"attention_axes=\(3,\).*rank 4.*1\.\.2"):
        MultiHeadAttention(2, 6, attention_axes=3, rngs=nnx.Rngs(0))(x)
    with pytest.raises(JaxdlError, match="attention_axes"):
        MultiHeadAttention(2, 6, attention_axes=(), rngs=nnx.Rngs(0))
    with pytest.raises(JaxdlError, match="dropout"):
        MultiHeadAttention(2, 6, dropout=1.5, rngs=nnx.Rngs(0))
    with pytest.raises(JaxdlError, match="rank-3"):
        MultiHeadAttention(2, 6, rngs=nnx.Rngs(0))(x, is_causal=True)
