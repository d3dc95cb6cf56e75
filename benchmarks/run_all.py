"""Every published benchmark, in order of priority, then the summary (issue 9, point 3).

    PYTHONPATH=$PWD python benchmarks/run_all.py                 # on the GPU machine
    PYTHONPATH=$PWD python benchmarks/run_all.py --only gpt2_mfu rnn_layers
    PYTHONPATH=$PWD python benchmarks/run_all.py --smoke --out /tmp/all   # CPU check, minutes

Each script runs in its own process and writes its results as it goes; a script that fails or is
killed does not stop the others, and running the command again resumes (rows already measured
are skipped). Ends by writing results/SUMMARY.md (benchmarks/report.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "resnet50_vs_torch",
    "gpt2_mfu",
    "vit_b16_vs_torch",
    "rnn_layers",
    "compile_vs_depth",
    "throughput_vs_batch",
    "cnn_zoo",
)


@dataclass(frozen=True)
class Config:
    only: tuple[str, ...] = SCRIPTS
    out: Path = HERE / "results"
    smoke: bool = False


def main(cfg: Config) -> int:
    bad = sorted(set(cfg.only) - set(SCRIPTS))
    if bad:
        print(
            f"unknown benchmark(s) {', '.join(bad)}; expected some of {', '.join(SCRIPTS)}",
            file=sys.stderr,
        )
        return 2
    failed = []
    for name in cfg.only:
        args = [sys.executable, str(HERE / f"{name}.py"), "--out", str(cfg.out)]
        args += ["--smoke"] if cfg.smoke else []
        print(f"=== {name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(args).returncode
        print(f"=== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    subprocess.run([sys.executable, str(HERE / "report.py"), "--results", str(cfg.out)])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Config)))
