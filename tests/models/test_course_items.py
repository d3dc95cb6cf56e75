"""The papers' own variants: AlexNet with local response normalisation and two towers
(Krizhevsky et al. 2012), LeNet-5 with Table I's sparse C3, trainable subsampling and RBF
output (LeCun et al. 1998), GoogLeNet's auxiliary heads pooled as torchvision pools them."""

import gzip
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.functional import count_params
from jaxdl.models import abstract_model, create_model
from jaxdl.models.lenet import C3_TABLE
from jaxdl.nn.conv import conv_params


def n_params(name, **kw):
    return count_params(nnx.state(abstract_model(name, **kw), nnx.Param))


# ---- AlexNet ------------------------------------------------------------------------------------


def test_alexnet_paper_count_from_the_layer_shapes():
    """Fig. 2 of the paper: conv2, conv4, conv5 see only their own tower's maps (groups=2),
    conv1, conv3 and the fc layers see both; 6x6x256 into fc6 at 227."""
    expected = (
        conv_params(11, 3, 96)
        + conv_params(5, 96, 256, groups=2)  # 5x5x48 per kernel
        + conv_params(3, 256, 384)
        + conv_params(3, 384, 384, groups=2)  # 3x3x192
        + conv_params(3, 384, 256, groups=2)
        + (6 * 6 * 256 + 1) * 4096
        + (4096 + 1) * 4096
        + (4096 + 1) * 1000
    )
    assert expected == 60_965_224  # the paper: "60 million parameters"
    assert n_params("alexnet_paper") == expected
    assert n_params("alexnet") == 62_378_344  # the default (single tower) is unchanged
    assert n_params("alexnet", towers=2) == expected  # LRN has no parameters


def test_alexnet_towers_are_independent_and_lrn_is_applied():
    cfg = dict(input_shape=(67, 67, 3), widths=(8, 16, 24, 24, 16), fc=(8, 8), num_classes=5)
    m = create_model("alexnet_paper", **cfg, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (1, 67, 67, 3)) * 50
    f1 = m.pool1(m.norm1(m.conv1(x)))
    # conv2's second tower (outputs 8..15) does not depend on the first tower's maps (0..3)
    jac = jax.jacobian(lambda f: m.conv2(f)[0, 2, 2, 8:].sum())(f1)
    assert float(jnp.abs(jac[..., :4]).max()) == 0.0 and float(jnp.abs(jac[..., 4:]).max()) > 0
    plain = create_model("alexnet", **cfg, towers=2, rngs=nnx.Rngs(0))
    assert m.norm1 is not None and plain.norm1 is None
    y, y0 = m(x), plain(x)
    assert y.shape == y0.shape == (1, 5) and not bool(jnp.allclose(y, y0))
    with pytest.raises(JaxdlError, match="towers must be 1 or 2"):
        create_model("alexnet", towers=3)


# ---- LeNet-5 ------------------------------------------------------------------------------------


def test_lenet_c3_table_is_the_papers():
    """Table I, read by rows (S2 map -> the C3 maps it feeds)."""
    rows = {i: [j for j, ins in enumerate(C3_TABLE) if i in ins] for i in range(6)}
    assert rows == {
        0: [0, 4, 5, 6, 9, 10, 11, 12, 14, 15],
        1: [0, 1, 5, 6, 7, 10, 11, 12, 13, 15],
        2: [0, 1, 2, 6, 7, 8, 11, 13, 14, 15],
        3: [1, 2, 3, 6, 7, 8, 9, 12, 14, 15],
        4: [2, 3, 4, 7, 8, 9, 10, 12, 13, 15],
        5: [3, 4, 5, 8, 9, 10, 11, 13, 14, 15],
    }
    assert sum(25 * len(ins) + 1 for ins in C3_TABLE) == 1_516


def test_lenet_paper_counts_per_layer():
    m = create_model("lenet5_paper", rngs=nnx.Rngs(0))
    count = lambda mod: count_params(nnx.state(mod, nnx.Param))
    per_layer = {
        "C1": count(m.c1),
        "S2": count(m.s2),
        "C3": count(m.c3),
        "S4": count(m.s4),
        "C5": count(m.head.hidden[0]),
        "F6": count(m.head.hidden[1]),
    }
    # section II.B: 156, 12, 1,516, 32, 48,120 and 10,164 trainable parameters
    assert per_layer == {
        "C1": 156, "S2": 12, "C3": 1_516, "S4": 32, "C5": 48_120, "F6": 10_164
    }  # fmt: skip
    assert count(m) == 60_000 and n_params("lenet5_paper", rbf_trainable=True) == 60_840
    assert m.head.rbf.centres[...].shape == (10, 84)
    assert set(np.unique(np.asarray(m.head.rbf.centres[...]))) == {-1.0, 1.0}
    assert n_params("lenet5") == 61_706  # the default is unchanged


def test_lenet_paper_layers_compute_the_papers_formulas():
    m = create_model("lenet5_paper", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 1))
    f = m.features(x)
    assert [f[k].shape for k in ("c1", "s2", "c3", "s4")] == [
        (2, 28, 28, 6), (2, 14, 14, 6), (2, 10, 10, 16), (2, 5, 5, 16)
    ]  # fmt: skip
    squash = lambda a: 1.7159 * np.tanh(2 * a / 3)
    # S2: squash(coef * sum of the 2x2 window + bias)
    c1 = np.asarray(f["c1"], np.float64)
    win = c1.reshape(2, 14, 2, 14, 2, 6).sum(axis=(2, 4))
    s2 = squash(win * np.asarray(m.s2.coef[...]) + np.asarray(m.s2.bias[...]))
    np.testing.assert_allclose(np.asarray(f["s2"]), s2, rtol=1e-4, atol=1e-5)
    # C3: map j is a valid 5x5 conv over only the S2 maps of Table I's column j
    k = np.asarray(m.c3.dense_kernel())
    for j, ins in enumerate(C3_TABLE):
        assert np.all(k[:, :, [i for i in range(6) if i not in ins], j] == 0)
        assert np.all(k[:, :, list(ins), j] != 0)
    s2v = np.asarray(f["s2"], np.float64)
    ref = np.zeros((2, 10, 10, 16))
    for r in range(10):
        for c in range(10):
            ref[:, r, c] = np.einsum("bhwi,hwio->bo", s2v[:, r : r + 5, c : c + 5], k)
    ref = squash(ref + np.asarray(m.c3.bias[...]))
    np.testing.assert_allclose(np.asarray(f["c3"]), ref, rtol=1e-4, atol=1e-5)
    # output: Euclidean RBF distances from F6's 84 outputs to each class centre
    h = np.asarray(f["s4"]).reshape(2, -1)
    for layer in m.head.hidden:
        h = squash(h @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...]))
    centres = np.asarray(m.head.rbf.centres[...])
    ref = ((h[:, None, :] - centres[None]) ** 2).sum(-1)
    y = m(x)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4)
    assert y.shape == (2, 10) and bool(jnp.all(y >= 0))
    # the fixed centres get no gradient (not an nnx.Param); everything else does
    g = nnx.grad(lambda m: m(x).min(axis=1).sum())(m)
    assert "centres" not in str(jax.tree_util.tree_structure(g))
    assert all(float(jnp.abs(v).max()) > 0 for v in jax.tree_util.tree_leaves(g))


def test_lenet_paper_bad_options():
    with pytest.raises(JaxdlError, match="Table I.*needs widths"):
        create_model("lenet5_paper", widths=(6, 12))
    with pytest.raises(JaxdlError, match="c3 must be 'full' or 'table'"):
        create_model("lenet5", c3="sparse")
    with pytest.raises(JaxdlError, match="output must be"):
        create_model("lenet5", output="softmax")


# ---- GoogLeNet auxiliary heads -----------------------------------------------------------------


def _recorded(key):
    path = Path(__file__).parents[1] / "fixtures" / "torch_state_dict_shapes.json.gz"
    return json.load(gzip.open(path, "rt"))[key]


def test_googlenet_adaptive_aux_pool_count_and_torchvision_layout():
    from jaxdl.weights.convert import check_tensors, model_tensors
    from jaxdl.weights.torchvision import convert_torchvision

    # torchvision googlenet with both aux heads (published, test_cnn_models)
    assert n_params("googlenet", aux_logits=True, aux_pool="adaptive") == 13_004_888
    shapes = _recorded("torchvision/googlenet")
    assert shapes["aux1.fc1.weight"] == [1024, 2048]  # 128 x 4 x 4, whatever the input size
    sd = {k: np.zeros(v, np.float32) for k, v in shapes.items()}
    for side, pool, fits in (
        (224, "adaptive", True),
        (320, "adaptive", True),
        (320, "paper", False),
    ):
        model = abstract_model(
            "googlenet", aux_logits=True, aux_pool=pool, input_shape=(side, side, 3)
        )
        out = convert_torchvision("inception", sd, model.config)
        expected = {k: v.shape for k, v in model_tensors(model).items()}
        if fits:
            check_tensors(expected, out)
        else:  # the paper's 5x5/3 pool leaves 6x6 at 320: fc1 would need 4,608 inputs
            with pytest.raises(JaxdlError, match="mis-shaped: aux/4a/head/hidden/0/kernel"):
                check_tensors(expected, out)
    with pytest.raises(JaxdlError, match="aux_pool='adaptive' is GoogLeNet"):
        create_model("inception_v3", aux_logits=True, aux_pool="adaptive")


def _torch_aux_forward(sd, p, x_nchw, eps=1e-3):
    """torchvision's InceptionAux.forward (eval), in numpy from the torch-layout tensors:
    adaptive_avg_pool2d(4, 4) -> BasicConv2d 1x1 (conv, BN, ReLU) -> flatten (c, h, w) -> fc1 ->
    ReLU -> dropout (off) -> fc2."""
    from jaxdl.nn.resample import adaptive_pool_matrix

    b, c, h, w = x_nchw.shape
    x = np.einsum(
        "bchw,ih,jw->bcij", x_nchw, adaptive_pool_matrix(h, 4), adaptive_pool_matrix(w, 4)
    )
    x = np.einsum("bchw,oc->bohw", x, sd[f"{p}.conv.conv.weight"][:, :, 0, 0])
    bn = lambda n: sd[f"{p}.conv.bn.{n}"][None, :, None, None]
    x = (x - bn("running_mean")) / np.sqrt(bn("running_var") + eps) * bn("weight") + bn("bias")
    x = np.maximum(x, 0).reshape(b, -1)
    x = np.maximum(x @ sd[f"{p}.fc1.weight"].T + sd[f"{p}.fc1.bias"], 0)
    return x @ sd[f"{p}.fc2.weight"].T + sd[f"{p}.fc2.bias"]


@pytest.mark.parametrize("side", [14, 20])  # the 4a grid at 224 and at 320
def test_googlenet_adaptive_aux_head_equals_torchvisions(side):
    from jaxdl.models.inception import InceptionConfig
    from jaxdl.nn.conv import BN
    from jaxdl.weights.convert import assign
    from jaxdl.weights.torchvision import convert_torchvision

    rng = np.random.default_rng(side)
    shapes = {k: v for k, v in _recorded("torchvision/googlenet").items() if k.startswith("aux1.")}
    sd = {k: rng.normal(0, 0.05, v).astype(np.float32) for k, v in shapes.items() if v}
    sd["aux1.conv.bn.running_var"] = rng.uniform(0.5, 2.0, 128).astype(np.float32)
    cfg = InceptionConfig(version="v1", aux_logits=True, aux_pool="adaptive")
    ours = {
        k.removeprefix("aux/4a/"): v
        for k, v in convert_torchvision("inception", sd, cfg).items()
        if k.startswith("aux/4a/")
    }
    from jaxdl.models.inception import AuxHead

    head = AuxHead(512, side, 1000, v3=False, ch=lambda n: n, bn=BN(), adaptive=True,
                   rngs=nnx.Rngs(0))  # fmt: skip
    assign(head, ours)
    x = rng.normal(0, 1, (2, side, side, 512)).astype(np.float32)
    ref = _torch_aux_forward(sd, "aux1", x.transpose(0, 3, 1, 2).astype(np.float64))
    got = np.asarray(head(jnp.asarray(x)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    paper = AuxHead(512, side, 1000, v3=False, ch=lambda n: n, bn=BN(), rngs=nnx.Rngs(0))
    if side == 14:  # same fc1 shape, other windows: the paper's pool does not give torch's
        assign(paper, ours)
        assert np.max(np.abs(np.asarray(paper(jnp.asarray(x))) - ref)) > 1e-3
