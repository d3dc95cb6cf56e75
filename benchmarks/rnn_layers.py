"""LSTM and GRU layer training throughput: jaxdl's recurrent layer (one lax.scan over a fused
cell, the input projection hoisted out of the loop) against PyTorch's cuDNN nn.LSTM / nn.GRU.

    python benchmarks/rnn_layers.py                       # hidden 1024, batch 64, 256 steps
    python benchmarks/rnn_layers.py --smoke --out /tmp/r  # seconds on a CPU

One layer, input features = hidden, sequence output; a training step is forward, the loss
mean((y - x)^2) in fp32 (y the sequence output, x the input), backward through time, and an
Adam update of the layer's parameters, in fp32 and in bf16 (bf16 compute over fp32 parameters
on both sides); jaxdl's is the Trainer's own train_step. Throughput in tokens
(batch x steps) per second. Target (one H100): LSTM at least 0.7x PyTorch's cuDNN LSTM.
Writes results/rnn_layers_train.{csv,json}.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _common import RESULTS, console
from flax import nnx

from jaxdl.bench import jax_timing, runner, timing
from jaxdl.bench.flops import lowered_flops
from jaxdl.bench.loss import BenchLoss
from jaxdl.bench.mfu import mfu
from jaxdl.functional import count_params
from jaxdl.nn.recurrent import get_layer

TARGET_LSTM_RATIO = 0.7


@dataclass(frozen=True)
class Config:
    cells: tuple[str, ...] = ("lstm", "gru")
    hidden: int = 1024
    batch: int = 64
    seq_len: int = 256
    dtypes: tuple[str, ...] = ("fp32", "bf16")
    unroll: int = 1
    """Time steps per scan iteration (jaxdl's layer option; it changes speed, not results)."""
    steps: int = 20
    warmup: int = 3
    compare: bool = True
    out: Path = RESULTS
    smoke: bool = False


def jax_layer(cell: str, hidden: int, unroll: int, in_features: int | None = None):
    """jaxdl's layer for `cell` ('lstm', 'gru', 'rnn'; an unknown name is an error), sequence
    output; in_features defaults to hidden (also used by engine_overhead.py)."""
    return get_layer(cell)(
        in_features or hidden, hidden, return_sequences=True, unroll=unroll, rngs=nnx.Rngs(0)
    )


def bench_jax(cfg: Config, cell: str, dtype: str, row: dict, peaks: runner.Peaks) -> None:
    """The layer's training step as the Trainer runs it (jaxdl.bench.jax_timing: its jitted
    train_step, bf16 through Trainer(mixed_precision='bf16')), the loss the mean squared error
    of the sequence output against the input."""
    layer = jax_layer(cell, cfg.hidden, cfg.unroll)
    row["params_trainable"] = row["params_total"] = count_params(nnx.state(layer, nnx.Param))
    trainer = jax_timing.make_trainer(
        layer, BenchLoss("mse"), dtype=dtype, optimizer="adam", lr=1e-3
    )
    shape = (cfg.batch, cfg.seq_len, cfg.hidden)
    shapes = {
        "x": jax.ShapeDtypeStruct(shape, jnp.float32),
        "y": jax.ShapeDtypeStruct((cfg.batch,), jnp.int32),
        "weight": jax.ShapeDtypeStruct((cfg.batch,), jnp.float32),
    }

    def make_batch():
        x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
        return {
            "x": np.asarray(x),
            "y": np.zeros(cfg.batch, np.int32),
            "weight": np.ones(cfg.batch, np.float32),
        }

    r = jax_timing.time_train_step(trainer, make_batch, shapes, warmup=cfg.warmup, steps=cfg.steps)
    ct, t = r.compile, r.times
    flops = lowered_flops(ct.lowered)
    row.update(
        lower_s=ct.lower_s,
        compile_s=ct.compile_s,
        step_ms=1e3 * t.median_s,
        step_ms_min=1e3 * t.min_s,
        step_ms_pipelined=1e3 * t.pipelined_s,
        throughput=cfg.batch * cfg.seq_len / t.median_s,
        gflops_step_xla=flops / 1e9,
        tflops=flops / t.median_s / 1e12,
        peak_mem_gib=_gib(timing.peak_memory_bytes()),
        xla_mem_gib=_gib(ct.memory_bytes),
        mfu_measured=mfu(flops, t.median_s, peaks.measured),
        mfu_spec=mfu(flops, t.median_s, peaks.spec),
        status="ok",
    )


def bench_torch(cfg: Config, cell: str, dtype: str, row: dict) -> None:
    from jaxdl.bench import compare

    torch = compare.require_torch()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    layer = compare.rnn_layer_reference(cell, cfg.hidden, cfg.hidden)
    x = torch.randn(cfg.batch, cfg.seq_len, cfg.hidden, device=device)
    # cuDNN's RNN is one fused kernel already: torch.compile would only wrap it
    r = compare.bench_module(
        layer,
        x,
        mode="train",
        dtype=dtype,
        optimizer="adam",
        lr=1e-3,
        loss_fn=lambda y: (y.float() - x).square().mean(),
        warmup=cfg.warmup,
        steps=cfg.steps,
        compile=False,
        source=f"torch.nn.{cell.upper()} (cuDNN)",
    )
    row.update(
        torch_source=r.source,
        torch_params=r.params,
        torch_compile_s=r.first_step_s,
        torch_step_ms=1e3 * r.times.median_s,
        torch_throughput=cfg.batch * cfg.seq_len / r.times.median_s,
        torch_peak_mem_gib=_gib(r.peak_memory_bytes),
        torch_status="ok",
    )


def _gib(n):
    return None if n is None else n / runner.GIB


def main(cfg: Config) -> list[dict]:
    if cfg.smoke:
        cfg = Config(
            cells=cfg.cells,
            hidden=32,
            batch=4,
            seq_len=16,
            dtypes=("fp32",),
            steps=2,
            warmup=1,
            compare=cfg.compare,
            out=cfg.out,
            smoke=True,
        )
    if cfg.compare:  # both frameworks in this process: JAX must not reserve 75% of the GPU
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    opts = runner.BenchOptions(mode="train", warmup=cfg.warmup, steps=cfg.steps)
    peaks = runner.measure_peaks()
    rows = []
    for cell in cfg.cells:
        for dtype in cfg.dtypes:
            row = runner.empty_row(f"{cell}_layer", opts, cfg.batch)
            row.update(
                dtype=dtype,
                unit="tokens/s",
                device=peaks.device,
                input_shape=f"{cfg.seq_len}x{cfg.hidden}",
                variant=f"hidden {cfg.hidden}",
            )
            t0 = time.perf_counter()
            try:
                bench_jax(cfg, cell, dtype, row, peaks)
            except Exception as e:  # noqa: BLE001 - reported in the row
                row["status"] = runner.failure_status(e)
            if cfg.compare:
                try:
                    bench_torch(cfg, cell, dtype, row)
                except Exception as e:  # noqa: BLE001
                    row["torch_status"] = runner.failure_status(e)
            if row["throughput"] and row["torch_throughput"]:
                row["ratio_vs_torch"] = row["throughput"] / row["torch_throughput"]
            rows.append(row)
            console.print(
                f"{cell} {dtype}: jaxdl {row['status']} {runner.fmt(row['throughput'])} "
                f"tokens/s; torch {row['torch_status']} {runner.fmt(row['torch_throughput'])}"
                f"; ratio {runner.fmt(row['ratio_vs_torch'], 'ratio')} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
            runner.write_outputs(rows, cfg.out, "rnn_layers_train", runner.environment(peaks))
    lstm = [r for r in rows if r["model"] == "lstm_layer" and r["ratio_vs_torch"]]
    if lstm and not cfg.smoke:
        best = max(r["ratio_vs_torch"] for r in lstm)
        console.print(
            f"LSTM jaxdl/cuDNN best {best:.2f}x (target >= {TARGET_LSTM_RATIO}x: "
            f"{'met' if best >= TARGET_LSTM_RATIO else 'NOT met'})"
        )
    return rows


if __name__ == "__main__":
    import tyro

    main(tyro.cli(Config))
