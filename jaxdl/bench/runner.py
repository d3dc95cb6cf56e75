"""The benchmark driver behind `jaxdl bench`: one row per (model, batch) of parameters, MACs and
FLOPs, compile time, step time, throughput, memory and MFU, optionally beside PyTorch.

    opts = BenchOptions(mode="train", batches=(64, 128), dtype="bf16")
    rows, peaks = run(resolve_models(["resnet*"]), opts)
    write_outputs(rows, "benchmarks/results", "resnets", environment(peaks))

Each row builds the registered model, makes synthetic data like `example_input(config, batch)`
(uniform token ids for integer inputs, standard normals otherwise), and times either the
inference forward or one training step: `jaxdl.train.steps.make_train_step` with a loss chosen
from the output's shape (softmax cross-entropy over the last axis for classifiers, language
models and segmentation maps; sigmoid cross-entropy for one logit; mean squared error against the
input for reconstructions), jitted with the train state donated, as `Trainer` does. bf16 mode
computes in bf16 over fp32 parameters and statistics (jaxdl.bench.precision).

A row that runs out of device memory is reported with status OOM and the run carries on; any
other failure of a row is reported as an error in that row. With `isolate`, each row runs in a
fresh process, so that the device's peak-memory counter (which never goes down) is per row and a
failed row leaves nothing behind.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxdl.bench import timing
from jaxdl.errors import JaxdlError, check_positive
from jaxdl.train import losses
from jaxdl.train.tasks import Task

GIB = 1024**3

# Every row has every column (None -> 'n/a' in the table and the CSV, null in the JSON).
COLUMNS = (
    "model",
    "mode",
    "batch",
    "dtype",
    "input_shape",
    "params_trainable",
    "params_total",
    "gmacs_fwd",
    "gflops_fwd",
    "gflops_step_xla",
    "lower_s",
    "compile_s",
    "step_ms",
    "step_ms_min",
    "step_ms_pipelined",
    "throughput",
    "unit",
    "peak_mem_gib",
    "xla_mem_gib",
    "tflops",
    "mfu_measured",
    "mfu_spec",
    "torch_source",
    "torch_params",
    "torch_compile_s",
    "torch_step_ms",
    "torch_throughput",
    "torch_peak_mem_gib",
    "ratio_vs_torch",
    "torch_status",
    "status",
    "notes",
    "device",
)

# What each column means; written into the JSON so a results file explains itself.
COLUMN_DOC = {
    "params_trainable": "nnx.Param scalars",
    "params_total": "trainable + non-trainable (BatchNorm statistics...)",
    "gmacs_fwd": "analytic MACs of one forward pass of the whole batch, multiply-add = 1 "
    "(torchvision GFLOPS / timm GMACs convention), from jaxdl.bench.summarize",
    "gflops_fwd": "2 x gmacs_fwd (multiply-add = 2 FLOPs)",
    "gflops_step_xla": "XLA's cost analysis of the lowered step, multiply-add = 2 FLOPs: the "
    "forward pass (infer) or forward + backward + optimizer update (train)",
    "lower_s": "tracing + lowering to StableHLO",
    "compile_s": "XLA compilation",
    "step_ms": "median of the timed steps after warm-up, each ended by block_until_ready",
    "step_ms_pipelined": "mean over the same number of steps blocked once at the end",
    "throughput": "samples/s or tokens/s from step_ms",
    "peak_mem_gib": "device allocator high-water mark (memory_stats peak_bytes_in_use); "
    "per row only with --isolate; n/a on the CPU",
    "xla_mem_gib": "XLA's static peak estimate for the step's executable",
    "tflops": "gflops_step_xla / step_ms",
    "mfu_measured": "tflops / the measured bf16 matmul peak of this device",
    "mfu_spec": "tflops / the device's dense bf16 spec peak (n/a for a device not in the table)",
    "torch_compile_s": "first PyTorch step, including torch.compile's compilation",
    "ratio_vs_torch": "jaxdl throughput / PyTorch throughput (> 1: jaxdl faster)",
}


@dataclass(frozen=True)
class BenchOptions:
    mode: str = "infer"  # infer | train
    batches: tuple[int, ...] = (32,)
    dtype: str = "fp32"  # fp32 | bf16
    input: int | None = None  # spatial side for images, length for sequences
    overrides: tuple[tuple[str, Any], ...] = ()  # model config fields
    warmup: int = 3
    steps: int = 20
    optimizer: str = "adamw"
    lr: float = 1e-4
    compare: str | None = None  # None | 'torch'
    torch_compile: bool = True
    isolate: bool = False

    def validate(self) -> None:
        if self.mode not in ("infer", "train"):
            raise JaxdlError(f"--mode must be 'infer' or 'train', got {self.mode!r}")
        if self.dtype not in ("fp32", "bf16"):
            raise JaxdlError(f"--dtype must be 'fp32' or 'bf16', got {self.dtype!r}")
        if self.compare not in (None, "torch"):
            raise JaxdlError(f"--compare must be 'torch', got {self.compare!r}")
        if not self.batches:
            raise JaxdlError("--batch needs at least one batch size")
        for b in self.batches:
            check_positive("--batch", b, integer=True)
        if self.input is not None:
            check_positive("--input", self.input, integer=True)
        check_positive("--steps", self.steps, integer=True)
        if self.warmup < 0:
            raise JaxdlError(f"--warmup must be >= 0, got {self.warmup}")


@dataclass(frozen=True)
class Peaks:
    """The two MFU denominators, TFLOP/s (None where unknown)."""

    measured: float | None = None
    spec: float | None = None
    device: str = ""
    platform: str = ""
    device_count: int = 0


def resolve_models(patterns) -> list[str]:
    """Model names for `patterns`: 'all', shell globs ('resnet*') and exact names, in order,
    without repeats. An unknown name or a glob that matches nothing is an error."""
    from jaxdl.models.registry import get_entry, list_models

    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise JaxdlError("give a model name, a pattern such as 'resnet*', or 'all'")
    names: list[str] = []
    for p in patterns:
        if p == "all":
            found = list_models()
        elif any(ch in p for ch in "*?["):
            found = list_models(p)
            if not found:
                raise JaxdlError(
                    f"no model matches {p!r}; `jaxdl models` lists the "
                    f"{len(list_models())} registered names"
                )
        else:
            found = [get_entry(p).name]  # raises with the close names
        names += [n for n in found if n not in names]
    return names


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


# ---- one row ------------------------------------------------------------------------------


def empty_row(name: str, opts: BenchOptions, batch: int) -> dict[str, Any]:
    row = dict.fromkeys(COLUMNS)
    row.update(model=name, mode=opts.mode, batch=batch, dtype=opts.dtype)
    return row


def failure_status(err: BaseException) -> str:
    """A row's status for an exception: 'OOM' or 'error: ...' (its first line)."""
    if timing.is_out_of_memory(err):
        return "OOM"
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    prefix = "" if isinstance(err, JaxdlError) else f"{type(err).__name__}: "
    return f"error: {prefix}{text[:300]}"


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
            info = _bench_jax(name, opts, batch, peaks, row)
            row["status"] = "ok"
        except Exception as e:  # noqa: BLE001 - a failing row is reported, and the run carries on
            row["status"] = failure_status(e)
        finally:
            gc.collect()
    if opts.compare == "torch" and "torch" in parts:
        _bench_torch(name, opts, batch, row, info)
    return row


def build_model(name: str, opts: BenchOptions, *, abstract: bool = False):
    """The registered model with `opts.overrides` and `opts.input` applied (abstract: built with
    nnx.eval_shape, allocating nothing)."""
    from flax import nnx

    from jaxdl.models.inputs import resize_input_shape
    from jaxdl.models.registry import create_model, get_config

    overrides = dict(opts.overrides)
    if opts.input is not None:
        overrides["input_shape"] = resize_input_shape(get_config(name, **overrides), opts.input)
    make = lambda: create_model(name, rngs=nnx.Rngs(0), **overrides)
    return nnx.eval_shape(make) if abstract else make()


@dataclass(frozen=True)
class ModelIO:
    """What a benchmark needs to know of a model's input and output (no arrays)."""

    config: Any
    x: jax.ShapeDtypeStruct  # the input, batch included
    loss: str  # 'ce' | 'bce' | 'mse'
    label_shape: tuple[int, ...]  # without the batch axis
    num_labels: int
    vocab: int | None  # token ids are drawn from [0, vocab)
    items_per_sample: int  # tokens per sequence for token inputs, else 1
    unit: str


def model_io(config, x: jax.ShapeDtypeStruct, out) -> ModelIO:
    """The loss from the output's shape: mean squared error against the input for a
    reconstruction, sigmoid cross-entropy for one logit, softmax cross-entropy over the last axis
    otherwise (classifiers [B, C], language models [B, T, V], segmentation [B, H, W, C])."""
    main = out[0] if isinstance(out, (tuple, list)) else out
    if main.shape == x.shape and jnp.issubdtype(x.dtype, jnp.floating):
        loss, label_shape, n = "mse", (), 0
    elif main.shape[-1] == 1:
        loss, label_shape, n = "bce", tuple(main.shape[1:-1]), 2
    else:
        loss, label_shape, n = "ce", tuple(main.shape[1:-1]), int(main.shape[-1])
    tokens = jnp.issubdtype(x.dtype, jnp.integer) and len(x.shape) >= 2
    vocab = getattr(config, "vocab_size", None) or (n if tokens else None)
    items = math.prod(x.shape[1:]) if tokens else 1
    return ModelIO(
        config, x, loss, label_shape, n, vocab, items, "tokens/s" if tokens else "samples/s"
    )


def abstract_model_io(name: str, opts: BenchOptions, batch: int) -> ModelIO:
    """model_io without building any array (for the PyTorch side of an isolated run)."""
    from jaxdl.functional import pure
    from jaxdl.models.inputs import example_input

    model = build_model(name, opts, abstract=True)
    apply, params, mstate = pure(model)
    x = example_input(model.config, batch)
    out = jax.eval_shape(lambda p, s, x: apply(p, s, x)[0], params, mstate, x)
    return model_io(model.config, x, out)


def synthetic_input(spec: jax.ShapeDtypeStruct, key, vocab: int | None = None) -> jax.Array:
    """Token ids uniform in [0, vocab) for integer inputs, standard normals otherwise."""
    if jnp.issubdtype(spec.dtype, jnp.integer):
        return jax.random.randint(key, spec.shape, 0, vocab or 2, spec.dtype)
    return jax.random.normal(key, spec.shape, spec.dtype)


class BenchLoss(Task):
    """The loss of a benchmark training step (`ModelIO.loss`); its metrics are only the loss
    sums, so the timed step does what a training step must and nothing more (the PyTorch step
    computes only its loss too)."""

    def __init__(self, kind: str):
        self.kind = kind

    def loss(self, outputs, batch):
        outs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        main = outs[0]
        if self.kind == "mse":
            return losses.mean_squared_error(main, batch["x"]).reshape(main.shape[0], -1).mean(-1)
        if self.kind == "bce":
            return losses.binary_cross_entropy(main, batch["y"].reshape(main.shape[:-1]))
        # every output of the main output's shape counts (GoogLeNet's auxiliary heads in training)
        per = [
            losses.categorical_cross_entropy(o, batch["y"]) for o in outs if o.shape == main.shape
        ]
        return sum(per[1:], per[0])


def _bench_jax(name, opts: BenchOptions, batch: int, peaks: Peaks, row: dict) -> ModelIO:
    from jaxdl.bench.flops import lowered_flops
    from jaxdl.bench.mfu import mfu
    from jaxdl.bench.precision import DTYPES, cast_floating, mixed_precision, set_compute_dtype
    from jaxdl.bench.summary import summarize
    from jaxdl.functional import param_counts, pure
    from jaxdl.models.inputs import example_input
    from jaxdl.train.optim import make_optimizer
    from jaxdl.train.state import TrainState
    from jaxdl.train.steps import make_train_step

    model = build_model(name, opts)
    if opts.dtype == "bf16":
        set_compute_dtype(model, DTYPES["bf16"])
    counts = param_counts(model)
    x_spec = example_input(model.config, batch)
    row.update(
        params_trainable=counts["trainable"],
        params_total=counts["total"],
        input_shape="x".join(map(str, x_spec.shape[1:])),
    )
    notes = []
    try:
        macs = summarize(model, x_spec, name=name).macs
        row.update(gmacs_fwd=macs / 1e9, gflops_fwd=2 * macs / 1e9)
    except Exception as e:  # noqa: BLE001 - the timing does not depend on the summary
        notes.append(f"no analytic MACs ({type(e).__name__}: {str(e)[:120]})")
    apply, params, mstate = pure(model)
    io = model_io(
        model.config,
        x_spec,
        jax.eval_shape(lambda p, s, x: apply(p, s, x)[0], params, mstate, x_spec),
    )
    del model
    row["unit"] = io.unit
    dtype = DTYPES[opts.dtype]
    integer_input = jnp.issubdtype(x_spec.dtype, jnp.integer)

    if opts.mode == "infer":
        if opts.dtype == "bf16":  # inference needs no fp32 master copy (statistics stay fp32)
            params = cast_floating(params, dtype)
            if not integer_input:
                x_spec = jax.ShapeDtypeStruct(x_spec.shape, dtype)
        fwd = jax.jit(lambda p, s, x: apply(p, s, x, train=False)[0])
        compiled, ct = timing.compile_timed(fwd, params, mstate, x_spec)
        x = synthetic_input(x_spec, jax.random.key(1), io.vocab)
        step = lambda: compiled(params, mstate, x)
    else:
        task = BenchLoss(io.loss)
        tx = make_optimizer(opts.optimizer, opts.lr)
        train_apply = mixed_precision(apply, dtype) if opts.dtype == "bf16" else apply
        ts = TrainState.create(params, mstate, tx)
        acc = task.init_metrics()
        y_spec = jax.ShapeDtypeStruct((batch, *io.label_shape), jnp.int32)
        batch_spec = {"x": x_spec} | ({} if io.loss == "mse" else {"y": y_spec})
        train = jax.jit(make_train_step(train_apply, tx, task), donate_argnums=(0, 1))
        # lowered and compiled against shapes: a batch too big for the device fails below,
        # when its data is first allocated, and is reported as OOM
        compiled, ct = timing.compile_timed(train, ts, acc, batch_spec)
        kx, ky = jax.random.split(jax.random.key(1))
        data = {"x": synthetic_input(x_spec, kx, io.vocab)}
        if io.loss != "mse":
            data["y"] = jax.random.randint(ky, y_spec.shape, 0, max(io.num_labels, 2), jnp.int32)
        carry = [ts, acc]
        del params, mstate, ts, acc

        def step():
            carry[0], carry[1] = compiled(carry[0], carry[1], data)
            return carry

    flops = lowered_flops(ct.lowered)
    times = timing.time_steps(step, warmup=opts.warmup, steps=opts.steps)
    peak = timing.peak_memory_bytes()
    step_s = times.median_s
    row.update(
        gflops_step_xla=flops / 1e9 if flops else None,
        lower_s=ct.lower_s,
        compile_s=ct.compile_s,
        step_ms=1e3 * step_s,
        step_ms_min=1e3 * times.min_s,
        step_ms_pipelined=1e3 * times.pipelined_s,
        throughput=batch * io.items_per_sample / step_s,
        peak_mem_gib=None if peak is None else peak / GIB,
        xla_mem_gib=None if ct.memory_bytes is None else ct.memory_bytes / GIB,
        tflops=flops / step_s / 1e12 if flops else None,
        mfu_measured=mfu(flops, step_s, peaks.measured),
        mfu_spec=mfu(flops, step_s, peaks.spec),
        notes="; ".join(notes) or None,
    )
    return io


def _bench_torch(name: str, opts: BenchOptions, batch: int, row: dict, io: ModelIO | None) -> None:
    from jaxdl.bench import compare

    try:
        io = io or abstract_model_io(name, opts, batch)
        r = compare.bench_registered(
            name,
            io.config,
            mode=opts.mode,
            batch=batch,
            dtype=opts.dtype,
            label_shape=io.label_shape,
            num_labels=io.num_labels,
            optimizer=opts.optimizer,
            lr=opts.lr,
            warmup=opts.warmup,
            steps=opts.steps,
            compile=opts.torch_compile,
        )
    except Exception as e:  # noqa: BLE001 - reported in the row; the run carries on
        row["torch_status"] = failure_status(e)
        return
    step_s = r.times.median_s
    row.update(
        torch_source=r.source,
        torch_params=r.params,
        torch_compile_s=r.first_step_s,
        torch_step_ms=1e3 * step_s,
        torch_throughput=batch * io.items_per_sample / step_s,
        torch_peak_mem_gib=None if r.peak_memory_bytes is None else r.peak_memory_bytes / GIB,
        torch_status="ok",
    )
    if row["throughput"]:
        row["ratio_vs_torch"] = row["throughput"] / row["torch_throughput"]


# ---- many rows ----------------------------------------------------------------------------


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
    return Peaks(
        **(_subprocess({"kind": "peaks"}) if opts.isolate else dataclasses.asdict(measure_peaks()))
    )


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
                _run_isolated(name, opts, batch, peaks)
                if opts.isolate
                else run_one(name, opts, batch, peaks)
            )
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows, peaks


def _worker(args: list[str]) -> None:
    """`python -m jaxdl.bench.runner --worker JSON`: the peaks, or one row's part, as JSON."""
    job = json.loads(args[0])
    if job["kind"] == "peaks":
        print(json.dumps(dataclasses.asdict(measure_peaks())))
        return
    o = job["opts"]
    opts = BenchOptions(
        **{
            **o,
            "overrides": tuple((k, _tuples(v)) for k, v in o["overrides"]),
            "batches": tuple(o["batches"]),
            "isolate": False,
        }
    )
    row = run_one(job["name"], opts, job["batch"], Peaks(**job["peaks"]), parts=(job["part"],))
    print(json.dumps(row))


def _tuples(value):
    """JSON gives lists where the config had tuples (e.g. hidden=(256, 128)): give them back."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _subprocess(job: dict, env: dict | None = None) -> dict:
    r = subprocess.run(
        [sys.executable, "-m", "jaxdl.bench.runner", "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"benchmark worker exited with {r.returncode}: {tail}")
    return json.loads(lines[-1])


def _run_isolated(name: str, opts: BenchOptions, batch: int, peaks: Peaks) -> dict:
    """The jaxdl part in one fresh process; the PyTorch part in another, where JAX only sees the
    CPU (it derives the model's input and output shapes abstractly and must leave the GPU to
    PyTorch)."""
    job = {
        "kind": "row",
        "name": name,
        "batch": batch,
        "opts": dataclasses.asdict(opts),
        "peaks": dataclasses.asdict(peaks),
    }
    try:
        row = _subprocess({**job, "part": "jax"})
    except (RuntimeError, json.JSONDecodeError) as e:  # the worker died (e.g. killed for memory)
        row = empty_row(name, opts, batch)
        row["status"] = failure_status(e)
    if opts.compare == "torch":
        try:
            t = _subprocess({**job, "part": "torch"}, env={"JAX_PLATFORMS": "cpu"})
        except (RuntimeError, json.JSONDecodeError) as e:
            row["torch_status"] = failure_status(e)
        else:
            row.update({k: v for k, v in t.items() if k.startswith("torch_")})
            if row["throughput"] and row["torch_throughput"]:
                row["ratio_vs_torch"] = row["throughput"] / row["torch_throughput"]
    return row


# ---- output -------------------------------------------------------------------------------


def environment(peaks: Peaks) -> dict[str, Any]:
    """Device, versions and date, recorded beside the rows."""
    import flax

    from jaxdl.bench.compare import torch_version

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": peaks.device,
        "platform": peaks.platform,
        "device_count": peaks.device_count,
        "host": platform.node(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "torch": torch_version(),
        "peak_tflops_measured_bf16_matmul": peaks.measured,
        "peak_tflops_spec_bf16": peaks.spec,
        "command": " ".join(sys.argv),
    }


def fmt(value, column: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if column.startswith("mfu"):
            return f"{100 * value:.1f}%"
        if column.startswith("ratio"):
            return f"{value:.2f}x"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


TABLE_COLUMNS = (
    ("model", "model"),
    ("batch", "batch"),
    ("dtype", "dtype"),
    ("params_trainable", "params"),
    ("gmacs_fwd", "GMACs fwd\n(MAC=1)"),
    ("gflops_step_xla", "GFLOPs/step\n(XLA, FLOP=2/MAC)"),
    ("compile_s", "compile s"),
    ("step_ms", "step ms\n(median)"),
    ("throughput", "throughput"),
    ("unit", "unit"),
    ("peak_mem_gib", "peak mem\nGiB"),
    ("mfu_measured", "MFU\nmeasured"),
    ("mfu_spec", "MFU\nspec"),
    ("torch_throughput", "torch\nthroughput"),
    ("ratio_vs_torch", "jaxdl /\ntorch"),
    ("status", "status"),
)


def render(rows: list[dict], peaks: Peaks, opts: BenchOptions, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    title = (
        f"jaxdl bench: {opts.mode}, {opts.dtype}, device {peaks.device}; bf16 matmul peak "
        f"measured {fmt(peaks.measured)} / spec {fmt(peaks.spec)} TFLOP/s"
    )
    t = Table(title=title)
    cols = [c for c in TABLE_COLUMNS if opts.compare or not c[0].startswith(("torch", "ratio"))]
    for key, label in cols:
        t.add_column(
            label, justify="left" if key in ("model", "unit", "status", "dtype") else "right"
        )
    for r in rows:
        t.add_row(*(fmt(r[k], k) for k, _ in cols))
    console.print(t)
    for r in rows:
        if r["status"] != "ok" or (opts.compare and r["torch_status"] not in (None, "ok")):
            console.print(
                f"{r['model']} batch {r['batch']}: jaxdl {r['status']}"
                + (f"; torch {r['torch_status']}" if opts.compare else "")
            )


def write_outputs(
    rows: list[dict], out_dir, tag: str, meta: dict, *, plot: bool = False
) -> list[Path]:
    """DIR/TAG.csv (every column, 'n/a' for unknown), DIR/TAG.json (environment, column
    meanings, rows) and with `plot` DIR/TAG.png (throughput against batch size). Rewritten
    whole, so a script may call it after every row."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / f"{tag}.csv", out / f"{tag}.json"
    # columns a benchmark script adds (e.g. a second MFU convention) follow the standard ones
    extra = [k for r in rows for k in r if k not in COLUMNS]
    columns = list(COLUMNS) + list(dict.fromkeys(extra))
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow(["n/a" if r.get(c) is None else r[c] for c in columns])
    json_path.write_text(
        json.dumps({"environment": meta, "columns": COLUMN_DOC, "rows": rows}, indent=1)
    )
    paths = [csv_path, json_path]
    if plot:
        paths.append(
            plot_throughput(rows, out / f"{tag}.png", title=f"{tag}: {meta.get('device', '')}")
        )
    return paths


def plot_throughput(rows: list[dict], path, *, title: str = "") -> Path:
    """Throughput against batch size, one line per (model, mode, dtype); PyTorch dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["mode"], r["dtype"]), []).append(r)
    units = set()
    for (model, mode, dtype), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["batch"])
        units |= {r["unit"] for r in rs if r["unit"]}
        for key, style, who in (
            ("throughput", "-o", "jaxdl"),
            ("torch_throughput", "--s", "torch"),
        ):
            pts = [(r["batch"], r[key]) for r in rs if r[key]]
            if pts:
                ax.plot(*zip(*pts, strict=False), style, label=f"{model} {mode} {dtype} ({who})")
        for r in rs:
            if r["status"] == "OOM":
                ax.axvline(r["batch"], color="grey", lw=0.5, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel(" / ".join(sorted(units)) or "throughput")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(sys.argv[2:])
