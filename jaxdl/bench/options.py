"""What a benchmark row is: its columns and their meaning, the options of a run, the device's
peaks, an empty row and a failure's status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jaxdl.bench import timing
from jaxdl.errors import JaxdlError, check_positive

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
    "fit_throughput",
    "fit_vs_step",
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
    "step_ms": "median of the timed steps after warm-up, each ended by block_until_ready; in "
    "train mode the step is Trainer.train_step, the jitted program Trainer.fit runs",
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
    "fit_throughput": "Trainer.fit end to end on in-memory synthetic data (input pipeline, "
    "placement and callbacks included): samples/s or tokens/s over its second epoch",
    "fit_vs_step": "fit_throughput / throughput (the engine's overhead over its bare step; "
    "1 = none)",
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
    fit: bool = True  # train mode: also time Trainer.fit end to end

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
