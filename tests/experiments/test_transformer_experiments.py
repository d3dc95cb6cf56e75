"""The transformer experiment scripts run end to end (--smoke), as a user runs them."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from jaxdl.data import shared_data_dir


@pytest.mark.slow
@pytest.mark.parametrize(
    "script,needs_data,expect",
    [
        ("transformer_seq2seq.py", False, "greedy exact match"),
        ("gpt_shakespeare.py", True, "bits/char"),
        ("vit_mnist.py", True, "test accuracy"),
    ],
)
def test_experiment_smoke(script, needs_data, expect):
    data = shared_data_dir()
    if needs_data and data is None:
        pytest.skip("../shared/data is absent (set JAXDL_SHARED_DATA to its path)")
    env = {**os.environ, "XLA_FLAGS": "", "PYTHONUNBUFFERED": "1"}
    if data is not None:
        env["JAXDL_SHARED_DATA"] = str(data)
    r = subprocess.run(
        [sys.executable, f"experiments/{script}", "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert expect in r.stdout
