"""Experiment pictures: image grids, curves, confusion matrices."""

import numpy as np
import pytest
from PIL import Image

from jaxdl.errors import JaxdlError
from jaxdl.train import History
from jaxdl.viz import (
    image_grid,
    log_image_grid,
    save_confusion_matrix,
    save_history,
    save_image_grid,
)


def test_image_grid_layout_and_scaling():
    imgs = np.stack([np.full((2, 3), v) for v in (0.0, 0.5, 1.0)])  # 3 images of 2x3
    g = image_grid(imgs, ncols=2, pad=1)
    assert g.shape == (2 * 3 + 1, 2 * 4 + 1, 1) and g.dtype == np.uint8
    assert (g[1:3, 1:4] == 0).all() and (g[1:3, 5:8] == 128).all() and (g[4:6, 1:4] == 255).all()
    assert (g[0] == 255).all()  # padding is white
    # [-1, 1] data (a tanh generator) maps -1 to black and 1 to white
    g2 = image_grid(np.array([[[-1.0, 1.0]]]), value_range=(-1, 1), pad=0)
    assert g2[..., 0].tolist() == [[0, 255]]


def test_pictures_are_written(tmp_path):
    p = save_image_grid(
        np.random.default_rng(0).uniform(size=(10, 8, 8, 1)),
        tmp_path / "a/grid.png",
        ncols=5,
        scale=2,
    )
    with Image.open(p) as im:
        assert im.size == ((5 * 9 + 1) * 2, (2 * 9 + 1) * 2)
    h = History()
    for e, (loss, val_loss) in enumerate([(1.0, 1.2), (0.5, 0.9)]):
        h.on_epoch_end(e, {"loss": loss, "val_loss": val_loss, "lr": 0.1})
    with Image.open(save_history(h, tmp_path / "curves.png")) as im:
        assert im.size == (400, 320)  # one panel: loss (val beside it, lr skipped)
    with Image.open(save_confusion_matrix(np.eye(3) * 5, tmp_path / "cm.png")) as im:
        assert im.format == "PNG"
    log_image_grid(tmp_path / "tb", "samples", np.zeros((4, 8, 8, 1)), 0)
    assert any((tmp_path / "tb").iterdir())


def test_bad_pictures():
    with pytest.raises(JaxdlError, match="image_grid: images must be"):
        image_grid(np.zeros((2, 8, 8, 2)))
    with pytest.raises(JaxdlError, match="no 'accuracy' in the history"):
        save_history({"loss": [1.0]}, "/tmp/unused.png", keys=["accuracy"])
    with pytest.raises(JaxdlError, match="cm must be square"):
        save_confusion_matrix(np.zeros((2, 3)), "/tmp/unused.png")
