"""Weight files, assignment with mismatch reports, preprocessing, composition, BatchNorm
freezing, bottleneck features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import create_model
from jaxdl.data import ArrayDataset
from jaxdl.errors import JaxdlError
from jaxdl.functional import named_leaves, pure
from jaxdl.models.compose import Chain, feature_dim
from jaxdl.nn import Linear
from jaxdl.nn.freeze import FrozenBatchNorm, block_pattern, freeze_batchnorm
from jaxdl.train.bottleneck import extract_features
from jaxdl.weights.convert import assign, fold_bias_into_bn, model_tensors
from jaxdl.weights.io import read_safetensors, read_weights, write_safetensors
from jaxdl.weights.preprocess import KERAS_CAFFE, TORCHVISION, Preprocessing


def small_mlp(seed=0, **kw):
    return create_model(
        "mlp",
        hidden=(6,),
        batch_norm=True,
        num_classes=3,
        input_shape=(4,),
        rngs=nnx.Rngs(seed),
        **kw,
    )


def test_assign_roundtrip_through_safetensors(tmp_path):
    src, dst = small_mlp(0), small_mlp(1)
    tensors = {k: np.asarray(v) for k, v in model_tensors(src).items()}
    assert {"layers/0/kernel", "norms/0/mean", "norms/0/var", "head/bias"} <= set(tensors)
    write_safetensors(tmp_path / "w.safetensors", tensors, {"source": "test"})
    loaded, meta = read_safetensors(tmp_path / "w.safetensors")
    assert meta["source"] == "test"
    assign(dst, loaded)
    x = jax.random.normal(jax.random.key(0), (5, 4))
    np.testing.assert_array_equal(src(x), dst(x))


def test_assign_lists_missing_extra_and_misshaped():
    m = small_mlp()
    t = {k: np.asarray(v) for k, v in model_tensors(m).items()}
    del t["head/bias"]
    t["head/extra"] = np.zeros(3)
    t["layers/0/kernel"] = np.zeros((5, 6))
    before = np.asarray(m.head.kernel[...])
    with pytest.raises(JaxdlError) as e:
        assign(m, t)
    msg = str(e.value)
    assert "1 missing: head/bias" in msg and "1 unexpected: head/extra" in msg
    assert "layers/0/kernel: expected (4, 6), got (5, 6)" in msg
    np.testing.assert_array_equal(m.head.kernel[...], before)  # nothing written


def test_pickle_files_are_refused(tmp_path):
    torch = pytest.importorskip("torch")

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    p = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "obj": Evil()}, p)
    with pytest.raises(JaxdlError, match="refused to load .*unsafe pickle"):
        read_weights(p)
    ok = tmp_path / "ok.pt"
    torch.save({"w": torch.ones(2, 3)}, ok)
    np.testing.assert_array_equal(read_weights(ok)["w"], np.ones((2, 3)))
    with pytest.raises(JaxdlError, match="unknown weight file type"):
        read_weights(tmp_path / "w.h5")


def test_fold_bias_into_bn_equals_conv_bias_then_bn():
    rng = np.random.default_rng(0)
    z, b = rng.normal(size=(8, 4)), rng.normal(size=4)
    mean, var, g, beta = (
        rng.normal(size=4),
        rng.uniform(0.5, 2, 4),
        rng.normal(size=4),
        rng.normal(size=4),
    )
    bn = lambda v, m: g * (v - m) / np.sqrt(var + 1e-3) + beta
    np.testing.assert_allclose(bn(z + b, mean), bn(z, fold_bias_into_bn(b, mean)), rtol=1e-12)


def test_preprocessing_modes_and_resize_warning():
    x = np.full((1, 224, 224, 3), 255.0, np.float32)
    x[..., 0] = 0.0  # R = 0, G = B = 255
    y = KERAS_CAFFE.apply(x)
    np.testing.assert_allclose(y[0, 0, 0], [255 - 103.939, 255 - 116.779, 0 - 123.68], rtol=1e-6)
    t = TORCHVISION.apply(x)
    np.testing.assert_allclose(
        t[0, 0, 0], [(0 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], rtol=1e-5
    )
    with pytest.warns(UserWarning, match="trained at 224x224; resizing inputs of 100x100"):
        assert TORCHVISION.apply(np.zeros((2, 100, 100, 3))).shape == (2, 224, 224, 3)
    assert Preprocessing.from_json(KERAS_CAFFE.to_json()) == KERAS_CAFFE


def test_chain_addresses_params_by_path_and_passes_train():
    backbone = create_model(
        "mlp", input_shape=(4,), hidden=(8,), num_classes=5, dropout=0.5, rngs=nnx.Rngs(0)
    )
    head = Linear(5, 2, rngs=nnx.Rngs(1))
    model = Chain(backbone=backbone, head=head)
    assert feature_dim(backbone, (4,)) == 5
    apply, params, state = pure(model)
    names = set(named_leaves(params))
    assert {"backbone/layers/0/kernel", "head/kernel"} <= names
    x = jnp.ones((3, 4))
    a, _ = apply(params, state, x, train=True, key=jax.random.key(0))
    b, _ = apply(params, state, x, train=True, key=jax.random.key(1))
    assert not np.allclose(a, b)  # dropout inside the inner model saw train=True and the key
    np.testing.assert_array_equal(apply(params, state, x)[0], head(backbone(x)))


def test_frozen_batchnorm_uses_and_keeps_moving_statistics():
    m = small_mlp()
    changed = freeze_batchnorm(m, r"^norms/0$")
    assert changed == ["norms/0"] and isinstance(m.norms[0], FrozenBatchNorm)
    apply, params, state = pure(m)
    x = jax.random.normal(jax.random.key(0), (16, 4)) * 3 + 1
    y_train, new_state = apply(params, state, x, train=True)
    y_eval, _ = apply(params, state, x, train=False)
    np.testing.assert_array_equal(y_train, y_eval)  # inference mode even in training
    jax.tree.map(np.testing.assert_array_equal, state, new_state)
    freeze_batchnorm(m, r"^norms/0$", unfreeze=True)
    apply2, params2, state2 = pure(m)
    assert not np.allclose(apply2(params2, state2, x, train=True)[0], y_eval)
    assert block_pattern("stages", range(2)) == r"^stages/(0|1)(/|$)"


def test_bottleneck_features_cached_and_fingerprinted(tmp_path):
    backbone = create_model("mlp", input_shape=(4,), hidden=(8,), num_classes=6, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(37, 4)).astype(np.float32)
    ds = ArrayDataset(x, np.arange(37) % 3)
    f = extract_features(backbone, ds, batch_size=8, cache=tmp_path / "f.npz")
    assert f.x.shape == (37, 6)
    np.testing.assert_allclose(f.x, backbone(x), rtol=1e-5, atol=1e-6)
    again = extract_features(backbone, ds, batch_size=8, cache=tmp_path / "f.npz")
    np.testing.assert_array_equal(again.x, f.x)
    other = extract_features(
        backbone, ArrayDataset(x * 2, ds.y), batch_size=8, cache=tmp_path / "f.npz"
    )
    assert not np.allclose(other.x, f.x)  # different inputs: cache not reused
