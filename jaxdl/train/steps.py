"""The one step contract: pure `step(state, batch) -> (state, metrics)`, jitted once.

`make_train_step` builds it for every supervised task (classification, language models,
seq2seq, regression, reconstruction, VAE: a `Task` says how outputs and a batch make a loss);
`jaxdl.train.generative.GANTask` builds a GAN's (two optimizers in one step) and
`Trainer.sweep` vmaps either over K configurations. `Trainer` drives it (`make_program`: the
step, the accumulation of its metrics, `steps_per_execution` steps in one `lax.scan`), and
`jaxdl bench --mode train` times that same program.

`metrics` are this step's contributions to the epoch's running sums (loss * weight, weights, a
confusion matrix, ...; all sums, so `accumulate` adds them), plus `nonfinite` (1 if the step's
loss or gradients were NaN or inf) and `nonfinite_at` (the step number, or NO_STEP). They stay on
the device: the host reads them only at log points.
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

# dynamic loss scaling for fp16 (Micikevicius et al., 2018, "Mixed precision training"):
# halve the scale on overflow, double it after this many finite steps
LOSS_SCALE_PERIOD = 2000
# fold_in constant that separates the augmentation key from the step key the model uses
AUGMENT_STREAM = 0x6175
# `nonfinite_at` of a step (or of an accumulation) without a non-finite loss
NO_STEP = jnp.iinfo(jnp.int32).max


def all_finite(tree) -> jax.Array:
    """True if every inexact leaf of `tree` is free of NaN and inf."""
    leaves = [
        jnp.all(jnp.isfinite(a))
        for a in jax.tree.leaves(tree)
        if jnp.issubdtype(a.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def select(ok, new, old):
    """`new` where `ok`, else `old`, leaf by leaf (XLA fuses it into the update)."""
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)


def guard_metrics(metrics: dict, failed, step) -> dict:
    """`metrics` with this step's non-finite flag and its step number."""
    return {
        **metrics,
        "nonfinite": failed.astype(jnp.int32),
        "nonfinite_at": jnp.where(failed, step, NO_STEP).astype(jnp.int32),
    }


def init_metrics(task) -> dict:
    """Zero accumulators for `task`'s metrics and the non-finite guard."""
    if hasattr(task, "init_accumulators"):  # a task whose accumulators are its own (a sweep)
        return task.init_accumulators()
    return guard_metrics(task.init_metrics(), jnp.bool_(False), jnp.zeros((), jnp.int32))


def accumulate(acc: dict, metrics: dict) -> dict:
    """Running sums plus one step's metrics (`nonfinite_at`: the first such step)."""
    return {
        k: jnp.minimum(acc[k], v) if k == "nonfinite_at" else acc[k] + v for k, v in metrics.items()
    }


def make_train_step(
    apply: Callable,
    tx: optax.GradientTransformation,
    task: Task,
    regularizers: Sequence[Regularizer] = (),
    *,
    loss_scaling: bool = False,
    ema_decay: float | None = None,
    augment: Callable | None = None,
):
    """step(state, batch) -> (state, metrics). Randomness: fold_in(state.rng, state.step).

    `apply` is the model's pure apply, already in the precision policy's compute dtype
    (`jaxdl.train.precision.Policy.wrap`). augment(batch, key) -> batch runs first, on the
    device, with key fold_in(step key, AUGMENT_STREAM). loss_scaling (fp16): the loss is
    multiplied by `state.loss_scale['scale']` before differentiating; a step whose gradients
    overflow is skipped and the scale halved. ema_decay: keep `state.ema_params`, the exponential
    moving average of the weights (Keras's ema_momentum; the first step copies the weights).

    Guard: a step whose loss (or, without loss scaling, gradients) is NaN or inf changes nothing
    (params, optimizer and model state keep their last finite values) and sets
    `state.nonfinite`; from then on every step changes nothing, so the host may look at the
    flag whenever it next reads the metrics, and no state it saves holds a non-finite value."""

    def train_step(ts: TrainState, batch):
        key = jax.random.fold_in(ts.rng, ts.step)
        if augment is not None:
            batch = augment(batch, jax.random.fold_in(key, AUGMENT_STREAM))
        scale = ts.loss_scale["scale"] if loss_scaling else None

        def loss_fn(params):
            out, new_ms = apply(params, ts.model_state, batch["x"], train=True, key=key)
            per = task.loss(out, batch)
            w = task.weights(batch, per)
            data_loss = jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)
            extra = activity_loss(new_ms) + regularization_penalty(params, regularizers)
            loss = data_loss + extra
            return (loss * scale if loss_scaling else loss), (loss, out, new_ms, per, w, extra)

        (_, (loss, out, new_ms, per, w, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            ts.params
        )
        if loss_scaling:
            grads = jax.tree.map(lambda g: g / scale, grads)
        finite_loss, finite_grads = jnp.isfinite(loss), all_finite(grads)
        healthy = ts.nonfinite == 0
        failed = ~finite_loss if loss_scaling else ~(finite_loss & finite_grads)
        ok = finite_loss & finite_grads & healthy

        updates, opt_state = tx.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        new = {"params": params, "opt_state": opt_state, "model_state": new_ms}
        old = {"params": ts.params, "opt_state": ts.opt_state, "model_state": ts.model_state}
        if ema_decay is not None:
            d = jnp.where(ts.step == 0, 0.0, ema_decay)
            new["ema_params"] = jax.tree.map(
                lambda e, p: d * e + (1 - d) * p, ts.ema_params, params
            )
            old["ema_params"] = ts.ema_params
        step = ts.step
        ts = ts.replace(
            step=step + 1,
            nonfinite=jnp.where(failed & healthy, 1, ts.nonfinite).astype(jnp.int32),
            **select(ok, new, old),
        )
        if loss_scaling:
            grow = ts.loss_scale["good_steps"] + 1 >= LOSS_SCALE_PERIOD
            s = jnp.where(
                finite_grads, jnp.where(grow, scale * 2, scale), jnp.maximum(scale / 2, 1.0)
            )
            good = jnp.where(finite_grads & ~grow, ts.loss_scale["good_steps"] + 1, 0)
            ts = ts.replace(loss_scale={"scale": jnp.where(healthy, s, scale), "good_steps": good})
        m = task.update_metrics(task.init_metrics(), out, batch, per, w, extra)
        return ts, guard_metrics(m, failed, step)

    return train_step


def make_grad_fn(apply: Callable, task: Task):
    """grads(params, model_state, batch, key) -> gradients of the weighted mean loss (training
    mode), e.g. for gradient histograms."""

    def grads(params, model_state, batch, key):
        def loss_fn(p):
            out, _ = apply(p, model_state, batch["x"], train=True, key=key)
            per = task.loss(out, batch)
            w = task.weights(batch, per)
            return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)

        return jax.grad(loss_fn)(params)

    return grads


def make_eval_step(apply: Callable, task: Task):
    """eval_step(params, model_state, batch) -> metrics (inference mode: BN running stats)."""

    def eval_step(params, model_state, batch):
        out, _ = apply(params, model_state, batch["x"], train=False)
        per = task.loss(out, batch)
        m = task.update_metrics(task.init_metrics(), out, batch, per, task.weights(batch, per))
        return guard_metrics(m, jnp.bool_(False), jnp.zeros((), jnp.int32))

    return eval_step


def make_predict_step(apply: Callable):
    def predict_step(params, model_state, x):
        out, _ = apply(params, model_state, x, train=False)
        return out

    return predict_step
