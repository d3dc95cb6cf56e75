"""Classification metrics, jit-able.

Everything derives from the confusion matrix, which sums over batches: accumulate
`confusion_matrix` on the device, then call `classification_metrics` once. Conventions follow
scikit-learn: rows are true classes, columns predictions; a ratio with a zero denominator is 0
(sklearn's `zero_division=0`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def confusion_matrix(
    y_true: jax.Array, y_pred: jax.Array, num_classes: int, weights: jax.Array | None = None
) -> jax.Array:
    """cm[i, j] = (weighted) count of examples of true class i predicted as j. -> [C, C] float32."""
    t = jax.nn.one_hot(y_true.reshape(-1), num_classes, dtype=jnp.float32)
    p = jax.nn.one_hot(y_pred.reshape(-1), num_classes, dtype=jnp.float32)
    if weights is not None:
        t = t * weights.reshape(-1, 1).astype(jnp.float32)
    return t.T @ p


def accuracy(y_true, y_pred, weights=None) -> jax.Array:
    hit = (y_true == y_pred).astype(jnp.float32)
    if weights is None:
        return jnp.mean(hit)
    w = weights.astype(jnp.float32)
    return jnp.sum(hit * w) / jnp.maximum(jnp.sum(w), 1.0)


def top_k_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """Per example, 1.0 where the label is among the k largest logits. logits [..., C] -> [...]."""
    k = min(k, logits.shape[-1])
    label_logit = jnp.take_along_axis(logits, labels[..., None].astype(jnp.int32), axis=-1)
    # rank of the label = number of classes scoring strictly higher (ties favour the label)
    rank = jnp.sum(logits > label_logit, axis=-1)
    return (rank < k).astype(jnp.float32)


def top_k_accuracy(logits, labels, k: int = 5, weights=None) -> jax.Array:
    hit = top_k_correct(logits, labels, k)
    if weights is None:
        return jnp.mean(hit)
    w = weights.astype(jnp.float32)
    return jnp.sum(hit * w) / jnp.maximum(jnp.sum(w), 1.0)


def _div(a, b):
    return jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0)


def classification_metrics(cm: jax.Array) -> dict[str, jax.Array]:
    """Per-class and averaged metrics from a confusion matrix [C, C].

    Per class: precision, recall (= sensitivity), f1, specificity = TN / (TN + FP), support.
    Averages: macro (unweighted mean over classes), weighted (by support), micro (from global
    counts; equals accuracy for single-label classification)."""
    cm = cm.astype(jnp.float32)
    tp = jnp.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    total = cm.sum()
    fp = predicted - tp
    fn = support - tp
    tn = total - tp - fp - fn
    precision = _div(tp, predicted)
    recall = _div(tp, support)
    f1 = _div(2 * precision * recall, precision + recall)
    specificity = _div(tn, tn + fp)
    w = _div(support, total)
    micro_p = _div(tp.sum(), tp.sum() + fp.sum())
    micro_r = _div(tp.sum(), tp.sum() + fn.sum())
    out = {
        "accuracy": _div(tp.sum(), total),
        "precision_per_class": precision,
        "recall_per_class": recall,
        "f1_per_class": f1,
        "sensitivity_per_class": recall,
        "specificity_per_class": specificity,
        "support": support,
        "precision_macro": precision.mean(),
        "recall_macro": recall.mean(),
        "f1_macro": f1.mean(),
        "specificity_macro": specificity.mean(),
        "precision_weighted": jnp.sum(precision * w),
        "recall_weighted": jnp.sum(recall * w),
        "f1_weighted": jnp.sum(f1 * w),
        "precision_micro": micro_p,
        "recall_micro": micro_r,
        "f1_micro": _div(2 * micro_p * micro_r, micro_p + micro_r),
    }
    out["sensitivity_macro"] = out["recall_macro"]
    return out
