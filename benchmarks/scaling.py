"""Data-parallel scaling: train-step time against the number of devices, and the expected
gradient all-reduce cost per step on an 8-GPU H100 host.

    python benchmarks/scaling.py                 # 1, 2, 4, 8 simulated CPU devices; DP and FSDP
    python benchmarks/scaling.py --smoke         # seconds (run by the tests)

Part 1 (measured). The same global batch is trained for the same steps on 1..8 devices of this
machine (on a CPU host: simulated devices, `--xla_force_host_platform_device_count`, which share
the same cores, so the figures measure correctness and the overhead of partitioning, not speed-up).
Each row records the step time (median over the timed steps, after a compiling warm-up epoch) and
the largest parameter difference from the 1-device run. On a GPU machine the devices are real.
Results: benchmarks/results/scaling_<platform>.csv.

Part 2 (computed). Ring all-reduce of G gradient bytes over N devices sends and receives
2 (N-1)/N x G per device; FSDP (ZeRO-3) reduce-scatters gradients and all-gathers weights twice
(forward, and again for the backward pass), 3 (N-1)/N x G. At a per-direction link bandwidth B
the time is that volume / B (bandwidth term only; latency terms are negligible at these sizes).
"""

from __future__ import annotations

import csv
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    )

import jax  # noqa: E402
import numpy as np  # noqa: E402
import tyro  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from jaxdl import create_model  # noqa: E402
from jaxdl.data import ArrayDataset  # noqa: E402
from jaxdl.functional import named_leaves  # noqa: E402
from jaxdl.parallel import make_mesh  # noqa: E402
from jaxdl.train import Callback, Trainer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

# Parameter counts (REFERENCE.md; the models' own tests pin them).
MODELS = {"resnet50": 25_557_032, "gpt2": 124_439_808}
NVLINK4_BIDIRECTIONAL = 900e9  # H100 SXM, per GPU; half of it each way
H100_DEVICES = 8


@dataclass(frozen=True)
class Config:
    devices: tuple[int, ...] = (1, 2, 4, 8)
    hidden: tuple[int, ...] = (1024, 1024, 1024)
    """MLP widths: big enough that the step is not pure dispatch overhead."""
    global_batch: int = 512
    steps: int = 20
    """Timed steps (one epoch); a first epoch compiles and warms up."""
    smoke: bool = False
    out: str | None = None
    """CSV path (default: benchmarks/results/scaling_<platform>.csv; none with --smoke)."""


def allreduce_cost(
    params: int,
    *,
    bytes_per_value: int = 4,
    devices: int = H100_DEVICES,
    link_bytes_per_s: float = NVLINK4_BIDIRECTIONAL / 2,
    fsdp: bool = False,
) -> dict[str, float]:
    """Bytes each device moves per step for the gradient exchange and the time at the link
    bandwidth (bandwidth term of the ring algorithm)."""
    grad_bytes = params * bytes_per_value
    factor = (3 if fsdp else 2) * (devices - 1) / devices
    moved = factor * grad_bytes
    return {
        "grad_MB": grad_bytes / 1e6,
        "moved_MB": moved / 1e6,
        "ms": moved / link_bytes_per_s * 1e3,
    }


class StepTimer(Callback):
    """Wall time of every train step, waiting for the device (steps are dispatched async)."""

    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        jax.block_until_ready(self.trainer.state)
        self.times.append(time.perf_counter() - self._t0)


def _dataset(n: int, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    return ArrayDataset(
        rng.normal(size=(n, 32, 32, 1)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)
    )


def measure(cfg: Config) -> list[dict]:
    steps = 3 if cfg.smoke else cfg.steps
    batch = 64 if cfg.smoke else cfg.global_batch
    hidden = (64,) if cfg.smoke else cfg.hidden
    ds = _dataset(steps * batch)
    rows, ref = [], None
    for fsdp in (False, True):
        for n in cfg.devices:
            if n > jax.device_count():
                continue
            model = create_model("mlp", input_shape=(32, 32, 1), hidden=hidden)
            # plain SGD: the difference from 1 device then shows the float summation order only
            # (Adam's normalisation turns the noise of a near-zero gradient into a full step)
            t = Trainer(
                model,
                optimizer="sgd",
                learning_rate=1e-2,
                seed=0,
                mesh=make_mesh(num_devices=n),
                fsdp=fsdp,
            )
            timer = StepTimer()
            t.fit(ds, epochs=2, batch_size=batch, verbose=0, shuffle=False, callbacks=[timer])
            params = {k: np.asarray(v) for k, v in named_leaves(jax.device_get(t.params)).items()}
            ref = params if ref is None else ref
            diff = max(float(np.abs(params[k] - ref[k]).max()) for k in ref)
            rows.append(
                {
                    "platform": jax.devices()[0].platform,
                    "devices": n,
                    "mode": "fsdp" if fsdp else "dp",
                    "global_batch": batch,
                    "params": sum(p.size for p in params.values()),
                    "timed_steps": steps,
                    "step_ms": round(1e3 * statistics.median(timer.times[steps:]), 3),
                    "max_diff_vs_1": diff,
                }
            )
    return rows


def main(cfg: Config) -> dict:
    console = Console(highlight=False)
    rows = measure(cfg)
    table = Table(title=f"train step vs devices ({jax.devices()[0].device_kind})")
    for col in rows[0]:
        table.add_column(col)
    for r in rows:
        table.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r.values()))
    console.print(table)
    out = cfg.out or (None if cfg.smoke else RESULTS / f"scaling_{rows[0]['platform']}.csv")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        console.print(f"wrote {out}")

    cost = Table(
        title=f"gradient exchange per step, {H100_DEVICES} x H100, NVLink 4 "
        f"{NVLINK4_BIDIRECTIONAL / 2e9:.0f} GB/s each way"
    )
    for col in ("model", "params", "grads", "scheme", "moved per GPU (MB)", "time (ms)"):
        cost.add_column(col)
    analysis = {}
    for name, p in MODELS.items():
        for dtype, nbytes in (("fp32", 4), ("bf16", 2)):
            for fsdp in (False, True):
                c = allreduce_cost(p, bytes_per_value=nbytes, fsdp=fsdp)
                scheme = "FSDP RS+2AG" if fsdp else "DP ring AR"
                analysis[f"{name}/{dtype}/{'fsdp' if fsdp else 'dp'}"] = c
                cost.add_row(
                    name, f"{p:,}", dtype, scheme, f"{c['moved_MB']:.1f}", f"{c['ms']:.3f}"
                )
    console.print(cost)
    return {"rows": rows, "allreduce": analysis}


if __name__ == "__main__":
    main(tyro.cli(Config))
    sys.exit(0)
