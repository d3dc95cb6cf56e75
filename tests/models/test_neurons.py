"""Perceptron (delta rule) and MLP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import create_model
from jaxdl.errors import JaxdlError
from jaxdl.models.mlp import delta_rule_epoch, train_perceptron
from jaxdl.nn import ACTIVATIONS, get_activation

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)


@pytest.mark.parametrize("name,d", [("OR", [0, 1, 1, 1]), ("AND", [0, 0, 0, 1])])
def test_perceptron_converges_on_linearly_separable(name, d):
    p = create_model("perceptron")
    res = train_perceptron(p, X, np.array(d), eta=0.1, max_epochs=50)
    assert res.converged and res.corrections[-1] == 0
    np.testing.assert_array_equal(np.asarray(p(X))[:, 0], d)


def test_perceptron_reports_non_convergence_on_xor():
    p = create_model("perceptron")
    res = train_perceptron(p, X, np.array([0, 1, 1, 0]), eta=0.1, max_epochs=30)
    assert not res.converged and res.epochs == 30
    assert all(c > 0 for c in res.corrections)


def test_delta_rule_is_the_formula():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 1)).astype(np.float32)
    b = np.zeros(1, np.float32)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    d = rng.integers(0, 2, size=(6, 1)).astype(np.float32)
    w2, b2, trace = delta_rule_epoch(
        jnp.asarray(w), jnp.asarray(b), jnp.asarray(x), jnp.asarray(d), 0.3
    )
    for i in range(6):  # the same rule by hand, one observation at a time
        y = float(x[i] @ w[:, 0] + b[0] >= 0)
        w = w + 0.3 * (d[i, 0] - y) * x[i][:, None]
        b = b + 0.3 * (d[i, 0] - y)
        np.testing.assert_allclose(trace["w"][i], w, rtol=1e-6)
    np.testing.assert_allclose(w2, w, rtol=1e-6)
    np.testing.assert_allclose(b2, b, rtol=1e-6)


def test_perceptron_bad_input():
    p = create_model("perceptron")
    with pytest.raises(JaxdlError, match="eta"):
        train_perceptron(p, X, [0, 1, 1, 1], eta=0)
    with pytest.raises(JaxdlError, match="input shape"):
        p(np.ones((4, 3), np.float32))


@pytest.mark.parametrize(
    "act", ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "softmax", "maxout"]
)
def test_mlp_any_activation_depth_width(act):
    m = create_model("mlp", hidden=(9, 7, 5), activation=act, rngs=nnx.Rngs(0))
    y = m(jax.random.normal(jax.random.key(0), (4, 64)))
    assert y.shape == (4, 10) and bool(jnp.all(jnp.isfinite(y)))
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
    pieces = 2 if act == "maxout" else 1
    expected = (64 * 9 + 9) * pieces + (9 * 7 + 7) * pieces + (7 * 5 + 5) * pieces + 5 * 10 + 10
    assert n_params == expected


def test_activations_values():
    x = jnp.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(get_activation("relu")(x), [0, 0, 3])
    np.testing.assert_allclose(get_activation("leaky_relu")(x), [-0.4, 0, 3], rtol=1e-6)
    np.testing.assert_allclose(get_activation("heaviside")(x), [0, 1, 1])
    np.testing.assert_allclose(
        get_activation("softplus")(x), np.log1p(np.exp([-2.0, 0.0, 3.0])), rtol=1e-6
    )
    np.testing.assert_allclose(get_activation("elu")(x), [np.expm1(-2.0), 0, 3], rtol=1e-6)
    assert set(ACTIVATIONS) >= {
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "elu",
        "softplus",
        "softmax",
    }
    with pytest.raises(JaxdlError, match="unknown activation"):
        get_activation("relux")


def test_mlp_input_shape_error():
    m = create_model("mlp")
    with pytest.raises(
        JaxdlError, match=r"input shape \(2, 10\) does not fit the model; expected \(B, 64\)"
    ):
        m(jnp.ones((2, 10)))


def test_autodiff_equals_hand_derived_chain_rule():
    """2-layer sigmoid net, squared error: backprop by hand (the course's derivation)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    t = rng.normal(size=(5, 2))
    W1, b1 = rng.normal(size=(3, 4)), rng.normal(size=4)
    W2, b2 = rng.normal(size=(4, 2)), rng.normal(size=2)
    sig = lambda z: 1 / (1 + np.exp(-z))

    def loss(params):
        W1, b1, W2, b2 = params
        h = jax.nn.sigmoid(x @ W1 + b1)
        y = jax.nn.sigmoid(h @ W2 + b2)
        return 0.5 * jnp.sum((y - t) ** 2)

    g = jax.grad(loss)([jnp.asarray(a) for a in (W1, b1, W2, b2)])
    h = sig(x @ W1 + b1)
    y = sig(h @ W2 + b2)
    delta2 = (y - t) * y * (1 - y)  # dE/dz2
    delta1 = (delta2 @ W2.T) * h * (1 - h)  # dE/dz1
    want_all = [x.T @ delta1, delta1.sum(0), h.T @ delta2, delta2.sum(0)]
    for got, want in zip(g, want_all, strict=False):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)  # float32 autodiff vs float64
