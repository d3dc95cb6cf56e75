"""jaxdl.weights.load: local files, the offline error, the cache, unknown sources."""

import numpy as np
import pytest
from flax import nnx

import jaxdl.weights as W
from jaxdl import create_model
from jaxdl.errors import JaxdlError
from jaxdl.weights.convert import model_tensors
from jaxdl.weights.torchvision import convert_torchvision


def test_unknown_source_and_model():
    with pytest.raises(JaxdlError, match="unknown weight source 'kerass'.*Did you mean: keras"):
        W.load("vgg16", source="kerass")
    with pytest.raises(JaxdlError, match="unknown Keras-convertible model 'lenet5'"):
        W.load("lenet5", source="keras", cache=False)


def test_offline_keras_download_says_where_to_put_the_file(monkeypatch, tmp_path):
    keras = pytest.importorskip("keras")

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.applications, "VGG16", lambda **k: offline() if k.get("weights") == "imagenet" else None)
    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path))
    with pytest.raises(JaxdlError, match=r"could not download Keras VGG16.*~/.keras/models/.*path="):
        W.load("vgg16", source="keras")


def _torch_names_resnet18(model):
    """torchvision's state-dict names for our resnet18 tensors (the inverse of the table),
    built from torchvision's documented layout."""
    out = {}
    for name, arr in model_tensors(model).items():
        arr = np.asarray(arr)
        parts = name.split("/")
        kind = parts[-1]
        if parts[0] == "stem":
            prefix = "conv1" if parts[1] == "conv" else "bn1"
        elif parts[0] == "head":
            prefix = "fc"
        else:
            s, b, unit, sub = parts[1], parts[2], parts[3], parts[4]
            if unit == "downsample":
                prefix = f"layer{int(s) + 1}.{b}.downsample.{0 if sub == 'conv' else 1}"
            else:
                prefix = f"layer{int(s) + 1}.{b}.{'conv' if sub == 'conv' else 'bn'}{unit[-1]}"
        if kind == "kernel":
            out[f"{prefix}.weight"] = arr.transpose(3, 2, 0, 1) if arr.ndim == 4 else arr.T
        else:
            out[f"{prefix}.{ {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}[kind]}"] = arr
    return out


def test_torchvision_layout_roundtrip_from_local_file(tmp_path, monkeypatch):
    """A torchvision-layout state dict written to safetensors loads into an equal model (the
    table is checked against torchvision itself in the torchvision parity test, where installed)."""
    src = create_model("resnet18", input_shape=(32, 32, 3), num_classes=10, rngs=nnx.Rngs(3))
    sd = _torch_names_resnet18(src)
    sd["layer1.0.bn1.num_batches_tracked"] = np.array(5)
    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path / "cache"))
    dst = create_model("resnet18", input_shape=(32, 32, 3), num_classes=10, rngs=nnx.Rngs(4))
    from jaxdl.weights.convert import assign

    assign(dst, convert_torchvision("resnet", sd, dst.config))
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(src(x), dst(x))
    sd.pop("fc.bias")
    with pytest.raises(JaxdlError, match="1 missing: head/fc/bias"):
        assign(dst, convert_torchvision("resnet", sd, dst.config))


def test_torchvision_parity():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from jaxdl.weights.convert import assign

    for name in ("resnet50", "vgg16", "densenet121"):
        tv = torchvision.models.get_model(name, weights=None).eval()
        ours = create_model(name, rngs=nnx.Rngs(0))
        sd = {k: v.detach().numpy() for k, v in tv.state_dict().items()}
        assign(ours, convert_torchvision(__import__("jaxdl").models.get_entry(name).family, sd, ours.config))
        x = np.random.default_rng(0).normal(size=(1, 224, 224, 3)).astype("float32")
        with torch.no_grad():
            ref = tv(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
        out = np.asarray(ours(x))
        assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-4, name


@pytest.mark.slow
def test_keras_file_and_cache_rebuild_keras_architecture(tmp_path, monkeypatch):
    """load(path=.weights.h5) converts a MobileNetV3Small file; the cache stores the Keras
    architecture options (stride-2 padding, BatchNorm epsilon, ...) with the weights, so the
    cached model is the same model, equal to Keras on images in [0, 255]."""
    keras = pytest.importorskip("keras")
    km = keras.applications.MobileNetV3Small(weights=None, classifier_activation=None)
    rng = np.random.default_rng(3)
    for w in km.weights:  # not Keras's identity BatchNorm statistics
        if w.path.endswith(("gamma", "moving_variance")):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        elif w.path.endswith(("beta", "bias", "moving_mean")):
            w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
    km.save_weights(tmp_path / "v3s.weights.h5")
    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path / "cache"))
    first, prep = W.load("mobilenet_v3_small", source="keras", path=tmp_path / "v3s.weights.h5")
    assert (tmp_path / "cache" / "weights" / "mobilenet_v3_small-keras.safetensors").exists()
    cached, prep2 = W.load("mobilenet_v3_small", source="keras")
    # MobileNetV3's Keras model leaves H, W open: its strided convs pad as for an even size
    assert cached.config == first.config and cached.config.padding == "same_keras_even"
    assert cached.config.bn_epsilon == 1e-3 and prep2 == prep
    x = np.random.default_rng(0).uniform(0, 255, size=(1, 224, 224, 3)).astype("float32")
    out = np.asarray(cached(prep2.apply(x)))
    np.testing.assert_array_equal(out, np.asarray(first(prep.apply(x))))
    ref = np.asarray(km(x))
    assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-4
