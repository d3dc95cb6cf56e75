"""Keras-style callbacks (SCOPE.md section 4): a base class, the callback list, History and the
progress bar.

Callbacks run on the host, outside the jitted step. Batch-end `logs` are lazy: reading a key
fetches the running metrics from the device (one synchronisation); a callback that does not read
them costs nothing. Read them inside the hook: the buffers behind them are donated to the next step.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any


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
    `stop_training`, `params`, and the current `epoch`."""

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


class CallbackList(Callback):
    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks)

    def set_trainer(self, trainer):
        for c in self.callbacks:
            c.set_trainer(trainer)

    def __iter__(self):
        return iter(self.callbacks)

    def _call(self, name, *args):
        for c in self.callbacks:
            getattr(c, name)(*args)

    def on_train_begin(self, logs=None): self._call("on_train_begin", logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._call("on_epoch_end", epoch, logs)
    def on_train_batch_begin(self, batch, logs=None): self._call("on_train_batch_begin", batch, logs)
    def on_train_batch_end(self, batch, logs=None): self._call("on_train_batch_end", batch, logs)
    def on_test_begin(self, logs=None): self._call("on_test_begin", logs)
    def on_test_end(self, logs=None): self._call("on_test_end", logs)


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
    (synchronises) only then."""

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
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn(f"epoch {epoch + 1}/{t.epochs}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
                console=self.console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=t.steps_per_epoch, metrics="")

    def on_train_batch_end(self, batch, logs=None):
        if self._progress is None:
            return
        now = time.perf_counter()
        fields = {}
        if now - self._last >= self.refresh_s and logs is not None:
            self._last = now
            rate = (batch + 1) * self.trainer.batch_size / max(now - self._t0, 1e-9)
            fields["metrics"] = _fmt(logs, ("loss", "accuracy")) + f"  {rate:,.0f} samples/s"
        self._progress.update(self._task, completed=batch + 1, **fields)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        dt = time.perf_counter() - self._t0
        rate = self.trainer.samples_seen_epoch / max(dt, 1e-9)
        text = f"{_fmt(logs, self.show)}  {rate:,.0f} samples/s  {dt:.1f}s"
        if self._progress is not None:
            self._progress.update(self._task, metrics=text)
            self._progress.stop()
            self._progress = None
        else:
            self.console.print(f"epoch {epoch + 1}/{self.trainer.epochs}  {text}", soft_wrap=True)
