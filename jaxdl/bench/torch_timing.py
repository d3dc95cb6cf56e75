"""The PyTorch side of a row: the reference for the same registered model, timed by
`jaxdl.bench.compare` (its references and its timed step), written into the row's torch_*
columns."""

from __future__ import annotations

from jaxdl.bench.models import ModelIO, abstract_model_io
from jaxdl.bench.options import GIB, BenchOptions, failure_status


def bench_torch(name: str, opts: BenchOptions, batch: int, row: dict, io: ModelIO | None) -> None:
    """Fill the torch_* columns of `row` (and the ratio, where both sides ran)."""
    from jaxdl.bench import compare

    try:
        io = io or abstract_model_io(name, opts, batch)
        r = compare.bench_registered(
            name,
            io.config,
            mode=opts.mode,
            batch=batch,
            dtype=opts.dtype,
            label_shape=io.label_shape,
            num_labels=io.num_labels,
            optimizer=opts.optimizer,
            lr=opts.lr,
            warmup=opts.warmup,
            steps=opts.steps,
            compile=opts.torch_compile,
        )
    except Exception as e:  # noqa: BLE001 - reported in the row; the run carries on
        row["torch_status"] = failure_status(e)
        return
    step_s = r.times.median_s
    row.update(
        torch_source=r.source,
        torch_params=r.params,
        torch_compile_s=r.first_step_s,
        torch_step_ms=1e3 * step_s,
        torch_throughput=batch * io.items_per_sample / step_s,
        torch_peak_mem_gib=None if r.peak_memory_bytes is None else r.peak_memory_bytes / GIB,
        torch_status="ok",
    )
    set_ratio(row)


def set_ratio(row: dict) -> None:
    if row.get("throughput") and row.get("torch_throughput"):
        row["ratio_vs_torch"] = row["throughput"] / row["torch_throughput"]
