"""Dense (with Keras's options), normalisation and the MLP head without bias against Keras 3
(JAX backend), seeded random configurations; the worst error is printed (-s)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import create_model
from jaxdl.errors import JaxdlError
from jaxdl.functional import activity_loss, param_counts, pure
from jaxdl.nn import Dense
from jaxdl.nn.conv import BN, batch_norm
from jaxdl.train.optim import Regularizer

keras = pytest.importorskip("keras")


def test_dense_random_configurations_equal_keras_with_their_losses():
    rng = np.random.default_rng(0)
    worst = worst_loss = 0.0
    for _ in range(6):
        d, u = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        act = str(rng.choice(["relu", "tanh", "sigmoid", "linear"]))
        use_bias = bool(rng.integers(0, 2))
        l1, l2 = (float(v) for v in rng.random(2) * 0.1)
        regs = {
            "kernel_regularizer": (l1, l2),
            "bias_regularizer": (l2, l1) if use_bias else None,
            "activity_regularizer": (l1, 0.0),
        }
        kl = keras.layers.Dense(
            u,
            activation=act,
            use_bias=use_bias,
            bias_initializer="he_normal",
            **{k: v and keras.regularizers.L1L2(*v) for k, v in regs.items()},
        )
        x = rng.normal(size=(4, 3, d)).astype(np.float32)  # rank 3: the last axis is dense
        ref = np.asarray(kl(x))
        ours = Dense(
            d,
            u,
            activation=None if act == "linear" else act,
            use_bias=use_bias,
            rngs=nnx.Rngs(0),
            **{k: v and Regularizer(*v) for k, v in regs.items()},
        )
        ours.kernel[...] = jnp.asarray(kl.kernel.numpy())
        if use_bias:
            ours.bias[...] = jnp.asarray(kl.bias.numpy())
        apply, params, state = pure(ours)
        y, new_state = apply(params, state, jnp.asarray(x))
        worst = max(worst, float(np.abs(np.asarray(y) - ref).max()))
        keras_loss = float(sum(np.asarray(v) for v in kl.losses))
        worst_loss = max(worst_loss, abs(float(activity_loss(new_state)) - keras_loss))
        assert param_counts(ours)["trainable"] == d * u + (u if use_bias else 0)
    print(f"Dense: worst |diff| {worst:.2e}, worst penalty |diff| {worst_loss:.2e}")
    assert worst < 1e-5 and worst_loss < 1e-4


def test_dense_penalty_has_the_keras_gradient():
    ours = Dense(3, 2, kernel_regularizer=Regularizer(l2=0.5), rngs=nnx.Rngs(0))
    apply, params, state = pure(ours)

    def loss(p):
        _, s = apply(p, state, jnp.ones((1, 3)))
        return activity_loss(s)

    g = jax.grad(loss)(params)
    np.testing.assert_allclose(g["kernel"][...], 2 * 0.5 * params["kernel"][...], rtol=1e-6)


def test_dense_bad_input():
    with pytest.raises(JaxdlError, match="kernel_regularizer"):
        Dense(3, 2, kernel_regularizer="l2", rngs=nnx.Rngs(0))
    with pytest.raises(JaxdlError, match=r"expected \(\.\.\., 3\)"):
        Dense(3, 2, rngs=nnx.Rngs(0))(jnp.ones((2, 4)))


def test_batch_norm_random_configurations_equal_keras():
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(4):
        c = int(rng.integers(1, 6))
        mom, eps = float(rng.choice([0.9, 0.99])), float(rng.choice([1e-3, 1e-5]))
        kl = keras.layers.BatchNormalization(momentum=mom, epsilon=eps)
        x = rng.normal(size=(8, 3, c)).astype(np.float32) * 2 + 1
        kl(x)
        for w, v in zip(
            kl.weights,
            (rng.random(c) + 0.5, rng.normal(size=c), rng.normal(size=c), rng.random(c) + 0.5),
            strict=True,
        ):
            w.assign(v.astype(np.float32))
        ours = batch_norm(c, BN(mom, eps), nnx.Rngs(0))
        ours.scale[...], ours.bias[...] = (
            jnp.asarray(kl.gamma.numpy()),
            jnp.asarray(kl.beta.numpy()),
        )
        ours.mean[...] = jnp.asarray(kl.moving_mean.numpy())
        ours.var[...] = jnp.asarray(kl.moving_variance.numpy())
        ref_eval = np.asarray(kl(x, training=False))
        ref_train = np.asarray(kl(x, training=True))
        y_eval = np.asarray(ours(jnp.asarray(x), use_running_average=True))
        y_train = np.asarray(ours(jnp.asarray(x), use_running_average=False))
        worst = max(
            worst,
            float(np.abs(y_eval - ref_eval).max()),
            float(np.abs(y_train - ref_train).max()),
            float(np.abs(np.asarray(ours.mean[...]) - kl.moving_mean.numpy()).max()),
            float(np.abs(np.asarray(ours.var[...]) - kl.moving_variance.numpy()).max()),
        )
    print(f"BatchNorm (eval, train, moving statistics): worst |diff| {worst:.2e}")
    assert worst < 1e-4


def test_mlp_head_without_bias():
    m = create_model("mlp", hidden=(8,), head_bias=False)
    assert "bias" not in dict(m.head.__dict__) or m.head.bias is None
    with_bias = create_model("mlp", hidden=(8,))
    assert param_counts(with_bias)["trainable"] - param_counts(m)["trainable"] == 10
    kl = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(10, use_bias=False)]
    )
    m.layers[0].kernel[...] = jnp.asarray(kl.layers[0].kernel.numpy())
    m.layers[0].bias[...] = jnp.asarray(kl.layers[0].bias.numpy())
    m.head.kernel[...] = jnp.asarray(kl.layers[1].kernel.numpy())
    x = np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(m(jnp.asarray(x))), np.asarray(kl(x)), atol=1e-5)
    assert param_counts(m)["trainable"] == kl.count_params()
