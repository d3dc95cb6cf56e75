"""Bias and variance of a learning algorithm, estimated on a test set.

The course's estimate: train the same model on M bootstrap resamples of the training set (draw N
of the N examples with replacement, Efron, 1979), predict the test set with each, and split the
expected test loss into the error of the *main* (central) prediction, the bias, and the spread
of the M predictions around it, the variance:

- squared error (regression; `loss='mse'`): main prediction = mean over models,

      E_m[(y_m - t)^2] = (mean_m y_m - t)^2 + E_m[(y_m - mean_m y_m)^2] = bias^2 + variance,

  averaged over the test points, exact for every point. t is the observed target, so the noise
  of the data sits inside bias^2; measured against a noise-free target f(x) (when it is known,
  as in a simulation) the expected loss against noisy targets adds the noise variance:
  E[(y - t)^2] = bias^2 + variance + sigma^2.

- zero-one loss (classification; `loss='0-1'`), Domingos (2000), "A unified bias-variance
  decomposition for zero-one and squared loss": main prediction = the mode of the M labels;
  bias(x) = 1[main != t], variance(x) = P_m(y_m != main). The loss is not their sum: on a
  biased point variance can only help. With two classes, exactly,

      E[L] = mean bias + mean(variance on unbiased points) - mean(variance on biased points),

  the last two are reported as `variance_unbiased` and `variance_biased`, and `net_variance`
  = E[L] - bias holds for any number of classes (Domingos's c = -P(y_m = t | y_m != main)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jaxdl.data.core import ArrayDataset
from jaxdl.errors import JaxdlError, check_positive, unknown_name

LOSSES = ("mse", "0-1")


@dataclass(frozen=True)
class BiasVariance:
    """Averages over the test points. For 'mse' `bias` is bias^2 (squared units), so
    expected_loss = bias + variance; for '0-1' expected_loss = bias + net_variance."""

    loss: str
    expected_loss: float
    bias: float
    variance: float
    net_variance: float
    variance_unbiased: float | None = None  # '0-1' only
    variance_biased: float | None = None

    def __str__(self) -> str:
        b = "bias^2" if self.loss == "mse" else "bias"
        s = (
            f"{self.loss} loss: expected {self.expected_loss:.4f} = {b} {self.bias:.4f} + "
            f"{'variance' if self.loss == 'mse' else 'net variance'} {self.net_variance:.4f}"
        )
        if self.loss == "0-1":
            s += (
                f" (variance {self.variance:.4f}: {self.variance_unbiased:.4f} on unbiased points, "
                f"{self.variance_biased:.4f} on biased)"
            )
        return s


def decompose_mse(predictions, targets) -> BiasVariance:
    """predictions: [M, N] or [M, N, K] (M models, N test points); targets: [N] or [N, K]."""
    p = np.asarray(predictions, np.float64)
    t = np.asarray(targets, np.float64)
    if p.ndim < 2 or p.shape[1:] != t.shape:
        raise JaxdlError(
            f"decompose_mse: predictions must be [M, *targets.shape] = [M, {t.shape}], "
            f"got {p.shape}"
        )
    main = p.mean(axis=0)
    per_model = ((p - t) ** 2).reshape(p.shape[0], p.shape[1], -1).sum(-1)  # [M, N]
    bias2 = ((main - t) ** 2).reshape(len(t), -1).sum(-1)
    var = ((p - main) ** 2).reshape(p.shape[0], p.shape[1], -1).sum(-1).mean(0)
    return BiasVariance(
        "mse", float(per_model.mean()), float(bias2.mean()), float(var.mean()), float(var.mean())
    )


def decompose_01(predictions, targets) -> BiasVariance:
    """predictions: [M, N] integer labels (or [M, N, C] scores, argmax taken); targets: [N]."""
    p = np.asarray(predictions)
    if p.ndim == 3:
        p = p.argmax(-1)
    t = np.asarray(targets).astype(np.int64)
    if p.ndim != 2 or p.shape[1] != len(t) or t.ndim != 1:
        raise JaxdlError(
            f"decompose_01: predictions must be [M, N] labels with N = len(targets) = "
            f"{len(t)}, got {p.shape}"
        )
    p = p.astype(np.int64)
    n_cls = int(max(p.max(), t.max())) + 1
    counts = np.stack([np.bincount(col, minlength=n_cls) for col in p.T])  # [N, C]
    main = counts.argmax(-1)  # the mode; ties go to the smaller label
    bias = (main != t).astype(np.float64)
    var = (p != main).mean(0)
    loss = (p != t).mean(0)
    return BiasVariance(
        "0-1",
        float(loss.mean()),
        float(bias.mean()),
        float(var.mean()),
        float(loss.mean() - bias.mean()),
        float((var * (1 - bias)).mean()),
        float((var * bias).mean()),
    )


def bootstrap_predictions(
    fit_predict: Callable[[ArrayDataset, int], np.ndarray],
    train: ArrayDataset,
    rounds: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """[rounds, ...]: fit_predict(resample, r) for r in range(rounds), each resample N draws
    with replacement from `train` (seeded by `seed`); fit_predict trains a fresh model (seed r)
    and returns its predictions on the test inputs."""
    check_positive("rounds", rounds, integer=True)
    if len(train) == 0:
        raise JaxdlError("bootstrap: training data is empty")
    rng = np.random.default_rng(seed)
    out = []
    for r in range(rounds):
        idx = rng.integers(0, len(train), len(train))
        out.append(np.asarray(fit_predict(train.subset(idx), r)))
    return np.stack(out)


def bias_variance(
    fit_predict: Callable[[ArrayDataset, int], np.ndarray],
    train: ArrayDataset,
    test_targets,
    *,
    loss: str = "mse",
    rounds: int = 20,
    seed: int = 0,
) -> BiasVariance:
    """The bootstrap estimate: `rounds` models on resamples of `train`, decomposed on the test
    targets with the squared-error ('mse') or zero-one ('0-1') decomposition."""
    if loss not in LOSSES:
        raise unknown_name("bias-variance loss", loss, LOSSES)
    preds = bootstrap_predictions(fit_predict, train, rounds, seed)
    return (
        decompose_mse(preds, test_targets) if loss == "mse" else decompose_01(preds, test_targets)
    )


__all__ = [
    "BiasVariance",
    "decompose_mse",
    "decompose_01",
    "bootstrap_predictions",
    "bias_variance",
    "LOSSES",
]
