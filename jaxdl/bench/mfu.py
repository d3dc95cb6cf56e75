"""Model FLOPs utilisation: achieved FLOP/s over a peak, against two peaks.

- The **spec peak**: the vendor's dense bf16 tensor-core figure (no 2:4 sparsity) for the
  device kind, from `SPEC_PEAK_TFLOPS`; None (printed 'n/a') for a device not in the table.
- The **measured peak**: the FLOP/s of a large bf16 matmul on the device itself
  (`measure_matmul_peak`), what a perfect kernel reaches here in practice (about 790 TFLOP/s
  for 8192^3 on an H100 SXM, published), so MFU against it says how far the model's kernels
  are from the device's best, and MFU against the spec compares with published MFU figures.

MFU = model FLOPs per step / step time / peak. Which FLOPs the model does is a convention that
must be stated: the bench uses XLA's count of the jitted step (multiply-add = 2 FLOPs, forward +
backward + optimizer for a training step, no rematerialisation); for decoder LMs
`palm_columns` adds the PaLM count (6 N + 12 L d T per token) and the MFU it gives.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxdl.bench.flops import transformer_training_flops
from jaxdl.models import get_config

# (substring of the lower-cased jax device_kind, dense bf16 TFLOP/s). First match wins, so
# the specific spellings precede the generic one (an 'NVIDIA H100 PCIe' is not an SXM part).
SPEC_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("h100 pcie", 756.0),
    ("h100 nvl", 835.0),
    ("h100", 989.0),  # SXM5, 'NVIDIA H100 80GB HBM3'
    ("h200", 989.0),  # same GH100 die and clocks as the H100 SXM (also GH200)
    ("a100", 312.0),
    ("l40s", 362.0),
    ("l4", 121.0),
    ("tpu v4", 275.0),
    ("tpu v5 lite", 197.0),  # v5e
    ("tpu v5p", 459.0),
    ("tpu v5", 459.0),
    ("tpu v6 lite", 918.0),  # v6e (Trillium)
)


def spec_peak_tflops(device_kind: str) -> float | None:
    """Dense bf16 spec peak in TFLOP/s for a jax `device.device_kind`; None if unknown."""
    kind = device_kind.lower()
    for key, peak in SPEC_PEAK_TFLOPS:
        if key in kind:
            return peak
    return None


def default_matmul_size(platform: str) -> int:
    """8192 on accelerators (large enough to saturate the tensor cores); 1024 on the CPU, where
    8192^3 in bf16 takes tens of seconds and the figure only serves the smoke test."""
    return 1024 if platform == "cpu" else 8192


@functools.cache
def measure_matmul_peak(
    n: int | None = None, *, dtype: str = "bfloat16", steps: int = 10, device_id: int = 0
) -> float:
    """TFLOP/s of an n x n x n matmul in `dtype` on device `device_id` (the best of the blocked
    median and the pipelined mean over `steps` timed calls, after warm-up). Cached per process."""
    from jaxdl.bench.timing import time_steps

    device = jax.devices()[device_id]
    n = n or default_matmul_size(device.platform)
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.device_put(jax.random.normal(ka, (n, n), dtype), device)
    b = jax.device_put(jax.random.normal(kb, (n, n), dtype), device)
    mm = jax.jit(jnp.matmul)
    t = time_steps(lambda: mm(a, b), warmup=3, steps=steps)
    return 2.0 * n**3 / min(t.median_s, t.pipelined_s) / 1e12


def mfu(
    flops_per_step: float | None, step_s: float | None, peak_tflops: float | None
) -> float | None:
    """Achieved FLOP/s over the peak, a fraction in [0, 1] (None if any input is unknown)."""
    if not flops_per_step or not step_s or not peak_tflops:
        return None
    return flops_per_step / step_s / (peak_tflops * 1e12)


def palm_columns(name: str, overrides: dict):
    """extra(row) for a measured bench row of the decoder LM `name` (with config `overrides`):
    the PaLM-convention FLOPs per step and the TFLOP/s and MFU they give. N leaves out the
    learned position table (added, not multiplied); MFU is proportional to the FLOPs counted,
    so each PaLM figure is the row's (XLA-count) figure scaled by PaLM / XLA."""
    c = get_config(name, **overrides)

    def extra(row: dict) -> dict:
        t = int(row["input_shape"])
        positions = c.context * c.d_model if getattr(c, "positions", "learned") == "learned" else 0
        flops = transformer_training_flops(
            row["params_trainable"] - positions, c.num_layers, c.d_model, t, tokens=row["batch"] * t
        )
        scale = flops / (row["gflops_step_xla"] * 1e9)
        return {
            "palm_gflops_step": flops / 1e9,
            "palm_tflops": row["tflops"] * scale,
            "palm_mfu_measured": row["mfu_measured"] and row["mfu_measured"] * scale,
            "palm_mfu_spec": row["mfu_spec"] and row["mfu_spec"] * scale,
        }

    return extra
