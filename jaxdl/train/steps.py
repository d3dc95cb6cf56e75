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

# dynamic loss scaling for fp16 (Micikevicius et al., 2018, "Mixed precision training"):
# halve the scale on overflow, double it after this many finite steps
LOSS_SCALE_PERIOD = 2000
COMPUTE_DTYPES = {"bf16": jnp.bfloat16, "fp16": jnp.float16}
# fold_in constant that separates the augmentation key from the step key the model uses
AUGMENT_STREAM = 0x6175


def cast_floating(tree, dtype):
    """Every floating-point leaf of `tree` cast to `dtype` (integers and keys unchanged)."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def _all_finite(tree) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(a))
        for a in jax.tree.leaves(tree)
        if jnp.issubdtype(a.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _select(ok, new, old):
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)


def make_train_step(
    apply: Callable,
    tx: optax.GradientTransformation,
    task: Task,
    regularizers: Sequence[Regularizer] = (),
    *,
    compute_dtype=None,
    loss_scaling: bool = False,
    ema_decay: float | None = None,
    augment: Callable | None = None,
):
    """train_step(state, acc, batch) -> (state, acc). Randomness: fold_in(state.rng, state.step).

    augment(batch, key) -> batch (e.g. `jaxdl.data.parse_augment(...)`) runs first, on the device,
    with key fold_in(step key, AUGMENT_STREAM).

    compute_dtype: run the forward and backward pass in this dtype (bf16 or fp16) while params,
    optimizer state and the loss stay float32 (mixed precision; the casts are differentiated, so
    gradients arrive in float32). loss_scaling: multiply the loss by `state.loss_scale['scale']`
    before differentiating (fp16 gradients would underflow otherwise); a step whose gradients
    overflow is skipped and the scale halved. ema_decay: keep `state.ema_params`, the exponential
    moving average of the weights (Keras's ema_momentum; the first step copies the weights).

    Guard: a step whose loss (or, without loss scaling, gradients) is NaN or inf changes nothing
    (params, optimizer and model state keep their last finite values) and is counted in
    acc['nonfinite'] (acc['nonfinite_at'] = the first such step); once one has happened, the
    following steps change nothing either, so the host may look at the count one step late."""

    def train_step(ts: TrainState, acc, batch):
        key = jax.random.fold_in(ts.rng, ts.step)
        if augment is not None:
            batch = augment(batch, jax.random.fold_in(key, AUGMENT_STREAM))
        scale = ts.loss_scale["scale"] if loss_scaling else None
        x = batch["x"]
        if compute_dtype is not None and jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(compute_dtype)

        def loss_fn(params):
            p = params if compute_dtype is None else cast_floating(params, compute_dtype)
            out, new_ms = apply(p, ts.model_state, x, train=True, key=key)
            if compute_dtype is not None:  # keep the loss, metrics and statistics in float32
                out = out.astype(jnp.float32)
                new_ms = jax.tree.map(lambda a, b: a.astype(b.dtype), new_ms, ts.model_state)
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
        finite_loss, finite_grads = jnp.isfinite(loss), _all_finite(grads)
        nonfinite = acc.get("nonfinite", jnp.zeros((), jnp.int32))
        healthy = nonfinite == 0
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
        ts = ts.replace(step=ts.step + 1, **_select(ok, new, old))
        if loss_scaling:
            grow = ts.loss_scale["good_steps"] + 1 >= LOSS_SCALE_PERIOD
            s = jnp.where(
                finite_grads, jnp.where(grow, scale * 2, scale), jnp.maximum(scale / 2, 1.0)
            )
            good = jnp.where(finite_grads & ~grow, ts.loss_scale["good_steps"] + 1, 0)
            ts = ts.replace(loss_scale={"scale": jnp.where(healthy, s, scale), "good_steps": good})
        acc = task.update_metrics(acc, out, batch, per, w, extra)
        if "nonfinite" in acc:
            first = failed & healthy
            acc["nonfinite_at"] = jnp.where(first, ts.step - 1, acc["nonfinite_at"])
            acc["nonfinite"] = nonfinite + failed.astype(jnp.int32)
        return ts, acc

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
