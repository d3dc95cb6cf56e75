"""fit / evaluate / predict (Keras's verbs) over the pure steps, data parallel on a mesh.

    trainer = Trainer(create_model("mlp"), optimizer="adam", learning_rate=1e-3)
    history = trainer.fit(splits.train, epochs=10, batch_size=64, validation_data=splits.val)
    trainer.evaluate(splits.test)

The steps are jitted once with the train state replicated over the mesh (or sharded, `fsdp=True`:
see jaxdl.parallel.sharding) and each batch sharded on its `data` axis (all devices by default,
each process feeding its own rows), so the same code runs on 1 or N devices and hosts. Batch
size: the number of examples per step; batch_size = len(train) is full-batch gradient descent,
1 stochastic, anything between mini-batch (one epoch = ceil(N / batch_size) iterations).
"""

from __future__ import annotations

import math
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
from jaxdl.errors import JaxdlError, check_positive
from jaxdl.functional import make_apply, merge, split
from jaxdl.parallel import local_rows, state_shardings
from jaxdl.parallel.mesh import check_batch_size, make_mesh, replicate, replicated, shard_batch
from jaxdl.train.callbacks import Callback, CallbackList, History, LazyLogs, ProgbarLogger
from jaxdl.train.optim import Regularizer, current_learning_rate, make_optimizer
from jaxdl.train.state import TrainState
from jaxdl.train.steps import make_eval_step, make_predict_step, make_train_step
from jaxdl.train.tasks import ClassificationTask, Task


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
    raise JaxdlError(f"data must be an ArrayDataset (or another random-access source) or an (x, y) "
                     f"tuple, got {type(data).__name__}")


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
        fsdp: bool = False,
        augment=None,
    ):
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
        self.tx = tx if tx is not None else make_optimizer(
            optimizer, learning_rate, clip_norm=clip_norm, **(optimizer_options or {}))
        self.regularizers = tuple(regularizers)
        self.seed = seed
        self.augment = augment  # (batch, key) -> batch, inside the jitted train step
        # data parallel: state replicated; fsdp: params and optimizer state sharded on 'data'
        self.fsdp = fsdp
        state = TrainState.create(params, model_state, self.tx, seed)
        self.state_sharding = state_shardings(state, self.mesh, fsdp=fsdp)
        self.state = jax.device_put(state, self.state_sharding)
        self.stop_training = False
        self.epoch = 0
        self.epochs = 0
        self.batch_size = 0
        self.steps_per_epoch = 0
        self.samples_seen_epoch = 0
        self._compile()

    # ---- jitted steps ---------------------------------------------------------------------
    def _compile(self):
        rep = replicated(self.mesh)
        state_sh = self.state_sharding
        self._train_step = jax.jit(
            make_train_step(self.apply, self.tx, self.task, self.regularizers, self.augment),
            donate_argnums=(0, 1), out_shardings=(state_sh, rep))
        self._eval_step = jax.jit(make_eval_step(self.apply, self.task), donate_argnums=(2,), out_shardings=rep)
        self._predict_step = jax.jit(make_predict_step(self.apply))

    def _init_metrics(self):
        return replicate(self.task.init_metrics(), self.mesh)

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
        jax.eval_shape(lambda p, s, x: self.apply(p, s, x)[0], self.state.params, self.state.model_state, x)

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
        and val_* for the validation data). `train` is a source (or (x, y)) batched by a
        `Pipeline(train, batch_size, shuffle=shuffle, seed=self.seed)`, or a `Pipeline` (whose
        batch size, seed and workers are then used)."""
        check_positive("epochs", epochs, integer=True)
        check_positive("batch_size", batch_size, integer=True)
        if not isinstance(train, Pipeline):
            check_batch_size(batch_size, self.mesh)
        # each process reads only its rows of every global batch (all of them in one process)
        pipe = train if isinstance(train, Pipeline) else Pipeline(
            _as_dataset(train), batch_size, shuffle=shuffle, seed=self.seed,
            rows=local_rows(batch_size, self.mesh))
        train, batch_size = pipe.source, pipe.batch_size
        val = _as_dataset(validation_data) if validation_data is not None else None
        self._check_data(train, batch_size, "training")
        if val is not None:
            self._check_data(val, batch_size, "validation")
        history = History()
        cbs = [history] + ([ProgbarLogger()] if verbose else []) + list(callbacks)
        cb = CallbackList(cbs)
        cb.set_trainer(self)
        self.epochs, self.batch_size = epochs, batch_size
        self.steps_per_epoch = pipe.num_batches
        self.stop_training = False
        self.history = history
        cb.on_train_begin()
        logs: dict[str, Any] = {}
        for epoch in range(initial_epoch, epochs):
            self.epoch = epoch
            cb.on_epoch_begin(epoch)
            acc = self._init_metrics()
            self.samples_seen_epoch = 0
            for i, batch in enumerate(pipe.epoch(epoch)):
                cb.on_train_batch_begin(i)
                self.samples_seen_epoch += int(batch["weight"].sum())
                if pipe.mesh is None:
                    batch = shard_batch(batch, self.mesh, batch_size=batch_size)
                self.state, acc = self._train_step(self.state, acc, batch)
                cb.on_train_batch_end(i, LazyLogs(lambda acc=acc: self.task.compute(acc)))
                if self.stop_training:
                    break
            logs = self.task.compute(acc)
            if (lr := self.learning_rate) is not None:
                logs["lr"] = lr
            if val is not None:
                logs.update({f"val_{k}": v for k, v in self.evaluate(val, batch_size=batch_size).items()})
            cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cb.on_train_end(logs)
        return history

    def evaluate(self, data, *, batch_size: int = 256, detailed: bool = False) -> dict[str, Any]:
        """Metrics over every example of `data` (the last batch is padded, padding weighs 0)."""
        ds = _as_dataset(data)
        bs = self._eval_batch_size(batch_size, len(ds))
        self._check_data(ds, bs, "evaluation")
        acc = self._init_metrics()
        for batch in batches(ds, bs, shuffle=False, rows=local_rows(bs, self.mesh)):
            acc = self._eval_step(self.state.params, self.state.model_state, acc,
                                  shard_batch(batch, self.mesh, batch_size=bs))
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
            out = self._predict_step(self.state.params, self.state.model_state,
                                     shard_batch(x_local, self.mesh, batch_size=bs))
            out = process_allgather(out, tiled=True) if jax.process_count() > 1 else np.asarray(out)
            outs.append(out[batch["weight"] > 0])
        return np.concatenate(outs)

    def _eval_batch_size(self, batch_size: int, n: int) -> int:
        check_positive("batch_size", batch_size, integer=True)
        d = self.mesh.shape["data"]
        bs = min(batch_size, n)
        return max(d, math.ceil(bs / d) * d)
