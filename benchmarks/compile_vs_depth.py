"""Compile time against depth, with and without scanned layers.

    python benchmarks/compile_vs_depth.py                  # gpt2-width decoders, 2..48 layers
    python benchmarks/compile_vs_depth.py --smoke --out /tmp/c   # CPU, small

A training step of a GPT-2-width decoder (d 768, 12 heads, sequence 256, batch 8) with N layers
as a Python loop (N copies of the layer in the program) or as one lax.scan over stacked
parameters (`scan_layers=True`: one copy, whatever N). Reports tracing + lowering and XLA
compile time separately, and the step time (a scan may cost some speed: it hides the layer
boundary from XLA's fusion). Writes results/compile_vs_depth.{csv,json,png}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from _common import RESULTS, bench, console, registered, smoke_options

from jaxdl.bench.runner import BenchOptions


@dataclass(frozen=True)
class Config:
    model: str = "gpt2"
    depths: tuple[int, ...] = (2, 4, 8, 16, 32, 48)
    seq_len: int = 256
    batch: int = 8
    out: Path = RESULTS
    resume: bool = True
    smoke: bool = False


def plot(rows: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for variant in ("loop", "scan"):
        pts = sorted(
            (r["depth"], r["lower_s"] + r["compile_s"])
            for r in rows
            if r["status"] == "ok" and r.get("variant", "").startswith(variant)
        )
        if pts:
            ax.plot(*zip(*pts, strict=False), "-o", label=f"{variant}: trace + lower + compile")
    ax.set_xlabel("layers")
    ax.set_ylabel("seconds")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(cfg: Config) -> list[dict]:
    name = "gpt_mini" if cfg.smoke else cfg.model
    if not registered([name]):
        return []
    depths = (1, 2) if cfg.smoke else cfg.depths
    rows = None
    for scan in (False, True):
        for depth in depths:
            overrides = (("num_layers", depth), ("scan_layers", scan), ("dropout", 0.0))
            kw = dict(
                mode="train",
                dtype="bf16",
                batches=(2 if cfg.smoke else cfg.batch,),
                input=16 if cfg.smoke else cfg.seq_len,
                overrides=overrides,
            )
            opts = smoke_options(**kw) if cfg.smoke else BenchOptions(**kw, isolate=True, steps=5)
            rows = bench(
                [name],
                opts,
                "compile_vs_depth",
                out=cfg.out,
                resume=cfg.resume,
                variant=f"{'scan' if scan else 'loop'} {depth}",
                rows=rows,
                extra=lambda r, d=depth: {"depth": d},
            )
    for r in rows:
        console.print(
            f"{r['variant']:>10}: lower {r['lower_s'] or 0:.1f} s + compile "
            f"{r['compile_s'] or 0:.1f} s, step {r['step_ms'] or 0:.1f} ms ({r['status']})"
        )
    plot(rows, Path(cfg.out) / "compile_vs_depth.png", f"{name} train step, bf16")
    return rows


if __name__ == "__main__":
    main(tyro.cli(Config))
