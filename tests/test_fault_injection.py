"""Fault injection against real processes: `jaxdl train --workdir` killed from outside at random
moments by SIGKILL and SIGTERM, R2 SIGKILL inside a checkpoint write, SIGTERM (preemption) and
the restart.

The trials run benchmarks/fault_injection.py's child (an MLP on digits, one CPU device) as
subprocesses; `python benchmarks/fault_injection.py --trials N` runs more and prints figures."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "fault_injection", ROOT / "benchmarks" / "fault_injection.py"
)
fi = importlib.util.module_from_spec(_spec)
sys.modules["fault_injection"] = fi  # dataclasses look their module up
_spec.loader.exec_module(fi)

CFG = fi.Config(epochs=2, train_size=320, batch_size=32, checkpoint_every=3)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    w = tmp_path_factory.mktemp("ref")
    r = fi.run_child(CFG, w)
    assert r.returncode == 0, r.stderr[-2000:]
    return fi.read_run(w)


@pytest.mark.slow
def test_external_kills_at_random_moments_then_rerun_is_byte_identical(tmp_path):
    """10 kills of `jaxdl train --workdir W` from this process at uniform random wall-clock
    moments (start-up, steps, checkpoint writes, epoch ends), SIGKILL and SIGTERM alternately,
    each followed by the same command: every output file of the completed workdir equals an
    uninterrupted run's byte for byte (metrics.json, log.csv, the lock file, each checkpoint's
    metadata with its array digests)."""
    cfg = fi.Config(trials=10, epochs=2, batch_size=64, checkpoint_every=5, seed=18)
    ref, duration = fi.reference(cfg, tmp_path / "ref")
    assert {"metrics.json", "log.csv", ".jaxdl.lock"} <= set(ref)
    assert b"\r\n" in ref["log.csv"] and ref[".jaxdl.lock"] == b""
    results = fi.external_trials(cfg, ref, duration, tmp_path)
    s = fi.summarize(results)
    assert s["trials"] == 10 and s["sigkill"] == 5 and s["sigterm"] == 5, s
    assert s["identical"] == 10, [r for r in results if not r["identical"]]
    assert s["unexpected_exit_codes"] == [] and s["tracebacks"] == 0, s


@pytest.mark.slow
def test_r2_sigkill_during_checkpoint_write(reference):
    r = fi.trial(CFG, reference, kill_save_step=2 * CFG.checkpoint_every)
    assert r["killed_rc"] == -signal.SIGKILL
    assert r["partial_before_restart"], "the kill must leave a partial checkpoint behind"
    assert 2 * CFG.checkpoint_every not in r["complete_before_restart"]
    assert r["partial_after_restart"] == []  # cleaned up by the restart
    assert r["identical"], r["problems"]


def _cli(workdir, *extra, model="mlp", epochs=4, wait=True):
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable,
        "-m",
        "jaxdl.cli",
        "train",
        model,
        "--dataset",
        "digits",
        "--epochs",
        str(epochs),
        "--workdir",
        str(workdir),
        "--quiet",
        "--devices",
        "1",
        *extra,
    ]
    if wait:
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _metrics(workdir):
    """metrics.json holds no wall-clock figure (those are in timing.json)."""
    assert "train_time_s" in json.loads((Path(workdir) / "timing.json").read_text())
    return json.loads((Path(workdir) / "metrics.json").read_text())


def _interrupt_when_checkpointed(workdir, sig, model="mlp", epochs=4, extra=()):
    """Start `jaxdl train`, send `sig` once its first checkpoint exists; returns the return code."""
    p = _cli(workdir, *extra, model=model, epochs=epochs, wait=False)
    ck = Path(workdir) / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if ck.is_dir() and any(c.name.isdigit() for c in ck.iterdir()):
            break
        time.sleep(0.05)
    p.send_signal(sig)
    p.communicate(timeout=300)
    return p.returncode


@pytest.mark.slow
@pytest.mark.parametrize("model,epochs", [("mlp", 4), ("lenet5", 20)])
def test_cli_workdir_killed_then_rerun_matches_uninterrupted(tmp_path, model, epochs):
    """`jaxdl train M --dataset digits --epochs E --workdir W` killed with
    SIGKILL mid-run and started again finishes with the same final metrics; SIGTERM saves and
    exits with 75, and the rerun also matches."""
    extra = ("--checkpoint-every", "7")
    assert _cli(tmp_path / "ref", *extra, model=model, epochs=epochs).returncode == 0
    ref = _metrics(tmp_path / "ref")
    assert (
        _interrupt_when_checkpointed(tmp_path / "kill", signal.SIGKILL, model, epochs, extra)
        == -signal.SIGKILL
    )
    assert not (tmp_path / "kill" / "metrics.json").exists()
    r = _cli(tmp_path / "kill", *extra, model=model, epochs=epochs)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _metrics(tmp_path / "kill") == ref
    assert (tmp_path / "kill" / "log.csv").read_bytes() == (
        tmp_path / "ref" / "log.csv"
    ).read_bytes()
    ref_bytes = (tmp_path / "ref" / "metrics.json").read_bytes()
    assert (tmp_path / "kill" / "metrics.json").read_bytes() == ref_bytes
    if model == "mlp":
        from jaxdl.train import EXIT_PREEMPTED

        rc = _interrupt_when_checkpointed(tmp_path / "term", signal.SIGTERM, model, epochs, extra)
        assert rc == EXIT_PREEMPTED == 75
        r = _cli(tmp_path / "term", *extra, model=model, epochs=epochs)
        assert r.returncode == 0 and _metrics(tmp_path / "term") == ref


def test_cli_bad_workdir_and_flag_combinations(tmp_path):
    from jaxdl.cli import main

    f = tmp_path / "file"
    f.write_text("x")
    assert main(["train", "mlp", "--epochs", "1", "--workdir", str(f), "--quiet"]) == 2
    assert main(["train", "mlp", "--epochs", "1", "--checkpoint-every", "5", "--quiet"]) == 2
    assert main(["train", "mlp", "--epochs", "1", "--tensorboard", "--quiet"]) == 2
    assert main(["train", "mlp", "--epochs", "1", "--grad-accum", "0", "--quiet"]) == 2
