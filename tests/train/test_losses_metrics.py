"""Losses and metrics against scikit-learn on random data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from jaxdl.train import losses
from jaxdl.train.metrics import accuracy, classification_metrics, confusion_matrix, top_k_accuracy


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    C = 5
    logits = rng.normal(size=(300, C)).astype(np.float32)
    y = rng.integers(0, C, 300)
    # make predictions informative but imperfect
    logits[np.arange(300), y] += rng.normal(1.0, 1.0, 300).astype(np.float32)
    return logits, y, C


def test_cross_entropy_int_and_onehot_equal_sklearn(data):
    logits, y, C = data
    ce_int = losses.categorical_cross_entropy(jnp.asarray(logits), jnp.asarray(y))
    ce_hot = losses.categorical_cross_entropy(jnp.asarray(logits), jax.nn.one_hot(y, C))
    np.testing.assert_allclose(ce_int, ce_hot, rtol=1e-6)
    probs = jax.nn.softmax(logits)
    np.testing.assert_allclose(ce_int.mean(), skm.log_loss(y, probs, labels=range(C)), rtol=1e-5)
    np.testing.assert_allclose(
        losses.categorical_cross_entropy(probs, jnp.asarray(y), from_logits=False),
        ce_int,
        rtol=1e-4,
    )


def test_binary_cross_entropy_and_mse(data):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(100, 1)).astype(np.float32)
    t = rng.integers(0, 2, 100)
    p = 1 / (1 + np.exp(-z[:, 0]))
    np.testing.assert_allclose(
        losses.binary_cross_entropy(jnp.asarray(z), jnp.asarray(t)).mean(),
        skm.log_loss(t, p),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        losses.binary_cross_entropy(
            jnp.asarray(p[:, None]), jnp.asarray(t), from_logits=False
        ).mean(),
        skm.log_loss(t, p),
        rtol=1e-4,
    )
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    np.testing.assert_allclose(
        losses.mean_squared_error(jnp.asarray(a), jnp.asarray(b)).mean(),
        skm.mean_squared_error(a, b),
        rtol=1e-5,
    )


def test_metrics_equal_sklearn(data):
    logits, y, C = data
    pred = logits.argmax(-1)
    cm = jax.jit(confusion_matrix, static_argnums=2)(jnp.asarray(y), jnp.asarray(pred), C)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=range(C)))
    m = jax.jit(classification_metrics)(cm)
    np.testing.assert_allclose(m["accuracy"], skm.accuracy_score(y, pred), rtol=1e-6)
    np.testing.assert_allclose(
        accuracy(jnp.asarray(y), jnp.asarray(pred)), skm.accuracy_score(y, pred), rtol=1e-6
    )
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        np.testing.assert_allclose(m[f"precision_{avg}"], p, rtol=1e-5)
        np.testing.assert_allclose(m[f"recall_{avg}"], r, rtol=1e-5)
        np.testing.assert_allclose(m[f"f1_{avg}"], f, rtol=1e-5)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    np.testing.assert_allclose(m["precision_per_class"], p, rtol=1e-5)
    np.testing.assert_allclose(m["sensitivity_per_class"], r, rtol=1e-5)
    np.testing.assert_allclose(m["f1_per_class"], f, rtol=1e-5)
    np.testing.assert_array_equal(m["support"], s)
    # specificity = TN / (TN + FP) = recall of the negative class, one-vs-rest
    for c in range(C):
        spec = skm.recall_score(y != c, pred != c)
        np.testing.assert_allclose(m["specificity_per_class"][c], spec, rtol=1e-5)
    for k in (1, 2, 3):
        np.testing.assert_allclose(
            top_k_accuracy(jnp.asarray(logits), jnp.asarray(y), k),
            skm.top_k_accuracy_score(y, logits, k=k, labels=range(C)),
            rtol=1e-6,
        )


def test_weighted_confusion_matrix_ignores_padding():
    y = jnp.array([0, 1, 1, 2])
    p = jnp.array([0, 1, 0, 2])
    cm = confusion_matrix(y, p, 3, weights=jnp.array([1.0, 1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(cm, np.diag([1, 1, 1]))
