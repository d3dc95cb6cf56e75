"""The generative experiments' --smoke modes, run as a user runs them, and their pictures."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT
from PIL import Image

ENV = {**os.environ, "XLA_FLAGS": "", "PYTHONUNBUFFERED": "1"}  # one CPU device, as on a laptop


def run(script, *args, timeout=600):
    return subprocess.run(
        [sys.executable, f"experiments/{script}", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_pngs(folder, names):
    for name in names:
        with Image.open(folder / name) as im:
            assert im.format == "PNG" and im.width > 100, name


@pytest.mark.parametrize(
    "script,expected,pictures",
    [
        ("autoencoder_mnist.py", "test bce", ["curves.png", "reconstructions.png"]),
        (
            "vae_mnist.py",
            "test -ELBO",
            ["curves.png", "samples.png", "interpolation.png", "reconstructions.png"],
        ),
        (
            "dcgan_mnist.py",
            "MNIST inception score: generated",
            ["curves.png", "samples_epoch001.png"],
        ),
    ],
)
def test_generative_experiment_smoke(script, expected, pictures, mnist_dir, tmp_path):
    r = run(script, "--smoke", "--data", str(mnist_dir), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert expected in r.stdout
    assert_pngs(tmp_path, pictures)
    assert any((tmp_path / "tb").iterdir())  # the TensorBoard event file


def test_missing_mnist_folder_is_a_clear_error(tmp_path):
    r = run("vae_mnist.py", "--smoke", "--data", str(tmp_path / "nowhere"))
    assert r.returncode != 0 and "MNIST IDX folder" in r.stderr and "not found" in r.stderr
