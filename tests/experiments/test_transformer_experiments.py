"""The transformer experiment scripts run end to end (--smoke), as a user runs them."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT, assert_pictures

from jaxdl.data import shared_data_dir


@pytest.mark.slow
@pytest.mark.parametrize(
    "script,needs_data,expect,pictures",
    [
        ("transformer_seq2seq.py", False, "greedy exact match", ["curves.png"]),
        ("gpt_shakespeare.py", True, "bits/char", ["curves.png"]),
        ("vit_mnist.py", True, "test accuracy", ["curves.png", "confusion_matrix.png"]),
    ],
)
def test_experiment_smoke(script, needs_data, expect, pictures, tmp_path):
    data = shared_data_dir()
    if needs_data and data is None:
        pytest.skip("../shared/data is absent (set JAXDL_SHARED_DATA to its path)")
    env = {**os.environ, "XLA_FLAGS": "", "PYTHONUNBUFFERED": "1"}
    if data is not None:
        env["JAXDL_SHARED_DATA"] = str(data)
    r = subprocess.run(
        [sys.executable, f"experiments/{script}", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert expect in r.stdout
    assert_pictures(tmp_path, pictures)
