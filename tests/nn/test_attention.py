"""Attention: parity with Keras 3's MultiHeadAttention, masks, positions, MACs and FLOPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import create_model
from jaxdl.bench.flops import attention_macs, transformer_training_flops, xla_flops
from jaxdl.bench.summary import summarize
from jaxdl.errors import JaxdlError
from jaxdl.functional import make_apply, named_leaves, split
from jaxdl.nn.attention import (
    MultiHeadAttention,
    apply_rotary,
    causal_mask,
    dot_product_attention,
    sinusoidal_positions,
)
from jaxdl.train import LanguageModelTask, make_optimizer
from jaxdl.train.state import TrainState
from jaxdl.train.steps import make_train_step

# Keras sub-layer -> our parameter (the whole conversion table)
KERAS_TO_OURS = {
    "_query_dense": "query",
    "_key_dense": "key",
    "_value_dense": "value",
    "_output_dense": "out",
}


def keras_mha_and_ours(d=16, d_kv=12, heads=4, seed=0):
    import keras

    km = keras.layers.MultiHeadAttention(num_heads=heads, key_dim=d // heads)
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(2, 5, d)).astype(np.float32)
    c = rng.normal(size=(2, 7, d_kv)).astype(np.float32)
    km(q, c)  # build with the cross-attention shapes
    ours = MultiHeadAttention(heads, d, kv_features=d_kv, rngs=nnx.Rngs(1))
    for k_name, o_name in KERAS_TO_OURS.items():
        k_layer, o_layer = getattr(km, k_name), getattr(ours, o_name)
        # Keras initialises biases to zero: randomise them so the copy is really tested
        k_layer.bias.assign(rng.normal(size=k_layer.bias.shape).astype(np.float32))
        o_layer.kernel[...] = jnp.asarray(k_layer.kernel.numpy())
        o_layer.bias[...] = jnp.asarray(k_layer.bias.numpy())
    return km, ours, q, c


def test_keras_parity_cross_attention_with_mask():
    km, ours, q, c = keras_mha_and_ours()
    np.testing.assert_allclose(ours(q, c), km(q, c), atol=1e-5)
    mask = np.random.default_rng(3).random((2, 5, 7)) > 0.4
    mask[:, :, 0] = True  # no fully masked row
    np.testing.assert_allclose(ours(q, c, mask=mask), km(q, c, attention_mask=mask), atol=1e-5)


def test_keras_parity_self_attention_causal_and_padding():
    km, ours, q, _ = keras_mha_and_ours(d_kv=16)
    np.testing.assert_allclose(ours(q), km(q, q), atol=1e-5)
    np.testing.assert_allclose(ours(q, is_causal=True), km(q, q, use_causal_mask=True), atol=1e-5)
    pad = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    keras_mask = pad[:, None, :] & np.tril(np.ones((5, 5), bool))[None]
    np.testing.assert_allclose(
        ours(q, mask=pad[:, None, None, :], is_causal=True),
        km(q, q, attention_mask=keras_mask),
        atol=1e-5,
    )


def test_attention_matches_the_formula():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(kk, (2, 6, 3, 8)) for kk in (k1, k2, k3))
    s = jnp.einsum("bthd,bshd->bhts", q, k) / jnp.sqrt(8.0)
    s = jnp.where(jnp.tril(jnp.ones((6, 6), bool)), s, -jnp.inf)
    ref = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(s, -1), v)
    np.testing.assert_allclose(dot_product_attention(q, k, v, is_causal=True), ref, atol=1e-5)
    np.testing.assert_allclose(dot_product_attention(q, k, v, mask=causal_mask(6)), ref, atol=1e-5)


def test_bad_mask_and_heads():
    q = jnp.ones((2, 5, 3, 4))
    msg = r"does not broadcast to \(batch, heads, query_len, key_len\)"
    with pytest.raises(JaxdlError, match=msg):
        dot_product_attention(q, q, q, mask=jnp.ones((2, 1, 4, 5), bool))
    with pytest.raises(JaxdlError, match="does not broadcast"):
        dot_product_attention(q, q, q, mask=jnp.ones((5,), bool))
    with pytest.raises(JaxdlError, match="num_heads=5 does not divide the model width 16"):
        MultiHeadAttention(5, 16, rngs=nnx.Rngs(0))
    with pytest.raises(JaxdlError, match="num_heads=5 does not divide"):
        create_model("gpt_mini", num_heads=5)


def test_sinusoidal_positions():
    pe = sinusoidal_positions(50, 8)
    p, k = 7, 2  # PE[p, 2k] = sin(p / 10000^(2k/d)), PE[p, 2k+1] = cos(...)
    w = 1 / 10000 ** (2 * k / 8)
    np.testing.assert_allclose(pe[p, 2 * k], np.sin(p * w), rtol=1e-6)
    np.testing.assert_allclose(pe[p, 2 * k + 1], np.cos(p * w), rtol=1e-6)
    np.testing.assert_array_equal(pe[0, 1::2], 1.0)


def test_rotary_scores_depend_on_relative_position_only():
    q, k = jax.random.normal(jax.random.key(0), (2, 1, 1, 1, 16))
    score = lambda i, j: jnp.sum(apply_rotary(q, jnp.array([i])) * apply_rotary(k, jnp.array([j])))  # noqa: E731
    np.testing.assert_allclose(score(3, 1), score(10, 8), rtol=1e-4)
    assert abs(float(score(3, 1) - score(3, 2))) > 1e-3
    # rotation preserves the norm
    np.testing.assert_allclose(
        jnp.linalg.norm(apply_rotary(q, jnp.array([5]))), jnp.linalg.norm(q), rtol=1e-5
    )


def test_summary_counts_attention_products():
    m = create_model("gpt_mini", rngs=nnx.Rngs(0))
    c = m.config
    s = summarize(m, jax.ShapeDtypeStruct((2, c.context), jnp.int32))
    d, t, ff = c.d_model, c.context, 4 * c.d_model
    dense = 2 * t * c.num_layers * (4 * d * d + 2 * d * ff) + 2 * t * d * c.vocab_size
    attn = c.num_layers * attention_macs(2, c.num_heads, t, t, d // c.num_heads)
    # the tied head (wte.attend) is not an nnx leaf the summary counts: compare without it
    assert s.macs == dense + attn - 2 * t * d * c.vocab_size


def test_training_flops_helper_agrees_with_xla_for_gpt_mini():
    m = create_model("gpt_mini", rngs=nnx.Rngs(0))
    c = m.config
    graphdef, params, state = split(m)
    # weights that multiply: everything but the position table
    n = sum(int(v.size) for k, v in named_leaves(params).items() if not k.startswith("wpe/"))
    tx = make_optimizer("adam", 1e-3)
    task = LanguageModelTask(c.vocab_size)
    step = make_train_step(make_apply(graphdef), tx, task)
    ts = TrainState.create(params, state, tx, 0)
    b, t = 8, c.context
    batch = {
        "x": jnp.zeros((b, t), jnp.int32),
        "y": jnp.zeros((b, t), jnp.int32),
        "weight": jnp.ones((b,)),
    }
    measured = xla_flops(step, ts, batch)
    predicted = transformer_training_flops(n, c.num_layers, c.d_model, t, tokens=b * t)
    assert abs(measured / predicted - 1) < 0.10, (measured, predicted)
