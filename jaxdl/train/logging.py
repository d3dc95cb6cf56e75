"""Training logs on disk: TensorBoard event files (tensorboardX, no TensorFlow) and CSV.

TensorBoard writes, under `log_dir/train` and `log_dir/validation` as Keras does:
scalars (every epoch log: loss, metrics, lr, and samples/s; with an integer `update_freq`, also
every N steps under `log_dir/train_steps`: batch_loss, the batch metrics (running means of the
epoch so far) and batch_learning_rate, indexed by step), histograms of the weights and of the
gradients (every `histogram_freq` epochs), images (a grid of input samples and the validation
confusion matrix drawn with matplotlib, every `image_freq` epochs), the model structure as text
(the jaxdl.bench.summary table), and on request a `jax.profiler` trace of batches
`profile_batch=(start, stop)` for the profile tab.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

import jax
import numpy as np

from jaxdl.errors import JaxdlError
from jaxdl.functional import named_leaves
from jaxdl.train.callbacks import Callback


def confusion_matrix_figure(cm, class_names=None):
    """A matplotlib figure of a confusion matrix (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    n = cm.shape[0]
    names = class_names or [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(max(4, n * 0.5), max(4, n * 0.5)))
    ax.imshow(cm, cmap="Blues")
    ax.set(
        xticks=range(n),
        yticks=range(n),
        xticklabels=names,
        yticklabels=names,
        xlabel="predicted",
        ylabel="true",
        title="confusion matrix",
    )
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                int(cm[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    fig.tight_layout()
    return fig


def figure_to_array(fig) -> np.ndarray:
    """RGB uint8 [H, W, 3] of a matplotlib figure (closes it)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def image_grid(x: np.ndarray, max_images: int = 16) -> np.ndarray:
    """x: [B, H, W, C] (or [B, H, W]) -> one [rows*H, cols*W, C] image scaled to [0, 1]."""
    x = np.asarray(x[:max_images], np.float32)
    if x.ndim == 3:
        x = x[..., None]
    x = (x - x.min()) / max(float(x.max() - x.min()), 1e-12)
    b, h, w, c = x.shape
    cols = int(np.ceil(np.sqrt(b)))
    rows = int(np.ceil(b / cols))
    grid = np.zeros((rows * h, cols * w, c), np.float32)
    for k in range(b):
        r, q = divmod(k, cols)
        grid[r * h : (r + 1) * h, q * w : (q + 1) * w] = x[k]
    return grid


STEPS_RUN = "train_steps"  # the per-step scalars: a run of their own, indexed by step


class TensorBoard(Callback):
    """Keras 3's TensorBoard callback over tensorboardX (defaults: histogram_freq 0,
    write_graph True, write_images False, update_freq 'epoch', profile_batch 0).

    update_freq: 'epoch', or N to also write the running training loss every N steps (each such
    write reads the metrics, one synchronisation). histogram_freq: every N epochs, histograms of
    every weight and of its gradient on the first training batch (one extra gradient evaluation).
    write_images: input samples and the validation confusion matrix each epoch (classifiers).
    write_graph: the model structure as text. profile_batch: (start, stop) step numbers to
    trace with jax.profiler (viewable in TensorBoard's profile tab), or 0 for none."""

    def __init__(
        self,
        log_dir: str | Path = "logs",
        histogram_freq: int = 0,
        write_graph: bool = True,
        write_images: bool = False,
        update_freq: str | int = "epoch",
        profile_batch: int | tuple[int, int] = 0,
        sample_data=None,
    ):
        if update_freq != "epoch" and not (isinstance(update_freq, int) and update_freq > 0):
            raise JaxdlError(
                f"TensorBoard: update_freq must be 'epoch' or a positive int, got {update_freq!r}"
            )
        if isinstance(profile_batch, int):
            profile_batch = (profile_batch, profile_batch) if profile_batch > 0 else (0, 0)
        if profile_batch[0] > profile_batch[1] or profile_batch[0] < 0:
            raise JaxdlError(
                "TensorBoard: profile_batch must be (start, stop) with 0 <= start <= stop, "
                f"got {profile_batch}"
            )
        self.log_dir = Path(log_dir)
        self.histogram_freq, self.write_graph, self.write_images = (
            histogram_freq,
            write_graph,
            write_images,
        )
        self.update_freq, self.profile_batch = update_freq, profile_batch
        self.sample_data = sample_data  # ArrayDataset or (x, y): images and gradient histograms
        self._writers: dict = {}
        self._profiling = False
        self._purge_step: int | None = None
        self._purge_batch: int | None = None

    def _writer(self, name: str):
        from jaxdl.train.checkpoint import check_not_link
        from jaxdl.viz import event_writer

        if name not in self._writers:
            check_not_link(self.log_dir, what="TensorBoard log_dir")
            check_not_link(self.log_dir / name, what="TensorBoard log directory")
            purge = self._purge_step
            if purge is not None and name == STEPS_RUN:  # indexed by step, not by epoch
                purge = self._purge_batch
            self._writers[name] = event_writer(self.log_dir / name, purge_step=purge)
        return self._writers[name]

    def set_state(self, state):
        """On a resume: later writers carry a purge step (the restored epoch; the restored step
        for the per-step run), so TensorBoard drops the scalars an interrupted run wrote past its
        checkpoint and the curves equal an uninterrupted run's."""
        self._purge_step = int(self.trainer.position[0])
        self._purge_batch = int(self.trainer.step_count) + 1
        had_text = "train" in self._writers
        for w in self._writers.values():
            w.close()
        self._writers = {}
        if had_text and self._purge_step == 0:  # the model text (step 0) was purged too
            self._writer("train").add_text("model", f"```\n{self._structure()}\n```", 0)

    def on_train_begin(self, logs=None):
        from jaxdl.train.checkpoint import check_not_link

        check_not_link(self.log_dir, what="TensorBoard log_dir")
        self._purge_step = None
        t = self.trainer
        if self.write_graph and t.model_config is not None:
            self._writer("train").add_text("model", f"```\n{self._structure()}\n```", 0)

    def _structure(self) -> str:
        lines = [
            f"{self.trainer.fingerprint['model']}",
            f"config: {self.trainer.fingerprint['config']}",
        ]
        for name, leaf in named_leaves(self.trainer.state.params).items():
            lines.append(f"{name:40s} {str(leaf.dtype):8s} {tuple(leaf.shape)}")
        return "\n".join(lines)

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        start, stop = self.profile_batch
        if stop and self.trainer.step_count == start - 1 and not self._profiling:
            jax.profiler.start_trace(str(self.log_dir / "profile"))
            self._profiling = True

    def on_train_batch_end(self, batch, logs=None):
        t = self.trainer
        if self._profiling and t.step_count >= self.profile_batch[1]:
            jax.block_until_ready(t.state.params)
            jax.profiler.stop_trace()
            self._profiling = False
        if (
            self.update_freq != "epoch"
            and t.step_count % self.update_freq == 0
            and logs is not None
        ):
            # the running means of the epoch so far, as Keras logs them (read here only: the
            # one synchronisation per `update_freq` steps)
            w = self._writer(STEPS_RUN)
            for k, v in logs.items():
                if isinstance(v, (int, float, np.floating)):
                    w.add_scalar(f"batch_{k}", float(v), t.step_count)
            if (lr := t.learning_rate) is not None:
                w.add_scalar("batch_learning_rate", float(lr), t.step_count)

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        logs = dict(logs or {})
        dt = time.perf_counter() - getattr(self, "_t0", time.perf_counter())
        train, val = self._writer("train"), None
        for k, v in logs.items():
            if isinstance(v, (int, float)):
                if k.startswith("val_"):
                    val = val or self._writer("validation")
                    val.add_scalar(f"epoch_{k[4:]}", v, epoch)
                else:
                    train.add_scalar(f"epoch_{'learning_rate' if k == 'lr' else k}", v, epoch)
        if dt > 0 and t.samples_seen_epoch:
            train.add_scalar("epoch_samples_per_second", t.samples_seen_epoch / dt, epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._histograms(train, epoch)
        if self.write_images and self.sample_data is not None:
            d = self.sample_data
            x = np.asarray(d.x if hasattr(d, "x") else d[0])
            if x.ndim in (3, 4):
                train.add_image("input_samples", image_grid(x), epoch, dataformats="HWC")
            if hasattr(t.task, "num_classes"):
                cm = t.evaluate(self.sample_data, detailed=True)["confusion_matrix"]
                fig = figure_to_array(confusion_matrix_figure(cm))
                train.add_image("confusion_matrix", fig, epoch, dataformats="HWC")
        for w in self._writers.values():
            w.flush()

    def _histograms(self, writer, epoch):
        t = self.trainer
        for name, leaf in named_leaves(jax.device_get(t.state.params)).items():
            writer.add_histogram(f"weights/{name}", np.asarray(leaf, np.float32), epoch)
        if self.sample_data is not None:
            grads = t.gradients(self.sample_data)
            for name, leaf in named_leaves(grads).items():
                writer.add_histogram(f"gradients/{name}", np.asarray(leaf, np.float32), epoch)

    def on_train_end(self, logs=None):
        if self._profiling:
            jax.profiler.stop_trace()
            self._profiling = False
        for w in self._writers.values():
            w.close()
        self._writers = {}


class CSVLogger(Callback):
    """One row per epoch: 'epoch' and every log key (Keras 3's CSVLogger: separator ',', append
    False). After a resume the file is cut back to the rows of the restored epochs and continued,
    so it matches an uninterrupted run's."""

    def __init__(self, filename: str | Path, separator: str = ",", append: bool = False):
        self.filename, self.sep, self.append = Path(filename), separator, append
        self.rows = 0
        self.keys: list[str] | None = None

    def on_train_begin(self, logs=None):
        # the file is truncated at the first epoch end, not here: a resume restores the rows
        # to keep after on_train_begin
        from jaxdl.train.checkpoint import check_not_link

        check_not_link(self.filename, what="CSVLogger file")
        self.rows, self.keys, self._fresh = 0, None, not self.append

    def _open(self, flags: int) -> int:
        from jaxdl.train.checkpoint import open_nofollow

        return open_nofollow(self.filename, flags, what="CSVLogger file")

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.keys is None:
            self.keys = sorted(logs)
        buf = io.StringIO(newline="")
        w = csv.writer(buf, delimiter=self.sep)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        if self._fresh:
            flags |= os.O_TRUNC
        fd = self._open(flags)
        try:
            if os.fstat(fd).st_size == 0:
                w.writerow(["epoch", *self.keys])
            w.writerow([epoch, *(logs.get(k, "NA") for k in self.keys)])
            os.write(fd, buf.getvalue().encode())
        finally:
            os.close(fd)
        self._fresh = False
        self.rows += 1

    def get_state(self):
        return {"rows": self.rows, "keys": self.keys}

    def set_state(self, state):
        self.rows, self.keys, self._fresh = state["rows"], state["keys"], False
        if self.filename.exists() or self.filename.is_symlink():
            # drop rows written after the checkpoint: cut the file at the end of its
            # (1 + rows)-th record, bytes untouched (line endings stay as written)
            fd = self._open(os.O_RDWR)
            try:
                size = os.fstat(fd).st_size
                data = os.pread(fd, size, 0)
                keep = 0
                if self.rows:
                    records = data.splitlines(keepends=True)[: 1 + self.rows]
                    keep = sum(len(r) for r in records)
                os.ftruncate(fd, keep)
            finally:
                os.close(fd)
