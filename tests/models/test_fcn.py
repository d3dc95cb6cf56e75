"""FCN for semantic segmentation (jaxdl.models.fcn): FCN-32s/16s/8s on VGG-16 (Long et al.
2015) and torchvision's fcn_resnet50/101. Counts pinned to torchvision's weights meta
`num_params` and to the paper's layer shapes; big models only through nnx.eval_shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.functional import count_params
from jaxdl.models import abstract_model, create_model
from jaxdl.models.inception import aux_loss
from jaxdl.nn.conv import conv_params
from jaxdl.nn.resample import adaptive_avg_pool, adaptive_pool_matrix, bilinear_kernel


def n_params(name, **kw):
    return count_params(nnx.state(abstract_model(name, **kw), nnx.Param))


# torchvision FCN_ResNet50_Weights / FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1 meta
# "num_params" (built with the auxiliary head, 21 classes).
TORCHVISION = {"fcn_resnet50": 35_322_218, "fcn_resnet101": 54_314_346}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_fcn_resnet_counts_match_torchvision(name):
    assert n_params(name) == TORCHVISION[name]
    # without the aux head: minus FCNHead(1024 -> 256 -> 21) = 2,365,205
    aux = conv_params(3, 1024, 256, bias=False) + 2 * 256 + conv_params(1, 256, 21)
    assert aux == 2_365_205
    assert n_params(name, aux=False) == TORCHVISION[name] - aux


def _vgg16_convs():
    from jaxdl.models.vgg import CONFIGS

    total, cin = 0, 3
    for stage in CONFIGS[16]:
        for w in stage:
            total += conv_params(3, cin, w)
            cin = w
    return total


def test_fcn_vgg_counts_from_the_layer_shapes():
    k = 21
    body = _vgg16_convs() + conv_params(7, 512, 4096) + conv_params(1, 4096, 4096)
    body += conv_params(1, 4096, k)  # score_fr
    assert body == 134_346_581  # the paper's Table 1: FCN-VGG16, 134M parameters
    up = lambda size: size * size * k * k  # transposed conv, no bias
    expected = {
        "fcn32s": body + up(64),
        "fcn16s": body + conv_params(1, 512, k) + up(4) + up(32),
        "fcn8s": body + conv_params(1, 512, k) + conv_params(1, 256, k) + 2 * up(4) + up(16),
    }
    assert expected["fcn32s"] == 136_152_917
    for name, n in expected.items():
        assert n_params(name) == n, name


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s", "fcn_resnet50"])
def test_output_is_per_pixel_at_input_resolution(name):
    m = abstract_model(name)
    sides = [(500, 500), (37, 64), (224, 231)] if name != "fcn_resnet50" else [(520, 520), (65, 97)]
    for h, w in sides:
        y = jax.eval_shape(lambda m, x: m(x), m, jax.ShapeDtypeStruct((2, h, w, 3), jnp.float32))
        assert y.shape == (2, h, w, 21) and y.dtype == jnp.float32


def test_dilated_backbone_follows_torchvision():
    """replace_stride_with_dilation=(False, True, True): layer3/4 keep stride 8; the first block of
    a dilated stage keeps the previous dilation (torchvision's _make_layer)."""
    m = abstract_model("fcn_resnet50")
    f = jax.eval_shape(
        lambda m, x: m.features(x), m, jax.ShapeDtypeStruct((1, 520, 520, 3), jnp.float32)
    )
    assert [f[s].shape for s in ("stage1", "stage2", "stage3", "stage4")] == [
        (1, 130, 130, 256),
        (1, 65, 65, 512),
        (1, 65, 65, 1024),
        (1, 65, 65, 2048),
    ]
    dil = [[b.conv2.conv.kernel_dilation[0] for b in st] for st in m.backbone.stages]
    assert dil == [[1] * 3, [1] * 4, [1, 2, 2, 2, 2, 2], [2, 4, 4]]
    assert [st[0].conv2.conv.strides for st in m.backbone.stages] == [
        (1, 1),
        (2, 2),
        (1, 1),
        (1, 1),
    ]
    with pytest.raises(JaxdlError, match="replace_stride_with_dilation"):
        create_model("resnet18", replace_stride_with_dilation=(False, True, True))


TINY_VGG = dict(stages=((4,), (4,), (6,), (6,), (8,)), fc=8, num_classes=3, input_shape=(24, 24, 3))
TINY_RES = dict(
    layers=(1, 1, 1, 1), widths=(4, 4, 8, 8), stem_width=4, num_classes=3, input_shape=(32, 32, 3)
)


@pytest.mark.parametrize("name", ["fcn32s", "fcn8s"])
def test_fcn_vgg_tiny_forward_grad_and_zero_scores(name):
    x = jax.random.normal(jax.random.key(0), (1, 24, 24, 3))
    fwd = nnx.jit(lambda m, x: m(x))
    m = create_model(name, **TINY_VGG, rngs=nnx.Rngs(0))
    # the paper zero-initialises the score layers: every pixel scores 0 at the start
    assert float(jnp.max(jnp.abs(fwd(m, x)))) == 0.0
    m = create_model(name, **TINY_VGG, score_init="he", rngs=nnx.Rngs(0))
    y = fwd(m, x)
    assert y.shape == (1, 24, 24, 3) and float(jnp.std(y)) > 0
    labels = jnp.zeros((1, 24, 24), jnp.int32)
    g = nnx.jit(nnx.grad(lambda m, x: aux_loss(m(x), labels, 0.0)))(m, x)
    for path, leaf in jax.tree_util.tree_leaves_with_path(g):
        assert bool(jnp.all(jnp.isfinite(leaf))), path
        assert float(jnp.max(jnp.abs(leaf))) > 0, path
    yt = nnx.jit(lambda m, x, r: m(x, train=True, rngs=r))(m, x, nnx.Rngs(dropout=1))
    assert yt.shape == y.shape and not bool(jnp.allclose(yt, y))  # dropout 0.5 in fc6/fc7


def test_fcn_resnet_tiny_aux_in_training_only():
    x = jax.random.normal(jax.random.key(0), (1, 32, 40, 3))
    m = create_model("fcn_resnet50", **TINY_RES, rngs=nnx.Rngs(0))
    y = nnx.jit(lambda m, x: m(x))(m, x)
    assert y.shape == (1, 32, 40, 3)
    labels = jnp.ones((1, 32, 40), jnp.int32)

    def train_loss(m, x, rngs):
        out, aux = m(x, train=True, rngs=rngs)
        assert out.shape == aux.shape == (1, 32, 40, 3)
        return aux_loss((out, aux), labels, 0.5)  # torchvision's recipe: out + 0.5 aux

    assert bool(jnp.isfinite(nnx.jit(train_loss)(m, x, nnx.Rngs(dropout=0))))
    m2 = create_model("fcn_resnet50", **TINY_RES, aux=False, rngs=nnx.Rngs(0))
    out = jax.eval_shape(lambda m, x: m(x, train=True, rngs=nnx.Rngs(dropout=0)), m2, x)
    assert m2.aux_classifier is None and out.shape == y.shape


def test_bilinear_transposed_conv_is_bilinear_interpolation():
    """A stride-s transposed conv with FCN's bilinear kernel (size 2s), cropped by s/2, equals
    half-pixel bilinear interpolation (jax.image.resize) away from the borders."""
    x = jax.random.normal(jax.random.key(1), (1, 9, 7, 2))
    for s in (2, 4, 8):
        up = nnx.ConvTranspose(
            2, 2, (2 * s, 2 * s), (s, s), padding="VALID", use_bias=False, rngs=nnx.Rngs(0)
        )
        up.kernel[...] = jnp.asarray(bilinear_kernel(2 * s, 2))
        y = up(x)[:, s // 2 : s // 2 + 9 * s, s // 2 : s // 2 + 7 * s]
        ref = jax.image.resize(x, (1, 9 * s, 7 * s, 2), "bilinear")
        inner = (slice(None), slice(s, -s), slice(s, -s))
        np.testing.assert_allclose(np.asarray(y[inner]), np.asarray(ref[inner]), atol=1e-5)
    k = bilinear_kernel(4, 3)
    assert k[:, :, 0, 1].sum() == 0 and np.allclose(
        k[:, :, 1, 1], np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25])
    )


def test_adaptive_avg_pool_is_torchs_bins():
    x = jnp.arange(14 * 14, dtype=jnp.float32).reshape(1, 14, 14, 1)
    y = np.asarray(adaptive_avg_pool(x, 4))[0, :, :, 0]
    bins = [(0, 4), (3, 7), (7, 11), (10, 14)]  # floor(i*14/4) .. ceil((i+1)*14/4)
    ref = np.array([[np.asarray(x)[0, a:b, c:d, 0].mean() for c, d in bins] for a, b in bins])
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    assert adaptive_pool_matrix(5, 5).tolist() == np.eye(5).tolist()


def test_fcn_bad_options_and_input():
    with pytest.raises(JaxdlError, match="stride must be 32, 16 or 8"):
        create_model("fcn8s", stride=4)
    with pytest.raises(JaxdlError, match="score_init"):
        create_model("fcn8s", **TINY_VGG, score_init="ones")
    m = create_model("fcn32s", **TINY_VGG, rngs=nnx.Rngs(0))
    with pytest.raises(JaxdlError, match=r"input must be \[B, H, W, 3\]"):
        m(jnp.ones((1, 24, 24, 1)))
    r = create_model("fcn_resnet50", **TINY_RES, rngs=nnx.Rngs(0))
    with pytest.raises(JaxdlError, match="smaller than the minimum"):
        r(jnp.ones((1, 16, 16, 3)))


def _torchvision_fcn_shapes(aux=True):
    """torchvision fcn_resnet50's state-dict layout: its backbone is torchvision's resnet50
    without fc (the recorded timm/resnet50 layout uses the same names), under `backbone.`;
    FCNHead is a Sequential (0 conv, 1 BN, 2 ReLU, 3 Dropout, 4 conv)."""
    import gzip
    import json
    from pathlib import Path

    path = Path(__file__).parents[1] / "fixtures" / "torch_state_dict_shapes.json.gz"
    res = json.load(gzip.open(path, "rt"))["timm/resnet50"]
    out = {f"backbone.{k}": v for k, v in res.items() if not k.startswith("fc.")}
    heads = [("classifier", 2048)] + ([("aux_classifier", 1024)] if aux else [])
    for head, c in heads:
        out[f"{head}.0.weight"] = [c // 4, c, 3, 3]
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            out[f"{head}.1.{leaf}"] = [c // 4]
        out[f"{head}.1.num_batches_tracked"] = []
        out[f"{head}.4.weight"] = [21, c // 4, 1, 1]
        out[f"{head}.4.bias"] = [21]
    return out


@pytest.mark.parametrize("aux", [True, False])
def test_torchvision_fcn_converter_covers_the_layout(aux):
    from jaxdl.weights.convert import check_tensors, model_tensors
    from jaxdl.weights.torchvision import convert_torchvision

    shapes = _torchvision_fcn_shapes(aux=True)  # the published file always has the aux head
    stats = ("running_mean", "running_var", "num_batches_tracked")
    trainable = sum(int(np.prod(v)) for k, v in shapes.items() if not k.endswith(stats))
    assert trainable == TORCHVISION["fcn_resnet50"]  # the layout has torchvision's num_params
    sd = {k: np.zeros(v, np.float32) for k, v in shapes.items()}
    model = abstract_model("fcn_resnet50", aux=aux)
    out = convert_torchvision("fcn", sd, model.config)
    check_tensors({k: v.shape for k, v in model_tensors(model).items()}, out)
    with pytest.raises(JaxdlError, match="torchvision has no FCN on VGG"):
        convert_torchvision("fcn", sd, abstract_model("fcn8s").config)
