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
        assert im.size == (420, 330)  # one panel: loss (val beside it, lr skipped)
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


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figures saved during the test (inspected after they are written)."""
    import matplotlib.figure

    figures = []
    real = matplotlib.figure.Figure.savefig

    def recording(self, *args, **kwargs):
        figures.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    return figures


def test_short_runs_draw_marked_train_and_validation_curves_in_rows(tmp_path, drawn):
    h = {"loss": [0.9], "val_loss": [1.1], "accuracy": [0.5], "val_accuracy": [0.4]}
    h |= {k: [0.3] for k in ("precision", "recall", "auc", "f1")}
    from conftest import assert_pictures

    save_history(h, tmp_path / "curves.png", title="one epoch")
    (fig,) = drawn
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible][:2] == ["loss", "accuracy"]  # the loss first
    assert len(fig.axes) == 6 and len(visible) == 6  # two rows of three, not a strip
    for ax in visible[:2]:
        labels = [ln.get_label() for ln in ax.lines]
        assert labels == ["train", "validation"]
        assert all(ln.get_marker() == "o" for ln in ax.lines)  # one point is still seen
    assert_pictures(tmp_path, ["curves.png"])


def test_a_picture_that_cannot_be_drawn_never_breaks_the_run(tmp_path, monkeypatch):
    import jaxdl.viz as viz

    def no_matplotlib():
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(viz, "_pyplot", no_matplotlib)
    with pytest.warns(viz.PictureWarning, match="could not draw .*curves.png.*ImportError"):
        written = viz.save_run_pictures(tmp_path, {"loss": [1.0, 0.5]}, confusion=np.eye(3))
    assert written == [] and not (tmp_path / "curves.png").exists()
    # nothing to plot is a warning too, not an error
    with pytest.warns(viz.PictureWarning, match="nothing to plot"):
        assert viz.save_run_pictures(tmp_path, {"lr": [0.1]}) == []


def test_run_pictures_curves_and_confusion(tmp_path):
    from conftest import assert_pictures

    from jaxdl.viz import save_run_pictures

    cm = np.array([[5, 1], [0, 6]])
    paths = save_run_pictures(
        tmp_path, {"loss": [1.0, 0.6], "val_loss": [1.1, 0.8]}, confusion=cm, class_names="ab"
    )
    assert [p.name for p in paths] == ["curves.png", "confusion_matrix.png"]
    assert_pictures(tmp_path, ["curves.png", "confusion_matrix.png"])


def test_history_from_csv_reads_a_csvlogger_file(tmp_path):
    from jaxdl.viz import history_from_csv

    f = tmp_path / "log.csv"
    f.write_bytes(b"epoch,loss,val_loss,note\r\n0,1.5,1.7,a\r\n1,1.0,1.2,b\r\n")
    assert history_from_csv(f) == {"loss": [1.5, 1.0], "val_loss": [1.7, 1.2]}
    f.write_text("epoch,loss\n")
    with pytest.raises(JaxdlError, match="no epoch rows yet"):
        history_from_csv(f)
    with pytest.raises(JaxdlError, match="is not a file"):
        history_from_csv(tmp_path / "missing.csv")


def test_jaxdl_plot_redraws_a_runs_curves_from_its_log(tmp_path, capsys, drawn):
    from conftest import assert_pictures

    from jaxdl.cli import main

    w = tmp_path / "run"
    argv = ["train", "mlp", "--dataset", "digits", "--epochs", "2", "--quiet", "--devices", "1"]
    assert main([*argv, "--set", "hidden=(16,)", "--workdir", str(w)]) == 0
    capsys.readouterr()
    assert main(["plot", str(w)]) == 0
    assert "curves.png" in capsys.readouterr().out
    assert_pictures(w, ["curves.png"])
    ax = next(a for a in drawn[-1].axes if a.get_title() == "loss")
    lines = (w / "log.csv").read_text().splitlines()
    col = lines[0].split(",").index("loss")
    logged = [float(r.split(",")[col]) for r in lines[1:]]
    assert len(logged) == 2
    np.testing.assert_allclose(ax.lines[0].get_ydata(), logged)
    assert [ln.get_label() for ln in ax.lines] == ["train", "validation"]
    assert main(["plot", str(w), "--out", str(tmp_path / "other.png")]) == 0
    assert_pictures(tmp_path, ["other.png"])
    # bad input: exit 2 with the reason
    (tmp_path / "empty").mkdir()
    (tmp_path / "target.png").write_bytes(b"keep")
    (tmp_path / "link.png").symlink_to(tmp_path / "target.png")
    for args, message in [
        ([str(tmp_path / "nowhere")], "is not a directory"),
        ([str(tmp_path / "empty")], "log.csv' not found"),
        ([str(w), "--out", str(tmp_path / "x.jpg")], "--out must name a .png file"),
        ([str(w), "--out", str(tmp_path / "link.png")], "is a symbolic link"),
    ]:
        assert main(["plot", *args]) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "target.png").read_bytes() == b"keep"  # nothing written through the link


def test_hparam_plots_are_titled_with_seeds_as_categories(tmp_path, drawn):
    from dataclasses import dataclass

    from jaxdl.train.hparam import SearchResult, Trial

    @dataclass(frozen=True)
    class Cfg:
        lr: float = 1e-3
        seed: int = 0

    trials = [
        Trial(i, {"lr": lr, "seed": seed}, {"val_accuracy": 0.5 + 0.1 * i})
        for i, (lr, seed) in enumerate([(1e-3, 0), (1e-2, 1), (1e-1, 10), (1e-3, 2)])
    ]
    r = SearchResult(Cfg(), trials, "val_accuracy", searched=("lr", "seed"))
    r.plot(tmp_path / "search.png")
    (fig,) = drawn
    assert (
        "4 trials" in fig._suptitle.get_text() and "best val_accuracy" in fig._suptitle.get_text()
    )
    lr_ax, seed_ax = [ax for ax in fig.axes if ax.get_visible()]
    assert lr_ax.get_xscale() == "log"
    assert [t.get_text() for t in seed_ax.get_xticklabels()] == ["0", "1", "2", "10"]
    w, h = fig.get_size_inches()
    assert 0.5 <= w / h <= 4.0
