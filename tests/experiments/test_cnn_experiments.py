"""The CNN experiments' smoke modes and `jaxdl train lenet5` from the command line."""

import json
import os
import subprocess
import sys

from conftest import ROOT, assert_pictures

ENV = {**os.environ, "XLA_FLAGS": "", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


def run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def last_json(r):
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_cli_train_lenet5_on_mnist_idx(mnist_dir):
    r = run(
        "-m",
        "jaxdl.cli",
        "train",
        "lenet5",
        "--dataset",
        f"mnist_idx:{mnist_dir}",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--json",
        "--quiet",
    )
    out = last_json(r)
    assert out["model"] == "lenet5" and out["test_accuracy"] > 0.85  # two epochs on 7,000 images


def test_cli_train_lenet5_on_digits():
    out = last_json(
        run(
            "-m",
            "jaxdl.cli",
            "train",
            "lenet5",
            "--dataset",
            "digits",
            "--epochs",
            "8",
            "--json",
            "--quiet",
        )
    )
    assert out["test_accuracy"] > 0.8  # 8x8 digits resized to LeNet's 32x32 field


def test_experiment_smoke_modes(tmp_path):
    r = run("experiments/lenet5_mnist.py", "--smoke", "--out", str(tmp_path / "lenet5"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "test accuracy" in r.stdout
    assert_pictures(tmp_path / "lenet5", ["curves.png", "confusion_matrix.png"])
    r = run("experiments/cnn_cifar10.py", "--smoke", "--out", str(tmp_path / "cifar"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "vgg_small: test accuracy" in r.stdout and "resnet18: test accuracy" in r.stdout
    # each model also with augmentation (the default second run)
    assert "vgg_small + flip,crop=4: test accuracy" in r.stdout
    assert "resnet18 + flip,crop=4: test accuracy" in r.stdout
    for run_dir in ("vgg_small", "vgg_small_flip_crop_4", "resnet18", "resnet18_flip_crop_4"):
        assert_pictures(tmp_path / "cifar" / run_dir, ["curves.png", "confusion_matrix.png"])
    r = run("experiments/resnet_cifar10.py", "--smoke", "--out", str(tmp_path / "resnet"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resnet18 + flip,crop=4: test accuracy" in r.stdout
    assert_pictures(tmp_path / "resnet" / "resnet18_flip_crop_4", ["curves.png"])


def test_cifar10_without_data_says_how_to_get_it(tmp_path):
    r = run("experiments/cnn_cifar10.py", "--data-dir", str(tmp_path), "--epochs", "1")
    assert r.returncode != 0 and "tfds build cifar10" in r.stderr
