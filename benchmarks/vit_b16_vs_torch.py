"""ViT-B/16 training, bf16, jaxdl against PyTorch (torchvision vit_b_16, else timm
vit_base_patch16_224), AdamW, over batch sizes.

    python benchmarks/vit_b16_vs_torch.py
    python benchmarks/vit_b16_vs_torch.py --smoke --out /tmp/v   # CPU, mlp stands in

Target (one H100): at least PyTorch's throughput. Writes results/vit_b16_train_vs_torch.*.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from _common import RESULTS, bench, console, registered, smoke_options

from jaxdl.bench.runner import BenchOptions, fmt


@dataclass(frozen=True)
class Config:
    batches: tuple[int, ...] = (64, 128, 256)
    scan_layers: bool = False
    """Run the 12 encoder layers as one lax.scan (compiles faster; see compile_vs_depth.py)."""
    out: Path = RESULTS
    resume: bool = True
    smoke: bool = False


def main(cfg: Config) -> list[dict]:
    if cfg.smoke:
        names, opts = (
            ["mlp"],
            smoke_options(mode="train", batches=(8,), compare="torch", torch_compile=False),
        )
    else:
        names = registered(["vit_b16"])
        opts = BenchOptions(
            mode="train",
            dtype="bf16",
            batches=cfg.batches,
            compare="torch",
            optimizer="adamw",
            lr=1e-3,
            isolate=True,
            overrides=(("scan_layers", cfg.scan_layers),),
        )
    rows = bench(
        names,
        opts,
        "vit_b16_train_vs_torch",
        out=cfg.out,
        resume=cfg.resume,
        plot=True,
        variant="scan" if cfg.scan_layers and not cfg.smoke else None,
    )
    for r in rows:
        if r["status"] == "ok" and not cfg.smoke:
            console.print(
                f"batch {r['batch']}: jaxdl/torch {fmt(r['ratio_vs_torch'], 'ratio')} "
                "(target >= 1.00x)"
            )
    return rows


if __name__ == "__main__":
    main(tyro.cli(Config))
