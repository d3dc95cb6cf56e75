"""Pure train / eval / predict steps over the pure apply of a model.

Each is a plain function of arrays; `Trainer` jits them with the train state and the metric
accumulators donated (updated in place) and places them on the mesh.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxdl.functional import activity_loss
from jaxdl.train.optim import Regularizer, regularization_penalty
from jaxdl.train.state import TrainState
from jaxdl.train.tasks import Task


# fold_in constant that separates the augmentation key from the step key the model uses
AUGMENT_STREAM = 0x6175


def make_train_step(apply: Callable, tx: optax.GradientTransformation, task: Task,
                    regularizers: Sequence[Regularizer] = (), augment: Callable | None = None):
    """train_step(state, acc, batch) -> (state, acc). Randomness: fold_in(state.rng, state.step).

    augment(batch, key) -> batch (e.g. `jaxdl.data.parse_augment(...)`) runs first, on the device,
    with key fold_in(step key, AUGMENT_STREAM)."""

    def train_step(ts: TrainState, acc, batch):
        key = jax.random.fold_in(ts.rng, ts.step)
        if augment is not None:
            batch = augment(batch, jax.random.fold_in(key, AUGMENT_STREAM))

        def loss_fn(params):
            out, new_ms = apply(params, ts.model_state, batch["x"], train=True, key=key)
            per = task.loss(out, batch)
            w = task.weights(batch, per)
            data_loss = jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)
            extra = activity_loss(new_ms) + regularization_penalty(params, regularizers)
            return data_loss + extra, (out, new_ms, per, w, extra)

        (_, (out, new_ms, per, w, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.params)
        updates, opt_state = tx.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        ts = ts.replace(step=ts.step + 1, params=params, model_state=new_ms, opt_state=opt_state)
        return ts, task.update_metrics(acc, out, batch, per, w, extra)

    return train_step


def make_eval_step(apply: Callable, task: Task):
    """eval_step(params, model_state, acc, batch) -> acc (inference mode: BN running stats)."""

    def eval_step(params, model_state, acc, batch):
        out, _ = apply(params, model_state, batch["x"], train=False)
        per = task.loss(out, batch)
        return task.update_metrics(acc, out, batch, per, task.weights(batch, per))

    return eval_step


def make_predict_step(apply: Callable):
    def predict_step(params, model_state, x):
        out, _ = apply(params, model_state, x, train=False)
        return out

    return predict_step
