"""Results files: the environment recorded beside the rows, DIR/TAG.csv, DIR/TAG.json and the
throughput plot."""

from __future__ import annotations

import csv
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax

from jaxdl.bench.options import COLUMN_DOC, COLUMNS, Peaks


def versions(*, torch: bool = True) -> dict[str, Any]:
    """Python, jax, jaxlib, flax, the CUDA and cuDNN that jaxlib runs on (None off a GPU or
    where jaxlib does not say), and with `torch` torch's version if it is importable here (which
    imports it: a process that keeps torch out passes False)."""
    import flax
    import jaxlib

    from jaxdl.bench.compare import torch_version

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "cuda": None,
        "cudnn": None,
        "torch": torch_version() if torch else None,
    }
    try:  # jaxlib's CUDA plugin reports the versions it loaded; private, hence guarded
        from jax._src.lib import cuda_versions

        if cuda_versions is not None:
            out["cuda"] = _cuda_version(cuda_versions.cuda_runtime_get_version())
            out["cudnn"] = _cuda_version(cuda_versions.cudnn_get_version(), cudnn=True)
    except Exception:  # noqa: BLE001 - no GPU plugin, or an API that moved: versions unknown
        pass
    return out


def _cuda_version(n: int | None, *, cudnn: bool = False) -> str | None:
    """12080 -> '12.8' (CUDA runtime); 90300 -> '9.3.0' (cuDNN 9)."""
    if not n:
        return None
    if cudnn:
        return f"{n // 10000}.{n // 100 % 100}.{n % 100}"
    return f"{n // 1000}.{n // 10 % 100}"


def environment(peaks: Peaks) -> dict[str, Any]:
    """Device, versions and date, recorded beside the rows."""
    v = versions()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": peaks.device,
        "platform": peaks.platform,
        "device_count": peaks.device_count,
        "host": platform.node(),
        **v,
        "peak_tflops_measured_bf16_matmul": peaks.measured,
        "peak_tflops_spec_bf16": peaks.spec,
        "command": " ".join(sys.argv),
    }


def write_outputs(
    rows: list[dict], out_dir, tag: str, meta: dict, *, plot: bool = False
) -> list[Path]:
    """DIR/TAG.csv (every column, 'n/a' for unknown), DIR/TAG.json (environment, column
    meanings, rows) and with `plot` DIR/TAG.png (throughput against batch size). Rewritten
    whole, so a script may call it after every row."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / f"{tag}.csv", out / f"{tag}.json"
    # columns a benchmark script adds (e.g. a second MFU convention) follow the standard ones
    extra = [k for r in rows for k in r if k not in COLUMNS]
    columns = list(COLUMNS) + list(dict.fromkeys(extra))
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow(["n/a" if r.get(c) is None else r[c] for c in columns])
    json_path.write_text(
        json.dumps({"environment": meta, "columns": COLUMN_DOC, "rows": rows}, indent=1)
    )
    paths = [csv_path, json_path]
    if plot:
        paths.append(
            plot_throughput(rows, out / f"{tag}.png", title=f"{tag}: {meta.get('device', '')}")
        )
    return paths


def plot_throughput(rows: list[dict], path, *, title: str = "") -> Path:
    """Throughput against batch size, one line per (model, mode, dtype); PyTorch dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["mode"], r["dtype"]), []).append(r)
    units = set()
    for (model, mode, dtype), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["batch"])
        units |= {r["unit"] for r in rs if r["unit"]}
        for key, style, who in (
            ("throughput", "-o", "jaxdl"),
            ("torch_throughput", "--s", "torch"),
        ):
            pts = [(r["batch"], r[key]) for r in rs if r[key]]
            if pts:
                ax.plot(*zip(*pts, strict=False), style, label=f"{model} {mode} {dtype} ({who})")
        for r in rs:
            if r["status"] == "OOM":
                ax.axvline(r["batch"], color="grey", lw=0.5, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel(" / ".join(sorted(units)) or "throughput")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
