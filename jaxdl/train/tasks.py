"""A task says how outputs and a batch make a loss and metrics.

Metrics are accumulated on the device as sums (loss * weight, weights, a confusion matrix, ...)
inside the jitted step, and turned into numbers on the host only when someone asks, so a step adds
no host synchronisation. Batches are dicts with 'x', 'y' and 'weight' (0 on padding).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import JaxdlError
from jaxdl.functional import output_spec
from jaxdl.train import losses, metrics

# one compiled call instead of dozens of eager ops at every epoch end
_classification_metrics = jax.jit(metrics.classification_metrics)


class Task:
    """Base class. Subclasses define `loss` and the metric accumulators (all sums, so one step's
    metrics add to the running ones). A per-example metric reported as its weighted mean over
    the examples needs only `means()` (its name and accumulator) and `example_metrics`; the base
    class accumulates and reports it.

    The engine asks the task for the train state, the step and the evaluation step, so a task
    with its own state or step (a GAN: two optimizers in one step) runs on the same `Trainer`,
    with its mesh, callbacks, checkpoints and resume."""

    # ---- engine hooks (the supervised default) --------------------------------------------
    def create_state(self, params, model_state, tx, seed: int, **options):
        """The train state for the model's params and state (`TrainState.create` options)."""
        from jaxdl.train.state import TrainState

        return TrainState.create(params, model_state, tx, seed, **options)

    def make_step(
        self, *, apply, tx, regularizers=(), loss_scaling=False, ema_decay=None, augment=None, **_
    ):
        """The pure step(state, batch) -> (state, metrics) (`jaxdl.train.steps`)."""
        from jaxdl.train.steps import make_train_step

        return make_train_step(
            apply,
            tx,
            self,
            regularizers,
            loss_scaling=loss_scaling,
            ema_decay=ema_decay,
            augment=augment,
        )

    def make_eval_step(self, apply):
        """eval_step(params, model_state, batch) -> metrics, in inference mode."""
        from jaxdl.train.steps import make_eval_step

        return make_eval_step(apply, self)

    def model_weights(self, state):
        """(params, model state) of the model, from the train state."""
        return state.params, state.model_state

    def eval_weights(self, state):
        """(params, model state) evaluation runs with."""
        return state.params, state.model_state

    def check_input(self, apply, state, x) -> None:
        """Trace the model abstractly on an input like `x` (a ShapeDtypeStruct): an input that
        does not fit the model fails here, with the model's own error."""
        output_spec((apply, state.params, state.model_state), x)

    def check_callbacks(self, callbacks) -> None:
        """Refuse callbacks this task cannot serve (nothing to refuse for one model)."""

    def loss(self, outputs, batch) -> jax.Array:
        """Per-example loss, the shape of `weights(batch)`."""
        raise NotImplementedError  # abstract: every task defines its loss

    def weights(self, batch, per_example: jax.Array) -> jax.Array:
        w = batch.get("weight")
        if w is None:
            return jnp.ones(per_example.shape, jnp.float32)
        w = w.astype(jnp.float32)
        return jnp.broadcast_to(
            w.reshape(w.shape + (1,) * (per_example.ndim - w.ndim)), per_example.shape
        )

    def means(self) -> dict[str, str]:
        """{metric name: accumulator key} of the per-example metrics, beyond the loss, reported
        as weighted means over the examples (in this order, after the loss)."""
        return {}

    def example_metrics(self, outputs, batch) -> dict[str, jax.Array]:
        """{metric name: per-example values, the shape of the weights} for each of `means()`."""
        return {}

    def init_metrics(self) -> dict[str, jax.Array]:
        # distinct buffers: the Trainer donates the accumulators
        keys = ("loss_sum", "weight_sum", *self.means().values())
        return {k: jnp.zeros((), jnp.float32) for k in keys}

    def update_metrics(self, acc, outputs, batch, per_example, weights, extra_loss=0.0):
        wsum = jnp.sum(weights)
        new = {
            **acc,
            "loss_sum": acc["loss_sum"] + jnp.sum(per_example * weights) + extra_loss * wsum,
            "weight_sum": acc["weight_sum"] + wsum,
        }
        means = self.means()
        if means:
            values = self.example_metrics(outputs, batch)
            for name, key in means.items():
                new[key] = acc[key] + jnp.sum(values[name] * weights)
        return new

    def compute(self, acc, detailed: bool = False) -> dict[str, float]:
        """The metrics of the accumulated sums (`detailed`: a subclass may add more)."""
        acc = jax.device_get(acc)
        w = max(float(acc["weight_sum"]), 1e-12)
        out = {"loss": float(acc["loss_sum"] / w)}
        for name, key in self.means().items():
            out[name] = float(acc[key] / w)
        return out

    def check_labels(self, y: np.ndarray, *, where: str = "labels") -> None:
        """Host-side validation of a dataset's labels (before any step runs)."""


class ClassificationTask(Task):
    """Softmax cross-entropy over `num_classes` logits (or binary cross-entropy on one logit).

    Metrics: loss, accuracy, top-k accuracy (k < num_classes), and from the confusion matrix
    precision / recall / F1 (macro), on request per class (`detailed`)."""

    def __init__(self, num_classes: int, *, top_k: int = 5, label_smoothing: float = 0.0):
        if num_classes < 1:
            raise JaxdlError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.binary = num_classes == 1
        self.top_k = top_k if (not self.binary and top_k and top_k < num_classes) else 0
        self.label_smoothing = label_smoothing

    @property
    def cm_size(self) -> int:
        return 2 if self.binary else self.num_classes

    def loss(self, outputs, batch):
        y = batch["y"]
        if self.binary:
            return losses.binary_cross_entropy(outputs, y.reshape(outputs.shape[:-1]))
        return losses.categorical_cross_entropy(outputs, y, label_smoothing=self.label_smoothing)

    def predictions(self, outputs):
        if self.binary:
            return (outputs[..., 0] > 0).astype(jnp.int32)
        return jnp.argmax(outputs, axis=-1)

    def labels(self, batch):
        y = batch["y"]
        if not self.binary and y.ndim == 2 and y.shape[-1] == self.num_classes:
            return jnp.argmax(y, axis=-1)  # one-hot labels
        return y.reshape(y.shape[0]).astype(jnp.int32)

    def means(self):
        return {f"top{self.top_k}_accuracy": "topk"} if self.top_k else {}

    def example_metrics(self, outputs, batch):
        correct = metrics.top_k_correct(outputs, self.labels(batch), self.top_k)
        return {f"top{self.top_k}_accuracy": correct}

    def init_metrics(self):
        acc = super().init_metrics()
        acc["cm"] = jnp.zeros((self.cm_size, self.cm_size), jnp.float32)
        return acc

    def update_metrics(self, acc, outputs, batch, per_example, weights, extra_loss=0.0):
        new = super().update_metrics(acc, outputs, batch, per_example, weights, extra_loss)
        new["cm"] = acc["cm"] + metrics.confusion_matrix(
            self.labels(batch), self.predictions(outputs), self.cm_size, weights.reshape(-1)
        )
        return new

    def compute(self, acc, detailed: bool = False) -> dict[str, Any]:
        acc = jax.device_get(acc)
        base = super().compute(acc)  # the loss and the top-k accuracy
        m = jax.device_get(_classification_metrics(acc["cm"]))
        out = {"loss": base.pop("loss"), "accuracy": float(m["accuracy"]), **base}
        for k in ("precision_macro", "recall_macro", "f1_macro"):
            out[k] = float(m[k])
        if detailed:
            for k, v in m.items():
                out[k] = np.asarray(v).tolist() if np.ndim(v) else float(v)
            out["confusion_matrix"] = np.asarray(acc["cm"]).astype(int).tolist()
        return out

    def check_labels(self, y, *, where="labels"):
        y = np.asarray(y)
        if not self.binary and y.ndim == 2 and y.shape[-1] == self.num_classes:
            return  # one-hot
        if y.dtype.kind not in "iubf":
            raise JaxdlError(
                f"{where} must be integer class indices, got dtype {y.dtype} "
                f"(e.g. {y.reshape(-1)[:1].tolist()})"
            )
        if y.dtype.kind == "f" and y.size:
            frac = y[np.mod(y, 1) != 0] if np.all(np.isfinite(y)) else y[~np.isfinite(y)]
            if frac.size or not self.binary:
                raise JaxdlError(
                    f"{where} must be integer class indices (dtype int), got {y.dtype} values"
                    + (f" such as {frac.reshape(-1)[0]!r}" if frac.size else "")
                    + "; they would be truncated or train a loss of nothing: convert "
                    "whole-number labels with y.astype(int)"
                )
        n = self.cm_size
        if y.size and (y.min() < 0 or y.max() >= n):
            raise JaxdlError(
                f"{where} out of range: expected integers in [0, {n - 1}] for a model with "
                f"{self.num_classes} output(s), got values in [{y.min()}, {y.max()}]"
            )


class RegressionTask(Task):
    """Mean squared error; reports loss (MSE) and MAE."""

    def loss(self, outputs, batch):
        return losses.mean_squared_error(outputs, batch["y"])

    def means(self):
        return {"mae": "abs_sum"}

    def example_metrics(self, outputs, batch):
        err = jnp.abs(outputs.astype(jnp.float32) - batch["y"].reshape(outputs.shape))
        return {"mae": jnp.mean(err, axis=-1)}


class LanguageModelTask(Task):
    """Next-token prediction: cross-entropy of logits [B, T, V] against targets y [B, T].

    A batch may carry 'mask' [B, T] (1 for real tokens); padded examples have weight 0.
    Metrics: loss (nats per token), perplexity, bits per token (bits per character for a
    character vocabulary), token accuracy."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def loss(self, outputs, batch):
        return losses.categorical_cross_entropy(outputs, batch["y"])

    def weights(self, batch, per_example):
        w = super().weights(batch, per_example)
        if "mask" in batch:
            w = w * batch["mask"].astype(jnp.float32)
        return w

    def means(self):
        return {"accuracy": "correct"}

    def example_metrics(self, outputs, batch):
        return {"accuracy": (jnp.argmax(outputs, -1) == batch["y"]).astype(jnp.float32)}

    def compute(self, acc, detailed: bool = False):
        out = super().compute(acc)  # the loss and the token accuracy
        loss = out["loss"]
        return {
            "loss": loss,
            "perplexity": float(np.exp(min(loss, 50.0))),
            "bits_per_token": loss / float(np.log(2.0)),
            "accuracy": out["accuracy"],
        }

    def check_labels(self, y, *, where="labels"):
        y = np.asarray(y)
        if y.size and (y.min() < 0 or y.max() >= self.vocab_size):
            raise JaxdlError(
                f"{where} out of range: expected token ids in [0, {self.vocab_size - 1}], "
                f"got values in [{y.min()}, {y.max()}]"
            )


def check_inputs(x, *, where: str = "inputs") -> None:
    """Refuse inputs jaxdl would train on silently wrong: object arrays (not numbers), and
    uint8 images (ndim >= 2 per example) that hold raw 0-255 pixels. jaxdl never rescales
    inputs itself; the loaders give float32 in [0, 1]: divide such arrays by 255 first."""
    dtype = np.dtype(getattr(x, "dtype", np.asarray(x).dtype))
    if dtype.kind not in "biuf" and dtype.name not in ("bfloat16",):
        raise JaxdlError(
            f"{where} must be a numeric array (float or integer), got dtype {dtype}: convert "
            "it with np.asarray(x, np.float32)"
        )
    if dtype == np.uint8 and np.ndim(x) >= 2:
        raise JaxdlError(
            f"{where} are uint8 images of shape {tuple(np.shape(x))} (raw 0-255 pixels): jaxdl "
            "does not rescale inputs; pass x.astype('float32') / 255 (what the loaders give)"
        )
