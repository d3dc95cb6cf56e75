"""jaxdl.save / jaxdl.load, Trainer.load_best, weights.load head overrides, `jaxdl train
--weights / --from-checkpoint` and transfer_learning.py --weights."""

import importlib.util
import sys

import numpy as np
import pytest
from flax import nnx

import jaxdl
from jaxdl.errors import JaxdlError
from jaxdl.weights import model_tensors, transfer, with_head


def _same(a, b):
    ta, tb = model_tensors(a), model_tensors(b)
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert np.asarray(ta[k]).dtype == np.asarray(tb[k]).dtype, k
        np.testing.assert_array_equal(np.asarray(ta[k]), np.asarray(tb[k]), err_msg=k)


def test_save_load_round_trip_exact_with_batchnorm_stats(tmp_path):
    m = jaxdl.create_model("resnet18", num_classes=3, input_shape=(32, 32, 3))
    # non-default statistics, so a load that skipped them would show
    m.stem.bn.mean[...] = np.arange(m.stem.bn.mean.shape[0], dtype=np.float32)
    path = jaxdl.save(m, tmp_path / "r.safetensors")
    back = jaxdl.load(path)  # rebuilt by name and config
    assert type(back) is type(m) and back.config == m.config
    _same(m, back)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(m(x)), np.asarray(back(x)))
    into = jaxdl.create_model("resnet18", num_classes=3, input_shape=(32, 32, 3), rngs=nnx.Rngs(5))
    assert jaxdl.load(path, into) is into
    _same(m, into)


def test_save_keeps_non_default_config_and_non_registry_models(tmp_path):
    m = jaxdl.create_model("mlp", input_shape=(7,), hidden=(5, 4), num_classes=2)
    back = jaxdl.load(jaxdl.save(m, tmp_path / "m.safetensors"))
    assert back.config.hidden == (5, 4) and back.config.input_shape == (7,)
    _same(m, back)
    lin = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    p = jaxdl.save(lin, tmp_path / "lin.safetensors")
    with pytest.raises(JaxdlError, match="load\\(path, model\\)"):
        jaxdl.load(p)
    other = jaxdl.load(p, nnx.Linear(3, 2, rngs=nnx.Rngs(1)))
    _same(lin, other)


def test_load_into_other_config_lists_the_differing_leaves(tmp_path):
    p = jaxdl.save(
        jaxdl.create_model("mlp", input_shape=(8,), hidden=(6,)), tmp_path / "a.safetensors"
    )
    before = model_tensors(target := jaxdl.create_model("mlp", input_shape=(8,), hidden=(9,)))
    with pytest.raises(JaxdlError) as e:
        jaxdl.load(p, target)
    msg = str(e.value)
    assert "layers/0/kernel: expected (8, 9), got (8, 6)" in msg
    assert "head/kernel" in msg and "hidden: file [6], model (9,)" in msg
    _same_dict = model_tensors(target)  # nothing was written
    for k in before:
        np.testing.assert_array_equal(np.asarray(before[k]), np.asarray(_same_dict[k]))
    with pytest.raises(JaxdlError, match="must end in .safetensors"):
        jaxdl.save(target, tmp_path / "a.npz")


def test_with_head_replaces_only_the_head():
    m = jaxdl.create_model("resnet18", input_shape=(32, 32, 3))
    src = model_tensors(m)
    new = with_head(m, num_classes=4, rngs=nnx.Rngs(3))
    dst = model_tensors(new)
    assert dst["head/fc/kernel"].shape == (512, 4)
    for k in src:
        if not k.startswith("head/"):
            np.testing.assert_array_equal(np.asarray(src[k]), np.asarray(dst[k]), err_msg=k)
    feats = with_head(m, include_top=False, pooling="avg")
    assert not any(k.startswith("head/") for k in model_tensors(feats))
    assert feats(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 512)
    # a change inside the backbone is not a head change: refused
    wide = jaxdl.create_model("mlp", input_shape=(8,), hidden=(6, 6))
    with pytest.raises(JaxdlError, match="only a whole new head"):
        transfer(model_tensors(wide), jaxdl.create_model("mlp", input_shape=(8,), hidden=(6, 5)))


def test_weights_load_with_num_classes_from_the_cache(tmp_path, monkeypatch):
    """weights.load(num_classes=) on a cached conversion: backbone values kept, 2-class head."""
    from jaxdl.weights import _store, load
    from jaxdl.weights.preprocess import KERAS_CAFFE

    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path))
    full = jaxdl.create_model("resnet18", rngs=nnx.Rngs(1))
    _store("resnet18", "torchvision", full, KERAS_CAFFE, {})
    model, prep = load("resnet18", source="torchvision", num_classes=2)
    assert prep == KERAS_CAFFE
    a, b = model_tensors(full), model_tensors(model)
    assert b["head/fc/kernel"].shape == (512, 2)
    np.testing.assert_array_equal(
        np.asarray(a["stem/conv/kernel"]), np.asarray(b["stem/conv/kernel"])
    )


def _digits_trainer(lr=0.3, seed=0):
    from jaxdl.data import load_dataset
    from jaxdl.train import Trainer

    sp = load_dataset("digits", seed=0)
    m = jaxdl.create_model("mlp", input_shape=sp.input_shape, num_classes=10, hidden=(16,))
    return Trainer(m, learning_rate=lr, seed=seed), sp


@pytest.mark.parametrize("weights_only", [True, False])
def test_load_best_restores_the_best_epoch_exactly(tmp_path, weights_only):
    from jaxdl.train import LambdaCallback, ModelCheckpoint

    t, sp = _digits_trainer()
    snaps = []
    snap = LambdaCallback(on_epoch_end=lambda e, logs: snaps.append(model_tensors(t.model)))
    h = t.fit(
        sp.train,
        epochs=4,
        batch_size=64,
        validation_data=sp.val,
        verbose=0,
        callbacks=[snap, ModelCheckpoint(tmp_path, save_weights_only=weights_only)],
    )
    best = int(np.argmin(h.history["val_loss"]))
    assert t.load_best() == best + 1  # step = epoch + 1 for save_freq='epoch'
    got = model_tensors(t.model)
    for k, v in snaps[best].items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(got[k]), err_msg=k)
    # the same directory into a fresh trainer (no callbacks): best by the recorded val_loss
    t2, _ = _digits_trainer(seed=1)
    assert t2.load_best(tmp_path) == best + 1
    _same(t.model, t2.model)


def test_cli_train_weights_and_from_checkpoint(tmp_path, capsys):
    from jaxdl.cli import main
    from jaxdl.train.checkpoint import Checkpoints

    src = jaxdl.create_model("mlp", input_shape=(64,), num_classes=5, rngs=nnx.Rngs(7))
    p = jaxdl.save(src, tmp_path / "m5.safetensors")
    assert main(["train", "mlp", "--epochs", "1", "--weights", str(p), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "new: head/bias, head/kernel" not in out  # quiet
    w = tmp_path / "W"
    assert main(["train", "mlp", "--epochs", "1", "--workdir", str(w), "--quiet"]) == 0
    assert main(["train", "mlp", "--epochs", "2", "--workdir", str(w)]) == 0
    steps = Checkpoints(w / "checkpoints", keep=None).steps()
    assert f"resuming from step {min(steps)} (epoch 2)" in capsys.readouterr().out
    code = main(["train", "mlp", "--epochs", "1", "--from-checkpoint", str(w / "checkpoints")])
    assert code == 0
    assert f"loaded the weights of checkpoint {max(steps)}" in capsys.readouterr().out
    args = ["train", "mlp", "--weights", str(p), "--from-checkpoint", str(w / "checkpoints")]
    assert main(args) == 2
    assert "cannot be used together" in capsys.readouterr().err


@pytest.mark.slow
def test_transfer_learning_runs_both_phases_on_a_saved_checkpoint(tmp_path, capsys):
    from conftest import ROOT

    spec = importlib.util.spec_from_file_location(
        "transfer_learning", ROOT / "experiments" / "transfer_learning.py"
    )
    tl = importlib.util.module_from_spec(spec)
    sys.modules["transfer_learning"] = tl  # dataclasses look the module up
    spec.loader.exec_module(tl)
    src = jaxdl.create_model("resnet18", input_shape=(32, 32, 3), rngs=nnx.Rngs(11))
    path = jaxdl.save(src, tmp_path / "resnet18.safetensors")
    cfg = tl.Config(
        smoke=True,
        weights=str(path),
        source="torchvision",
        backbone="resnet18",
        out=str(tmp_path / "run"),
    )
    backbone, _, _ = tl.pretrained_backbone(tl.Config(**{**cfg.__dict__, "size": 32}))
    a, b = model_tensors(src), model_tensors(backbone)
    assert set(b) == {k for k in a if not k.startswith("head/")}
    for k in b:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    result = tl.main(cfg)
    out = capsys.readouterr()
    assert "NO PRETRAINED WEIGHTS" not in out.err
    assert f"with the weights in {path}" in out.out
    assert 0.0 <= result["head_accuracy"] <= 1.0 and 0.0 <= result["finetune_accuracy"] <= 1.0
