"""What the benchmark scripts share: checking model names, and a resumable run that writes
benchmarks/results/TAG.{csv,json} after every row.

A script killed part-way (a time limit on the GPU machine) keeps the rows it measured; run it
again and it measures only the rows still missing (`--no-resume` measures everything again).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rich.console import Console

from jaxdl.bench import runner
from jaxdl.models import get_entry

RESULTS = Path(__file__).resolve().parent / "results"
console = Console(highlight=False)


def registered(names) -> list[str]:
    """`names`, in order, after checking each is a registered model (an unknown name is a
    JaxdlError that lists the close matches)."""
    for n in names:
        get_entry(n)
    return list(names)


def _key(row: dict) -> tuple:
    return row["model"], row["mode"], row["dtype"], row["batch"], row.get("variant")


def bench(
    names,
    opts: runner.BenchOptions,
    tag: str,
    *,
    out: Path = RESULTS,
    resume: bool = True,
    plot: bool = False,
    variant: str | None = None,
    rows: list[dict] | None = None,
    extra=None,
) -> list[dict]:
    """Run `names` x `opts.batches`, writing OUT/TAG.* after each row; returns every row of TAG.

    `variant` labels rows of one model run with different overrides (e.g. 'scan'); `rows` are
    rows already collected for TAG in this process (several calls to one tag); `extra(row)` adds
    script-specific columns to a measured row."""
    out = Path(out)
    path = out / f"{tag}.json"
    if rows is None:
        rows = json.loads(path.read_text())["rows"] if resume and path.exists() else []
    done = {_key(r) for r in rows if r["status"] in ("ok", "OOM")}
    rows = [r for r in rows if _key(r) in done]
    peaks = None
    for name in names:
        for batch in opts.batches:
            key = (name, opts.mode, opts.dtype, batch, variant)
            if key in done:
                console.print(
                    f"{name} {opts.mode} {opts.dtype} batch {batch} {variant or ''}: "
                    "already measured (--no-resume to measure again)",
                    style="dim",
                )
                continue
            peaks = peaks or runner.get_peaks(opts)
            (row,), _ = runner.run([name], dataclasses.replace(opts, batches=(batch,)), peaks=peaks)
            row["variant"] = variant
            if extra is not None and row["status"] == "ok":
                row.update(extra(row))
            rows.append(row)
            console.print(
                f"{name} {opts.mode} {opts.dtype} batch {batch} {variant or ''}: "
                f"{row['status']} {runner.fmt(row['throughput'])} {row['unit'] or ''}"
                + (
                    f", torch {runner.fmt(row['torch_throughput'])} "
                    f"({row['torch_status']}), ratio {runner.fmt(row['ratio_vs_torch'], 'ratio')}"
                    if opts.compare
                    else ""
                )
            )
            meta = runner.environment(peaks)
            runner.write_outputs(rows, out, tag, meta, plot=plot)
    return rows


def smoke_options(**kw) -> runner.BenchOptions:
    """Seconds on a CPU: for checking that a script runs, never for figures."""
    return runner.BenchOptions(**{"warmup": 1, "steps": 2, "isolate": False, **kw})


def bar_plot(rows: list[dict], path: Path, title: str) -> Path:
    """Horizontal bars of throughput per model (one bar per row with a throughput)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["throughput"]]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.5))
    labels = [f"{r['model']} (b{r['batch']})" for r in rows]
    ax.barh(labels, [r["throughput"] for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel(rows[0]["unit"] if rows else "throughput")
    ax.set_title(title)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
