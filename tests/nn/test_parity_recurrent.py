"""Recurrent layers against Keras 3 (JAX backend) over seeded random configurations: SimpleRNN,
LSTM, GRU (both reset_after), masks, go_backwards, initial state, state carried across calls
(stateful, reset_states), bias_initializer, Bidirectional in every merge mode (None: both
directions). Weights are copied; the worst error is printed (-s)."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.nn.recurrent import GRU, LSTM, Bidirectional, RecurrentStack, SimpleRNN

keras = pytest.importorskip("keras")

KINDS = {"rnn": (SimpleRNN, "SimpleRNN"), "lstm": (LSTM, "LSTM"), "gru": (GRU, "GRU")}


def _copy(k_layer, ours):
    cell = k_layer.cell
    ours.cell.kernel[...] = jnp.asarray(cell.kernel.numpy())
    ours.cell.recurrent_kernel[...] = jnp.asarray(cell.recurrent_kernel.numpy())
    ours.cell.bias[...] = jnp.asarray(cell.bias.numpy())


def _pair(kind, d, u, rng, **opts):
    ours_cls, keras_name = KINDS[kind]
    k_opts = dict(opts)
    if kind == "gru":
        k_opts.setdefault("reset_after", True)
    ours = ours_cls(d, u, rngs=nnx.Rngs(0), **{k: v for k, v in opts.items()})
    k_layer = getattr(keras.layers, keras_name)(u, bias_initializer="he_normal", **k_opts)
    return k_layer, ours


def _diff(a, b):
    a = a if isinstance(a, (tuple, list)) else (a,)
    b = b if isinstance(b, (tuple, list)) else (b,)
    assert len(a) == len(b)
    return max(
        float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(a, b, strict=True)
    )


def test_random_configurations_equal_keras():
    rng = np.random.default_rng(0)
    worst = 0.0
    for i in range(9):
        kind = ("rnn", "lstm", "gru")[i % 3]
        b, t, d, u = 3, int(rng.integers(2, 7)), int(rng.integers(1, 5)), int(rng.integers(1, 6))
        opts = dict(
            return_sequences=bool(rng.integers(0, 2)),
            return_state=bool(rng.integers(0, 2)),
            go_backwards=bool(rng.integers(0, 2)),
        )
        if kind == "gru":
            opts["reset_after"] = bool(rng.integers(0, 2))
        x = rng.normal(size=(b, t, d)).astype(np.float32)
        mask = rng.random((b, t)) > 0.3
        mask[:, 0] = True
        n_states = 2 if kind == "lstm" else 1
        init = [rng.normal(size=(b, u)).astype(np.float32) for _ in range(n_states)]
        k_layer, ours = _pair(kind, d, u, rng, **opts)
        k_layer(x)
        _copy(k_layer, ours)
        ref = k_layer(x, mask=mask, initial_state=init)
        y = ours(jnp.asarray(x), mask=jnp.asarray(mask), initial_state=tuple(init))
        worst = max(worst, _diff(y, ref))
    print(f"recurrent (masks, go_backwards, initial state): worst |diff| {worst:.2e}")
    assert worst < 1e-5


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_stateful_carries_state_across_calls_as_keras(kind):
    rng = np.random.default_rng(1)
    x1, x2 = (rng.normal(size=(2, 4, 3)).astype(np.float32) for _ in range(2))
    k_layer, ours = _pair(kind, 3, 5, rng, stateful=True, return_sequences=True)
    k_layer(x1)
    k_layer.reset_states()
    _copy(k_layer, ours)
    errs = [_diff(ours(jnp.asarray(x)), k_layer(x)) for x in (x1, x2)]
    second = np.asarray(ours(jnp.asarray(x1)))  # from the carried state: differs from a fresh run
    k_layer(x1)
    fresh = ours.__class__(3, 5, return_sequences=True, rngs=nnx.Rngs(0))
    _copy(k_layer, fresh)
    assert np.abs(second - np.asarray(fresh(jnp.asarray(x1)))).max() > 1e-3
    k_layer.reset_states()
    ours.reset_states()
    errs.append(_diff(ours(jnp.asarray(x2)), k_layer(x2)))
    print(f"stateful {kind}: worst |diff| {max(errs):.2e}")
    assert max(errs) < 1e-5
    with pytest.raises(JaxdlError, match="batch size"):
        ours(jnp.zeros((3, 4, 3)))
    with pytest.raises(JaxdlError, match="reset_states needs stateful=True"):
        fresh.reset_states()


def test_stateful_under_the_functional_view_carries_state():
    from jaxdl.functional import pure

    layer = LSTM(3, 4, stateful=True, batch_size=2, return_sequences=True, rngs=nnx.Rngs(0))
    apply, params, state = pure(layer)
    x = jnp.ones((2, 3, 3))
    y1, state = apply(params, state, x)
    y2, state = apply(params, state, x)
    y_long = LSTM(3, 4, return_sequences=True, rngs=nnx.Rngs(0))(jnp.ones((2, 6, 3)))
    np.testing.assert_allclose(y2, y_long[:, 3:], atol=1e-6)
    assert not np.allclose(y1, y2)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_bias_initializer_as_keras(kind):
    ours_cls, name = KINDS[kind]
    for init in ("ones", "zeros"):
        k_layer = getattr(keras.layers, name)(4, bias_initializer=init)
        k_layer(np.zeros((1, 2, 3), np.float32))
        ours = ours_cls(3, 4, bias_init=init, rngs=nnx.Rngs(0))
        np.testing.assert_array_equal(np.asarray(ours.cell.bias[...]), k_layer.cell.bias.numpy())


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_merge_modes_equal_keras(merge_mode):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    kb = keras.layers.Bidirectional(
        keras.layers.GRU(4, return_sequences=True, return_state=True, bias_initializer="he_normal"),
        merge_mode=merge_mode,
    )
    kb(x)
    ob = Bidirectional.of(
        "gru",
        3,
        4,
        merge_mode=merge_mode,
        return_sequences=True,
        return_state=True,
        rngs=nnx.Rngs(0),
    )
    _copy(kb.forward_layer, ob.forward)
    _copy(kb.backward_layer, ob.backward)
    ref, y = kb(x, mask=mask), ob(jnp.asarray(x), mask=jnp.asarray(mask))
    assert len(y) == len(ref) == (4 if merge_mode is None else 3)  # GRU: one state each way
    err = _diff(y, ref)
    print(f"Bidirectional merge_mode={merge_mode}: worst |diff| {err:.2e}")
    assert err < 1e-5


def test_bad_merge_mode_names_the_option_and_the_choices():
    with pytest.raises(
        JaxdlError, match=r"unknown merge mode 'bogus'.*ave, concat, mul, sum, None"
    ):
        Bidirectional.of("lstm", 3, 4, merge_mode="bogus", rngs=nnx.Rngs(0))
    with pytest.raises(JaxdlError, match="merge_mode=None"):
        RecurrentStack("lstm", 3, [4, 4], bidirectional=True, merge_mode=None, rngs=nnx.Rngs(0))
