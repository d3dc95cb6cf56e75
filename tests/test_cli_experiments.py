"""The command line and the experiment scripts, run as a user runs them."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, assert_pictures

ENV = {**os.environ, "XLA_FLAGS": "", "PYTHONUNBUFFERED": "1"}  # one CPU device, as on a laptop


def run(*args, cwd=ROOT, timeout=300):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def jaxdl(*args):
    return run("-m", "jaxdl.cli", *args)


def test_train_json_reaches_095_on_digits():
    r = jaxdl("train", "mlp", "--dataset", "digits", "--epochs", "30", "--json")
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["test_accuracy"] >= 0.95 and "test_loss" in last
    assert "final metrics" in r.stdout


def test_models_and_summary():
    r = jaxdl("models")
    assert r.returncode == 0 and "perceptron" in r.stdout and "mlp" in r.stdout
    r = jaxdl("summary", "mlp", "--set", "hidden=(32,)")
    assert r.returncode == 0, r.stderr
    assert "Total params: 2,410" in r.stdout and "Trainable params: 2,410" in r.stdout
    assert "Total MACs: 2,368" in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "mlpx"], "unknown model 'mlpx'. Did you mean: mlp"),
        (["train", "mlp", "--dataset", "digitz"], "unknown dataset 'digitz'"),
        (["train", "mlp", "--optimizer", "adamx", "--epochs", "1"], "invalid choice 'adamx'"),
        (["train", "mlp", "--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["train", "mlp", "--lr", "0"], "--lr must be a positive number, got 0.0"),
        (["train", "mlp", "--batch-size", "-1"], "--batch-size must be a positive integer, got -1"),
        (["train", "mlp", "--set", "widths=3"], "unknown option(s) widths"),
    ],
)
def test_cli_bad_input(args, message):
    r = jaxdl(*args)
    assert r.returncode == 2
    assert message in r.stderr


def test_workdir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = jaxdl("train", "mlp", "--epochs", "1", "--workdir", str(f))
    assert r.returncode == 2 and "exists and is not a directory" in r.stderr


def test_experiment_perceptron_or(tmp_path):
    r = run("experiments/perceptron_or.py", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "converged after" in r.stdout and "d - y" in r.stdout
    assert_pictures(tmp_path, ["curves.png"])
    r = run(
        "experiments/perceptron_or.py",
        "--gate",
        "xor",
        "--max-epochs",
        "10",
        "--out",
        str(tmp_path),
    )
    assert "did NOT converge after 10 epoch(s)" in r.stdout


def test_experiment_mlp_xor(tmp_path):
    r = run("experiments/mlp_xor.py", "--smoke", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "accuracy 1.00" in r.stdout
    assert_pictures(tmp_path, ["curves.png"])


def test_experiment_mlp_digits_smoke(tmp_path):
    r = run("experiments/mlp_digits.py", "--smoke", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout and "confusion matrix" in r.stdout
    assert_pictures(tmp_path, ["curves.png", "confusion_matrix.png"])


def test_train_says_what_each_slow_phase_is_doing(tmp_path, capsys):
    """Loading the data, compiling the step and resuming are said as they happen; the compile
    time is reported apart from samples/s; --quiet says none of it."""
    from jaxdl.cli import main

    w = tmp_path / "W"
    args = ["train", "mlp", "--dataset", "digits", "--set", "hidden=(8,)", "--devices", "1"]
    assert main([*args, "--epochs", "1", "--workdir", str(w)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "loading dataset digits..."
    assert lines[1].startswith("mlp on digits (loaded in ") and "1259 train" in lines[1]
    assert lines[2] == "compiling the training step..."
    epoch = next(ln for ln in lines if ln.startswith("epoch 1/1"))
    assert "samples/s" in epoch and "(compile " in epoch
    assert main([*args, "--epochs", "2", "--workdir", str(w)]) == 0
    out = capsys.readouterr().out
    assert "resuming from step 40 (epoch 2)" in out
    assert out.index("resuming from step") < out.index("compiling the training step...")
    assert main([*args, "--epochs", "1", "--quiet"]) == 0
    quiet = capsys.readouterr().out
    assert "loading dataset" not in quiet and "compiling" not in quiet
