"""Keras-style callbacks with Keras 3's semantics and defaults.

Callbacks run on the host, outside the jitted step. Batch-end `logs` are lazy: reading a key
fetches the running metrics from the device (one synchronisation); a callback that does not read
them costs nothing, so a callback adds no host synchronisation on steps where it has nothing to do.

Every callback's state survives a restart: `get_state()` (JSON) and, for arrays such as
EarlyStopping's best weights, `get_tree()` / `tree_template()` / `set_tree()` are written into the
training checkpoint and restored *after* `on_train_begin` (Keras resets EarlyStopping's best value
at a restart; here a resumed run behaves as an uninterrupted one).

TensorBoard and CSVLogger live in `jaxdl.train.logging`.
"""

from __future__ import annotations

import math
import string
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jax

from jaxdl.errors import JaxdlError


class LazyLogs(Mapping):
    """A mapping computed on first access by `compute()` (a device-to-host fetch)."""

    def __init__(self, compute: Callable[[], dict], **static):
        self._compute = compute
        self._static = static
        self._value: dict | None = None

    def _get(self) -> dict:
        if self._value is None:
            self._value = {**self._compute(), **self._static}
        return self._value

    def __getitem__(self, k):
        if k in self._static:
            return self._static[k]
        return self._get()[k]

    def __iter__(self):
        return iter(self._get())

    def __len__(self):
        return len(self._get())

    @property
    def fetched(self) -> bool:
        return self._value is not None


class Callback:
    """Base class. `self.trainer` is set before training; it exposes `state` (the TrainState),
    `stop_training`, `params`, `epoch`, `epochs`, `position` ((epoch, batch index) of the next
    batch), `step_count` (optimizer steps, a host int: reading it costs no synchronisation),
    `learning_rate` / `set_learning_rate`, and `history`."""

    trainer: Any = None

    def set_trainer(self, trainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch: int, logs=None): ...
    def on_epoch_end(self, epoch: int, logs=None): ...
    def on_train_batch_begin(self, batch: int, logs=None): ...
    def on_train_batch_end(self, batch: int, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...

    # state carried across a resume (checkpointed by the training loop); JSON-serialisable
    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass

    # arrays carried across a resume: a pytree (or None) and the abstract tree to restore it into
    def get_tree(self):
        return None

    def tree_template(self):
        return None

    def set_tree(self, tree) -> None:
        pass


class CallbackList(Callback):
    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks)

    def has_batch_hooks(self) -> bool:
        """Whether any callback overrides a per-batch hook (else fit skips calling them)."""
        names = ("on_train_batch_begin", "on_train_batch_end")

        def overridden(c, n):
            f = getattr(c, n)  # a method, or a function set on the instance (LambdaCallback)
            return getattr(f, "__func__", f) is not getattr(Callback, n)

        return any(overridden(c, n) for c in self.callbacks for n in names)

    def set_trainer(self, trainer):
        for c in self.callbacks:
            c.set_trainer(trainer)

    def __iter__(self):
        return iter(self.callbacks)

    def _call(self, name, *args):
        for c in self.callbacks:
            getattr(c, name)(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs)


def callback_keys(callbacks: Iterable[Callback]) -> list[str]:
    """Stable names for the callbacks of a list ('EarlyStopping', 'EarlyStopping_1', ...): the
    keys of their state in a checkpoint."""
    seen: dict[str, int] = {}
    keys = []
    for c in callbacks:
        name = type(c).__name__
        n = seen.get(name, 0)
        seen[name] = n + 1
        keys.append(name if n == 0 else f"{name}_{n}")
    return keys


class History(Callback):
    """`history.history[key]` is the list of per-epoch values (Keras's History); `epoch` the
    epoch indices."""

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def get_state(self):
        return {"history": self.history, "epoch": self.epoch}

    def set_state(self, state):
        self.history = {k: list(v) for k, v in state.get("history", {}).items()}
        self.epoch = list(state.get("epoch", []))


def _fmt(logs: Mapping, keys: Iterable[str]) -> str:
    parts = []
    for k in keys:
        if k in logs:
            v = logs[k]
            parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return "  ".join(parts)


class ProgbarLogger(Callback):
    """A rich progress bar with loss, metrics and samples/s on a terminal; one line per epoch
    otherwise (logs, CI). Refreshes the metrics at most every `refresh_s` seconds, so it reads
    (synchronises) only then. The first step compiles the program: it says so while it waits,
    reports the compile time, and leaves it out of samples/s."""

    SHOW = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")

    def __init__(self, refresh_s: float = 0.5, file=None, show: Iterable[str] | None = None):
        self.refresh_s = refresh_s
        self.file = file
        self.show = tuple(show) if show else self.SHOW
        self._progress = None

    def _console(self):
        from rich.console import Console

        return Console(file=self.file or sys.stdout, highlight=False)

    def on_train_begin(self, logs=None):
        self.console = self._console()
        self.live = self.console.is_terminal

    def on_epoch_begin(self, epoch, logs=None):
        t = self.trainer
        self._t0 = self._last = time.perf_counter()
        self._epoch = epoch
        self._compile0 = t.compile_seconds
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn(f"epoch {epoch + 1}/{t.epochs}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[metrics]}"),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=t.steps_per_epoch, metrics="")

    def _compile_in_epoch(self) -> float:
        return self.trainer.compile_seconds - self._compile0

    def on_train_batch_begin(self, batch, logs=None):
        if self.trainer.compile_seconds == 0.0:  # this call compiles (XLA: seconds)
            if self._progress is not None:
                self._progress.update(self._task, metrics="compiling the training step...")
            else:
                self.console.print("compiling the training step...", soft_wrap=True)

    def on_train_batch_end(self, batch, logs=None):
        if self._progress is None:
            return
        now = time.perf_counter()
        fields = {}
        if now - self._last >= self.refresh_s and logs is not None:
            self._last = now
            busy = max(now - self._t0 - self._compile_in_epoch(), 1e-9)
            rate = self.trainer.samples_seen_epoch / busy
            fields["metrics"] = _fmt(logs, ("loss", "accuracy")) + f"  {rate:,.0f} samples/s"
        self._progress.update(self._task, completed=batch + 1, **fields)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        dt = time.perf_counter() - self._t0
        compiled = self._compile_in_epoch()
        rate = self.trainer.samples_seen_epoch / max(dt - compiled, 1e-9)
        text = f"{_fmt(logs, self.show)}  {rate:,.0f} samples/s  {dt:.1f}s"
        if compiled > 0:
            text += f" (compile {compiled:.1f}s)"
        if self._progress is not None:
            self._progress.update(self._task, metrics=text)
            self._progress.stop()
            self._progress = None
        else:
            self.console.print(f"epoch {epoch + 1}/{self.trainer.epochs}  {text}", soft_wrap=True)


# ---- monitored quantities ------------------------------------------------------------------

_MAX_HINTS = ("acc", "accuracy", "auc", "precision", "recall", "f1")


class _Monitor:
    """Keras's MonitorCallback: `monitor`, `mode` ('auto' infers max for accuracy-like names,
    min for losses), `min_delta` (absolute), `best` starting at `baseline`."""

    def _init_monitor(self, monitor: str, mode: str, min_delta: float, baseline=None):
        if mode not in ("auto", "min", "max"):
            raise JaxdlError(
                f"{type(self).__name__}: mode must be 'auto', 'min' or 'max', got {mode!r}"
            )
        if mode == "auto":
            name = monitor.removeprefix("val_")
            if name == "loss" or name.endswith("loss") or name in ("mae", "mse", "perplexity"):
                mode = "min"
            elif any(h in name for h in _MAX_HINTS):
                mode = "max"
            else:
                raise JaxdlError(
                    f"{type(self).__name__}: cannot tell whether {monitor!r} should be "
                    "minimised or maximised; pass mode='min' or mode='max'"
                )
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)
        self.best = baseline

    def _is_improvement(self, value: float, reference) -> bool:
        if reference is None:
            return True
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def _value(self, logs) -> float:
        logs = logs or {}
        if self.monitor not in logs:
            raise JaxdlError(
                f"{type(self).__name__}: monitor {self.monitor!r} is not in the logs; "
                f"available: {', '.join(sorted(logs)) or '(none)'}"
                + (" (val_* needs validation_data)" if self.monitor.startswith("val_") else "")
            )
        return float(logs[self.monitor])


# ---- the Keras callbacks ---------------------------------------------------------------------


class EarlyStopping(Callback, _Monitor):
    """Stop when `monitor` has stopped improving (Keras 3 semantics and defaults).

    wait counts epochs without improvement (by more than `min_delta`) from `start_from_epoch` on;
    training stops when wait >= patience (never at epoch 0). With `baseline`, an improvement over
    the best value that does not beat the baseline does not reset wait. `restore_best_weights`
    puts back the weights of the best epoch at the end of training (only if it ever saw one)."""

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ):
        self._init_monitor(monitor, mode, min_delta, None)
        if patience < 0 or start_from_epoch < 0:
            raise JaxdlError(
                f"EarlyStopping: patience and start_from_epoch must be >= 0, got "
                f"{patience} and {start_from_epoch}"
            )
        self.patience, self.verbose, self.baseline = patience, verbose, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = self._value(logs)
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.trainer.state.params, epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                # the step donates the live buffers: keep a copy
                self.best_weights = jax.tree.map(lambda a: a.copy(), self.trainer.state.params)
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(
                    "Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
            self.trainer.set_params(self.best_weights)

    def get_state(self):
        return {
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
        }

    def set_state(self, state):
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
        self.best, self.best_epoch = state["best"], state["best_epoch"]

    def get_tree(self):
        return self.best_weights

    def tree_template(self):
        return self.trainer.abstract_params()

    def set_tree(self, tree):
        self.best_weights = tree


class ReduceLROnPlateau(Callback, _Monitor):
    """Multiply the learning rate by `factor` when `monitor` has not improved (by `min_delta`) for
    `patience` epochs; then wait `cooldown` epochs; never below `min_lr` (Keras 3 defaults). Needs
    a constant learning rate (a schedule would overwrite it at the next step)."""

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ):
        if not 0.0 < factor < 1.0:
            raise JaxdlError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        self._init_monitor(monitor, mode, min_delta, None)
        self.factor, self.patience, self.verbose = factor, patience, verbose
        self.cooldown, self.min_lr = cooldown, min_lr
        self.best, self.cooldown_counter, self.wait = None, 0, 0

    def on_train_begin(self, logs=None):
        if hasattr(self.trainer, "check_learning_rate_settable"):
            self.trainer.check_learning_rate_settable("ReduceLROnPlateau")
        self.best, self.cooldown_counter, self.wait = None, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        current = self._value(logs)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = self.trainer.learning_rate
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    self.trainer.set_learning_rate(new)
                    if self.verbose:
                        print(
                            f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}."
                        )
                    self.cooldown_counter, self.wait = self.cooldown, 0

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state):
        self.best, self.wait, self.cooldown_counter = (
            state["best"],
            state["wait"],
            state["cooldown_counter"],
        )


class LearningRateScheduler(Callback):
    """At the start of each epoch set the learning rate to `schedule(epoch, lr)` (Keras 3)."""

    def __init__(self, schedule: Callable[[int, float], float], verbose: int = 0):
        self.schedule, self.verbose = schedule, verbose

    def on_train_begin(self, logs=None):
        self.trainer.check_learning_rate_settable("LearningRateScheduler")

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.schedule(epoch, self.trainer.learning_rate)
        if not isinstance(lr, (int, float)) or not math.isfinite(lr):
            raise JaxdlError(
                f"LearningRateScheduler: schedule({epoch}, lr) must return a finite "
                f"number, got {lr!r}"
            )
        self.trainer.set_learning_rate(float(lr))
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")


class TerminateOnNaN(Callback):
    """Stop (or raise, with `raise_error`) when the running loss becomes NaN or inf. It reads the
    loss after every batch (one synchronisation per step), as Keras's does; the Trainer's own
    guard stops within one step without that cost."""

    def __init__(self, raise_error: bool = False):
        self.raise_error = raise_error

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            if self.raise_error:
                raise RuntimeError(
                    f"NaN or Inf found in input tensor: loss {loss} at batch {batch}"
                )
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.trainer.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions: on_epoch_begin(epoch, logs), on_epoch_end(epoch, logs),
    on_train_batch_begin(batch, logs) (alias on_batch_begin), on_train_batch_end(batch, logs)
    (alias on_batch_end), on_train_begin(logs), on_train_end(logs), on_test_begin/end(logs)."""

    _HOOKS = (
        "on_epoch_begin",
        "on_epoch_end",
        "on_train_batch_begin",
        "on_train_batch_end",
        "on_train_begin",
        "on_train_end",
        "on_test_begin",
        "on_test_end",
    )

    def __init__(self, **hooks: Callable):
        hooks = dict(hooks)
        for alias, name in (
            ("on_batch_begin", "on_train_batch_begin"),
            ("on_batch_end", "on_train_batch_end"),
        ):
            if alias in hooks:
                hooks[name] = hooks.pop(alias)
        bad = set(hooks) - set(self._HOOKS)
        if bad:
            raise JaxdlError(
                f"LambdaCallback: unknown hook(s) {sorted(bad)}; "
                f"expected some of {list(self._HOOKS)}"
            )
        for name, fn in hooks.items():
            setattr(self, name, fn if fn is not None else getattr(self, name))


class SwapEMAWeights(Callback):
    """Evaluate with the exponential moving average of the weights (Keras 3's SwapEMAWeights with
    `use_ema`): the Trainer must be built with `ema_decay` (e.g. 0.99, Keras's ema_momentum); the
    average lives in `TrainState.ema_params` and is updated inside the train step. Validation and
    `evaluate` inside fit see the averaged weights; with `swap_on_epoch` they stay in place from
    each epoch end to the next epoch start (so checkpoints written at the epoch end hold them),
    and after the last epoch."""

    def __init__(self, swap_on_epoch: bool = False):
        self.swap_on_epoch = swap_on_epoch
        self.ema_in_model = False

    def set_trainer(self, trainer):
        if getattr(trainer, "ema_decay", None) is None:
            raise JaxdlError("SwapEMAWeights needs a Trainer built with ema_decay (e.g. 0.99)")
        super().set_trainer(trainer)

    def _swap(self):
        s = self.trainer.state
        self.trainer.state = s.replace(params=s.ema_params, ema_params=s.params)
        self.ema_in_model = not self.ema_in_model

    def on_epoch_begin(self, epoch, logs=None):
        if self.swap_on_epoch and self.ema_in_model:
            self._swap()

    def on_epoch_end(self, epoch, logs=None):
        if self.swap_on_epoch and not self.ema_in_model:
            self._swap()

    def on_test_begin(self, logs=None):
        if not self.ema_in_model:
            self._swap()
            self._swapped_for_test = True

    def on_test_end(self, logs=None):
        if getattr(self, "_swapped_for_test", False):
            self._swap()
            self._swapped_for_test = False

    def get_state(self):
        return {"ema_in_model": self.ema_in_model}

    def set_state(self, state):
        self.ema_in_model = state["ema_in_model"]


def _save_freq(value, who: str):
    if value == "epoch" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise JaxdlError(
        f"{who}: save_freq must be 'epoch' or a positive number of steps, got {value!r}"
    )


class BackupAndRestore(Callback):
    """Resume after an interruption (Keras 3's BackupAndRestore): the full training checkpoint
    (train state, data position, running metrics, every callback's state) is written to
    `backup_dir` at each epoch end, or every `save_freq` steps; `fit` restores the newest complete
    one before its first step and continues from the exact batch, so the result is bit-identical
    to an uninterrupted run. `delete_checkpoint` removes the backups when training completes
    (Keras's default; `jaxdl train --workdir` keeps them). `keep`: how many to keep (>= 2 leaves
    one to fall back on if the newest is damaged). SIGTERM during fit saves and stops (Trainer).
    `run_config`: JSON settings of the run (the CLI passes its hyperparameters); a resume with
    different ones raises CheckpointMismatchError listing them, except the names in
    `allow_changes`, which are recorded in `changes`. A resume with fewer `epochs` than the run
    has done is refused."""

    def __init__(
        self,
        backup_dir: str | Path,
        save_freq: str | int = "epoch",
        delete_checkpoint: bool = True,
        keep: int = 2,
        async_save: bool = True,
        run_config: dict | None = None,
        allow_changes: Iterable[str] = (),
    ):
        from jaxdl.train.checkpoint import Checkpoints

        self.save_freq = _save_freq(save_freq, "BackupAndRestore")
        if keep < 1:
            raise JaxdlError(f"BackupAndRestore: keep must be >= 1, got {keep}")
        self.delete_checkpoint = delete_checkpoint
        self.checkpoints = Checkpoints(backup_dir, keep=keep, async_save=async_save)
        self.run_config = dict(run_config) if run_config is not None else None
        self.allow_changes = frozenset(allow_changes)
        self.changes: list[dict] = []

    def get_state(self):
        return {"run_config": self.run_config, "changes": self.changes}

    def on_train_begin(self, logs=None):
        # the settings and epochs are checked against the newest checkpoint before fit restores
        # it, so that a changed setting is reported as such (not as a changed optimizer state)
        step = self.checkpoints.latest_step()
        if step is None:
            return
        try:
            meta = self.checkpoints.read_meta(step)
            state = meta["callbacks"]["BackupAndRestore"]
            position = tuple(meta["position"])
        except Exception:  # unreadable: restore moves it aside and tries an older one
            return
        self._check_resume(state, position, record=False)

    def set_state(self, state):
        """On a resume: refuse to continue a run whose recorded settings (`run_config`) differ
        from this one's, unless the names are in `allow_changes` (then the changes are recorded
        in `changes` and in every later checkpoint); refuse an `epochs` below the epochs done."""
        self._check_resume(state, tuple(self.trainer.position), record=True)

    def _check_resume(self, state, position, *, record: bool):
        from jaxdl.train.checkpoint import CheckpointMismatchError

        t = self.trainer
        done, at = position
        if done > t.epochs or (done == t.epochs and at > 0):
            raise JaxdlError(
                f"epochs={t.epochs}: the run in {str(self.checkpoints.directory)!r} has already "
                f"done {done} epoch(s); give epochs >= {done} to continue it (or another "
                "directory to start anew)"
            )
        changes = list(state.get("changes") or [])
        saved = state.get("run_config")
        if saved is not None and self.run_config is not None:
            diff, names = [], []
            for k in sorted(set(saved) | set(self.run_config)):
                old, new = saved.get(k), self.run_config.get(k)
                if old != new and k not in self.allow_changes:
                    diff.append(f"{k}: checkpoint {old!r}, now {new!r}")
                    names.append(k)
                elif old != new:
                    changes.append({"name": k, "from": old, "to": new, "at_step": t.step_count})
            if diff:
                raise CheckpointMismatchError(
                    f"the run in {str(self.checkpoints.directory)!r} was started with other "
                    f"settings ({'; '.join(diff)}); a resume continues the same run: use the "
                    "same settings, another workdir, or allow the change with --allow-changes "
                    + ",".join(names)
                )
        if record:
            self.changes = changes

    def save(self) -> None:
        self.trainer.save_checkpoint(self.checkpoints)

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq != "epoch" and self.trainer.step_count % self.save_freq == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self.save()

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:
            self.checkpoints.delete_all()
        else:
            self.checkpoints.wait()


class _TemplateKeys(string.Formatter):
    def fields(self, template: str) -> set[str]:
        return {f.split(".")[0].split("[")[0] for _, f, _, _ in self.parse(template) if f}


class ModelCheckpoint(Callback, _Monitor):
    """Save the model (weights only, or the full training checkpoint) at each epoch end or every
    `save_freq` steps (Keras 3 semantics and defaults), into numbered orbax checkpoints in
    `directory` (step = epoch + 1 for save_freq='epoch', the optimizer step otherwise).

    save_best_only: only when `monitor` improves on the best so far (which survives restarts).
    keep: keep the `keep` best by `monitor` (orbax `BestN` with `best_fn`), or the newest `keep`
    when `save_best_only` is False and monitor is None. name: a template with `{epoch}` and any log
    key, e.g. 'epoch{epoch:02d}-{val_loss:.3f}', rendered into each checkpoint's metadata and
    listed in `saved` as (step, name)."""

    def __init__(
        self,
        directory: str | Path,
        monitor: str | None = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        initial_value_threshold: float | None = None,
        keep: int | None = None,
        name: str = "epoch{epoch:03d}",
        async_save: bool = True,
    ):
        from jaxdl.train.checkpoint import Checkpoints

        if save_best_only and monitor is None:
            raise JaxdlError("ModelCheckpoint: save_best_only=True needs a monitor")
        if monitor is not None:
            self._init_monitor(monitor, mode, 0.0, initial_value_threshold)
        else:
            self.monitor, self.mode, self.best = None, "min", None
        self.save_freq = _save_freq(save_freq, "ModelCheckpoint")
        if self.save_freq != "epoch" and monitor is not None and save_best_only:
            raise JaxdlError(
                "ModelCheckpoint: save_best_only with an integer save_freq would "
                "compare running training metrics; use save_freq='epoch'"
            )
        self.verbose, self.save_best_only, self.save_weights_only = (
            verbose,
            save_best_only,
            save_weights_only,
        )
        self.name, self._name_keys = name, _TemplateKeys().fields(name)
        self.saved: list[tuple[int, str]] = []
        self.checkpoints = Checkpoints(
            directory,
            keep=keep,
            best_metric=monitor if (keep and monitor) else None,
            best_mode=self.mode,
            async_save=async_save,
        )

    def _save(self, step: int, epoch: int, logs):
        logs = dict(logs or {})
        missing = self._name_keys - set(logs) - {"epoch", "step"}
        if missing:
            raise JaxdlError(
                f"ModelCheckpoint: name template {self.name!r} uses {sorted(missing)}, "
                f"not in the logs; available: {', '.join(sorted(logs))}"
            )
        name = self.name.format(**{**logs, "epoch": epoch + 1, "step": step})
        metrics = None
        if self.monitor is not None:
            current = self._value(logs)
            if self.save_best_only and not self._is_improvement(current, self.best):
                return
            if self.save_best_only:
                if self.verbose:
                    print(
                        f"Epoch {epoch + 1}: {self.monitor} improved from {self.best} to {current}"
                    )
                self.best = current
            metrics = {self.monitor: current}
        self.trainer.save_checkpoint(
            self.checkpoints,
            step=step,
            weights_only=self.save_weights_only,
            extra_meta={"name": name, "epoch": epoch + 1, "metrics": metrics},
            metrics=metrics,
        )
        self.saved.append((step, name))

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq != "epoch" and self.trainer.step_count % self.save_freq == 0:
            self._save(self.trainer.step_count, self.trainer.epoch, dict(logs or {}))

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch + 1, epoch, logs)

    def on_train_end(self, logs=None):
        self.checkpoints.wait()

    def get_state(self):
        return {"best": self.best, "saved": [list(s) for s in self.saved]}

    def set_state(self, state):
        self.best = state["best"]
        self.saved = [tuple(s) for s in state["saved"]]


class RemoteMonitor(Callback):
    """Keras's RemoteMonitor: at the end of every epoch, POST the epoch's logs to `root + path`
    as a JSON object {"epoch": epoch, <metric>: <value>, ...} (values as Python numbers).
    `send_as_json=False` (Keras's default) sends a form body (application/x-www-form-urlencoded)
    with one field `field` holding that JSON text; `send_as_json=True` sends the JSON itself
    (application/json). `headers` are added to the request. An unreachable server gives a
    warning, as in Keras, and training goes on. Uses the standard library (urllib), no
    `requests`."""

    def __init__(
        self,
        root: str = "http://localhost:9000",
        path: str = "/publish/epoch/end/",
        field: str = "data",
        headers: Mapping[str, str] | None = None,
        send_as_json: bool = False,
        timeout: float = 10.0,
    ):
        if not isinstance(root, str) or not root.startswith(("http://", "https://")):
            raise JaxdlError(f"RemoteMonitor: root must be an http(s) URL, got {root!r}")
        self.root, self.path, self.field = root, path, field
        self.headers = dict(headers or {})
        self.send_as_json, self.timeout = send_as_json, timeout

    @staticmethod
    def _number(v):
        if hasattr(v, "item") and getattr(v, "size", 1) == 1:  # numpy / jax scalars
            return v.item()
        return v

    def payload(self, epoch: int, logs=None) -> dict:
        """The object that is posted: the epoch and every log entry as a Python value."""
        send = {"epoch": epoch}
        for k, v in (logs or {}).items():
            send[k] = self._number(v)
        return send

    def on_epoch_end(self, epoch, logs=None):
        import json
        import urllib.error
        import urllib.parse
        import urllib.request
        import warnings

        send = self.payload(epoch, logs)
        if self.send_as_json:
            body, ctype = json.dumps(send).encode(), "application/json"
        else:
            body = urllib.parse.urlencode({self.field: json.dumps(send)}).encode()
            ctype = "application/x-www-form-urlencoded"
        req = urllib.request.Request(
            self.root + self.path,
            data=body,
            headers={"Content-Type": ctype, **self.headers},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as e:
            warnings.warn(
                f"Could not reach RemoteMonitor root server at {self.root} ({e})", stacklevel=2
            )


__all__ = [
    "LazyLogs",
    "Callback",
    "CallbackList",
    "History",
    "ProgbarLogger",
    "EarlyStopping",
    "ReduceLROnPlateau",
    "LearningRateScheduler",
    "TerminateOnNaN",
    "LambdaCallback",
    "SwapEMAWeights",
    "BackupAndRestore",
    "ModelCheckpoint",
    "RemoteMonitor",
    "callback_keys",
]
