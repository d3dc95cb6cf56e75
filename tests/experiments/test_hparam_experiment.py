"""The hparam_search experiment's --smoke mode, run as a user runs it."""

import os
import subprocess
import sys

import numpy as np
from conftest import ROOT, assert_pictures
from PIL import Image


def test_hparam_search_smoke(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(
        [sys.executable, "experiments/hparam_search.py", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    for text in (
        "grid search: 4 trials",
        "random search",
        "in one compiled program",
        "best grid config",
        "0-1 loss: expected",
    ):
        assert text in r.stdout, text
    for name in (
        "grid_search.png",
        "random_search.png",
        "vmapped_lr_seed.png",
        "best_curves.png",
        "best_confusion.png",
    ):
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG"
    assert_pictures(tmp_path, ["grid_search.png", "vmapped_lr_seed.png", "best_curves.png"])
    # the best config's curves have their validation line (matplotlib's second colour, C1)
    with Image.open(tmp_path / "best_curves.png") as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    orange = np.abs(rgb - [255, 127, 14]).sum(-1) < 30
    assert orange.sum() > 200
