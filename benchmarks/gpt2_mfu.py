"""GPT-2 124M training MFU, bf16, jaxdl against a PyTorch GPT-2 written for the benchmark
(jaxdl.bench.compare.gpt_reference: fused scaled_dot_product_attention, torch.compile), AdamW,
context 1024, dropout 0 on both sides (as llm.c and nanoGPT benchmark it).

    python benchmarks/gpt2_mfu.py
    python benchmarks/gpt2_mfu.py --smoke --out /tmp/g   # CPU, gpt_mini (or mlp) stands in

MFU in two conventions, both against the 989 TFLOP/s spec and the measured bf16 matmul peak:
XLA's count of the jitted step (mfu_measured / mfu_spec) and PaLM's 6 N + 12 L d T per token
(palm_mfu_*; N without the position table, jaxdl.bench.mfu.palm_columns).
Target (one H100): at least 45% MFU of the spec. Writes results/gpt2_train_mfu.*.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from _common import RESULTS, bench, console, registered, smoke_options

from jaxdl.bench.mfu import palm_columns
from jaxdl.bench.runner import BenchOptions, fmt

TARGET_MFU_SPEC = 0.45


@dataclass(frozen=True)
class Config:
    batches: tuple[int, ...] = (8, 16, 32)
    scan_batch: int = 16
    """Also measure this batch with the 12 layers as one lax.scan (0: skip)."""
    out: Path = RESULTS
    resume: bool = True
    smoke: bool = False


def main(cfg: Config) -> list[dict]:
    name = "gpt_mini" if cfg.smoke else "gpt2"
    if not registered([name]):
        if not cfg.smoke:
            return []
        name = "mlp"
    overrides = {"dropout": 0.0} if name != "mlp" else {}
    kw = dict(mode="train", dtype="bf16", compare="torch", optimizer="adamw", lr=6e-4)
    tag = "gpt2_train_mfu"
    rows = None
    variants = [(None, cfg.batches, {})]
    if cfg.scan_batch and name != "mlp":
        variants.append(("scan", (cfg.scan_batch,), {"scan_layers": True}))
    for variant, batches, more in variants:
        ov = {**overrides, **more}
        opts = (
            smoke_options(**kw, batches=(2,), torch_compile=False, overrides=tuple(ov.items()))
            if cfg.smoke
            else BenchOptions(**kw, batches=batches, isolate=True, overrides=tuple(ov.items()))
        )
        palm = palm_columns(name, ov) if name != "mlp" else None
        rows = bench(
            [name],
            opts,
            tag,
            out=cfg.out,
            resume=cfg.resume,
            variant=variant,
            rows=rows,
            extra=palm,
        )
    for r in rows:
        if r["status"] == "ok" and not cfg.smoke:
            console.print(
                f"batch {r['batch']} {r.get('variant') or ''}: MFU (XLA count) "
                f"{fmt(r['mfu_spec'], 'mfu')} of spec, {fmt(r['mfu_measured'], 'mfu')} of "
                f"measured; PaLM count {fmt(r.get('palm_mfu_spec'), 'mfu')} of spec "
                f"(target >= {TARGET_MFU_SPEC:.0%}); jaxdl/torch "
                f"{fmt(r['ratio_vs_torch'], 'ratio')}"
            )
    return rows


if __name__ == "__main__":
    main(tyro.cli(Config))
