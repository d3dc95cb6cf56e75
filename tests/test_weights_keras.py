"""Output parity with keras.applications (Keras 3, JAX backend): build the Keras model with
random weights (BatchNorm statistics and biases randomised too, so that a swapped mean/variance
or a lost bias cannot hide behind identity initialisation), convert, and compare float32 outputs:
equal to 1e-4 relative (observed: 0 to ~5e-7)."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from jaxdl.weights.keras import from_keras, keras_models  # noqa: E402


def randomize(km, seed=0):
    rng = np.random.default_rng(seed)
    for w in km.weights:
        name, shape = w.path.split("/")[-1], tuple(w.shape)
        if name in ("gamma", "moving_variance"):
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
]


def test_every_converter_is_covered():
    assert sorted(c[0] for c in CASES) == keras_models()


@pytest.mark.slow
@pytest.mark.parametrize("name,ctor,kwargs", CASES, ids=[c[0] for c in CASES])
def test_keras_output_parity(name, ctor, kwargs):
    km = getattr(keras.applications, ctor)(weights=None, **kwargs)
    randomize(km)
    x = np.random.default_rng(1).normal(size=(2, *kwargs["input_shape"])).astype("float32")
    ref = np.asarray(km(x, training=False))
    model, prep = from_keras(name, km)
    out = np.asarray(model(x))
    assert out.shape == ref.shape
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert rel < 1e-4, f"{name}: max relative error {rel:.2e}"
    assert prep.source.startswith("keras")
