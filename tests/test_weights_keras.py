"""Output parity with keras.applications (Keras 3, JAX backend): build the Keras model with
random weights (BatchNorm statistics and biases randomised too, so that a swapped mean/variance
or a lost bias cannot hide behind identity initialisation), convert, and compare float32 outputs:
equal to 1e-4 relative (observed: 0 to ~5e-7)."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from jaxdl.weights.keras import from_keras, keras_models  # noqa: E402


def randomize(km, seed=0):
    """Random BN statistics, betas and biases; kernels He-normal (std sqrt(2 / fan_in)), since
    with Keras's Glorot init a deep plain stack (Inception, Xception) loses its input and
    outputs little but its last BN betas, which would make a parity check nearly vacuous."""
    rng = np.random.default_rng(seed)
    for w in km.weights:
        name, shape = w.path.split("/")[-1], tuple(w.shape)
        if name in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            fan_in = int(np.prod(shape[:2] if name == "depthwise_kernel" else shape[:-1]))
            w.assign(rng.normal(0, np.sqrt(2 / fan_in), shape).astype("float32"))
        elif name in ("gamma", "moving_variance"):
            w.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif name in ("beta", "bias", "moving_mean"):
            w.assign(rng.normal(0, 0.1, shape).astype("float32"))


# (jaxdl name, keras constructor, keyword arguments): small inputs keep CI fast; the
# architectures are the same at any input size.
CASES = [
    ("vgg16", "VGG16", dict(input_shape=(32, 32, 3), classifier_activation=None)),
    ("vgg19", "VGG19", dict(input_shape=(32, 32, 3), include_top=False, pooling="max")),
    ("resnet50", "ResNet50", dict(input_shape=(64, 64, 3), classifier_activation=None)),
    ("resnet101", "ResNet101", dict(input_shape=(32, 32, 3), include_top=False, pooling="avg")),
    ("resnet152", "ResNet152", dict(input_shape=(32, 32, 3), include_top=False)),
    ("densenet121", "DenseNet121", dict(input_shape=(32, 32, 3), classifier_activation=None, classes=10)),
    ("densenet169", "DenseNet169", dict(input_shape=(32, 32, 3), include_top=False, pooling="avg")),
    ("densenet201", "DenseNet201", dict(input_shape=(32, 32, 3), include_top=False, pooling="avg")),
    # Inception / Xception at their minimum sizes (75, 71) or near them; a model built twice
    # gets other auto-generated layer numbers the second time (conv2d_94, ...), which the
    # creation-order matching must not depend on. Xception at 86: its max pools see the even
    # sizes 40, 20, 10, where Keras's 'same' pooling differs from symmetric padding.
    ("inception_v3", "InceptionV3",
     dict(input_shape=(75, 75, 3), classifier_activation=None, classes=10)),
    ("inception_v3", "InceptionV3",
     dict(input_shape=(80, 80, 3), include_top=False, pooling="avg")),
    ("inception_resnet_v2", "InceptionResNetV2",
     dict(input_shape=(75, 75, 3), include_top=False, pooling="max")),
    ("xception", "Xception", dict(input_shape=(86, 86, 3), classifier_activation=None, classes=7)),
    ("xception", "Xception", dict(input_shape=(71, 71, 3), include_top=False)),
]


def test_every_converter_is_covered():
    assert sorted({c[0] for c in CASES}) == keras_models()


def test_auto_named_layers_are_matched_by_creation_number():
    """conv2d, conv2d_2, conv2d_10 in that order (numerically, not as strings); named layers
    are left to the tables; a count that differs from ours is an error, not a partial match."""
    from jaxdl.errors import JaxdlError
    from jaxdl.weights.keras import _auto_named, _match_auto_named

    names = ["conv2d_10", "conv2d", "conv2d_2", "block35_1_conv", "conv_7b",
             "batch_normalization_3", "batch_normalization_11", "batch_normalization_4",
             "conv_7b_bn"]
    t = {f"{n}/kernel": np.zeros(1) for n in names}
    assert _auto_named(t, "conv") == ["conv2d", "conv2d_2", "conv2d_10"]
    bn = "batch_normalization"
    assert _match_auto_named(t, ["x", "y", "z"], "test") == {
        "conv2d": "x/conv", "conv2d_2": "y/conv", "conv2d_10": "z/conv",
        f"{bn}_3": "x/bn", f"{bn}_4": "y/bn", f"{bn}_11": "z/bn"}
    with pytest.raises(JaxdlError, match="3 auto-named Conv2D and 3 BatchNormalization.*2 conv-BN"):
        _match_auto_named(t, ["x", "y"], "test")


def test_inception_converter_refuses_what_keras_does_not_have():
    from jaxdl.errors import JaxdlError
    from jaxdl.models.registry import get_config
    from jaxdl.weights.keras import KERAS_CONVERTERS

    for name, opts in (("inception_v3", {"aux_logits": True}), ("googlenet", {})):
        with pytest.raises(JaxdlError, match="without auxiliary heads"):
            KERAS_CONVERTERS["inception"]({}, get_config(name, **opts))


def _ids(cases):
    seen = {}
    for c in cases:
        seen[c[0]] = seen.get(c[0], 0) + 1
        yield c[0] if seen[c[0]] == 1 else f"{c[0]}-{seen[c[0]]}"


@pytest.mark.slow
@pytest.mark.parametrize("name,ctor,kwargs", CASES, ids=list(_ids(CASES)))
def test_keras_output_parity(name, ctor, kwargs):
    km = getattr(keras.applications, ctor)(weights=None, **kwargs)
    randomize(km)
    x = np.random.default_rng(1).normal(size=(2, *kwargs["input_shape"])).astype("float32")
    ref = np.asarray(km(x, training=False))
    # the output must depend on the input, or parity would say little
    assert np.abs(ref[0] - ref[1]).max() / np.abs(ref).max() > 1e-2
    model, prep = from_keras(name, km)
    out = np.asarray(model(x))
    assert out.shape == ref.shape
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert rel < 1e-4, f"{name}: max relative error {rel:.2e}"
    assert prep.source.startswith("keras")
