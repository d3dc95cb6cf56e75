"""Output parity with keras.applications (Keras 3, JAX backend): build the Keras model with
random weights (BatchNorm statistics, biases and input Normalization randomised too, so that a
swapped mean/variance or a lost bias cannot hide behind identity initialisation), convert, and
compare float32 outputs for images in [0, 255]: keras_model(preprocess_input(x)) against
model(prep.apply(x)), so the Preprocessing is checked with the weights. Equal to 1e-4 relative
(observed: 0 to ~1.5e-6)."""

import importlib

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from jaxdl.weights.keras import from_keras, keras_models  # noqa: E402


def randomize(km, calibration=None, seed=0):
    """Random kernels (He-normal, std sqrt(2 / fan_in)), betas, biases and BN scales; then, with
    a `calibration` batch (the model's input), BN moving statistics set to that batch's (one
    training-mode call with momentum 0, dropout off), so that activations stay of order one
    through every layer in inference on that batch; the residual branches' last BN scaled by 0.2
    (`_residual_branch_ends`), as in trained nets, where a block is a small change of its
    input. With Keras's Glorot init and made-up
    statistics a deep net loses its input (ReLU6 / hard-swish / sigmoid gates saturate, or plain
    stacks shrink) and outputs little but its last biases, which makes a parity check nearly
    vacuous; made-up statistics that differ from the real ones by even 25% compound, block after
    block, into a chaotic net (EfficientNet-B6 at 32 px: 1e-3 input noise changes the output by
    50%). The calibrated statistics are far from 0 / 1, so a swapped mean / variance or a lost
    bias cannot hide. Without `calibration`, BN statistics are made up (gamma, variance
    uniform in [0.5, 1.5], mean N(0, 0.1)): enough for the plain stacks (VGG, ResNet, DenseNet,
    Inception, Xception); with calibrated statistics their centred 1x1 final maps of a small
    input amplify float rounding to ~1e-4 (DenseNet169, InceptionV3 at 75 px)."""
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
        elif name == "mean":  # Normalization (EfficientNet's input)
            w.assign(rng.uniform(0.3, 0.6, shape).astype("float32"))
        elif name == "variance":
            w.assign(rng.uniform(0.03, 0.1, shape).astype("float32"))
    for layer in km.layers:
        if type(layer).__name__ == "Normalization":
            layer.finalize_state()  # it caches mean / variance from its variables
    if calibration is None:
        return
    bns = [layer for layer in km.layers if type(layer).__name__ == "BatchNormalization"]
    drops = [layer for layer in km.layers if type(layer).__name__ == "Dropout"]
    saved = [bn.momentum for bn in bns], [d.rate for d in drops]
    for bn in bns:
        bn.momentum = 0.0
    for d in drops:  # EfficientNet's stochastic depth would skew the statistics downstream
        d.rate = 0.0
    km(calibration, training=True)
    for bn in _residual_branch_ends(km):  # trained nets' residual branches are small
        for v in (bn.gamma, bn.beta):
            v.assign(np.asarray(v) * 0.2)
    for d, r in zip(drops, saved[1], strict=True):
        d.rate = r
    for bn, m in zip(bns, saved[0], strict=True):
        bn.momentum = m


def _residual_branch_ends(km):
    """The BatchNormalization layers that end a residual branch: inputs of an Add, directly or
    through a Dropout (EfficientNet's stochastic depth), other than the shortcut's."""

    def producer(tensor):
        layer = tensor._keras_history[0]
        if type(layer).__name__ == "Dropout":
            layer = layer._inbound_nodes[0].input_tensors[0]._keras_history[0]
        return layer

    found = []
    for add in (layer for layer in km.layers if type(layer).__name__ == "Add"):
        inputs = [producer(t) for t in add._inbound_nodes[0].input_tensors]
        bns = [layer for layer in inputs if type(layer).__name__ == "BatchNormalization"]
        if len(bns) < len(inputs):  # an identity shortcut: the BN is the residual branch's
            found += bns
    return found


def images(shape, n=8, seed=1):
    """n images in [0, 255] that differ in more than their noise: per image a colour, a
    brightness ramp in a random direction and a noise level (identically distributed noise
    images become nearly identical features after a few stages, and BatchNorm over such a batch
    amplifies float rounding). The parity tests calibrate on 8 and compare on the first 2, which
    inference then sees with exactly the statistics training mode gave them."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    out = []
    for _ in range(n):
        angle, noise = rng.uniform(0, 2 * np.pi), rng.uniform(10, 80)
        ramp = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None] * rng.uniform(20, 80, c)
        img = rng.uniform(60, 200, c) + ramp + rng.normal(0, noise, (h, w, c))
        out.append(np.clip(img, 0, 255))
    return np.stack(out).astype("float32")


def assert_parity(km, model, prep, x, prepare=lambda v: v, name=""):
    """keras_model(prepare(x)) == model(prep.apply(x)) to 1e-4 relative, for an output that
    depends on its input (two images give outputs > 1% apart). Returns the error."""
    ref = np.asarray(km(prepare(x.copy()), training=False))
    assert np.abs(ref[0] - ref[1]).max() / np.abs(ref).max() > 1e-2, "output ignores the input"
    out = np.asarray(model(prep.apply(x, resize=False)))
    assert out.shape == ref.shape
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    print(f"{name}: max relative error {rel:.2e}")
    assert rel < 1e-4, f"{name}: max relative error {rel:.2e}"
    return rel


def preprocess_input(ctor):
    """The keras.applications preprocess_input of the constructor's module."""
    return importlib.import_module(getattr(keras.applications, ctor).__module__).preprocess_input


# (jaxdl name, keras constructor, keyword arguments): small inputs keep CI fast; the
# architectures are the same at any input size.
CASES = [
    ("vgg16", "VGG16", dict(input_shape=(32, 32, 3), classifier_activation=None)),
    ("vgg19", "VGG19", dict(input_shape=(32, 32, 3), include_top=False, pooling="max")),
    ("resnet50", "ResNet50", dict(input_shape=(64, 64, 3), classifier_activation=None)),
    ("resnet101", "ResNet101", dict(input_shape=(32, 32, 3), include_top=False, pooling="avg")),
    ("resnet152", "ResNet152", dict(input_shape=(32, 32, 3), include_top=False)),
    (
        "densenet121",
        "DenseNet121",
        dict(input_shape=(32, 32, 3), classifier_activation=None, classes=10),
    ),
    ("densenet169", "DenseNet169", dict(input_shape=(32, 32, 3), include_top=False, pooling="avg")),
    ("densenet201", "DenseNet201", dict(input_shape=(32, 32, 3), include_top=False, pooling="avg")),
    # Inception / Xception at their minimum sizes (75, 71) or near them; a model built twice
    # gets other auto-generated layer numbers the second time (conv2d_94, ...), which the
    # creation-order matching must not depend on. Xception at 86: its max pools see the even
    # sizes 40, 20, 10, where Keras's 'same' pooling differs from symmetric padding.
    (
        "inception_v3",
        "InceptionV3",
        dict(input_shape=(75, 75, 3), classifier_activation=None, classes=10),
    ),
    (
        "inception_v3",
        "InceptionV3",
        dict(input_shape=(80, 80, 3), include_top=False, pooling="avg"),
    ),
    (
        "inception_resnet_v2",
        "InceptionResNetV2",
        dict(input_shape=(75, 75, 3), include_top=False, pooling="max"),
    ),
    ("xception", "Xception", dict(input_shape=(86, 86, 3), classifier_activation=None, classes=7)),
    ("xception", "Xception", dict(input_shape=(71, 71, 3), include_top=False)),
    # odd sizes: Keras's stride-2 padding (v1: (0, 1) always; the others correct_pad = SAME)
    (
        "mobilenet_v1",
        "MobileNet",
        dict(input_shape=(33, 33, 3), classifier_activation=None, classes=10),
    ),
    (
        "mobilenet_v2",
        "MobileNetV2",
        dict(input_shape=(35, 35, 3), include_top=False, pooling="max"),
    ),
    (
        "mobilenet_v3_small",
        "MobileNetV3Small",
        dict(input_shape=(32, 32, 3), include_top=False, pooling="avg"),
    ),
    (
        "mobilenet_v3_large",
        "MobileNetV3Large",
        dict(input_shape=(37, 37, 3), classifier_activation=None, classes=7),
    ),
    (
        "efficientnet_b0",
        "EfficientNetB0",
        dict(input_shape=(33, 33, 3), classifier_activation=None, classes=10),
    ),
    (
        "efficientnet_b1",
        "EfficientNetB1",
        dict(input_shape=(32, 32, 3), include_top=False, pooling="avg"),
    ),
    (
        "efficientnet_b2",
        "EfficientNetB2",
        dict(input_shape=(32, 32, 3), include_top=False, pooling="max"),
    ),
    (
        "efficientnet_b3",
        "EfficientNetB3",
        dict(input_shape=(35, 35, 3), classifier_activation=None, classes=10),
    ),
    ("efficientnet_b4", "EfficientNetB4", dict(input_shape=(32, 32, 3), include_top=False)),
    (
        "efficientnet_b5",
        "EfficientNetB5",
        dict(input_shape=(32, 32, 3), classifier_activation=None, classes=3),
    ),
    (
        "efficientnet_b6",
        "EfficientNetB6",
        dict(input_shape=(32, 32, 3), include_top=False, pooling="avg"),
    ),
    (
        "efficientnet_b7",
        "EfficientNetB7",
        dict(input_shape=(32, 32, 3), classifier_activation=None, classes=5),
    ),
]


def test_every_converter_is_covered():
    assert sorted({c[0] for c in CASES}) == keras_models()


def test_auto_named_layers_are_matched_by_creation_number():
    """conv2d, conv2d_2, conv2d_10 in that order (numerically, not as strings); named layers
    are left to the tables; a count that differs from ours is an error, not a partial match."""
    from jaxdl.errors import JaxdlError
    from jaxdl.weights.keras import _auto_named, _match_auto_named

    names = [
        "conv2d_10",
        "conv2d",
        "conv2d_2",
        "block35_1_conv",
        "conv_7b",
        "batch_normalization_3",
        "batch_normalization_11",
        "batch_normalization_4",
        "conv_7b_bn",
    ]
    t = {f"{n}/kernel": np.zeros(1) for n in names}
    assert _auto_named(t, "conv") == ["conv2d", "conv2d_2", "conv2d_10"]
    bn = "batch_normalization"
    assert _match_auto_named(t, ["x", "y", "z"], "test") == {
        "conv2d": "x/conv",
        "conv2d_2": "y/conv",
        "conv2d_10": "z/conv",
        f"{bn}_3": "x/bn",
        f"{bn}_4": "y/bn",
        f"{bn}_11": "z/bn",
    }
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
    prepare = preprocess_input(ctor)  # it may work in place: given copies
    # MobileNet / EfficientNet saturate (ReLU6, hard-swish, SE gates) with made-up BN statistics:
    # calibrated ones. The plain deep stacks (Inception, DenseNet) keep their input with made-up
    # statistics, while calibrated ones on their 1x1 final maps turn float rounding into 1e-4.
    calibrate = name.startswith(("mobilenet", "efficientnet"))
    randomize(km, prepare(images(kwargs["input_shape"])) if calibrate else None)
    model, prep = from_keras(name, km)
    assert_parity(km, model, prep, images(kwargs["input_shape"])[:2], prepare, name)
    assert prep.source.startswith("keras")


@pytest.mark.slow
def test_unknown_keras_layer_surfaces_as_unexpected():
    """A Keras layer the mobilenet table does not know is reported with its Keras name, not
    dropped (and alpha 0.35 with keras_widths gives Keras's shapes: nothing else mismatches)."""
    from jaxdl import create_model
    from jaxdl.errors import JaxdlError
    from jaxdl.weights.convert import assign
    from jaxdl.weights.keras import KERAS_CONVERTERS, _keras_models, keras_tensors

    km = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, include_top=False
    )
    tensors = keras_tensors(km)
    tensors["block_99_project/kernel"] = np.zeros((1, 1, 8, 8), "float32")
    model = create_model(
        "mobilenet_v2",
        input_shape=(32, 32, 3),
        width_mult=0.35,
        include_top=False,
        **_keras_models()["mobilenet_v2"][1],
    )
    with pytest.raises(
        JaxdlError, match=r"do not match the model: 1 unexpected: block_99_project/kernel$"
    ):
        assign(model, KERAS_CONVERTERS["mobilenet"](tensors, model.config))


@pytest.mark.slow
def test_keras_widths_mobilenet_v3_alpha():
    """alpha 0.75: Keras keeps v3's stem at 16 and its head at 1024 (torchvision scales both),
    the option keras_widths=True reproduces that."""
    km = keras.applications.MobileNetV3Small(
        weights=None, input_shape=(32, 32, 3), alpha=0.75, classifier_activation=None, classes=4
    )
    randomize(km, images((32, 32, 3)))
    model, prep = from_keras("mobilenet_v3_small", km, width_mult=0.75)
    assert model.stem.conv.kernel.shape[-1] == 16 and model.head.hidden[0].kernel.shape == (
        432,
        1024,
    )
    assert_parity(km, model, prep, images((32, 32, 3))[:2], name="mobilenet_v3_small alpha 0.75")


def test_keras_input_layers_fold_into_preprocessing():
    """Rescaling, Normalization and a per-channel Rescaling (EfficientNet's input with ImageNet
    weights) become one Preprocessing equal to them; a model loaded from a file is built with
    weights=None, without the last layer, which `imagenet_input_layers` adds back."""
    from jaxdl.weights import preprocess as P
    from jaxdl.weights.keras import imagenet_input_layers, keras_input_preprocessing

    mean, var, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], [0.229, 0.224, 0.225]
    layers = [
        keras.layers.Rescaling(1.0 / 255.0),
        keras.layers.Normalization(mean=mean, variance=var),
    ]
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 5, 5, 3)).astype("float32")
    full = keras.Sequential(
        [keras.Input((5, 5, 3)), *layers, keras.layers.Rescaling([1 / np.sqrt(s) for s in std])]
    )
    loaded = keras.Sequential([keras.Input((5, 5, 3)), *layers])
    for km, prep in (
        (full, keras_input_preprocessing(full, P.KERAS_RAW)),
        (
            full,
            imagenet_input_layers(
                "efficientnet_b0", keras_input_preprocessing(loaded, P.KERAS_RAW)
            ),
        ),
        (loaded, keras_input_preprocessing(loaded, P.KERAS_RAW)),
    ):
        np.testing.assert_allclose(prep.apply(x, resize=False), km(x), rtol=1e-5, atol=1e-5)
    assert (
        keras_input_preprocessing(keras.Sequential([keras.Input((5, 5, 3))]), P.KERAS_TF)
        is P.KERAS_TF
    )
    assert imagenet_input_layers("mobilenet_v2", P.KERAS_TF) is P.KERAS_TF


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,ctor", [("mobilenet_v3_small", "MobileNetV3Small"), ("efficientnet_b0", "EfficientNetB0")]
)
def test_keras_open_input_size_pads_as_even(name, ctor):
    """A Keras model built with input_shape (None, None, 3) pads its strided depthwise convs
    (and EfficientNet's stem) as for an even size whatever the input: at an odd size that
    differs from 'SAME', and from_keras builds padding='same_keras_even' for it."""
    km = getattr(keras.applications, ctor)(
        weights=None, input_shape=(None, None, 3), include_top=False
    )
    randomize(km, images((33, 33, 3)))
    model, prep = from_keras(name, km)
    assert model.config.padding == "same_keras_even"
    # (with 'SAME' padding our output would be 2x2 where Keras's is 1x1 here)
    assert_parity(km, model, prep, images((33, 33, 3))[:2], name=f"{name} open H, W at 33 px")
