"""CNN families: pinned published parameter counts, MACs, options and bad input.

Every model is built abstractly (nnx.eval_shape), so nothing large is allocated."""

import io
import re
from contextlib import redirect_stdout

import jax
import jax.numpy as jnp
import pytest
from _pinned import PINNED
from flax import nnx

from jaxdl.bench.summary import summarize
from jaxdl.errors import JaxdlError
from jaxdl.functional import count_params, pure
from jaxdl.models import abstract_model, create_model
from jaxdl.models.inputs import example_input
from jaxdl.models.unet import unet_output_size

# Where a convention changes the count, both settings are pinned.
CONVENTIONS = [
    ("googlenet", {"aux_logits": True}, 13_004_888),  # torchvision with its two aux heads
    ("inception_v3", {"aux_logits": True}, 27_161_264),  # torchvision with AuxLogits
    ("inception_v3", {"bn_scale": False}, 23_817_352),  # Keras: 23,851,784 - 34,432 BN stats
    ("inception_resnet_v2", {"bn_scale": False}, 55_813_192),  # Keras: 55,873,736 - 60,544
    (
        "resnet50",
        {"stride_in_1x1": True, "conv_bias": True},
        25_583_592,
    ),  # Keras v1: 25,636,712 - 53,120
]


def n_params(name, **overrides):
    model = abstract_model(name, **overrides)
    return count_params(nnx.state(model, nnx.Param))


@pytest.mark.parametrize("name,overrides,expected", CONVENTIONS)
def test_parameter_count_conventions(name, overrides, expected):
    assert n_params(name, **overrides) == expected


# published GMACs at the family's resolution (224, inception_v3 299).
MACS = {
    "resnet50": 4.09,
    "vgg16": 15.47,
    "densenet121": 2.83,
    "mobilenet_v2": 0.30,
    "efficientnet_b0": 0.386,
    "inception_v3": 5.71,
}


@pytest.mark.parametrize("name", sorted(MACS))
def test_macs_match_reference(name):
    model = abstract_model(name)
    s = summarize(model, example_input(model.config))
    assert s.trainable == PINNED[name]
    assert s.macs / 1e9 == pytest.approx(MACS[name], rel=0.02)
    assert s.rows[0].output_shape == (1, 1000)


def test_cli_summary_resnet50():
    from jaxdl.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["summary", "resnet50", "--input", "224", "--depth", "1"]) == 0
    out = " ".join(buf.getvalue().split())  # rich wraps lines at the console width
    assert "Trainable params: 25,557,032" in out
    assert "Total params: 25,610,152" in out  # plus 53,120 BN statistics
    gmacs = float(re.search(r"\(([\d.]+) GMACs", out).group(1))
    assert gmacs == pytest.approx(4.09, rel=0.01)
    assert "ResNet" in out and "Head" in out  # the model row and its top


def _shape(model, x_shape, **kw):
    return jax.eval_shape(
        lambda m, x: m(x, **kw), model, jax.ShapeDtypeStruct(x_shape, jnp.float32)
    )


def test_unet_paper_shapes():
    model = abstract_model("unet")
    assert unet_output_size(572) == 388
    assert _shape(model, (1, 572, 572, 1)).shape == (1, 388, 388, 2)
    feats = jax.eval_shape(
        lambda m, x: m.features(x), model, jax.ShapeDtypeStruct((1, 572, 572, 1), jnp.float32)
    )
    assert feats["level1"].shape == (1, 568, 568, 64) and feats["bottom"].shape == (1, 28, 28, 1024)
    with pytest.raises(JaxdlError, match="odd size"):
        create_model("unet", input_shape=(570, 570, 1))


def test_keras_applications_options():
    # include_top=False: the last feature map, or pooled with pooling='avg'/'max'
    m = abstract_model("resnet18", include_top=False, input_shape=(64, 64, 3))
    assert _shape(m, (2, 64, 64, 3)).shape == (2, 2, 2, 512)
    assert n_params("resnet18", include_top=False) == PINNED["resnet18"] - 513_000
    m = abstract_model("mobilenet_v2", include_top=False, pooling="max", input_shape=(96, 128, 3))
    assert _shape(m, (2, 96, 128, 3)).shape == (2, 1280)
    # classes, input channels, any size above the minimum
    m = abstract_model("efficientnet_b0", num_classes=7, input_shape=(65, 77, 1))
    assert _shape(m, (3, 65, 77, 1)).shape == (3, 7)
    # intermediate feature maps per stage
    m = abstract_model("resnet50", input_shape=(224, 224, 3))
    feats = jax.eval_shape(
        lambda m, x: m.features(x), m, jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    )
    assert {k: v.shape[1:] for k, v in feats.items()} == {
        "stem": (56, 56, 64),
        "stage1": (56, 56, 256),
        "stage2": (28, 28, 512),
        "stage3": (14, 14, 1024),
        "stage4": (7, 7, 2048),
    }
    m = abstract_model("inception_v3")
    feats = jax.eval_shape(
        lambda m, x: m.features(x), m, jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32)
    )
    assert {k: v.shape[1:] for k, v in feats.items()} == {
        "stride8": (35, 35, 288),
        "stride16": (17, 17, 768),
        "stride32": (8, 8, 2048),
    }
    # VGG's flatten head follows the configured input size
    assert n_params("vgg16", input_shape=(32, 32, 3)) == PINNED["vgg16"] - (49 - 1) * 512 * 4096


def test_classifier_activation_softmax():
    apply, params, state = pure(create_model("lenet5", classifier_activation="softmax"))
    p, _ = jax.jit(apply)(params, state, jnp.ones((2, 32, 32, 1)))
    assert jnp.allclose(p.sum(-1), 1.0, atol=1e-5)


def test_lenet_fits_small_inputs_into_32x32():
    from jaxdl.models.lenet import fit_to_field

    x = jnp.ones((1, 28, 28, 1))
    padded = fit_to_field(x, "auto")
    assert padded.shape == (1, 32, 32, 1) and float(padded.sum()) == 28 * 28  # centred zero pad
    assert float(padded[0, 2, 2, 0]) == 1.0 and float(padded[0, 1, 2, 0]) == 0.0
    assert fit_to_field(jnp.ones((1, 8, 8, 1)), "auto").shape == (1, 32, 32, 1)  # resized
    for side in (8, 28, 32):
        m = abstract_model("lenet5", input_shape=(side, side, 1))
        assert _shape(m, (2, side, side, 1)).shape == (2, 10)
        assert n_params("lenet5", input_shape=(side, side, 1)) == 61_706


@pytest.mark.parametrize(
    "name,overrides,match",
    [
        ("resnet51", {}, "unknown model"),
        ("vgg16", {"groups": 2}, "unknown option"),
        ("resnet18", {"groups": 32}, "bottleneck"),
        ("resnet18", {"input_shape": (16, 16, 3)}, "minimum"),
        ("inception_v3", {"input_shape": (74, 74, 3)}, "minimum"),
        ("xception", {"input_shape": (70, 70, 3)}, "minimum"),
        ("xception", {"pool_padding": "symmetric"}, "pool_padding"),
        ("mobilenet_v2", {"pooling": "sum"}, "pooling"),
        ("mobilenet_v2", {"dropout": 1.0}, "dropout"),
        ("mobilenet_v3_small", {"size": "tiny"}, "size"),
        ("mobilenet_v1", {"padding": "valid"}, "padding must be one of"),
        ("efficientnet_b0", {"padding": "same_torch"}, "padding must be one of"),
        ("inception_resnet_v2", {"aux_logits": True}, "auxiliary"),
        ("lenet5", {"fit": "crop"}, "fit"),
        ("unet", {"padding": "full"}, "padding"),
    ],
)
def test_bad_options(name, overrides, match):
    with pytest.raises(JaxdlError, match=match):
        abstract_model(name, **overrides)


def test_bad_input():
    m = abstract_model("resnet18")
    with pytest.raises(JaxdlError, match="channel"):
        _shape(m, (1, 224, 224, 1))
    with pytest.raises(JaxdlError, match="minimum"):
        _shape(m, (1, 16, 16, 3))
    with pytest.raises(JaxdlError, match="NHWC"):
        _shape(m, (1, 224, 224))
