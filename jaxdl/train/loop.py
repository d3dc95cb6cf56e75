"""fit / evaluate / predict (Keras's verbs) over the pure steps, data parallel on a mesh.

    trainer = Trainer(create_model("mlp"), optimizer="adam", learning_rate=1e-3)
    history = trainer.fit(splits.train, epochs=10, batch_size=64, validation_data=splits.val)
    trainer.evaluate(splits.test)

The steps are jitted once with the train state replicated over the mesh and each batch sharded on
its `data` axis (all local devices by default), so the same code runs on 1 or N devices. Batch
size: the number of examples per step; batch_size = len(train) is full-batch gradient descent,
1 stochastic, anything between mini-batch (one epoch = ceil(N / batch_size) iterations).

Fault tolerance (the checkpoint layout is in `jaxdl.train.checkpoint`):

- with a `BackupAndRestore` callback, `fit` resumes from the newest complete checkpoint: train
  state, data position (epoch, batch index), the epoch's running metric sums and every callback's
  state, so the resumed run equals an uninterrupted one bit for bit;
- SIGTERM (preemption) during `fit` with a BackupAndRestore saves at the end of the running step
  and raises `Preempted`; `jaxdl train` then exits with EXIT_PREEMPTED (75, sysexits' EX_TEMPFAIL:
  run the same command again to continue);
- a NaN or inf loss stops training within one step with `NonFiniteLossError` (`jaxdl train`
  exits with EXIT_NONFINITE, 3); the guarded step never lets the value into the state, so the
  state and every checkpoint keep the last finite values.

Options: `mixed_precision` 'bf16' (bf16 compute, float32 params) or 'fp16' (with dynamic loss
scaling); `grad_accum` k (optax.MultiSteps: one update per k batches); `freeze` regexes on
parameter names (optax.partition + set_to_zero: no optimizer state for them; their BatchNorm
layers run in inference mode); `lr_multipliers` {regex: m} (per-group learning rates, m = 0
freezes); `ema_decay` (an
exponential moving average of the weights, see SwapEMAWeights).
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.experimental.multihost_utils import process_allgather

from jaxdl.data.pipeline import Pipeline, batches
from jaxdl.data.sources import ArrayDataset
from jaxdl.errors import JaxdlError, check_positive, unknown_name
from jaxdl.functional import make_apply, merge, split
from jaxdl.nn.freeze import freeze_batchnorm_of_params
from jaxdl.parallel import layout_rules, local_rows, state_shardings, with_rules
from jaxdl.parallel.mesh import check_batch_size, make_mesh, replicated, shard_batch
from jaxdl.train.callbacks import (
    BackupAndRestore,
    Callback,
    CallbackList,
    History,
    LazyLogs,
    ProgbarLogger,
    callback_keys,
)
from jaxdl.train.optim import (
    Regularizer,
    current_learning_rate,
    make_optimizer,
    param_groups,
    set_learning_rate,
)
from jaxdl.train.state import TrainState
from jaxdl.train.steps import (
    COMPUTE_DTYPES,
    make_eval_step,
    make_grad_fn,
    make_predict_step,
    make_train_step,
)
from jaxdl.train.tasks import ClassificationTask, Task

EXIT_NONFINITE = 3  # `jaxdl train`: the loss became NaN or inf
EXIT_PREEMPTED = 75  # `jaxdl train`: stopped by SIGTERM after saving; run it again to resume


class NonFiniteLossError(RuntimeError):
    """The loss (or the gradients) became NaN or inf; training stopped within one step."""


class Preempted(Exception):
    """fit received SIGTERM, saved a checkpoint (`step`) and stopped."""

    def __init__(self, step: int, directory):
        super().__init__(
            f"SIGTERM: saved checkpoint {step} in {str(directory)!r} and stopped; "
            "run the same command again to resume"
        )
        self.step, self.directory = step, directory


def output_shape(model: nnx.Module, x_example) -> tuple[int, ...]:
    """The model's output shape for an input like `x_example`, traced abstractly."""
    apply, params, state = _pure(model)
    out = jax.eval_shape(lambda p, s, x: apply(p, s, x)[0], params, state, x_example)
    return tuple(out.shape)


def _pure(model):
    graphdef, params, state = split(model)
    return make_apply(graphdef), params, state


def _as_dataset(data):
    if isinstance(data, tuple) and len(data) == 2:
        return ArrayDataset(np.asarray(data[0]), np.asarray(data[1]))
    random_access = hasattr(data, "__len__") and hasattr(data, "__getitem__")
    if random_access and not isinstance(data, (tuple, list, Pipeline)):
        return data  # a source: ArrayDataset, ImageFolder, TfdsSource, ...
    raise JaxdlError(
        f"data must be an ArrayDataset (or another random-access source) or an (x, y) "
        f"tuple, got {type(data).__name__}"
    )


class Trainer:
    """Holds a model's pure parts, the optimizer and the train state; runs fit/evaluate/predict."""

    def __init__(
        self,
        model: nnx.Module,
        *,
        task: Task | None = None,
        optimizer: str = "adam",
        learning_rate: float | optax.Schedule = 1e-3,
        tx: optax.GradientTransformation | None = None,
        optimizer_options: dict | None = None,
        clip_norm: float | None = None,
        regularizers: Sequence[Regularizer] = (),
        seed: int = 0,
        mesh: jax.sharding.Mesh | None = None,
        mixed_precision: str | None = None,
        grad_accum: int = 1,
        freeze: Sequence[str] = (),
        lr_multipliers: dict[str, float] | None = None,
        ema_decay: float | None = None,
        initial_loss_scale: float = 2.0**15,
        fsdp: bool = False,
        augment=None,
        sharding: str | None = None,
        rules=None,
    ):
        if mixed_precision is not None and mixed_precision not in COMPUTE_DTYPES:
            raise unknown_name("mixed precision mode", mixed_precision, COMPUTE_DTYPES)
        check_positive("grad_accum", grad_accum, integer=True)
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise JaxdlError(f"ema_decay must be in (0, 1), got {ema_decay!r}")
        self.mixed_precision, self.grad_accum, self.ema_decay = (
            mixed_precision,
            grad_accum,
            ema_decay,
        )
        self._lr_is_schedule = tx is not None or callable(learning_rate)
        self.fsdp = fsdp  # data parallel (False) or FSDP: see state_shardings
        # tensor parallel: 'tp' / 'auto' or a logical rules table (jaxdl.parallel.logical);
        # the rules also constrain the activations while the steps are traced
        self.sharding, self.rules = sharding, layout_rules(sharding, rules, fsdp=fsdp)
        self.augment = augment  # (batch, key) -> batch, inside the jitted train step
        if freeze:  # frozen layers' BatchNorm run in inference mode (Keras's trainable=False)
            model = nnx.merge(*nnx.split(model))  # a copy: the caller's model is left as it was
            freeze_batchnorm_of_params(model, freeze)
        self.graphdef, params, model_state = split(model)
        self.apply = make_apply(self.graphdef)
        self.model_config = getattr(model, "config", None)
        self.mesh = mesh if mesh is not None else make_mesh()
        if task is None:
            shape = getattr(self.model_config, "input_shape", None)
            if shape is None:
                raise JaxdlError("Trainer: pass task=... for a model without config.input_shape")
            out = output_shape(model, jax.ShapeDtypeStruct((1, *shape), jnp.float32))
            task = ClassificationTask(out[-1])
        self.task = task
        tx = (
            tx
            if tx is not None
            else make_optimizer(
                optimizer, learning_rate, clip_norm=clip_norm, **(optimizer_options or {})
            )
        )
        if freeze or lr_multipliers:
            tx = param_groups(tx, params, {**{p: 0.0 for p in freeze}, **(lr_multipliers or {})})
        if grad_accum > 1:
            tx = optax.MultiSteps(tx, every_k_schedule=grad_accum)
        self.tx = tx
        self.regularizers = tuple(regularizers)
        self.seed = seed
        self.fingerprint = {
            "model": f"{type(model).__module__}.{type(model).__qualname__}",
            "config": repr(self.model_config),
        }
        state = TrainState.create(
            params,
            model_state,
            self.tx,
            seed,
            ema=ema_decay is not None,
            loss_scale=initial_loss_scale if mixed_precision == "fp16" else None,
        )
        self.state = jax.device_put(state, self.state_shardings(state))
        self.state_sharding = self.state_shardings()
        self.step_count = 0
        self.position = (0, 0)
        self._acc = None
        self._stopped_on_nan = False
        self._callbacks: list[Callback] = []
        self._data_signature: dict | None = None
        self.stop_training = False
        self.epoch = 0
        self.epochs = 0
        self.batch_size = 0
        self.steps_per_epoch = 0
        self.samples_seen_epoch = 0
        self._compile()

    # ---- jitted steps ---------------------------------------------------------------------
    def state_shardings(self, state=None):
        """The sharding of every leaf of the train state: the one place they are decided (jit
        outputs, initial placement and checkpoint restore all use it). Data parallel: replicated;
        FSDP: params and optimizer state sharded over the data axis (jaxdl.parallel)."""
        return state_shardings(
            self.state if state is None else state,
            self.mesh,
            fsdp=self.fsdp,
            sharding=self.sharding,
            rules=self.rules,
        )

    def _compile(self):
        rep = replicated(self.mesh)
        step = make_train_step(
            self.apply,
            self.tx,
            self.task,
            self.regularizers,
            compute_dtype=COMPUTE_DTYPES.get(self.mixed_precision),
            loss_scaling=self.mixed_precision == "fp16",
            ema_decay=self.ema_decay,
            augment=self.augment,
        )
        step = with_rules(step, self.mesh, self.rules)
        # the metric sums are not donated: the host reads the previous step's NaN flag from them
        # while the next step runs
        self._train_step = jax.jit(
            step, donate_argnums=(0,), out_shardings=(self.state_shardings(), rep)
        )
        self._eval_step = jax.jit(
            with_rules(make_eval_step(self.apply, self.task), self.mesh, self.rules),
            donate_argnums=(2,),
            out_shardings=rep,
        )
        self._predict_step = jax.jit(
            with_rules(make_predict_step(self.apply), self.mesh, self.rules)
        )

    def _init_metrics(self):
        acc = {
            **self.task.init_metrics(),
            "nonfinite": jnp.zeros((), jnp.int32),
            "nonfinite_at": jnp.full((), -1, jnp.int32),
        }
        return jax.device_put(acc, replicated(self.mesh))

    # ---- views --------------------------------------------------------------------------
    @property
    def params(self):
        return self.state.params

    @property
    def model(self) -> nnx.Module:
        """A module holding the current weights (a copy)."""
        return merge(self.graphdef, self.state.params, self.state.model_state)

    @property
    def learning_rate(self) -> float | None:
        lr = current_learning_rate(self.state.opt_state)
        return None if lr is None else float(lr)

    def check_learning_rate_settable(self, who: str = "set_learning_rate") -> None:
        if self._lr_is_schedule:
            raise JaxdlError(
                f"{who}: cannot set the learning rate of an optimizer built with a "
                "schedule or a custom tx (the schedule would overwrite it); use a "
                "constant learning_rate"
            )

    def set_learning_rate(self, value: float) -> None:
        """Set the learning rate in force (ReduceLROnPlateau, LearningRateScheduler)."""
        self.check_learning_rate_settable()
        check_positive("learning_rate", value)
        self.state = self.state.replace(opt_state=set_learning_rate(self.state.opt_state, value))

    def set_params(self, params) -> None:
        self.state = self.state.replace(
            params=jax.device_put(params, self.state_shardings().params)
        )

    def abstract_params(self):
        from jaxdl.train.checkpoint import abstract_like

        return abstract_like(self.state.params, self.state_shardings().params)

    # ---- checkpoints --------------------------------------------------------------------
    def save_checkpoint(
        self,
        checkpoints,
        *,
        step: int | None = None,
        weights_only: bool = False,
        extra_meta: dict | None = None,
        metrics: dict | None = None,
    ) -> int:
        """Write the training checkpoint (state, data position, running metrics, callback
        state) or, with `weights_only`, params and model state, as `step` (default: the number
        of steps taken) of `checkpoints` (a jaxdl.train.checkpoint.Checkpoints)."""
        step = self.step_count if step is None else step
        if self._acc is not None:  # a NaN step not yet reported: report it, save nothing
            self._check_finite(self._acc)
        meta = {"fingerprint": self.fingerprint, **(extra_meta or {})}
        if weights_only:
            tree = {"params": self.state.params, "model_state": self.state.model_state}
        else:
            cbs = self._callbacks
            trees = {
                k: t
                for k, c in zip(callback_keys(cbs), cbs, strict=True)
                if (t := c.get_tree()) is not None
            }
            keys = callback_keys(cbs)
            tree = {
                "state": self.state,
                "acc": self._acc if self._acc is not None else self._init_metrics(),
                "callbacks": trees,
            }
            meta.update(
                position=list(self.position),
                step_count=self.step_count,
                callbacks={k: c.get_state() for k, c in zip(keys, cbs, strict=True)},
                callback_trees=sorted(trees),
                data=self._data_signature,
            )
        if step in checkpoints.steps():  # the same point reached again after a resume
            checkpoints.delete(step)
        checkpoints.save(step, tree, meta, metrics=metrics)
        return step

    def checkpoint_abstract(self, meta: dict):
        """The abstract tree (shapes, dtypes, target shardings) of a training checkpoint whose
        JSON part is `meta`, for this trainer and its callbacks."""
        from jaxdl.train.checkpoint import CheckpointMismatchError, abstract_like

        keys = callback_keys(self._callbacks)
        by_key = dict(zip(keys, self._callbacks, strict=True))
        trees = {}
        for k in meta.get("callback_trees", []):
            if k not in by_key:
                raise CheckpointMismatchError(
                    f"the checkpoint holds arrays of callback {k!r}, "
                    f"absent now (callbacks: {', '.join(keys)})"
                )
            trees[k] = by_key[k].tree_template()
        return {
            "state": abstract_like(self.state, self.state_shardings()),
            "acc": abstract_like(self._init_metrics(), replicated(self.mesh)),
            "callbacks": trees,
        }

    def _restore_checkpoint(self, checkpoints, cbs: list[Callback]) -> bool:
        """Load the newest usable training checkpoint of `checkpoints` into the trainer and the
        callbacks `cbs`; False if there is none."""
        from jaxdl.train.checkpoint import CheckpointMismatchError

        keys = callback_keys(cbs)
        by_key = dict(zip(keys, cbs, strict=True))

        def check(meta):
            if meta.get("data") != self._data_signature:
                raise CheckpointMismatchError(
                    f"checkpoint in {str(checkpoints.directory)!r} was written for other data or "
                    f"batching {meta.get('data')}, now {self._data_signature}: its data position "
                    "would not mean the same batches"
                )

        found = checkpoints.restore(
            self.checkpoint_abstract, fingerprint=self.fingerprint, meta_check=check
        )
        if found is None:
            return False
        _, tree, meta = found
        self.state, self._acc = tree["state"], tree["acc"]
        self.position, self.step_count = tuple(meta["position"]), meta["step_count"]
        for k, st in meta["callbacks"].items():
            if k in by_key:
                by_key[k].set_state(st)
        for k, t in tree["callbacks"].items():
            by_key[k].set_tree(t)
        return True

    # ---- checks -------------------------------------------------------------------------
    def _check_data(self, ds, batch_size: int, where: str):
        if len(ds) == 0:
            raise JaxdlError(f"{where} data is empty")
        check_batch_size(batch_size, self.mesh)
        if getattr(ds, "y", None) is not None:  # sources that know their labels without decoding
            self.task.check_labels(ds.y, where=f"{where} labels")
        # trace once abstractly: an input that does not fit the model fails here, clearly
        x0 = ds.x[0] if hasattr(ds, "x") else np.asarray(ds[0]["x"])
        x = jax.ShapeDtypeStruct((batch_size, *x0.shape), x0.dtype)
        jax.eval_shape(
            lambda p, s, x: self.apply(p, s, x)[0], self.state.params, self.state.model_state, x
        )

    # ---- verbs --------------------------------------------------------------------------
    def fit(
        self,
        train,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data=None,
        callbacks: Sequence[Callback] = (),
        verbose: int = 1,
        shuffle: bool = True,
        initial_epoch: int = 0,
    ) -> History:
        """Train for `epochs` epochs; returns the History (per-epoch logs: loss, metrics, lr,
        and val_* for the validation data)."""
        check_positive("epochs", epochs, integer=True)
        check_positive("batch_size", batch_size, integer=True)
        if not isinstance(train, Pipeline):
            check_batch_size(batch_size, self.mesh)
        # each process reads only its rows of every global batch (all of them in one process)
        pipe = (
            train
            if isinstance(train, Pipeline)
            else Pipeline(
                _as_dataset(train),
                batch_size,
                shuffle=shuffle,
                seed=self.seed,
                rows=local_rows(batch_size, self.mesh),
            )
        )
        train, batch_size, shuffle = pipe.source, pipe.batch_size, pipe.shuffle
        val = _as_dataset(validation_data) if validation_data is not None else None
        self._check_data(train, batch_size, "training")
        if val is not None:
            self._check_data(val, batch_size, "validation")
        history = History()
        user = list(callbacks)
        backups = [c for c in user if isinstance(c, BackupAndRestore)]
        if len(backups) > 1:
            raise JaxdlError(f"fit: at most one BackupAndRestore callback, got {len(backups)}")
        backup = backups[0] if backups else None
        # the backup runs last, so the state it saves includes every other callback's update
        cbs = (
            [history]
            + ([ProgbarLogger()] if verbose else [])
            + [c for c in user if c is not backup]
            + backups
        )
        cb = CallbackList(cbs)
        self._callbacks = cbs
        self._data_signature = {
            "n": len(train),
            "batch_size": batch_size,
            "seed": self.seed,
            "shuffle": shuffle,
        }
        cb.set_trainer(self)
        self.epochs, self.batch_size = epochs, batch_size
        self.steps_per_epoch = pipe.num_batches
        self.stop_training = False
        self.history = history
        self.position, self._acc = (initial_epoch, 0), None
        self._stopped_on_nan = False
        cb.on_train_begin()
        # restored after on_train_begin, which resets callbacks (Keras would forget the best value)
        if backup is not None:
            self._restore_checkpoint(backup.checkpoints, cbs)
        self._preempt = threading.Event()
        previous = self._install_sigterm() if backup is not None else None
        try:
            logs = self._fit_epochs(pipe, val, epochs, batch_size, cb, backup)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if backup is not None:
                backup.checkpoints.wait()
        cb.on_train_end(logs)
        return history

    def _install_sigterm(self):
        if threading.current_thread() is not threading.main_thread():
            return None
        return signal.signal(signal.SIGTERM, lambda signum, frame: self._preempt.set())

    def _check_finite(self, acc) -> None:
        """Raise if a step accumulated into `acc` had a NaN or inf loss (reads two scalars)."""
        n, at = jax.device_get((acc["nonfinite"], acc["nonfinite_at"]))
        if n and not self._stopped_on_nan:
            e, b = self.position
            raise NonFiniteLossError(
                f"the loss (or its gradients) became NaN or inf at step {int(at)} (epoch {e + 1}, "
                f"near batch {b}); training stopped. Params and checkpoints keep the values of "
                "the last finite step. Usual causes: a learning rate too high, NaN or inf in "
                "the inputs, log(0) in a custom loss, fp16 without loss scaling."
            )

    def _fit_epochs(self, pipe, val, epochs, batch_size, cb, backup) -> dict:
        logs: dict[str, Any] = {}
        start_epoch, start_batch = self.position
        for epoch in range(start_epoch, epochs):
            self.epoch = epoch
            cb.on_epoch_begin(epoch)
            acc = self._acc if self._acc is not None else self._init_metrics()
            first = start_batch if epoch == start_epoch else 0
            self.samples_seen_epoch = 0
            data = pipe.epoch(epoch, start=first)
            for i, batch in enumerate(data, start=first):
                cb.on_train_batch_begin(i)
                self.samples_seen_epoch += int(batch["weight"].sum())
                if pipe.mesh is None:
                    batch = shard_batch(batch, self.mesh, batch_size=batch_size)
                state, new_acc = self._train_step(self.state, acc, batch)
                # the previous step's NaN flag, read while this step runs: a stop within one step
                # without waiting on the current one
                self._check_finite(acc)
                self.state, acc = state, new_acc
                self.step_count += 1
                self.position, self._acc = (epoch, i + 1), acc
                cb.on_train_batch_end(i, LazyLogs(lambda acc=acc: self.task.compute(acc)))
                if self._preempt.is_set():
                    self._check_finite(acc)
                    step = backup.checkpoints.latest_step()
                    if step != self.step_count:
                        step = self.save_checkpoint(backup.checkpoints)
                    backup.checkpoints.wait()
                    raise Preempted(step, backup.checkpoints.directory)
                if self.stop_training:
                    if int(acc["nonfinite"]):  # a callback (TerminateOnNaN) stopped on a NaN:
                        self._stopped_on_nan = True  # end now, as Keras does, keeping the
                        return logs  # last finite state
                    break
            self._check_finite(acc)
            logs = self.task.compute(acc)
            if (lr := self.learning_rate) is not None:
                logs["lr"] = lr
            if val is not None:
                cb.on_test_begin()
                val_logs = self.evaluate(val, batch_size=batch_size)
                cb.on_test_end(val_logs)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            self.position, self._acc = (epoch + 1, 0), None
            cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        return logs

    def evaluate(self, data, *, batch_size: int = 256, detailed: bool = False) -> dict[str, Any]:
        """Metrics over every example of `data` (the last batch is padded, padding weighs 0)."""
        ds = _as_dataset(data)
        bs = self._eval_batch_size(batch_size, len(ds))
        self._check_data(ds, bs, "evaluation")
        acc = self._init_metrics()
        for batch in batches(ds, bs, shuffle=False, rows=local_rows(bs, self.mesh)):
            acc = self._eval_step(
                self.state.params,
                self.state.model_state,
                acc,
                shard_batch(batch, self.mesh, batch_size=bs),
            )
        return self.task.compute(acc, detailed=detailed) if detailed else self.task.compute(acc)

    def predict(self, x, *, batch_size: int = 256) -> np.ndarray:
        """Model outputs (logits for classifiers) for every row of x, in order."""
        x = np.asarray(x)
        ds = ArrayDataset(x, np.zeros(len(x), np.int32))
        bs = self._eval_batch_size(batch_size, len(ds))
        check_batch_size(bs, self.mesh)
        outs = []
        for batch in batches(ds, bs, shuffle=False):
            x_local = batch["x"][local_rows(bs, self.mesh)]
            out = self._predict_step(
                self.state.params,
                self.state.model_state,
                shard_batch(x_local, self.mesh, batch_size=bs),
            )
            out = process_allgather(out, tiled=True) if jax.process_count() > 1 else np.asarray(out)
            outs.append(out[batch["weight"] > 0])
        return np.concatenate(outs)

    def gradients(self, data, *, batch_size: int = 64):
        """Gradients of the training loss on the first `batch_size` examples of `data` (a host
        tree shaped like the params); for gradient histograms."""
        ds = _as_dataset(data)
        bs = self._eval_batch_size(batch_size, len(ds))
        batch = shard_batch(next(batches(ds, bs, shuffle=False)), self.mesh)
        if not hasattr(self, "_grad_fn"):
            self._grad_fn = jax.jit(make_grad_fn(self.apply, self.task))
        key = jax.random.fold_in(self.state.rng, self.state.step)
        return jax.device_get(self._grad_fn(self.state.params, self.state.model_state, batch, key))

    def _eval_batch_size(self, batch_size: int, n: int) -> int:
        check_positive("batch_size", batch_size, integer=True)
        d = self.mesh.shape["data"]
        bs = min(batch_size, n)
        return max(d, math.ceil(bs / d) * d)
