"""Throughput against batch size, jaxdl beside PyTorch.

    python benchmarks/throughput_vs_batch.py
    python benchmarks/throughput_vs_batch.py --smoke --out /tmp/t   # CPU, mlp stands in

Per model and mode, bf16, batch sizes in powers of two until out of memory (an OOM row ends that
model's sweep). Writes results/throughput_vs_batch_{mode}.{csv,json,png}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from _common import RESULTS, bench, registered, smoke_options

from jaxdl.bench.runner import BenchOptions, plot_throughput


@dataclass(frozen=True)
class Config:
    infer_models: tuple[str, ...] = ("resnet50", "mobilenet_v2", "vit_b16")
    train_models: tuple[str, ...] = ("resnet50", "vit_b16")
    batches: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)
    compare: bool = True
    out: Path = RESULTS
    resume: bool = True
    smoke: bool = False


def main(cfg: Config) -> dict:
    results = {}
    for mode, models in (("infer", cfg.infer_models), ("train", cfg.train_models)):
        names = ["mlp"] if cfg.smoke else registered(models)
        tag = f"throughput_vs_batch_{mode}"
        rows = None
        for name in names:
            for batch in (4, 8) if cfg.smoke else cfg.batches:
                kw = dict(
                    mode=mode,
                    dtype="bf16",
                    batches=(batch,),
                    compare="torch" if cfg.compare else None,
                )
                opts = (
                    smoke_options(**kw, torch_compile=False)
                    if cfg.smoke
                    else BenchOptions(**kw, isolate=True, optimizer="momentum", lr=0.1)
                )
                rows = bench([name], opts, tag, out=cfg.out, resume=cfg.resume, rows=rows)
                if rows[-1]["model"] == name and rows[-1]["status"] == "OOM":
                    break  # larger batches will not fit either
        if rows:
            plot_throughput(rows, Path(cfg.out) / f"{tag}.png", title=f"{mode}, bf16")
        results[mode] = rows
    return results


if __name__ == "__main__":
    main(tyro.cli(Config))
