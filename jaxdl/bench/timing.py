"""Timing of jitted steps: compile time apart from step time (docs/design.md, Conventions).

    compiled, ct = compile_timed(jax.jit(step, donate_argnums=0), state, batch)
    st = time_steps(lambda: ..., warmup=3, steps=20)   # st.median_s, st.pipelined_s

Compile time is measured explicitly with `jit(f).lower(*args)` (tracing + lowering to StableHLO)
and `.compile()` (XLA), so the first timed step never includes it. Step time is the median of N
steps after warm-up, each ended with `block_until_ready` (JAX dispatches asynchronously: without
the block a timer measures only the dispatch). The median resists the occasional slow step (a
host hiccup, another process); the pipelined mean over the same N steps, blocked once at the end,
shows what the per-step blocks cost when steps are tiny.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

from jaxdl.errors import JaxdlError, check_positive


@dataclass(frozen=True)
class CompileTime:
    lower_s: float  # tracing + lowering to StableHLO
    compile_s: float  # XLA compilation of the lowered module
    lowered: Any  # jax.stages.Lowered: cost_analysis() gives XLA's FLOPs
    memory_bytes: int | None  # XLA's static peak estimate for the executable (None if unknown)

    @property
    def total_s(self) -> float:
        return self.lower_s + self.compile_s


def compile_timed(jitted, *args, **kwargs) -> tuple[Any, CompileTime]:
    """Lower and compile `jitted` (a `jax.jit` function) for `args`; return the compiled
    executable (call it with the same kinds of arguments) and the times."""
    t0 = time.perf_counter()
    lowered = jitted.lower(*args, **kwargs)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, CompileTime(t1 - t0, t2 - t1, lowered, executable_memory(compiled))


def executable_memory(compiled) -> int | None:
    """XLA's peak memory estimate of a compiled executable: arguments + outputs + temporaries,
    less the outputs aliased to donated arguments. None where the backend does not say."""
    try:
        m = compiled.memory_analysis()
    except (AttributeError, NotImplementedError, RuntimeError):
        return None
    if m is None:
        return None
    peak = int(getattr(m, "peak_memory_in_bytes", 0) or 0)
    if peak:
        return peak
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


@dataclass(frozen=True)
class StepTimes:
    times_s: tuple[float, ...]  # one per timed step, each ended by block_until_ready
    pipelined_s: float  # mean step time over `steps` more steps blocked only at the end

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def max_s(self) -> float:
        return max(self.times_s)


def time_steps(
    step: Callable[[], Any],
    *,
    warmup: int = 3,
    steps: int = 20,
    block: Callable[[Any], Any] = jax.block_until_ready,
) -> StepTimes:
    """Time `step()` (one call runs one step and returns its outputs; a closure that threads a
    donated state through successive calls is the usual form).

    `warmup` untimed steps first (allocator growth, autotuning, first-touch of buffers), then
    `steps` steps timed one by one, then `steps` more steps timed together. `block(outputs)`
    waits for the device (PyTorch passes a `torch.cuda.synchronize`)."""
    check_positive("steps", steps, integer=True)
    if not isinstance(warmup, int) or warmup < 0:
        raise JaxdlError(f"warmup must be an integer >= 0, got {warmup!r}")
    for _ in range(warmup):
        block(step())
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        block(step())
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    out = None
    for _ in range(steps):
        out = step()
    block(out)
    pipelined = (time.perf_counter() - t0) / steps
    return StepTimes(tuple(times), pipelined)


def peak_memory_bytes(device=None) -> int | None:
    """The device allocator's high-water mark (`memory_stats()['peak_bytes_in_use']`) since the
    process started; None where the backend keeps no statistics (the CPU). It never goes down, so
    a per-model figure needs one process per model (`jaxdl bench --isolate`)."""
    device = device if device is not None else jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if not stats:
        return None
    peak = stats.get("peak_bytes_in_use", stats.get("bytes_in_use"))
    return None if peak is None else int(peak)


def memory_limit_bytes(device=None) -> int | None:
    """The memory the allocator may use on `device` (None where unknown, e.g. the CPU)."""
    device = device if device is not None else jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if not stats:
        return None
    limit = stats.get("bytes_limit")
    return None if limit is None else int(limit)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is an allocation failure (XLA's RESOURCE_EXHAUSTED, a host MemoryError, or
    torch's OutOfMemoryError), as opposed to a bug that should be reported as one."""
    if isinstance(err, MemoryError):
        return True
    text = f"{type(err).__name__}: {err}"
    return any(
        s in text
        for s in (
            "RESOURCE_EXHAUSTED",
            "OutOfMemoryError",
            "Out of memory",
            "out of memory",
            "CUDA out of memory",
        )
    )
