"""Freezing and fine-tuning: frozen parameters do not move and hold no
optimizer state, frozen BatchNorm keeps its statistics, per-group learning rates, the top-N
blocks, and bottleneck features equal to training on top of the frozen model."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxdl import create_model
from jaxdl.data import ArrayDataset
from jaxdl.errors import JaxdlError
from jaxdl.functional import count_params, named_leaves
from jaxdl.models.compose import Chain, feature_dim
from jaxdl.nn import Linear
from jaxdl.parallel import make_mesh
from jaxdl.train import Trainer
from jaxdl.train.bottleneck import extract_features
from jaxdl.train.optim import fine_tune_patterns, make_optimizer, param_groups


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 32, 32, 3)).astype(np.float32)
    y = (x[..., 0].mean((1, 2)) > 0).astype(np.int32)  # learnable from the inputs
    return ArrayDataset(x, y)


def backbone(seed=0):
    return create_model(
        "resnet18", input_shape=(32, 32, 3), include_top=False, pooling="avg", rngs=nnx.Rngs(seed)
    )


def test_frozen_params_bit_identical_no_optimizer_state_bn_fixed(images):
    model = Chain(backbone=backbone(), head=Linear(512, 2, rngs=nnx.Rngs(1)))
    t = Trainer(
        model,
        optimizer="adam",
        learning_rate=1e-2,
        freeze=[r"^backbone/"],
        mesh=make_mesh(num_devices=1),
    )
    before = jax.device_get(t.state)
    t.fit(images, epochs=2, batch_size=16, verbose=0)
    after = jax.device_get(t.state)
    b0, b1 = named_leaves(before.params), named_leaves(after.params)
    for k in b0:
        if k.startswith("backbone/"):
            np.testing.assert_array_equal(b0[k], b1[k], err_msg=k)
    assert not np.array_equal(b0["head/kernel"], b1["head/kernel"])
    # BatchNorm statistics of the frozen backbone never moved (inference mode)
    jax.tree.map(np.testing.assert_array_equal, before.model_state, after.model_state)
    # Adam holds moments for the head alone: 2 x (512 * 2 + 2) floats, nothing for the backbone
    moments = sum(x.size for x in jax.tree.leaves(after.opt_state) if x.ndim > 0)
    assert moments == 2 * (512 * 2 + 2)


def test_per_group_learning_rates_scale_sgd_updates():
    params = {"a": {"kernel": np.ones(3, np.float32)}, "b": {"kernel": np.ones(3, np.float32)}}
    tx = param_groups(make_optimizer("sgd", 0.1), params, {r"^b/": 0.25})
    g = jax.tree.map(lambda p: np.full_like(p, 2.0), params)
    u, _ = tx.update(g, tx.init(params), params)
    np.testing.assert_allclose(u["a"]["kernel"], -0.2)
    np.testing.assert_allclose(u["b"]["kernel"], -0.05)
    with pytest.raises(JaxdlError, match="learning-rate pattern 'c/' matches no parameter"):
        param_groups(make_optimizer("sgd", 0.1), params, {"c/": 0.5})


def test_unfreeze_top_blocks_of_resnet18():
    model = Chain(backbone=backbone(), head=Linear(512, 2, rngs=nnx.Rngs(1)))
    params = nnx.state(model, nnx.Param)
    pats = fine_tune_patterns(params, r"^stages/\d+/\d+", 1, prefix="backbone/")
    t = Trainer(
        model, optimizer="sgd", learning_rate=0.1, freeze=pats, mesh=make_mesh(num_devices=1)
    )
    trainable = [
        k
        for k in named_leaves(t.state.params)
        if not any(__import__("re").search(p, k) for p in pats)
    ]
    assert trainable and all(k.startswith(("backbone/stages/3/1/", "head/")) for k in trainable)
    assert any(k.startswith("backbone/stages/3/1/") for k in trainable)
    assert {k.split("/")[1] for k in named_leaves(t.state.params) if k not in trainable} >= {
        "stem",
        "stages",
    }
    with pytest.raises(JaxdlError, match="top must be >= 0"):
        fine_tune_patterns(params, r"^stages/\d+/\d+", -1, prefix="backbone/")


def test_bottleneck_head_equals_head_on_frozen_model(images, tmp_path):
    """The same head, initialised alike and fed the same batches, trained (1) on cached
    bottleneck features and (2) on top of the frozen backbone, ends with the same weights."""
    bb = backbone()
    width = feature_dim(bb, (32, 32, 3))

    def head():
        return create_model("mlp", input_shape=(width,), hidden=(), num_classes=2, rngs=nnx.Rngs(7))

    mesh = make_mesh(num_devices=1)
    feats = extract_features(bb, images, batch_size=16, cache=tmp_path / "f.npz")
    t1 = Trainer(head(), optimizer="sgd", learning_rate=0.05, seed=3, mesh=mesh)
    t1.fit(feats, epochs=3, batch_size=8, verbose=0)
    t2 = Trainer(
        Chain(backbone=bb, head=head()),
        optimizer="sgd",
        learning_rate=0.05,
        seed=3,
        freeze=[r"^backbone/"],
        mesh=mesh,
    )
    t2.fit(images, epochs=3, batch_size=8, verbose=0)
    h1, h2 = named_leaves(t1.state.params), named_leaves(t2.state.params)
    for k in ("head/kernel", "head/bias"):  # inside the Chain, the head model is at 'head/'
        np.testing.assert_allclose(h1[k], h2[f"head/{k}"], rtol=1e-5, atol=1e-6, err_msg=k)
    assert not np.allclose(h1["head/kernel"], head().head.kernel[...])  # it trained
    assert count_params(t1.state.params) == 2 * width + 2


def test_transfer_learning_experiment_smoke(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT, assert_pictures

    r = subprocess.run(
        [sys.executable, "experiments/transfer_learning.py", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "XLA_FLAGS": ""},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "NO PRETRAINED WEIGHTS" in r.stderr  # said loudly when the backbone is random
    assert "head only (backbone frozen): test accuracy" in r.stdout
    assert "fine-tuned (top 1 blocks): test accuracy" in r.stdout
    assert_pictures(tmp_path, ["curves.png", "confusion_matrix.png"])
