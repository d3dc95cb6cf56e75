"""The TensorBoard callback's event files read back by the real `tensorboard` server: a short run
is logged, `python -m tensorboard.main` serves its directory on 127.0.0.1, and the scalars
(per epoch and per step), histograms and images come back through the server's HTTP API equal
to what the run computed."""

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from jaxdl import create_model
from jaxdl.parallel import make_mesh
from jaxdl.train import LambdaCallback, TensorBoard, Trainer

pytest.importorskip("tensorboard", reason="the tensorboard package (test extras) is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base: str, path: str, **query):
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read()
        return json.loads(body) if r.headers.get_content_type() == "application/json" else body


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, digits):
    """A 2-epoch MLP run logged with per-step scalars every 4 steps, histograms and images;
    what the run computed, to compare with what the server reads back."""
    d = tmp_path_factory.mktemp("tb")
    train, val = digits.train.subset(slice(0, 320)), digits.val
    t = Trainer(
        create_model("mlp", input_shape=(8, 8, 1), hidden=(16,)),
        seed=0,
        mesh=make_mesh(num_devices=1),
    )
    per_step = {}

    def record(batch, logs):
        if t.step_count % 4 == 0:
            per_step[t.step_count] = float(logs["loss"])

    h = t.fit(
        train,
        epochs=2,
        batch_size=32,
        validation_data=val,
        verbose=0,
        callbacks=[
            LambdaCallback(on_train_batch_end=record),
            TensorBoard(d, histogram_freq=1, write_images=True, sample_data=val, update_freq=4),
        ],
    )
    return d, h.history, per_step


@pytest.fixture(scope="module")
def server(logged_run):
    logdir = logged_run[0]
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--load_fast=false",
        "--reload_interval=1",
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:  # up, and the event files loaded (every run has its scalar tags)
            if p.poll() is not None:
                pytest.fail(f"tensorboard exited with {p.returncode}: {p.stderr.read()[-2000:]}")
            try:
                tags = _get(base, "/data/plugin/scalars/tags")
                if {"train", "validation", "train_steps"} <= set(tags) and tags["train_steps"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("tensorboard did not serve the run's scalars within 90 s")
            time.sleep(0.5)
        yield base
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def _scalars(base, run, tag):
    rows = _get(base, "/data/plugin/scalars/scalars", run=run, tag=tag)
    return [int(step) for _, step, _ in rows], np.array([v for _, _, v in rows])


def test_epoch_scalars_come_back_equal_to_the_history(server, logged_run):
    _, history, _ = logged_run
    tags = _get(server, "/data/plugin/scalars/tags")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(tags["train"])
    assert {"epoch_loss", "epoch_accuracy"} <= set(tags["validation"])
    for run, prefix in (("train", ""), ("validation", "val_")):
        for metric in ("loss", "accuracy"):
            steps, values = _scalars(server, run, f"epoch_{metric}")
            assert steps == [0, 1]
            np.testing.assert_allclose(values, history[prefix + metric], rtol=1e-6)


def test_per_step_scalars_at_the_log_interval(server, logged_run):
    _, _, per_step = logged_run
    tags = set(_get(server, "/data/plugin/scalars/tags")["train_steps"])
    assert {"batch_loss", "batch_accuracy", "batch_learning_rate"} <= tags
    steps, values = _scalars(server, "train_steps", "batch_loss")
    assert steps == sorted(per_step) and steps[:3] == [4, 8, 12]  # 10 steps per epoch, 2 epochs
    np.testing.assert_allclose(values, [per_step[s] for s in steps], rtol=1e-6)
    _, lr = _scalars(server, "train_steps", "batch_learning_rate")
    np.testing.assert_allclose(lr, 1e-3, rtol=1e-6)  # Adam's Keras default


def test_histograms_and_images_come_back(server):
    hist_tags = _get(server, "/data/plugin/histograms/tags")["train"]
    assert {"weights/head/kernel", "gradients/head/kernel"} <= set(hist_tags)
    rows = _get(
        server, "/data/plugin/histograms/histograms", run="train", tag="weights/head/kernel"
    )
    assert [step for _, step, _ in rows] == [0, 1]
    buckets = rows[-1][2]  # [left, right, count] per bucket
    assert sum(c for _, _, c in buckets) == pytest.approx(16 * 10)  # every weight of the head
    image_tags = _get(server, "/data/plugin/images/tags")["train"]
    assert {"input_samples", "confusion_matrix"} <= set(image_tags)
    for tag in ("input_samples", "confusion_matrix"):
        entries = _get(server, "/data/plugin/images/images", run="train", tag=tag, sample=0)
        assert [e["step"] for e in entries] == [0, 1]
        png = _get(server, f"/data/plugin/images/individualImage?{entries[-1]['query']}")
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
