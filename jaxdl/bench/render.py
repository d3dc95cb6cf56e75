"""The results table in the terminal (rich), and the number format every report shares."""

from __future__ import annotations

from jaxdl.bench.options import BenchOptions, Peaks


def fmt(value, column: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if column.startswith("mfu"):
            return f"{100 * value:.1f}%"
        if column.startswith("ratio"):
            return f"{value:.2f}x"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


TABLE_COLUMNS = (
    ("model", "model"),
    ("batch", "batch"),
    ("dtype", "dtype"),
    ("params_trainable", "params"),
    ("gmacs_fwd", "GMACs fwd\n(MAC=1)"),
    ("gflops_step_xla", "GFLOPs/step\n(XLA, FLOP=2/MAC)"),
    ("compile_s", "compile s"),
    ("step_ms", "step ms\n(median)"),
    ("throughput", "throughput"),
    ("unit", "unit"),
    ("peak_mem_gib", "peak mem\nGiB"),
    ("mfu_measured", "MFU\nmeasured"),
    ("mfu_spec", "MFU\nspec"),
    ("torch_throughput", "torch\nthroughput"),
    ("ratio_vs_torch", "jaxdl /\ntorch"),
    ("fit_throughput", "fit\nthroughput"),
    ("fit_vs_step", "fit /\nstep"),
    ("status", "status"),
)


def render(rows: list[dict], peaks: Peaks, opts: BenchOptions, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    title = (
        f"jaxdl bench: {opts.mode}, {opts.dtype}, device {peaks.device}; bf16 matmul peak "
        f"measured {fmt(peaks.measured)} / spec {fmt(peaks.spec)} TFLOP/s"
    )
    t = Table(title=title)
    cols = [
        c
        for c in TABLE_COLUMNS
        if (opts.compare or not c[0].startswith(("torch", "ratio")))
        and (opts.mode == "train" and opts.fit or not c[0].startswith("fit"))
    ]
    for key, label in cols:
        t.add_column(
            label, justify="left" if key in ("model", "unit", "status", "dtype") else "right"
        )
    for r in rows:
        t.add_row(*(fmt(r[k], k) for k, _ in cols))
    console.print(t)
    for r in rows:
        if r["status"] != "ok" or (opts.compare and r["torch_status"] not in (None, "ok")):
            console.print(
                f"{r['model']} batch {r['batch']}: jaxdl {r['status']}"
                + (f"; torch {r['torch_status']}" if opts.compare else "")
            )
