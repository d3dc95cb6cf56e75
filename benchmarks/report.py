"""results/*.json -> results/SUMMARY.md: one markdown table per results file, with the device,
versions and date it was measured on (the tables the README summarises).

    python benchmarks/report.py [--results benchmarks/results]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro

from jaxdl.bench.runner import fmt

HERE = Path(__file__).resolve().parent
SHOWN = (
    ("model", "model"),
    ("variant", "variant"),
    ("mode", "mode"),
    ("dtype", "dtype"),
    ("batch", "batch"),
    ("params_trainable", "params"),
    ("gmacs_fwd", "GMACs fwd (MAC=1)"),
    ("gflops_step_xla", "GFLOPs/step (XLA)"),
    ("compile_s", "compile s"),
    ("step_ms", "step ms"),
    ("throughput", "throughput"),
    ("unit", "unit"),
    ("peak_mem_gib", "peak GiB"),
    ("mfu_spec", "MFU spec"),
    ("mfu_measured", "MFU measured"),
    ("palm_mfu_spec", "MFU spec (PaLM)"),
    ("torch_throughput", "torch"),
    ("ratio_vs_torch", "jaxdl/torch"),
    ("status", "status"),
)


@dataclass(frozen=True)
class Config:
    results: Path = HERE / "results"


def table(data: dict) -> str:
    rows = data["rows"]
    cols = [(k, h) for k, h in SHOWN if any(r.get(k) is not None for r in rows)]
    env = data["environment"]
    lines = [
        f"device {env.get('device')}, jax {env.get('jax')}, flax {env.get('flax')}, "
        f"torch {env.get('torch')}, {env.get('date')}; bf16 matmul peak measured "
        f"{fmt(env.get('peak_tflops_measured_bf16_matmul'))} / spec "
        f"{fmt(env.get('peak_tflops_spec_bf16'))} TFLOP/s",
        "",
        "| " + " | ".join(h for _, h in cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(k), k) for k, _ in cols) + " |")
    return "\n".join(lines)


def main(cfg: Config) -> Path:
    parts = [
        "# jaxdl benchmark results",
        "",
        "Written by benchmarks/report.py from the JSON files beside it. FLOPs: XLA's count, "
        "multiply-add = 2; GMACs: analytic, multiply-add = 1.",
        "",
    ]
    for path in sorted(Path(cfg.results).glob("*.json")):
        parts += [f"## {path.stem}", "", table(json.loads(path.read_text())), ""]
    out = Path(cfg.results) / "SUMMARY.md"
    out.write_text("\n".join(parts))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main(tyro.cli(Config))
