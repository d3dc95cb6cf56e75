"""FLOPs counting: XLA's count of the lowered program against 2 x the analytic MACs, for dense,
convolution (valid and same, strided) and attention; and the model summary's MACs against XLA."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxdl.bench import attention_macs, conv_macs, dense_macs, summarize, xla_flops
from jaxdl.bench.flops import lowered_flops

f32 = jnp.float32
S = jax.ShapeDtypeStruct


def test_dense_flops_are_two_per_mac():
    x, w = S((32, 256), f32), S((256, 512), f32)
    flops = xla_flops(lambda x, w: x @ w, x, w)
    assert flops == 2 * dense_macs((32,), 256, 512)


def _taps_in_bounds(size: int, k: int, stride: int, padding: str) -> int:
    """Sum over output positions of the kernel taps that land on the input (not on padding)."""
    out = -(-size // stride) if padding == "SAME" else (size - k) // stride + 1
    lo = max((out - 1) * stride + k - size, 0) // 2 if padding == "SAME" else 0
    return sum(1 for o in range(out) for j in range(k) if 0 <= o * stride - lo + j < size)


@pytest.mark.parametrize("padding,stride", [("VALID", 1), ("SAME", 1), ("SAME", 2), ("VALID", 2)])
def test_conv_flops_match_analytic(padding, stride):
    x, k = S((2, 32, 32, 16), f32), S((3, 3, 16, 24), f32)

    def conv(x, k):
        return jax.lax.conv_general_dilated(
            x, k, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    out = jax.eval_shape(conv, x, k)
    side = 32 // stride if padding == "SAME" else (32 - 3) // stride + 1
    assert out.shape == (2, side, side, 24)
    analytic = 2 * conv_macs(
        out.shape, k.shape
    )  # every tap, padding included (fvcore, torchvision)
    flops = xla_flops(conv, x, k)
    # XLA counts only the taps that land on the input: equal for VALID, fewer for SAME
    exact = 2 * 2 * 24 * 16 * _taps_in_bounds(32, 3, stride, padding) ** 2
    assert flops == exact
    if padding == "VALID":
        assert flops == analytic
    else:
        assert 0.9 * analytic < flops < analytic


def test_grouped_conv_flops():
    x, k = S((2, 16, 16, 32), f32), S((3, 3, 8, 32), f32)  # 4 groups of 8 channels

    def conv(x, k):
        return jax.lax.conv_general_dilated(
            x, k, (1, 1), "SAME", feature_group_count=4, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    assert xla_flops(conv, x, k) == 2 * 2 * 32 * 8 * _taps_in_bounds(16, 3, 1, "SAME") ** 2


def test_attention_flops_match_analytic():
    b, t, h, d = 2, 128, 4, 64
    q = S((b, t, h, d), f32)
    flops = xla_flops(
        lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True), q, q, q
    )
    analytic = 2 * attention_macs(b, h, t, t, d)
    # the causal mask is applied, not skipped, so the full T x T is counted; scaling, masking and
    # the softmax (max, subtract, exp, sum, divide) add under 8 FLOPs per score to the 4 d of the
    # two products (3% at d = 64)
    extra = flops - analytic
    assert 0 < extra < 8 * b * h * t * t


class _Net(nnx.Module):
    def __init__(self, padding, rngs):
        self.conv1 = nnx.Conv(3, 8, (3, 3), padding=padding, rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, (3, 3), strides=2, padding=padding, rngs=rngs)
        self.dense = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x, *, train=False, rngs=None):
        h = jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))
        return self.dense(h.mean(axis=(1, 2)))


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_summary_macs_agree_with_xla(padding):
    model = _Net(padding, nnx.Rngs(0))
    x = S((4, 20, 20, 3), f32)
    macs = summarize(model, x).macs
    graphdef, state = nnx.split(model)
    flops = xla_flops(lambda s, x: nnx.merge(graphdef, s)(x), state, x)
    # VALID: element-wise work (bias, relu, mean) adds under 5%; SAME: XLA skips the taps on
    # the padding that the analytic convention counts (about 10% of them on a 20x20 input)
    assert 0.85 * 2 * macs <= flops <= 1.05 * 2 * macs
    if padding == "VALID":
        assert flops >= 2 * macs


def test_lowered_flops_is_xla_flops():
    x, w = S((8, 16), f32), S((16, 4), f32)
    f = lambda x, w: jnp.tanh(x @ w)
    assert lowered_flops(jax.jit(f).lower(x, w)) == xla_flops(f, x, w)


def test_palm_columns_count_6n_plus_12ldt_without_the_position_table():
    """gpt2 (12 layers, d 768, context 1024, learned positions): N excludes 1024 x 768 position
    weights; the PaLM figures are the row's XLA-count figures scaled by PaLM / XLA FLOPs."""
    from jaxdl.bench.mfu import palm_columns

    n, t, batch = 124_439_808, 1024, 8
    palm_flops = batch * t * (6 * (n - 1024 * 768) + 12 * 12 * 768 * t)
    row = {
        "input_shape": t,
        "params_trainable": n,
        "batch": batch,
        "gflops_step_xla": palm_flops / 2e9,  # XLA counted half: the PaLM figures double
        "tflops": 100.0,
        "mfu_measured": 0.25,
        "mfu_spec": None,
    }
    got = palm_columns("gpt2", {})(row)
    assert got["palm_gflops_step"] == pytest.approx(palm_flops / 1e9)
    assert got["palm_tflops"] == pytest.approx(200.0)
    assert got["palm_mfu_measured"] == pytest.approx(0.5) and got["palm_mfu_spec"] is None
    rotary = palm_columns("gpt2", {"positions": "rotary"})(row)  # no position table to leave out
    assert rotary["palm_gflops_step"] == pytest.approx(
        batch * t * (6 * n + 12 * 12 * 768 * t) / 1e9
    )
