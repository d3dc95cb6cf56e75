"""Rows in other processes.

- `run_isolated`: each part of a row (jaxdl, then PyTorch) in a fresh process
  (`jaxdl bench --isolate`), so the device's peak-memory counter, which never goes down, is per
  row, and a row that crashes its process takes nothing else with it.
- `TorchWorker`: one long-lived child process that runs the PyTorch side of many rows, for a
  script that keeps JAX in its own process (benchmarks/gpu_headline.py): the two frameworks then
  share the GPU without sharing a process, and torch starts once.

A child process runs `python -m jaxdl.bench.isolate` and answers each job with one line
starting with `ANSWER`, the rest being JSON; what else it prints is passed through. The PyTorch
side runs with JAX on the CPU (it derives the model's input and output shapes abstractly and
leaves the accelerator to PyTorch).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from typing import Any

from jaxdl.bench.options import BenchOptions, Peaks, empty_row, failure_status

ANSWER = "@@jaxdl-bench-answer "
TORCH_ENV = {"JAX_PLATFORMS": "cpu"}


def job_for(name: str, opts: BenchOptions, batch: int, peaks: Peaks, part: str) -> dict:
    return {
        "kind": "row",
        "part": part,
        "name": name,
        "batch": batch,
        "opts": dataclasses.asdict(opts),
        "peaks": dataclasses.asdict(peaks),
    }


def _tuples(value):
    """JSON gives lists where the config had tuples (e.g. hidden=(256, 128)): give them back."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def options_from_json(o: dict) -> BenchOptions:
    return BenchOptions(
        **{
            **o,
            "overrides": tuple((k, _tuples(v)) for k, v in o["overrides"]),
            "batches": tuple(o["batches"]),
            "isolate": False,
        }
    )


# what a worker can be asked to do, besides the built-in kinds: 'module:function', called with the
# job's "args" and returning something JSON can hold (benchmarks/gpu_headline.py's torch stages)
def do_job(job: dict) -> Any:
    kind = job["kind"]
    if kind == "peaks":
        from jaxdl.bench.runner import measure_peaks

        return dataclasses.asdict(measure_peaks())
    if kind == "row":
        from jaxdl.bench.runner import run_one

        opts = options_from_json(job["opts"])
        return run_one(job["name"], opts, job["batch"], Peaks(**job["peaks"]), parts=(job["part"],))
    if kind == "call":
        import importlib

        module, _, fn = job["function"].partition(":")
        if job.get("path"):
            sys.path.insert(0, job["path"])
        return getattr(importlib.import_module(module), fn)(**job.get("args", {}))
    raise ValueError(f"unknown job kind {kind!r}")


def _answer(value) -> None:
    sys.stdout.write(ANSWER + json.dumps(value) + "\n")
    sys.stdout.flush()


def _serve() -> None:
    """Answer one job per stdin line until stdin closes; a failing job answers {'error': ...}."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            _answer({"ok": do_job(json.loads(line))})
        except Exception as e:  # noqa: BLE001 - the parent reports it and carries on
            _answer({"error": failure_status(e)})


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "jaxdl.bench.isolate", *args]


def run_in_subprocess(job: dict, env: dict | None = None) -> Any:
    """`job` in a fresh process; its answer (RuntimeError if the process died)."""
    r = subprocess.run(
        _command("--job", json.dumps(job)),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    answers = [ln[len(ANSWER) :] for ln in r.stdout.splitlines() if ln.startswith(ANSWER)]
    if r.returncode != 0 or not answers:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"benchmark worker exited with {r.returncode}: {tail}")
    out = json.loads(answers[-1])
    if "error" in out:
        raise RuntimeError(out["error"])
    return out["ok"]


def run_isolated(name: str, opts: BenchOptions, batch: int, peaks: Peaks) -> dict:
    """The jaxdl part of a row in one fresh process; the PyTorch part in another."""
    from jaxdl.bench.torch_timing import set_ratio

    try:
        row = run_in_subprocess(job_for(name, opts, batch, peaks, "jax"))
    except (RuntimeError, json.JSONDecodeError) as e:  # the worker died (e.g. killed for memory)
        row = empty_row(name, opts, batch)
        row["status"] = failure_status(e)
    if opts.compare == "torch":
        try:
            t = run_in_subprocess(job_for(name, opts, batch, peaks, "torch"), env=TORCH_ENV)
        except (RuntimeError, json.JSONDecodeError) as e:
            row["torch_status"] = failure_status(e)
        else:
            row.update({k: v for k, v in t.items() if k.startswith("torch_")})
            set_ratio(row)
    return row


class TorchWorker:
    """One child process for the PyTorch side of many jobs (`call(job, timeout_s)`).

    A job that takes longer than its timeout kills the child (the next call starts a new one) and
    raises TimeoutError; a job that fails raises RuntimeError with its status; the child's other
    output goes to this process's stderr."""

    def __init__(self, env: dict | None = None):
        self.env = {**os.environ, **TORCH_ENV, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                _command("--serve"),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=self.env,
                bufsize=1,
            )
        return self.proc

    def call(self, job: dict, timeout_s: float | None = None) -> Any:
        proc = self._start()
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.flush()
        answer: list[str] = []

        def read():
            for line in proc.stdout:
                if line.startswith(ANSWER):
                    answer.append(line[len(ANSWER) :])
                    return
                sys.stderr.write(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout_s)
        if reader.is_alive():
            self.close(kill=True)
            raise TimeoutError(f"the PyTorch worker took over {timeout_s:.0f} s; stopped it")
        if not answer:
            code = proc.wait()
            self.proc = None
            raise RuntimeError(f"the PyTorch worker exited with {code}")
        out = json.loads(answer[0])
        if "error" in out:
            raise RuntimeError(out["error"])
        return out["ok"]

    def close(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve()
    elif sys.argv[1:2] == ["--job"]:
        _answer({"ok": do_job(json.loads(sys.argv[2]))})
    else:
        sys.exit("usage: python -m jaxdl.bench.isolate --serve | --job JSON")
