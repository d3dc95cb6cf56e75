"""The data pieces inside training: Trainer.fit over a Pipeline or a lazy source, augmentation in
the jitted train step, and the CLI's --dataset folder:/tfds: and --augment."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxdl.cli import main
from jaxdl.data import ArrayDataset, Pipeline, load_dataset, parse_augment
from jaxdl.data.augment import Augment, Rescale
from jaxdl.functional import named_leaves
from jaxdl.models import create_model
from jaxdl.train import Trainer


def _mlp(shape, classes=10):
    import flax.nnx as nnx

    return create_model(
        "mlp", input_shape=shape, num_classes=classes, hidden=(16,), rngs=nnx.Rngs(0)
    )


def test_augment_runs_inside_the_train_step(digits):
    """An augmentation that zeroes the images leaves the first layer's kernel without gradient
    (Adam then leaves it exactly as it was) while the bias still learns; without it both move."""

    def first_layer(t):
        leaves = {k: np.asarray(v) for k, v in named_leaves(t.state.params).items()}
        kernel = next(k for k in sorted(leaves) if k.endswith("kernel"))
        return leaves[kernel], leaves[kernel.replace("kernel", "bias")]

    zero = Trainer(_mlp((8, 8, 1)), augment=Augment((Rescale(0.0),)), learning_rate=1e-2, seed=0)
    plain = Trainer(_mlp((8, 8, 1)), learning_rate=1e-2, seed=0)
    k0, b0 = first_layer(zero)
    for t in (zero, plain):
        t.fit(digits.train, epochs=1, batch_size=64, verbose=0)
    k1, b1 = first_layer(zero)
    np.testing.assert_array_equal(k1, k0)
    assert not np.allclose(b1, b0)
    assert not np.allclose(first_layer(plain)[0], k0)
    # evaluation sees the real images (no augmentation outside training)
    assert plain.evaluate(digits.test)["accuracy"] > 0.5


def test_fit_over_a_pipeline_and_a_lazy_source(digits, tmp_path):
    t = Trainer(_mlp((8, 8, 1)), seed=1)
    pipe = Pipeline(digits.train, 64, seed=3, drop_remainder=True)
    h = t.fit(pipe, epochs=2, verbose=0, validation_data=digits.val)
    assert (
        int(t.state.step) == 2 * (len(digits.train) // 64) and len(h.history["val_accuracy"]) == 2
    )
    # an image folder decoded on demand trains like any source
    for c in range(2):
        (tmp_path / f"c{c}").mkdir()
        for i in range(8):
            arr = np.full((6, 6, 3), 200 * c, np.uint8)
            Image.fromarray(arr).save(tmp_path / f"c{c}" / f"{i}.png")
    s = load_dataset(f"folder:{tmp_path},size=6x6", val_fraction=0.0, test_fraction=0.25)
    t = Trainer(
        _mlp((6, 6, 3), 2),
        learning_rate=0.05,
        seed=0,
        augment=parse_augment("flip,brightness=0.05"),
    )
    t.fit(s.train, epochs=5, batch_size=8, verbose=0)
    assert t.evaluate(s.test)["accuracy"] == 1.0


def test_cli_folder_and_augment(tmp_path, capsys):
    for c in range(3):
        (tmp_path / "img" / f"k{c}").mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((10, 10, 3), 90 * c, np.uint8)).save(
                tmp_path / "img" / f"k{c}" / f"{i}.jpg"
            )
    rc = main(
        [
            "train",
            "mlp",
            "--dataset",
            f"folder:{tmp_path / 'img'},size=8x8",
            "--augment",
            "flip,rotate=0.05",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--json",
            "--quiet",
            "--test-fraction",
            "0.34",
        ]
    )
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["epochs"] == 2 and 0.0 <= result["test_accuracy"] <= 1.0
    rc = main(["train", "mlp", "--dataset", "digits", "--augment", "flip,spin=3", "--epochs", "1"])
    assert rc == 2 and "unknown augmentation 'spin'" in capsys.readouterr().err


def test_cli_tfds(capsys):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=32):
        rc = main(
            [
                "train",
                "mlp",
                "--dataset",
                "tfds:mnist",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--json",
                "--quiet",
                "--set",
                "hidden=(8,)",
            ]
        )
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["dataset"] == "tfds:mnist" and "test_accuracy" in result


def test_pipeline_source_must_match_the_model():
    t = Trainer(_mlp((8, 8, 1)), seed=0)
    bad = ArrayDataset(np.zeros((16, 4, 4, 1), np.float32), np.zeros(16, np.int32))
    with pytest.raises(Exception, match="input|shape"):
        t.fit(Pipeline(bad, 8), epochs=1, verbose=0)


def test_experiment_cnn_augment_smoke(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT, assert_pictures

    png = tmp_path / "curves.png"
    env = {**os.environ, "XLA_FLAGS": "", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(
        [sys.executable, "experiments/cnn_augment.py", "--smoke", "--out", str(png)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "no augmentation" in r.stdout and "gap" in r.stdout and "curves saved" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_pictures(tmp_path, ["curves.png"])


def test_cli_text_needs_a_language_model(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("to be or not to be, that is the question. " * 20)
    spec = f"text:{tmp_path / 't.txt'},seq_len=16"
    rc = main(["train", "mlp", "--dataset", spec, "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "must map tokens (1, 16) to logits (1, 16, " in err and "mlp gives" in err


def test_cli_trains_a_language_model_on_a_text_file(tmp_path, capsys):
    """`jaxdl train lstm_lm --dataset text:PATH`: LanguageModelTask, the model's vocab_size set
    from the file's vocabulary, a finite test loss below the uniform guess's log(V)."""
    (tmp_path / "t.txt").write_text("to be or not to be, that is the question. " * 40)
    spec = f"text:{tmp_path / 't.txt'},seq_len=16"
    argv = ["train", "lstm_lm", "--dataset", spec, "--epochs", "3", "--quiet", "--json"]
    rc = main([*argv, "--set", "units=(16,)", "embed_dim=8", "--lr", "1e-2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    metrics = json.loads(out.strip().splitlines()[-1])
    vocab = len(set("to be or not to be, that is the question. "))
    assert np.isfinite(metrics["test_loss"]) and metrics["test_loss"] < np.log(vocab)
