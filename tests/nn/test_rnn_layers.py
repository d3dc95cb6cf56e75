"""Recurrent layers: parity with Keras 3 (JAX backend), the scan driver's invariants, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.functional import count_params, pure
from jaxdl.nn import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    Embedding,
    GRUCell,
    LSTMCell,
    RecurrentStack,
    SimpleRNN,
    SimpleRNNCell,
    TimeDistributed,
    get_cell,
    masking,
)
from jaxdl.train import make_optimizer

keras = pytest.importorskip("keras")

B, T, D, U = 3, 7, 5, 4
RNG = np.random.default_rng(0)
X = RNG.normal(size=(B, T, D)).astype(np.float32)
# trailing padding, leading padding and a gap: the state must be carried through each
MASK = np.ones((B, T), bool)
MASK[0, 5:] = False
MASK[1, :2] = False
MASK[2, 3] = False

# (keras layer, our layer, options); GRU in both reset_after settings
CASES = {
    "rnn": (keras.layers.SimpleRNN, SimpleRNN, {}),
    "lstm": (keras.layers.LSTM, LSTM, {}),
    "gru": (keras.layers.GRU, GRU, {"reset_after": True}),
    "gru_reset_before": (keras.layers.GRU, GRU, {"reset_after": False}),
}


def copy_keras(ours: RNN, klayer) -> None:
    """Keras's [kernel, recurrent_kernel, bias] into our cell (same names, shapes, gate order)."""
    kernel, recurrent, bias = klayer.get_weights()
    ours.cell.kernel[...] = kernel
    ours.cell.recurrent_kernel[...] = recurrent
    ours.cell.bias[...] = bias


def random_weights(klayer, seed=1):
    """Replace Keras's initial weights with random ones (so zero biases hide nothing)."""
    r = np.random.default_rng(seed)
    klayer.set_weights(
        [r.normal(scale=0.5, size=w.shape).astype(np.float32) for w in klayer.get_weights()]
    )


def assert_close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_keras_parity(name, masked, go_backwards):
    kcls, ours_cls, opts = CASES[name]
    kl = kcls(U, return_sequences=True, return_state=True, go_backwards=go_backwards, **opts)
    mask = MASK if masked else None
    kl(X, mask=mask)
    random_weights(kl)
    ours = ours_cls(
        D,
        U,
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        rngs=nnx.Rngs(0),
        **opts,
    )
    copy_keras(ours, kl)
    ky = kl(X, mask=mask)
    y = ours(jnp.asarray(X), mask=None if mask is None else jnp.asarray(mask))
    assert len(y) == len(ky) == (3 if name == "lstm" else 2)  # output, h (, c)
    for a, b in zip(y, ky, strict=True):
        assert_close(a, b)
    # the last output (return_sequences=False) and an initial state, too
    kl2 = kcls(U, go_backwards=go_backwards, **opts)
    kl2(X)
    kl2.set_weights(kl.get_weights())
    ours2 = ours_cls(D, U, go_backwards=go_backwards, rngs=nnx.Rngs(0), **opts)
    copy_keras(ours2, kl)
    init = [RNG.normal(size=(B, U)).astype(np.float32) for _ in ky[1:]]
    assert_close(
        ours2(
            jnp.asarray(X),
            mask=None if mask is None else jnp.asarray(mask),
            initial_state=[jnp.asarray(s) for s in init],
        ),
        kl2(X, mask=mask, initial_state=init),
    )


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("masked", [False, True])
def test_keras_gradient_parity(name, masked):
    """Gradients w.r.t. the weights and the input equal Keras's, over 20 steps (two chunks of the
    input projection; the LSTM's hand-written backward pass)."""
    kcls, ours_cls, opts = CASES[name]
    x = RNG.normal(size=(B, 20, D)).astype(np.float32)
    mask = np.ones((B, 20), bool)
    mask[0, 13:] = mask[1, :4] = mask[2, 9] = False
    mask = mask if masked else None
    kl = kcls(U, return_sequences=True, go_backwards=masked, **opts)
    kl(x)
    random_weights(kl, seed=3)
    ours = ours_cls(D, U, return_sequences=True, go_backwards=masked, rngs=nnx.Rngs(0), **opts)
    copy_keras(ours, kl)
    w = np.asarray(RNG.normal(size=(B, 20, U)), np.float32)  # a loss that weighs every output

    fixed = [v.value for v in kl.non_trainable_variables]

    def keras_loss(weights, x):
        y, _ = kl.stateless_call(weights, fixed, x, mask=mask)
        return jnp.sum(y * w)

    graphdef, params, rest = nnx.split(ours, nnx.Param, ...)
    m = None if mask is None else jnp.asarray(mask)

    def our_loss(params, x):
        return jnp.sum(nnx.merge(graphdef, params, rest)(x, mask=m) * w)

    weights = [jnp.asarray(v) for v in kl.get_weights()]
    kg = jax.grad(keras_loss, argnums=(0, 1))(weights, jnp.asarray(x))
    pg, xg = jax.grad(our_loss, argnums=(0, 1))(params, jnp.asarray(x))
    g = [pg["cell"][k][...] for k in ("kernel", "recurrent_kernel", "bias")], xg
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(kg), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("masked", [False, True])
def test_keras_bidirectional_lstm_parity(merge_mode, masked):
    kl = keras.layers.Bidirectional(
        keras.layers.LSTM(U, return_sequences=True, return_state=True), merge_mode=merge_mode
    )
    mask = MASK if masked else None
    kl(X, mask=mask)
    random_weights(kl)
    ours = Bidirectional.of(
        "lstm",
        D,
        U,
        merge_mode=merge_mode,
        return_sequences=True,
        return_state=True,
        rngs=nnx.Rngs(0),
    )
    copy_keras(ours.forward, kl.forward_layer)
    copy_keras(ours.backward, kl.backward_layer)
    ky = kl(X, mask=mask)
    y = ours(jnp.asarray(X), mask=None if mask is None else jnp.asarray(mask))
    assert len(y) == 5  # output, forward (h, c), backward (h, c)
    for a, b in zip(y, ky, strict=True):
        assert_close(a, b)
    assert y[0].shape == (B, T, 2 * U if merge_mode == "concat" else U)


def test_keras_masking_layer_and_stacked_parity():
    """Keras Sequential: Masking -> LSTM (sequences) -> GRU; ours: masking + RecurrentStack."""
    x = X.copy()
    x[~MASK] = 0.0
    km = keras.Sequential(
        [
            keras.Input((T, D)),
            keras.layers.Masking(0.0),
            keras.layers.LSTM(U, return_sequences=True),
            keras.layers.LSTM(6),
        ]
    )
    random_weights(km)
    stack = RecurrentStack("lstm", D, (U, 6), return_sequences=False, rngs=nnx.Rngs(0))
    for ours, kl in zip(stack.layers, km.layers[1:], strict=True):
        copy_keras(ours, kl)
    assert_close(stack(jnp.asarray(x), mask=masking(jnp.asarray(x))), km(x))


@pytest.mark.parametrize("name", CASES)
def test_param_counts_follow_reference(name):
    kcls, ours_cls, opts = CASES[name]
    d, u = 13, 9
    formula = {
        "rnn": u * d + u * u + u,
        "lstm": 4 * (u * d + u * u + u),
        "gru": 3 * (u * d + u * u + 2 * u),
        "gru_reset_before": 3 * (u * d + u * u + u),
    }[name]
    ours = ours_cls(d, u, rngs=nnx.Rngs(0), **opts)
    assert count_params(nnx.state(ours, nnx.Param)) == formula
    kl = kcls(u, **opts)
    kl.build((None, 5, d))
    assert kl.count_params() == formula


def test_default_initialisation():
    cell = LSTMCell(6, 8, rngs=nnx.Rngs(0))
    b = np.asarray(cell.bias[...])
    assert (b[8:16] == 1).all() and (b[:8] == 0).all() and (b[16:] == 0).all()  # unit_forget_bias
    assert (
        np.asarray(LSTMCell(6, 8, unit_forget_bias=False, rngs=nnx.Rngs(0)).bias[...]) == 0
    ).all()
    r = np.asarray(cell.recurrent_kernel[...])  # [u, 4u] orthogonal: orthonormal rows
    np.testing.assert_allclose(r @ r.T, np.eye(8), atol=1e-5)
    k = np.asarray(cell.kernel[...])  # Glorot uniform over the fused [d, 4u] kernel
    assert np.abs(k).max() <= np.sqrt(6 / (6 + 32)) and k.std() > 0.5 * np.sqrt(2 / (6 + 32))


@pytest.mark.parametrize(
    "cell_cls,opts",
    [
        (SimpleRNNCell, {}),
        (LSTMCell, {}),
        (GRUCell, {"reset_after": True}),
        (GRUCell, {"reset_after": False}),
    ],
)
def test_scan_equals_python_loop_and_unroll(cell_cls, opts):
    cell = cell_cls(D, U, rngs=nnx.Rngs(3), **opts)
    layer = RNN(cell, return_sequences=True, return_state=True)
    x, m = jnp.asarray(X), jnp.asarray(MASK)
    y, *state = layer(x, mask=m)
    # the recurrence written as a Python loop over time, one cell step at a time
    s = cell.zero_state(B)
    outs = []
    for t in range(T):
        out, new = cell.step(cell.project(x[:, t]), s, None)
        mt = m[:, t, None]
        out = jnp.where(mt, out, s[0])
        s = tuple(jnp.where(mt, n, o) for n, o in zip(new, s, strict=True))
        outs.append(out)
    assert_close(y, jnp.stack(outs, 1))
    for a, b in zip(state, s, strict=True):
        assert_close(a, b)
    for unroll in (True, 3):
        y2, *_ = RNN(cell, return_sequences=True, return_state=True, unroll=unroll)(x, mask=m)
        assert_close(y2, y)


def test_gradients_through_time_finite_and_clipping():
    layer = SimpleRNN(D, U, return_sequences=True, rngs=nnx.Rngs(0))
    layer.cell.recurrent_kernel[...] = 3.0 * layer.cell.recurrent_kernel[...]  # exploding regime
    apply, params, state = pure(layer)
    x = jnp.asarray(np.repeat(X, 6, axis=1))  # 42 steps

    def loss(p):
        return jnp.sum(apply(p, state, x)[0][:, -1] * 100.0)  # the last output depends on all steps

    g = jax.grad(loss)(params)
    leaves = jax.tree.leaves(g)
    assert all(bool(jnp.isfinite(v).all()) and float(jnp.abs(v).max()) > 0 for v in leaves)
    assert float(optax.global_norm(g)) > 1.0
    tx = make_optimizer("sgd", 1.0, clip_norm=0.5)
    updates, _ = tx.update(g, tx.init(params), params)
    assert float(optax.global_norm(updates)) == pytest.approx(0.5, rel=1e-4)


def test_dropout_is_random_per_key_and_needs_rngs():
    layer = LSTM(D, U, dropout=0.3, recurrent_dropout=0.3, return_sequences=True, rngs=nnx.Rngs(0))
    x = jnp.asarray(X)
    a = layer(x, train=True, rngs=nnx.Rngs(dropout=1))
    b = layer(x, train=True, rngs=nnx.Rngs(dropout=1))
    c = layer(x, train=True, rngs=nnx.Rngs(dropout=2))
    assert_close(a, b)
    assert float(jnp.abs(a - c).max()) > 1e-3
    assert float(jnp.abs(layer(x) - a).max()) > 1e-3  # inference: no dropout
    with pytest.raises(JaxdlError, match="needs random streams"):
        layer(x, train=True)


def test_time_distributed_and_embedding():
    lin = nnx.Linear(D, 3, rngs=nnx.Rngs(0))
    x = jnp.asarray(X)
    assert_close(
        TimeDistributed(lin)(x), jnp.einsum("btd,dk->btk", x, lin.kernel[...]) + lin.bias[...]
    )
    emb = Embedding(10, 4, mask_zero=True, rngs=nnx.Rngs(0))
    ids = jnp.array([[1, 2, 0], [3, 0, 0]])
    assert emb(ids).shape == (2, 3, 4) and float(jnp.abs(emb.embeddings[...]).max()) <= 0.05
    assert emb.compute_mask(ids).tolist() == [[True, True, False], [True, False, False]]
    ke = keras.layers.Embedding(10, 4)
    ke.build((None, 3))
    emb.embeddings[...] = ke.get_weights()[0]
    assert_close(emb(ids), ke(np.asarray(ids)))
    with pytest.raises(JaxdlError, match="integer token ids"):
        emb(jnp.ones((2, 3)))


def test_bad_input_errors():
    layer = LSTM(D, U, rngs=nnx.Rngs(0))
    x = jnp.asarray(X)
    with pytest.raises(
        JaxdlError, match=r"input shape \(3, 7\) does not fit; expected \(B, T, 5\)"
    ):
        layer(x[..., 0])
    with pytest.raises(
        JaxdlError, match=r"input shape \(3, 7, 4\) does not fit; expected \(B, T, 5\)"
    ):
        layer(x[..., :4])
    with pytest.raises(JaxdlError, match=r"mask shape \(3, 6\) does not fit input \(3, 7, 5\)"):
        layer(x, mask=jnp.ones((3, 6), bool))
    with pytest.raises(
        JaxdlError, match=r"initial_state must be 2 array\(s\) \(h, c\) of shape \(3, 4\)"
    ):
        layer(x, initial_state=[jnp.zeros((3, 4))])
    with pytest.raises(JaxdlError, match=r"got shapes \[\(3, 4\), \(3, 5\)\]"):
        layer(x, initial_state=[jnp.zeros((3, 4)), jnp.zeros((3, 5))])
    with pytest.raises(JaxdlError, match="unknown recurrent cell 'lstn'. Did you mean: lstm"):
        get_cell("lstn")
    with pytest.raises(JaxdlError, match="unknown recurrent cell 'grux'"):
        RecurrentStack("grux", D, (U,), rngs=nnx.Rngs(0))
    with pytest.raises(JaxdlError, match="unknown merge mode 'max'"):
        Bidirectional.of("gru", D, U, merge_mode="max", rngs=nnx.Rngs(0))
    with pytest.raises(JaxdlError, match="dropout must be in"):
        GRU(D, U, dropout=1.0, rngs=nnx.Rngs(0))
