"""The benchmark driver behind `jaxdl bench`: one row per (model, batch) of parameters, MACs and
FLOPs, compile time, step time, throughput, memory and MFU, optionally beside PyTorch.

    opts = BenchOptions(mode="train", batches=(64, 128), dtype="bf16")
    rows, peaks = run(resolve_models(["resnet*"]), opts)
    write_outputs(rows, "benchmarks/results", "resnets", environment(peaks))

Each row builds the registered model, makes synthetic data like `example_input(config, batch)`
(uniform token ids for integer inputs, standard normals otherwise), and times either the
inference forward or the training step of a `jaxdl.train.Trainer` for the model: exactly the
jitted program `Trainer.fit` runs, with bf16 as the Trainer's `mixed_precision='bf16'`
(jaxdl.bench.jax_timing), and, in train mode, `fit` end to end. The loss is chosen from the
output's shape (jaxdl.bench.models.model_io, jaxdl.bench.loss).

A row that runs out of device memory is reported with status OOM and the run carries on; any
other failure of a row is reported as an error in that row. With `isolate`, each row runs in a
fresh process (jaxdl.bench.isolate), so that the device's peak-memory counter (which never goes
down) is per row and a failed row leaves nothing behind.

The parts live by concern: options.py (columns, options, peaks), models.py (which models, how
built, their input/output, synthetic data), loss.py, jax_timing.py, torch_timing.py (over
compare.py's references), isolate.py (other processes), render.py (the rich table), output.py
(CSV, JSON, plots); this module drives them and keeps their names importable from here.
"""

from __future__ import annotations

import gc
import os
from typing import Any

import jax

from jaxdl.bench.isolate import run_in_subprocess, run_isolated
from jaxdl.bench.jax_timing import bench_jax
from jaxdl.bench.loss import BenchLoss
from jaxdl.bench.models import (
    ModelIO,
    abstract_model_io,
    build_model,
    model_io,
    resolve_models,
    synthetic_input,
)
from jaxdl.bench.options import (
    COLUMN_DOC,
    COLUMNS,
    GIB,
    BenchOptions,
    Peaks,
    empty_row,
    failure_status,
)
from jaxdl.bench.output import environment, plot_throughput, versions, write_outputs
from jaxdl.bench.render import TABLE_COLUMNS, fmt, render
from jaxdl.bench.torch_timing import bench_torch

__all__ = [
    "COLUMNS",
    "COLUMN_DOC",
    "GIB",
    "TABLE_COLUMNS",
    "BenchLoss",
    "BenchOptions",
    "ModelIO",
    "Peaks",
    "abstract_model_io",
    "build_model",
    "empty_row",
    "environment",
    "failure_status",
    "fmt",
    "get_peaks",
    "measure_peaks",
    "model_io",
    "plot_throughput",
    "prepare",
    "render",
    "resolve_models",
    "run",
    "run_one",
    "synthetic_input",
    "versions",
    "write_outputs",
]


def measure_peaks(device=None) -> Peaks:
    from jaxdl.bench.mfu import measure_matmul_peak, spec_peak_tflops

    device = device if device is not None else jax.devices()[0]
    return Peaks(
        measure_matmul_peak(device_id=device.id),
        spec_peak_tflops(device.device_kind),
        device.device_kind,
        device.platform,
        jax.device_count(),
    )


def run_one(
    name: str,
    opts: BenchOptions,
    batch: int,
    peaks: Peaks,
    parts: tuple[str, ...] = ("jax", "torch"),
) -> dict[str, Any]:
    """Benchmark `name` at `batch`; the row always comes back (status 'ok', 'OOM' or 'error: ...').
    `parts`: the jaxdl measurement, and with `opts.compare` the PyTorch one."""
    row = empty_row(name, opts, batch)
    info = None
    if "jax" in parts:
        row["device"] = jax.devices()[0].device_kind
        try:
            info = bench_jax(name, opts, batch, peaks, row)
            row["status"] = "ok"
        except Exception as e:  # noqa: BLE001 - a failing row is reported, and the run carries on
            row["status"] = failure_status(e)
        finally:
            gc.collect()
    if opts.compare == "torch" and "torch" in parts:
        bench_torch(name, opts, batch, row, info)
    return row


def prepare(opts: BenchOptions) -> None:
    """Check the options, and PyTorch where asked for, before anything touches the device."""
    opts.validate()
    if opts.compare == "torch":
        from jaxdl.bench.compare import require_torch

        require_torch()
        if not opts.isolate:
            # both frameworks share the device in this process: JAX must not reserve 75% of its
            # memory up front (read when JAX first touches the GPU, which has not happened yet)
            os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def get_peaks(opts: BenchOptions) -> Peaks:
    """The device's peaks, measured in a fresh process under `opts.isolate` (the parent process
    must then leave the accelerator alone)."""
    prepare(opts)
    if opts.isolate:
        return Peaks(**run_in_subprocess({"kind": "peaks"}))
    return measure_peaks()


def run(
    names: list[str], opts: BenchOptions, *, peaks: Peaks | None = None, progress=None
) -> tuple[list[dict], Peaks]:
    """Every (model, batch) row, in order. `progress(row)` is called after each row."""
    prepare(opts)
    peaks = peaks or get_peaks(opts)
    rows = []
    for name in names:
        for batch in opts.batches:
            row = (
                run_isolated(name, opts, batch, peaks)
                if opts.isolate
                else run_one(name, opts, batch, peaks)
            )
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows, peaks
