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

    monkeypatch.setattr(
        keras.applications,
        "VGG16",
        lambda **k: offline() if k.get("weights") == "imagenet" else None,
    )
    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path))
    with pytest.raises(
        JaxdlError, match=r"could not download Keras VGG16.*~/.keras/models/.*path="
    ):
        W.load("vgg16", source="keras")


@pytest.mark.slow
def test_keras_file_and_cache_keep_keras_architecture_options(monkeypatch, tmp_path):
    """Xception from a local Keras weight file, then from the cache: both with Keras's
    'same' (Keras's rule) max pools (which differ from the default on even sizes) and the [-1, 1]
    preprocessing at 299."""
    keras = pytest.importorskip("keras")
    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "xception.weights.h5"
    keras.applications.Xception(weights=None, classifier_activation=None).save_weights(str(f))
    m1, p1 = W.load("xception", source="keras", path=f)
    m2, p2 = W.load("xception", source="keras")  # the cache: no download
    assert m1.config.pool_padding == m2.config.pool_padding == "same"
    assert p1 == p2 and p1.resolution == 299 and p1.offset == 1.0
    x = np.random.default_rng(0).normal(size=(1, 86, 86, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(m1(x)), np.asarray(m2(x)))


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
            torch_name = {"scale": "weight", "bias": "bias", "mean": "running_mean"}
            torch_name["var"] = "running_var"
            out[f"{prefix}.{torch_name[kind]}"] = arr
    return out


def test_torchvision_layout_roundtrip_from_local_file(tmp_path, monkeypatch):
    """A torchvision-layout state dict written to safetensors loads into an equal model (the
    table is checked against torchvision itself in tests/weights/test_weights_torch.py, where
    installed)."""
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


# --- the converter tables against the real torchvision / timm state-dict layouts, without torch:
# tests/fixtures/torch_state_dict_shapes.json.gz holds every state-dict name and shape of those
# models (written by tests/fixtures/make_torch_state_dict_shapes.py); values are checked by the
# parity tests.


def _torch_shapes():
    import gzip
    import json
    from pathlib import Path

    with gzip.open(
        Path(__file__).parents[1] / "fixtures" / "torch_state_dict_shapes.json.gz", "rt"
    ) as f:
        return json.load(f)


def _zeros(shapes):
    """name -> a zero array of that shape that allocates nothing (the converters only reshape
    and transpose, which stay views of a broadcast scalar)."""
    return {k: np.broadcast_to(np.float32(0), tuple(s)) for k, s in shapes.items()}


# (fixture key, jaxdl name, overrides)
LAYOUTS = [
    ("torchvision/resnet18", "resnet18", {}),
    ("torchvision/resnext50_32x4d", "resnext50_32x4d", {}),
    ("torchvision/vgg11_bn", "vgg11_bn", {}),
    ("torchvision/densenet121", "densenet121", {}),
    ("torchvision/googlenet", "googlenet", {"aux_logits": True}),
    ("torchvision/googlenet", "googlenet", {}),  # aux1/aux2 in the file are dropped
    ("torchvision/inception_v3", "inception_v3", {"aux_logits": True}),
    ("torchvision/inception_v3", "inception_v3", {}),
    ("torchvision/mobilenet_v2", "mobilenet_v2", {}),
    ("torchvision/mobilenet_v3_small", "mobilenet_v3_small", {}),
    ("torchvision/mobilenet_v3_large", "mobilenet_v3_large", {}),
    ("torchvision/efficientnet_b0", "efficientnet_b0", {}),
    ("torchvision/efficientnet_b5", "efficientnet_b5", {}),
    ("torchvision/vit_b_16", "vit_b16", {}),
    ("torchvision/vit_b_16", "vit_b16", {"scan_layers": True}),
    ("timm/resnet50", "resnet50", {}),
    ("timm/efficientnet_b0", "efficientnet_b0", {}),
    ("timm/vit_base_patch16_224", "vit_b16", {}),
]


@pytest.mark.parametrize(
    "key,name,overrides", LAYOUTS, ids=[f"{k}-{'-'.join(o) or 'default'}" for k, _, o in LAYOUTS]
)
def test_converter_maps_every_torch_tensor_onto_the_model(key, name, overrides):
    """Every tensor of the torchvision / timm state dict lands on a tensor of our model with its
    shape, and every tensor of our model is covered (assign's check)."""
    from jaxdl.models.registry import abstract_model, get_entry
    from jaxdl.weights.convert import check_tensors
    from jaxdl.weights.timm import convert_timm

    convert = convert_timm if key.startswith("timm/") else convert_torchvision
    model = abstract_model(name, **overrides)
    out = convert(get_entry(name).family, _zeros(_torch_shapes()[key]), model.config)
    check_tensors({k: v.shape for k, v in model_tensors(model).items()}, out, source=key)


def test_converter_lists_what_it_cannot_place():
    sd = _zeros(_torch_shapes()["torchvision/mobilenet_v3_small"])
    sd["features.99.weight"] = np.zeros(3, np.float32)
    del sd["classifier.3.bias"]
    from jaxdl.models.registry import abstract_model
    from jaxdl.weights.convert import check_tensors

    model = abstract_model("mobilenet_v3_small")
    out = convert_torchvision("mobilenet", sd, model.config)
    with pytest.raises(
        JaxdlError, match=r"1 missing: head/fc/bias \| 1 unexpected: features.99.weight"
    ):
        check_tensors({k: v.shape for k, v in model_tensors(model).items()}, out)
    from jaxdl.models.registry import get_config
    from jaxdl.weights.timm import convert_timm

    sd = _zeros(_torch_shapes()["timm/vit_base_patch16_224"])
    del sd["blocks.0.attn.qkv.bias"]
    with pytest.raises(
        JaxdlError, match="timm vit state dict lacks 1 tensor.*blocks.0.attn.qkv.bias"
    ):
        convert_timm("vit", sd, get_config("vit_b16"))


def test_vit_packed_qkv_roundtrip():
    """Our ViT -> torchvision's layout (q, k, v packed into in_proj, [out, in] Linears, the
    position table with a batch axis; written here from torchvision's documented names) ->
    convert -> the same tensors."""
    model = create_model(
        "vit_b16",
        input_shape=(32, 32, 3),
        d_model=32,
        num_heads=4,
        num_layers=2,
        d_ff=64,
        num_classes=5,
        rngs=nnx.Rngs(0),
    )
    ours = {k: np.asarray(v) for k, v in model_tensors(model).items()}
    sd = {
        "conv_proj.weight": ours["patch_embed/kernel"].transpose(3, 2, 0, 1),
        "conv_proj.bias": ours["patch_embed/bias"],
        "class_token": ours["cls_token"],
        "encoder.pos_embedding": ours["pos_embed"][None],
        "encoder.ln.weight": ours["encoder/ln_f/scale"],
        "encoder.ln.bias": ours["encoder/ln_f/bias"],
        "heads.head.weight": ours["head/kernel"].T,
        "heads.head.bias": ours["head/bias"],
    }
    for i in range(2):
        q, t = f"encoder/layers/{i}/", f"encoder.layers.encoder_layer_{i}."
        qkv = [ours[f"{q}attn/{n}/kernel"].reshape(32, 32).T for n in ("query", "key", "value")]
        sd[t + "self_attention.in_proj_weight"] = np.concatenate(qkv)
        sd[t + "self_attention.in_proj_bias"] = np.concatenate(
            [ours[f"{q}attn/{n}/bias"].reshape(-1) for n in ("query", "key", "value")]
        )
        sd[t + "self_attention.out_proj.weight"] = ours[f"{q}attn/out/kernel"].reshape(32, 32).T
        sd[t + "self_attention.out_proj.bias"] = ours[f"{q}attn/out/bias"]
        for torch_name, n in (("ln_1", "ln1"), ("ln_2", "ln3")):
            sd[f"{t}{torch_name}.weight"], sd[f"{t}{torch_name}.bias"] = (
                ours[f"{q}{n}/scale"],
                ours[f"{q}{n}/bias"],
            )
        for torch_name, n in (("mlp.0", "mlp/fc1"), ("mlp.3", "mlp/fc2")):
            sd[f"{t}{torch_name}.weight"], sd[f"{t}{torch_name}.bias"] = (
                ours[f"{q}{n}/kernel"].T,
                ours[f"{q}{n}/bias"],
            )
    out = convert_torchvision("vit", sd, model.config)
    assert set(out) == set(ours)
    for k in ours:
        np.testing.assert_array_equal(out[k], ours[k], err_msg=k)


def test_vgg_adaptive_pool_folded_into_fc1():
    """torchvision: adaptive-average-pool the [C, h, w] map to 7x7, flatten (c, h, w), fc1.
    Ours: flatten the [h, w, C] map, fc1'. The converted fc1' gives the same output (checked
    in numpy, no torch needed) for a 64x64 input (h = w = 2)."""
    from jaxdl.models.registry import get_config
    from jaxdl.weights.torchvision import adaptive_pool_matrix, vgg

    config = get_config("vgg11", input_shape=(64, 64, 3))
    c, rng = 512, np.random.default_rng(0)
    w_fc1 = rng.normal(size=(16, c * 49)).astype(np.float32)  # fc1 narrowed: only its rows matter
    feat = rng.normal(size=(c, 2, 2))
    p = adaptive_pool_matrix(2, 7)
    np.testing.assert_allclose(p.sum(1), 1.0)
    torch_out = w_fc1 @ np.einsum("ai,cij,bj->cab", p, feat, p).reshape(-1)
    sd = {"classifier.0.weight": w_fc1}
    ours = vgg(sd, config)["head/hidden/0/kernel"]
    np.testing.assert_allclose(
        feat.transpose(1, 2, 0).reshape(-1) @ ours, torch_out, rtol=1e-4, atol=1e-3
    )


def _random_state_dict(key, seed=0):
    """Random values in the layout of a real torchvision / timm state dict (running variances
    positive)."""
    rng = np.random.default_rng(seed)
    return {
        k: (
            rng.uniform(0.5, 1.5, s)
            if k.endswith("running_var")
            else np.array(3)
            if k.endswith("num_batches_tracked")
            else rng.normal(0, 0.1, s)
        ).astype(np.int64 if k.endswith("num_batches_tracked") else np.float32)
        for k, s in _torch_shapes()[key].items()
    }


@pytest.mark.parametrize(
    "source,key,name",
    [
        ("torchvision", "torchvision/mobilenet_v3_small", "mobilenet_v3_small"),
        ("timm", "timm/efficientnet_b0", "efficientnet_b0"),
    ],
)
def test_load_torch_layout_from_safetensors_then_cache(tmp_path, monkeypatch, source, key, name):
    from jaxdl.models.registry import get_entry
    from jaxdl.weights.timm import convert_timm

    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path / "cache"))
    sd = _random_state_dict(key)
    from jaxdl.weights.io import write_safetensors

    write_safetensors(tmp_path / "w.safetensors", sd)
    model, prep = W.load(name, source=source, path=tmp_path / "w.safetensors")
    convert = convert_timm if source == "timm" else convert_torchvision
    expected = convert(get_entry(name).family, sd, model.config)
    got = {k: np.asarray(v) for k, v in model_tensors(model).items()}
    assert set(got) == set(expected)
    for k in got:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
    assert prep.resolution == 224 and prep.mean == (0.485, 0.456, 0.406) and prep.source == source
    assert (tmp_path / "cache" / "weights" / f"{name}-{source}.safetensors").exists()
    cached, prep2 = W.load(name, source=source)  # no path: from the cache, no download
    assert prep2 == prep
    for k, v in model_tensors(cached).items():
        np.testing.assert_array_equal(np.asarray(v), got[k], err_msg=k)


def test_load_torchvision_googlenet_from_pth(tmp_path, monkeypatch):
    """A .pth state dict (read with weights_only=True) as torchvision publishes googlenet's:
    with its auxiliary heads, which our default model (no aux_logits) drops; the preprocessing
    stands in for torchvision's transform_input."""
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path / "cache"))
    sd = _random_state_dict("torchvision/googlenet")
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, tmp_path / "googlenet.pth")
    model, prep = W.load("googlenet", source="torchvision", path=tmp_path / "googlenet.pth")
    np.testing.assert_array_equal(
        np.asarray(model.stem[0].conv.kernel[...]), sd["conv1.conv.weight"].transpose(2, 3, 1, 0)
    )
    assert prep.mean == prep.std == (0.5, 0.5, 0.5) and prep.resolution == 224


def test_load_timm_unknown_model_and_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path))
    with pytest.raises(JaxdlError, match="unknown timm-convertible model 'vgg16'"):
        W.load("vgg16", source="timm")
    import sys
    import types

    fake = types.ModuleType("timm")

    def create_model(*a, **k):
        raise OSError("network unreachable")

    fake.create_model = create_model
    monkeypatch.setitem(sys.modules, "timm", fake)
    with pytest.raises(JaxdlError, match=r"could not get timm resnet50 weights.*path="):
        W.load("resnet50", source="timm")


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
