"""ResNet-50 training, bf16, jaxdl against PyTorch (torchvision resnet50, channels-last,
autocast, torch.compile), SGD with momentum, over batch sizes.

    python benchmarks/resnet50_vs_torch.py
    python benchmarks/resnet50_vs_torch.py --smoke --out /tmp/r   # CPU, mlp stands in

Target (one H100): at least 3,000 images/s and at least PyTorch's throughput.
Writes results/resnet50_train_vs_torch.{csv,json,png}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from _common import RESULTS, bench, console, registered, smoke_options

from jaxdl.bench.runner import BenchOptions, fmt

TARGET_IMAGES_PER_S = 3000.0


@dataclass(frozen=True)
class Config:
    batches: tuple[int, ...] = (64, 128, 256)
    model: str = "resnet50"
    out: Path = RESULTS
    resume: bool = True
    smoke: bool = False


def main(cfg: Config) -> list[dict]:
    if cfg.smoke:
        names, opts = (
            ["mlp"],
            smoke_options(mode="train", batches=(8, 16), compare="torch", torch_compile=False),
        )
    else:
        names = registered([cfg.model])
        opts = BenchOptions(
            mode="train",
            dtype="bf16",
            batches=cfg.batches,
            compare="torch",
            optimizer="momentum",
            lr=0.1,
            isolate=True,
        )
    rows = bench(names, opts, "resnet50_train_vs_torch", out=cfg.out, resume=cfg.resume, plot=True)
    ok = [r for r in rows if r["status"] == "ok"]
    if ok and not cfg.smoke:
        best = max(ok, key=lambda r: r["throughput"])
        console.print(
            f"best: {fmt(best['throughput'])} images/s at batch {best['batch']} "
            f"(target {TARGET_IMAGES_PER_S:,.0f}: "
            f"{'met' if best['throughput'] >= TARGET_IMAGES_PER_S else 'NOT met'}); "
            f"jaxdl/torch {fmt(best['ratio_vs_torch'], 'ratio')} (target >= 1.00x)"
        )
    return rows


if __name__ == "__main__":
    main(tyro.cli(Config))
