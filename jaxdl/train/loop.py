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

import collections
import math
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.experimental.multihost_utils import process_allgather
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.data.core import ArrayDataset
from jaxdl.data.pipeline import Pipeline, batches, index_batches, prefetch
from jaxdl.errors import JaxdlError, check_positive
from jaxdl.functional import make_apply, output_shape, split
from jaxdl.nn.freeze import freeze_batchnorm_of_params
from jaxdl.parallel import layout_rules, local_rows, state_shardings, with_rules
from jaxdl.parallel.mesh import check_batch_size, data_sharding, make_mesh, replicated, shard_batch
from jaxdl.parallel.sharding import put
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
from jaxdl.train.precision import get_policy
from jaxdl.train.steps import accumulate, init_metrics, make_grad_fn, make_predict_step
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


def _as_dataset(data):
    if isinstance(data, tuple) and len(data) == 2:
        return ArrayDataset(np.asarray(data[0]), np.asarray(data[1]))
    random_access = hasattr(data, "__len__") and hasattr(data, "__getitem__")
    if random_access and not isinstance(data, (tuple, list, Pipeline, np.ndarray)):
        return data  # a source: ArrayDataset, ImageFolder, TfdsSource, ...
    raise JaxdlError(
        f"data must be an ArrayDataset (or another random-access source) or an (x, y) "
        f"tuple, got {type(data).__name__}"
    )


# Steps dispatched ahead of the device at most. The host never waits for the step it just
# dispatched, only for one this many calls older, so the device always has work queued; the
# bound keeps the inputs in flight few, and on a CPU mesh it keeps the executions of many steps
# from filling the thread pool while each waits on a collective of its own (a deadlock that
# XLA ends after 40 s).
MAX_IN_FLIGHT = 2

# In-memory datasets up to this share of one device's memory live on the devices for the whole
# fit (one transfer; each step gathers its batch by index inside the program); larger ones, and
# file-backed sources, come as host batches placed ahead of the step by a background thread.
DEVICE_DATA_FRACTION = 0.25
DEVICE_DATA_DEFAULT_BYTES = 1 << 30  # per device where the platform reports no memory (CPU)


def _device_bytes(device) -> int:
    try:
        stats = device.memory_stats() or {}
    except Exception:  # some platforms do not implement it
        stats = {}
    limit = stats.get("bytes_limit")
    return int(limit * DEVICE_DATA_FRACTION) if limit else DEVICE_DATA_DEFAULT_BYTES


class DeviceData:
    """An in-memory dataset ({'x', 'y'} arrays) replicated on the mesh's devices, gathered by
    index inside the jitted program (`Trainer` builds it for `ArrayDataset`s that fit)."""

    def __init__(self, ds: ArrayDataset, mesh):
        self.n = len(ds)
        self.arrays = jax.device_put({"x": ds.x, "y": ds.y}, replicated(mesh))

    @staticmethod
    def fits(ds, mesh) -> bool:
        if not isinstance(ds, ArrayDataset) or jax.process_count() > 1:
            return False
        nbytes = np.asarray(ds.x).nbytes + np.asarray(ds.y).nbytes
        return nbytes <= min(_device_bytes(d) for d in mesh.devices.flat)


def make_program(
    step, *, steps: int = 1, resident: bool = False, batch_sharding=None, x_scale=None
):
    """The program `fit` runs (and `jaxdl bench --mode train` times): `steps` applications of
    the pure `step(state, batch) -> (state, metrics)` (a `lax.scan` when steps > 1), with the
    metrics added to the running sums `acc`.

    - host batches: program(state, acc, batch) -> (state, acc); batch [B, ...], or [steps, B, ...]
      for steps > 1;
    - resident data (`DeviceData`): program(state, acc, data, idx, weight, cursor) ->
      (state, acc, cursor + steps): batch number `cursor` of the epoch's index table idx [S, B]
      (weights [S, B]) gathered from data on the device, so no host transfer per step.

    x_scale: the batch's x holds integers (uint8 pixels) converted here, on the device, to
    float32(x) * x_scale (`ArrayDataset.x_scale`)."""

    def one(state, acc, batch):
        batch = to_float(batch, x_scale)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        state, m = step(state, batch)
        return state, accumulate(acc, m)

    if resident:

        def gather(data, idx, weight, c):
            rows = jax.lax.dynamic_index_in_dim(idx, c, keepdims=False)
            batch = {k: jnp.take(v, rows, axis=0) for k, v in data.items()}
            batch["weight"] = jax.lax.dynamic_index_in_dim(weight, c, keepdims=False)
            return batch

        def program(state, acc, data, idx, weight, cursor):
            def body(carry, _):
                state, acc, c = carry
                state, acc = one(state, acc, gather(data, idx, weight, c))
                return (state, acc, c + 1), None

            if steps == 1:
                return body((state, acc, cursor), None)[0]
            return jax.lax.scan(body, (state, acc, cursor), length=steps)[0]

        return program

    def program(state, acc, batch):
        if steps == 1:
            return one(state, acc, batch)

        def body(carry, b):
            return one(*carry, b), None

        return jax.lax.scan(body, (state, acc), batch)[0]

    return program


def to_float(batch: dict, x_scale) -> dict:
    """`batch` with integer x converted to float32(x) * x_scale (on the device, under jit)."""
    if x_scale is None:
        return batch
    return {**batch, "x": batch["x"].astype(jnp.float32) * jnp.float32(x_scale)}


def x_scale_of(ds) -> float | None:
    return getattr(ds, "x_scale", None)


class Trainer:
    """Holds a model's pure parts, the optimizer and the train state; runs fit/evaluate/predict.

    The `model` passed in is the trainer's model: after `fit` it holds the trained weights and
    state (as in Keras), and `trainer.model` is that same object."""

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
        steps_per_execution: int = 1,
        sharding: str | None = None,
        rules=None,
    ):
        self.policy = get_policy(mixed_precision)
        self.mixed_precision = self.policy.name if self.policy.mixed else None
        check_positive("grad_accum", grad_accum, integer=True)
        check_positive("steps_per_execution", steps_per_execution, integer=True)
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise JaxdlError(f"ema_decay must be in (0, 1), got {ema_decay!r}")
        self.grad_accum, self.ema_decay = grad_accum, ema_decay
        self.steps_per_execution = steps_per_execution
        self._lr_is_schedule = tx is not None or callable(learning_rate)
        self.fsdp = fsdp  # data parallel (False) or FSDP: see state_shardings
        # tensor parallel: 'tp' / 'auto' or a logical rules table (jaxdl.parallel.logical);
        # the rules also constrain the activations while the steps are traced
        self.sharding, self.rules = sharding, layout_rules(sharding, rules, fsdp=fsdp)
        self.augment = augment  # (batch, key) -> batch, inside the jitted train step
        if freeze:  # frozen layers' BatchNorm run in inference mode (Keras's trainable=False)
            freeze_batchnorm_of_params(model, freeze)
        self._model = model
        self.graphdef, params, model_state = split(model)
        self.model_config = getattr(model, "config", None)
        self.mesh = mesh if mesh is not None else make_mesh()
        if task is None:
            shape = getattr(self.model_config, "input_shape", None)
            if shape is None:
                raise JaxdlError("Trainer: pass task=... for a model without config.input_shape")
            out = output_shape(model, jax.ShapeDtypeStruct((1, *shape), jnp.float32))
            task = ClassificationTask(out[-1])
        self.task = task
        # the precision policy's graphdef (Flax layers computing in bf16/fp16) and apply
        self.compute_graphdef = self.policy.graphdef(self.graphdef, params, model_state)
        self.apply = self.policy.wrap(make_apply(self.compute_graphdef))
        self._plain_apply = make_apply(self.graphdef)
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
        # copies: the steps donate the state's buffers, and the user's model must keep its own
        params, model_state = jax.tree.map(jnp.copy, (params, model_state))
        state = self.task.create_state(
            params,
            model_state,
            self.tx,
            seed,
            ema=ema_decay is not None,
            loss_scale=initial_loss_scale if self.policy.loss_scaling else None,
        )
        self._flat = None
        self.state = put(state, self.state_shardings(state))
        self.state_sharding = self.state_shardings()
        self.step_count = 0
        self.position = (0, 0)
        self._acc = None
        self._stopped_on_nan = False
        self._callbacks: list[Callback] = []
        self._data_signature: dict | None = None
        self._checked: set = set()
        self._zero_metrics = None
        self._resident: dict[tuple, tuple] = {}  # (id x, id y) -> (x, y, DeviceData)
        self.stop_training = False
        self.epoch = 0
        self.epochs = 0
        self.batch_size = 0
        self.steps_per_epoch = 0
        self.samples_seen_epoch = 0
        self.compile_seconds = 0.0
        self._compile()

    # ---- the train state ------------------------------------------------------------------
    # During fit the state travels as its flat list of arrays (a list crosses jax.jit's C++
    # dispatch much faster than the nested nnx.State / Variable pytrees); `state` rebuilds the
    # TrainState when someone asks for it, and setting it hands the steps a new one.
    @property
    def state(self):
        if self._flat is not None:
            self._state, self._flat = jax.tree.unflatten(self._treedef, self._flat), None
        return self._state

    @state.setter
    def state(self, value):
        self._state, self._flat = value, None
        self._treedef = jax.tree.structure(value)

    def _leaves(self) -> list:
        """The state's arrays, in the order of `self._treedef` (the flat programs' argument)."""
        if self._flat is None:
            self._flat = jax.tree.leaves(self._state)
        return self._flat

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
        self.step = self.task.make_step(
            graphdef=self.compute_graphdef,
            apply=self.apply,
            policy=self.policy,
            tx=self.tx,
            regularizers=self.regularizers,
            loss_scaling=self.policy.loss_scaling,
            ema_decay=self.ema_decay,
            augment=self.augment,
        )
        self.step = with_rules(self.step, self.mesh, self.rules)
        self._programs: dict = {}
        out = (self.state_shardings(), rep)
        self._out = out
        # train_step(state, acc, batch) -> (state, acc): one step on a placed batch, exactly the
        # program fit runs on host batches (jaxdl bench times it). The state is donated; the
        # metric sums are not (the host may read an earlier step's while later ones run).
        self.train_step = self._program(1, resident=False)
        self._predict_step = jax.jit(
            with_rules(make_predict_step(self.apply), self.mesh, self.rules)
        )

    def _program(self, steps: int, *, resident: bool, x_scale=None):
        """The jitted program for `steps` steps per call, on host batches or resident data."""
        key = (steps, resident, x_scale)
        if key not in self._programs:
            prog = self._raw_program(steps, resident=resident, x_scale=x_scale)
            rep = replicated(self.mesh)
            outs = (*self._out, rep) if resident else self._out
            self._programs[key] = jax.jit(prog, donate_argnums=(0,), out_shardings=outs)
        return self._programs[key]

    def _raw_program(self, steps: int, *, resident: bool, x_scale=None):
        # a sweep's batches are [K, B, ...]: one per run, on the device of its runs
        sharding = None if getattr(self.task, "stacked", False) else data_sharding(self.mesh)
        return make_program(
            self.step, steps=steps, resident=resident, batch_sharding=sharding, x_scale=x_scale
        )

    def _flat_program(self, steps: int, *, resident: bool, x_scale=None):
        """`_program` over the state's flat list of arrays: (leaves, acc, ...) -> (leaves, acc,
        ...), the leaves donated. The same computation; only the argument's pytree differs."""
        key = ("flat", steps, resident, x_scale)
        if key not in self._programs:
            prog = self._raw_program(steps, resident=resident, x_scale=x_scale)
            treedef = self._treedef

            def flat(leaves, *args):
                state, *rest = prog(jax.tree.unflatten(treedef, leaves), *args)
                return (jax.tree.leaves(state), *rest)

            rep = replicated(self.mesh)
            state_out = jax.tree.leaves(self.state_shardings())
            outs = (state_out, rep, rep) if resident else (state_out, rep)
            self._programs[key] = jax.jit(flat, donate_argnums=(0,), out_shardings=outs)
        return self._programs[key]

    def init_metrics(self):
        """Fresh metric accumulators (zeros) on the mesh (one transfer of host zeros)."""
        if self._zero_metrics is None:
            self._zero_metrics = jax.device_get(init_metrics(self.task))
        return jax.device_put(self._zero_metrics, replicated(self.mesh))

    _init_metrics = init_metrics

    # ---- views --------------------------------------------------------------------------
    @property
    def params(self):
        return self.state.params

    @property
    def model(self) -> nnx.Module:
        """The model passed in, holding the current weights and state."""
        self.sync_model()
        return self._model

    def sync_model(self) -> None:
        """Copy the current params and model state into the model the trainer was given."""
        weights = self.task.model_weights(self.state)
        if weights is None:  # a sweep: K runs, no single model holds them
            return
        nnx.update(self._model, *_copy(weights))

    @property
    def learning_rate(self) -> float | None:
        lr = current_learning_rate(self.state.opt_state)
        if lr is None or np.ndim(lr):  # none, or one per run of a sweep
            return None
        return float(lr)

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
    def load_best(self, directory=None, *, step: int | None = None) -> int:
        """Load the best checkpoint (by its monitor) of the last `fit`'s ModelCheckpoint, or of
        `directory`, into the trainer and its model; returns its step (restore_weights)."""
        from jaxdl.train.checkpoint import best_checkpoint_args, restore_weights

        where, monitor, mode = best_checkpoint_args(self._callbacks, directory)
        return restore_weights(where, self, step=step, monitor=monitor, mode=mode)

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
        from jaxdl.train.tasks import check_inputs

        if len(ds) == 0:
            raise JaxdlError(f"{where} data is empty")
        check_batch_size(batch_size, self.mesh)
        if getattr(ds, "y", None) is not None:  # sources that know their labels without decoding
            self.task.check_labels(ds.y, where=f"{where} labels")
        # trace once abstractly: an input that does not fit the model fails here, clearly (once
        # per input signature: a second fit on the same data traces nothing)
        x0 = ds.x[0] if hasattr(ds, "x") else np.asarray(ds[0]["x"])
        dtype = np.float32 if x_scale_of(ds) is not None else x0.dtype
        sig = (batch_size, tuple(x0.shape), str(dtype))
        if sig in self._checked:
            return
        if x_scale_of(ds) is None:  # integer images with x_scale become float32 on the device
            check_inputs(x0, where=f"{where} inputs")  # object arrays, raw uint8 images
        self.task.check_input(
            self._plain_apply, self.state, jax.ShapeDtypeStruct((batch_size, *x0.shape), dtype)
        )
        self._checked.add(sig)

    def _resident_data(self, ds) -> DeviceData | None:
        """`ds` on the devices (built once per dataset object), or None: host batches."""
        if not DeviceData.fits(ds, self.mesh):
            if isinstance(ds, ArrayDataset) and jax.process_count() == 1:
                warnings.warn(
                    f"the in-memory dataset ({np.asarray(ds.x).nbytes / 2**20:,.0f} MiB) does not "
                    "fit the on-device input path; it comes as host batches instead",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return None
        # keyed by the arrays (an (x, y) tuple makes a new ArrayDataset on every call); the
        # entry holds them, so their ids stay theirs
        key = (id(ds.x), id(ds.y))
        held = self._resident.get(key)
        if held is None or held[0] is not ds.x or held[1] is not ds.y:
            if len(self._resident) >= 4:  # a few datasets (train, validation, test) at most
                self._resident.pop(next(iter(self._resident)))
            self._resident[key] = (ds.x, ds.y, DeviceData(ds, self.mesh))
        return self._resident[key][2]

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
        and val_* for the validation data). Afterwards the model passed to the Trainer holds
        the trained weights."""
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
            self._check_data(val, self._eval_batch_size(batch_size, len(val)), "validation")
        # in-memory data read in this process: resident on the devices
        resident = self._resident_data(train) if pipe.num_workers == 0 else None
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
        self.task.check_callbacks(cbs)
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
            logs = self._fit_epochs(pipe, resident, val, epochs, batch_size, cb, backup)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if backup is not None:
                backup.checkpoints.wait()
            self.sync_model()
        cb.on_train_end(logs)
        return history

    def _install_sigterm(self):
        if threading.current_thread() is not threading.main_thread():
            return None
        return signal.signal(signal.SIGTERM, lambda signum, frame: self._preempt.set())

    def _check_finite(self, acc) -> None:
        """Raise if a step accumulated into `acc` had a NaN or inf loss (reads two scalars)."""
        n, at = jax.device_get((acc["nonfinite"], acc["nonfinite_at"]))
        if getattr(self.task, "stacked", False):
            return  # a sweep reports each run's flag; one run's NaN does not stop the others
        if n and not self._stopped_on_nan:
            e, b = self.position
            raise NonFiniteLossError(
                f"the loss (or its gradients) became NaN or inf at step {int(at)} (epoch {e + 1}, "
                f"near batch {b}); training stopped. Params and checkpoints keep the values of "
                "the last finite step. Usual causes: a learning rate too high, NaN or inf in "
                "the inputs, log(0) in a custom loss, fp16 without loss scaling."
            )

    def _epoch_runner(self, pipe, resident, epoch: int, first: int):
        """Yield (batch index after the call, examples in it, run) for `epoch` from batch `first`;
        run(state, acc) -> (state, acc) dispatches `steps_per_execution` (or fewer, at the end)
        steps without waiting for them."""
        k = self.steps_per_execution
        nb = pipe.num_batches
        stacked = getattr(self.task, "stacked", False)
        if stacked and resident is None:
            raise JaxdlError(
                "a sweep needs in-memory data that fits on the device (an ArrayDataset read in "
                "this process); it gathers each run's batches there"
            )
        if resident is not None:
            tables = [
                index_batches(
                    len(pipe.source),
                    pipe.batch_size,
                    seed=seed,
                    epoch=epoch,
                    shuffle=pipe.shuffle,
                    drop_remainder=pipe.drop_remainder,
                )
                for seed in (self.task.data_seeds() if stacked else [pipe.seed])
            ]
            # [S, B], or [S, K, B] for a sweep (run k's batches in its own order)
            idx, w = (
                (np.stack(t, axis=1) for t in zip(*tables, strict=True)) if stacked else tables[0]
            )
            rep = replicated(self.mesh)
            idx_d, w_d = jax.device_put((idx.astype(np.int32), w), rep)
            cursor = [jax.device_put(np.int32(first), rep)]
            counts = w.reshape(len(w), -1).sum(axis=1)
            for i in range(first, nb, k):
                n = min(k, nb - i)
                prog = self._flat_program(n, resident=True, x_scale=x_scale_of(pipe.source))

                def run(leaves, acc, prog=prog):
                    leaves, acc, cursor[0] = prog(
                        leaves, acc, resident.arrays, idx_d, w_d, cursor[0]
                    )
                    return leaves, acc

                yield i + n, int(counts[i : i + n].sum()), run
            return
        host = pipe.host_batches(epoch, first)
        if k > 1:
            host = _stacked(host, k)

        if k > 1 and jax.process_count() > 1:
            raise JaxdlError(
                "steps_per_execution > 1 with several processes needs in-memory data on one "
                "process; use steps_per_execution=1"
            )
        stacked = NamedSharding(self.mesh, P(None, "data"))

        def place(b):
            n = int(np.asarray(b["weight"]).sum())
            if np.ndim(b["weight"]) == 2:  # a group of steps_per_execution batches
                return n, len(b["weight"]), jax.device_put(b, stacked)
            return n, 1, shard_batch(b, self.mesh, batch_size=pipe.batch_size)

        i = first
        for n_ex, steps, batch in prefetch(host, place, ahead=2):
            prog = self._flat_program(steps, resident=False, x_scale=x_scale_of(pipe.source))
            i += steps

            def run(state, acc, prog=prog, batch=batch):
                return prog(state, acc, batch)

            yield i, n_ex, run

    def _fit_epochs(self, pipe, resident, val, epochs, batch_size, cb, backup) -> dict:
        logs: dict[str, Any] = {}
        start_epoch, start_batch = self.position
        watch = _NonFiniteWatch()
        for epoch in range(start_epoch, epochs):
            self.epoch = epoch
            cb.on_epoch_begin(epoch)
            acc = self._acc if self._acc is not None else self.init_metrics()
            first = start_batch if epoch == start_epoch else 0
            self.samples_seen_epoch = 0
            batch_hooks = cb.has_batch_hooks()
            done = first
            inflight: collections.deque = collections.deque()
            for end, n_ex, run in self._epoch_runner(pipe, resident, epoch, first):
                i = end - 1
                if batch_hooks:
                    cb.on_train_batch_begin(i)
                # the first call of this trainer's program compiles it (a resumed run too)
                compiling = self.compile_seconds == 0.0
                t0 = time.perf_counter() if compiling else 0.0
                self._flat, acc = run(self._leaves(), acc)
                inflight.append(acc["nonfinite"])  # ready when its whole step is
                if len(inflight) > MAX_IN_FLIGHT:  # wait for an old step, not the new ones
                    inflight.popleft().block_until_ready()
                if compiling:  # the first call compiles: time it apart from the steps
                    jax.block_until_ready(acc)
                    self.compile_seconds = time.perf_counter() - t0
                self.samples_seen_epoch += n_ex
                self.step_count += end - done
                done = end
                self.position, self._acc = (epoch, end), acc
                # a NaN seen in an earlier step's (already computed) sums: stop now
                if (old := watch.take(acc)) is not None:
                    self._check_finite(old)
                if batch_hooks:
                    cb.on_train_batch_end(i, LazyLogs(lambda acc=acc: self.task.compute(acc)))
                if self._preempt.is_set():
                    self._check_finite(acc)
                    step = backup.checkpoints.latest_step()
                    if step != self.step_count:
                        step = self.save_checkpoint(backup.checkpoints)
                    backup.checkpoints.wait()
                    raise Preempted(step, backup.checkpoints.directory)
                if self.stop_training:
                    if np.any(
                        jax.device_get(acc["nonfinite"])
                    ):  # a callback (TerminateOnNaN) stopped on a NaN:
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
        self.task.make_eval_step(self.apply)  # a task without evaluation says so first
        ds = _as_dataset(data)
        bs = self._eval_batch_size(batch_size, len(ds))
        self._check_data(ds, bs, "evaluation")
        acc = self.init_metrics()
        params, model_state = self.task.eval_weights(self.state)
        resident = self._resident_data(ds)
        if resident is not None:
            idx, w = index_batches(len(ds), bs, seed=0, epoch=0, shuffle=False)
            prog = self._eval_program(len(idx), x_scale_of(ds))
            acc = prog(
                params,
                model_state,
                acc,
                resident.arrays,
                *jax.device_put((idx.astype(np.int32), w), replicated(self.mesh)),
            )
        else:
            host = batches(ds, bs, shuffle=False, rows=local_rows(bs, self.mesh))
            placed = prefetch(host, lambda b: shard_batch(b, self.mesh, batch_size=bs), ahead=2)
            inflight: collections.deque = collections.deque()
            for batch in placed:
                acc = self._eval_program(None, x_scale_of(ds))(params, model_state, acc, batch)
                inflight.append(acc)
                if len(inflight) > MAX_IN_FLIGHT:
                    jax.block_until_ready(inflight.popleft())
        return self.task.compute(acc, detailed=detailed) if detailed else self.task.compute(acc)

    def _eval_program(self, num_batches: int | None, x_scale=None):
        """All `num_batches` evaluation batches of resident data in one `lax.scan` (one call);
        with None, eval(params, model_state, acc, batch) -> acc on one placed batch."""
        key = ("eval", num_batches, x_scale)
        if key in self._programs:
            return self._programs[key]
        eval_step = with_rules(self.task.make_eval_step(self.apply), self.mesh, self.rules)
        sharding = data_sharding(self.mesh)
        if num_batches is None:

            def one(params, model_state, acc, batch):
                return accumulate(acc, eval_step(params, model_state, to_float(batch, x_scale)))

            self._programs[key] = jax.jit(one, out_shardings=replicated(self.mesh))
        else:

            def program(params, model_state, acc, data, idx, weight):
                def body(acc, iw):
                    rows, w = iw
                    batch = {k: jnp.take(v, rows, axis=0) for k, v in data.items()}
                    batch["weight"] = w
                    batch = jax.lax.with_sharding_constraint(to_float(batch, x_scale), sharding)
                    return accumulate(acc, eval_step(params, model_state, batch)), None

                return jax.lax.scan(body, acc, (idx, weight))[0]

            self._programs[key] = jax.jit(program, out_shardings=replicated(self.mesh))
        return self._programs[key]

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
            self._grad_fn = jax.jit(make_grad_fn(self._plain_apply, self.task))
        key = jax.random.fold_in(self.state.rng, self.state.step)
        return jax.device_get(self._grad_fn(self.state.params, self.state.model_state, batch, key))

    def _eval_batch_size(self, batch_size: int, n: int) -> int:
        check_positive("batch_size", batch_size, integer=True)
        d = self.mesh.shape["data"]
        bs = min(batch_size, n)
        return max(d, math.ceil(bs / d) * d)


@jax.jit
def _copy(tree):
    """Fresh buffers for every array of `tree`, in one call (the user's model gets these, so the
    state the steps donate is never theirs)."""
    return jax.tree.map(jnp.copy, tree)


def _stacked(host, k: int):
    """Groups of up to `k` consecutive host batches stacked on a new leading axis."""
    group: list = []
    for b in host:
        group.append(b)
        if len(group) == k:
            yield {key: np.stack([g[key] for g in group]) for key in group[0]}
            group = []
    if len(group) == 1:  # a single step: the one-step program
        yield group[0]
    elif group:
        yield {key: np.stack([g[key] for g in group]) for key in group[0]}


class _NonFiniteWatch:
    """Looks at the NaN flag of metric sums some steps old, once they are computed (never waits
    on the device): training stops soon after a NaN without a host round trip per step. The
    guarded step has already kept the NaN out of the state."""

    INTERVAL_S = 0.2

    def __init__(self):
        self.pending = None
        self._last = time.perf_counter()

    def take(self, acc):
        """Older sums that are computed and due to be read (or None); `acc` waits its turn."""
        now = time.perf_counter()
        if now - self._last < self.INTERVAL_S:
            return None
        old = self.pending
        if old is not None and not old["nonfinite"].is_ready():
            return None
        self.pending, self._last = acc, now
        return old
