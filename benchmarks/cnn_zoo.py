"""The whole CNN zoo, inference and training, bf16.

    python benchmarks/cnn_zoo.py                   # both modes, batch 128, every CNN registered
    python benchmarks/cnn_zoo.py --mode train --compare   # with PyTorch beside each model
    python benchmarks/cnn_zoo.py --smoke --out /tmp/z    # seconds on a CPU (mlp stands in)

Each model at its own default input size (224, 299 for Inception, the EfficientNet sizes...),
synthetic data, each row in a fresh process.
Writes results/cnn_zoo_{infer,train}_bf16.{csv,json,png}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro
from _common import RESULTS, bar_plot, bench, registered, smoke_options

from jaxdl.bench.runner import BenchOptions
from jaxdl.models import get_entry, list_models

# every registered model of the convolutional families, in the registry's order
CNN_FAMILIES = (
    "lenet",
    "alexnet",
    "vgg",
    "inception",
    "xception",
    "resnet",
    "densenet",
    "mobilenet",
    "efficientnet",
    "unet",
    "fcn",
)
CNNS = tuple(n for n in list_models() if get_entry(n).family in CNN_FAMILIES)


@dataclass(frozen=True)
class Config:
    mode: Literal["infer", "train", "both"] = "both"
    batch: int = 128
    compare: bool = False
    """Also run the torchvision / timm model (channels-last, autocast, torch.compile)."""
    models: tuple[str, ...] = CNNS
    out: Path = RESULTS
    resume: bool = True
    smoke: bool = False


def main(cfg: Config) -> dict:
    modes = ("infer", "train") if cfg.mode == "both" else (cfg.mode,)
    names = ["mlp"] if cfg.smoke else registered(cfg.models)
    results = {}
    for mode in modes:
        kw = dict(
            mode=mode,
            dtype="bf16",
            batches=(8 if cfg.smoke else cfg.batch,),
            compare="torch" if cfg.compare else None,
        )
        opts = (
            smoke_options(**kw)
            if cfg.smoke
            else BenchOptions(**kw, isolate=True, optimizer="momentum", lr=0.1)
        )
        tag = f"cnn_zoo_{mode}_bf16"
        rows = bench(names, opts, tag, out=cfg.out, resume=cfg.resume)
        bar_plot(rows, Path(cfg.out) / f"{tag}.png", f"{mode}, bf16, batch {opts.batches[0]}")
        results[mode] = rows
    return results


if __name__ == "__main__":
    main(tyro.cli(Config))
