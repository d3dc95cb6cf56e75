"""Bias-variance decompositions: exact identities, cases with a known answer, bad input."""

import numpy as np
import pytest

from jaxdl.data import ArrayDataset
from jaxdl.errors import JaxdlError
from jaxdl.train.bias_variance import bias_variance, decompose_01, decompose_mse


def test_mse_decomposition_is_exact():
    rng = np.random.default_rng(0)
    preds, t = rng.normal(size=(7, 50)), rng.normal(size=50)
    bv = decompose_mse(preds, t)
    direct = np.mean((preds - t) ** 2)
    np.testing.assert_allclose(bv.expected_loss, direct, rtol=1e-12)
    np.testing.assert_allclose(bv.bias + bv.variance, direct, rtol=1e-12)
    np.testing.assert_allclose(bv.variance, np.mean(preds.var(axis=0)), rtol=1e-12)
    # multi-output targets: squared error summed over the outputs
    bv2 = decompose_mse(rng.normal(size=(3, 10, 2)), rng.normal(size=(10, 2)))
    np.testing.assert_allclose(bv2.bias + bv2.variance, bv2.expected_loss, rtol=1e-12)


def test_bootstrap_variance_of_the_sample_mean_is_s2_over_n():
    """Predicting the training mean: over bootstrap resamples its variance is s^2 / n (s^2 the
    biased sample variance), and bias^2 is the squared distance of the data mean to the tests."""
    rng = np.random.default_rng(1)
    y = rng.normal(3.0, 2.0, size=100)
    train = ArrayDataset(np.zeros((100, 1)), y)
    t = np.array([1.0, 3.0, 6.0])
    bv = bias_variance(lambda ds, r: np.full(3, ds.y.mean()), train, t, rounds=4000, seed=0)
    np.testing.assert_allclose(bv.variance, y.var() / 100, rtol=0.08)
    np.testing.assert_allclose(bv.bias, np.mean((y.mean() - t) ** 2), rtol=0.01)


def test_simple_models_have_more_bias_and_less_variance_than_flexible_ones():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, 30)
    train = ArrayDataset(x, np.sin(3 * x) + rng.normal(0, 0.3, 30))
    x_test = np.linspace(-0.8, 0.8, 50)
    f_test = np.sin(3 * x_test)  # noise-free targets: bias against the true function

    def poly(degree):
        return lambda ds, r: np.polyval(np.polyfit(ds.x, ds.y, degree), x_test)

    line = bias_variance(poly(1), train, f_test, rounds=200)
    wiggly = bias_variance(poly(6), train, f_test, rounds=200)
    # measured: bias^2 0.091 vs 0.020, variance 0.018 vs 0.054
    assert line.bias > 2 * wiggly.bias and wiggly.variance > 2 * line.variance


def test_zero_one_decomposition_by_hand():
    # 4 models x 3 points, two classes; targets 0, 1, 1
    preds = np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0]])
    bv = decompose_01(preds, np.array([0, 1, 1]))
    # main predictions 0, 0, 0 -> biased on points 1 and 2; variances 1/4, 1/4, 1/4
    assert bv.bias == pytest.approx(2 / 3) and bv.variance == pytest.approx(0.25)
    # losses 1/4, 3/4, 3/4
    assert bv.expected_loss == pytest.approx(7 / 12)
    assert bv.variance_unbiased == pytest.approx(1 / 12) and bv.variance_biased == pytest.approx(
        2 / 12
    )
    # Domingos, two classes: E[L] = B + V_unbiased - V_biased
    assert bv.expected_loss == pytest.approx(bv.bias + bv.variance_unbiased - bv.variance_biased)
    assert bv.net_variance == pytest.approx(bv.expected_loss - bv.bias)
    assert "0-1 loss: expected 0.5833 = bias 0.6667 + net variance -0.0833" in str(bv)


def test_zero_one_deterministic_classifier_has_no_variance():
    train = ArrayDataset(np.zeros((10, 1)), np.arange(10) % 3)
    t = np.array([0, 1, 2, 2])
    bv = bias_variance(lambda ds, r: np.array([0, 1, 1, 2]), train, t, loss="0-1", rounds=5)
    assert bv.variance == 0.0 and bv.bias == pytest.approx(0.25) == bv.expected_loss
    scores = np.eye(3)[np.array([[0, 1, 2, 2]] * 2)]  # [M, N, C] scores: argmax taken
    assert decompose_01(scores, t).expected_loss == 0.0


def test_bad_input():
    with pytest.raises(JaxdlError, match="unknown bias-variance loss 'hinge'"):
        bias_variance(
            lambda ds, r: ds.y, ArrayDataset(np.zeros(2), np.zeros(2)), np.zeros(2), loss="hinge"
        )
    with pytest.raises(JaxdlError, match="predictions must be"):
        decompose_mse(np.zeros((3, 4)), np.zeros(5))
    with pytest.raises(JaxdlError, match="rounds must be a positive integer"):
        bias_variance(
            lambda ds, r: ds.y, ArrayDataset(np.zeros(2), np.zeros(2)), np.zeros(2), rounds=0
        )
    with pytest.raises(JaxdlError, match="training data is empty"):
        bias_variance(lambda ds, r: ds.y, ArrayDataset(np.zeros(0), np.zeros(0)), np.zeros(2))
