"""The jaxdl side of a row: an inference forward, or the Trainer's own training step.

Training builds a `jaxdl.train.Trainer` for the model (on one device; `mixed_precision='bf16'`
for bf16, the Trainer's one precision policy) and times `trainer.train_step(state, acc, batch)`,
the jitted program `Trainer.fit` runs, with `acc = trainer.init_metrics()` and the batch placed
on the trainer's mesh as fit places it. It is lowered and compiled ahead of time against shapes
(so the compile time is apart, and a batch too big for the device fails when its data is first
allocated and is reported as OOM), and the compiled executable is what is timed. With
`opts.fit`, `trainer.fit` then runs two epochs over an in-memory synthetic data set of
`steps` batches, and its second epoch gives the end-to-end samples/s (input pipeline, placement
and callbacks included).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from jaxdl.bench import timing
from jaxdl.bench.loss import BenchLoss
from jaxdl.bench.models import ModelIO, build_model, model_io, synthetic_input
from jaxdl.bench.options import GIB, BenchOptions, Peaks
from jaxdl.functional import output_spec

MIXED_PRECISION = {"fp32": None, "bf16": "bf16"}  # --dtype -> Trainer(mixed_precision=...)


def make_trainer(model, task, *, dtype: str = "fp32", optimizer: str = "adamw", lr: float = 1e-4):
    """The Trainer a benchmark times: `model` on the first device, the given optimizer, and
    bf16 compute over fp32 parameters for dtype 'bf16'."""
    from jaxdl.parallel.mesh import make_mesh
    from jaxdl.train.loop import Trainer

    return Trainer(
        model,
        task=task,
        optimizer=optimizer,
        learning_rate=lr,
        mixed_precision=MIXED_PRECISION[dtype],
        mesh=make_mesh(jax.devices()[:1]),
    )


def batch_spec(trainer, host_batch_shapes: dict[str, jax.ShapeDtypeStruct]):
    """The abstract batch, sharded as `fit` places a batch on the trainer's mesh."""
    from jaxdl.parallel.mesh import data_sharding

    sharding = data_sharding(trainer.mesh)
    return {
        k: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding)
        for k, s in host_batch_shapes.items()
    }


def place_batch(trainer, host_batch):
    """A host batch placed on the trainer's mesh exactly as `fit` places one."""
    from jaxdl.parallel.mesh import shard_batch

    return shard_batch(host_batch, trainer.mesh, batch_size=len(host_batch["x"]))


@dataclass(frozen=True)
class StepResult:
    compile: timing.CompileTime
    times: timing.StepTimes


def time_train_step(trainer, make_batch, shapes, *, warmup: int, steps: int) -> StepResult:
    """Lower and compile `trainer.train_step` for the batch `shapes` ({'x', 'y', 'weight'}
    ShapeDtypeStructs), then call `make_batch()` (a host batch) and time the compiled step on it,
    threading the donated state; the trainer keeps the state after the last step."""
    acc = trainer.init_metrics()
    compiled, ct = timing.compile_timed(
        trainer.train_step, trainer.state, acc, batch_spec(trainer, shapes)
    )
    batch = place_batch(trainer, make_batch())
    carry = [trainer.state, acc]
    trainer.state = None  # donated by the first step; given back below

    def step():
        carry[0], carry[1] = compiled(carry[0], carry[1], batch)
        return carry

    try:
        times = timing.time_steps(step, warmup=warmup, steps=steps)
    finally:
        trainer.state = carry[0]
    return StepResult(ct, times)


class _EpochTimer:
    """A fit callback that records each epoch's wall time (fit reads the epoch's metrics from
    the device before on_epoch_end, so every step of the epoch has finished by then)."""

    def __init__(self):
        from jaxdl.train.callbacks import Callback

        outer = self

        class Timer(Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                outer.epoch_s.append(time.perf_counter() - outer.t0)

        self.t0, self.epoch_s, self.callback = 0.0, [], Timer()


def time_fit(trainer, host_data: dict[str, Any], batch: int) -> float:
    """Seconds per sample of `trainer.fit` over `host_data` (an in-memory data set of whole
    batches), from the second of two epochs (the first compiles and warms up)."""
    from jaxdl.data.core import ArrayDataset

    ds = ArrayDataset(host_data["x"], host_data["y"])
    timer = _EpochTimer()
    trainer.fit(ds, epochs=2, batch_size=batch, verbose=0, callbacks=[timer.callback])
    return timer.epoch_s[-1] / len(ds)


def bench_jax(name: str, opts: BenchOptions, batch: int, peaks: Peaks, row: dict) -> ModelIO:
    """Fill the jaxdl columns of `row` for model `name` at `batch`; returns its ModelIO."""
    from jaxdl.bench.flops import lowered_flops
    from jaxdl.bench.mfu import mfu
    from jaxdl.bench.summary import summarize
    from jaxdl.functional import param_counts
    from jaxdl.models.inputs import example_input

    model = build_model(name, opts)
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
    io = model_io(model.config, x_spec, output_spec(model, x_spec))
    row["unit"] = io.unit

    if opts.mode == "infer":
        ct, times = _time_infer(model, io, opts)
    else:
        from jaxdl.bench.models import synthetic_batch

        trainer = make_trainer(
            model, BenchLoss(io.loss), dtype=opts.dtype, optimizer=opts.optimizer, lr=opts.lr
        )
        del model
        shapes = {
            "x": x_spec,
            "y": jax.ShapeDtypeStruct(
                (batch, *(() if io.loss == "mse" else io.label_shape)), jnp.int32
            ),
            "weight": jax.ShapeDtypeStruct((batch,), jnp.float32),
        }
        r = time_train_step(
            trainer,
            lambda: synthetic_batch(io, batch),
            shapes,
            warmup=opts.warmup,
            steps=opts.steps,
        )
        ct, times = r.compile, r.times
        if opts.fit:
            try:
                per_sample = time_fit(trainer, synthetic_batch(io, batch * opts.steps), batch)
                row["fit_throughput"] = io.items_per_sample / per_sample
            except Exception as e:  # noqa: BLE001 - the bare step's figures stand without it
                from jaxdl.bench.options import failure_status

                notes.append(f"fit: {failure_status(e)}")

    flops = lowered_flops(ct.lowered)
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
    if row["fit_throughput"]:
        row["fit_vs_step"] = row["fit_throughput"] / row["throughput"]
    return io


def _time_infer(model, io: ModelIO, opts: BenchOptions):
    """The inference forward, jitted; bf16 casts the weights and a floating input to bf16 (no
    fp32 master copy is needed to infer; model state such as BatchNorm statistics stays fp32)."""
    from jaxdl.functional import make_apply, split
    from jaxdl.train.precision import cast_floating, get_policy

    graphdef, params, mstate = split(model)
    x_spec = io.x
    # the one precision policy: Flax layers (BatchNorm included) compute in bf16
    policy = get_policy("bf16" if opts.dtype == "bf16" else None)
    apply = make_apply(policy.graphdef(graphdef, params, mstate))
    if opts.dtype == "bf16":
        params = cast_floating(params, jnp.bfloat16)
        if jnp.issubdtype(x_spec.dtype, jnp.floating):
            x_spec = jax.ShapeDtypeStruct(x_spec.shape, jnp.bfloat16)
    fwd = jax.jit(lambda p, s, x: apply(p, s, x, train=False)[0])
    compiled, ct = timing.compile_timed(fwd, params, mstate, x_spec)
    x = synthetic_input(x_spec, jax.random.key(1), io.vocab)
    times = timing.time_steps(
        lambda: compiled(params, mstate, x), warmup=opts.warmup, steps=opts.steps
    )
    return ct, times
