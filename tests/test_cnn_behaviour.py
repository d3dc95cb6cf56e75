"""Behaviour of every CNN family on a tiny config: finite outputs, a finite non-zero gradient
for every parameter, BatchNorm statistics used in eval and updated in training, dropout /
stochastic depth only in training and deterministic per key, and one SGD step lowering the loss
on a repeated batch. One jitted train function and one jitted eval function per family."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl.functional import named_leaves, pure
from jaxdl.models import create_model
from jaxdl.models.inception import aux_loss

# (name, overrides, input side): reduced widths / depths where the family allows.
TINY = [
    ("lenet5", {"input_shape": (28, 28, 1), "dropout": 0.3}, 28),
    ("alexnet", {"input_shape": (67, 67, 3), "widths": (8, 8, 8, 8, 8), "fc": (16, 16)}, 67),
    (
        "vgg11_bn",
        {"input_shape": (32, 32, 3), "stages": ((8,), (8,), (8, 8), (8,), (8,)), "fc": (16, 16)},
        32,
    ),
    (
        "resnet18",
        {"input_shape": (32, 32, 3), "layers": (1, 1), "widths": (8, 16), "stem_width": 8},
        32,
    ),
    (
        "resnext50_32x4d",
        {
            "input_shape": (32, 32, 3),
            "layers": (1, 1),
            "widths": (8, 16),
            "stem_width": 8,
            "groups": 2,
            "width_per_group": 32,
            "se_reduction": 4,
        },
        32,
    ),
    (
        "densenet121",
        {
            "input_shape": (32, 32, 3),
            "growth": 4,
            "blocks": (2, 2),
            "stem_width": 8,
            "dropout": 0.2,
        },
        32,
    ),
    ("mobilenet_v1", {"input_shape": (32, 32, 3), "width_mult": 0.125, "dropout": 0.2}, 32),
    ("mobilenet_v2", {"input_shape": (32, 32, 3), "width_mult": 0.25}, 32),
    ("mobilenet_v3_small", {"input_shape": (32, 32, 3), "width_mult": 0.25}, 32),
    (
        "efficientnet_b0",
        {"input_shape": (32, 32, 3), "width_mult": 0.25, "depth_mult": 0.3, "drop_path": 0.5},
        32,
    ),
    ("googlenet", {"input_shape": (80, 80, 3), "width_mult": 0.125, "aux_logits": True}, 80),
    ("inception_v3", {"input_shape": (75, 75, 3), "width_mult": 0.0625}, 75),
    (
        "inception_resnet_v2",
        {"input_shape": (75, 75, 3), "width_mult": 0.0625, "repeats": (1, 1, 2)},
        75,
    ),
    ("xception", {"input_shape": (71, 71, 3), "width_mult": 0.0625, "middle_blocks": 1}, 71),
    (
        "unet",
        {
            "input_shape": (16, 16, 2),
            "width": 4,
            "depth": 2,
            "padding": "same",
            "batch_norm": True,
            "num_classes": 3,
        },
        16,
    ),
]


def _loss(out, y):
    if isinstance(out, tuple):  # auxiliary heads in training
        return aux_loss(out, y, 0.3)
    if out.ndim == 4:  # per-pixel classes (U-Net)
        y = jnp.broadcast_to(y[:, None, None], out.shape[:3])
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()


# the costliest compiles (minutes on a loaded 2-core machine): CI runs them, -m "not slow" skips
SLOW = {"inception_v3", "efficientnet_b0", "googlenet"}
PARAMS = [pytest.param(*t, id=t[0], marks=[pytest.mark.slow] if t[0] in SLOW else []) for t in TINY]


@pytest.mark.parametrize("name,overrides,side", PARAMS)
def test_family_behaviour(name, overrides, side):
    model = create_model(name, rngs=nnx.Rngs(0), **overrides)
    apply, params, state = pure(model)
    channels = overrides["input_shape"][2]
    x = jax.random.normal(jax.random.key(1), (4, side, side, channels))
    y = jnp.arange(4) % 3

    @jax.jit
    def train_fn(params, state, key):
        def loss_fn(p):
            out, new_state = apply(p, state, x, train=True, key=key)
            return _loss(out, y), (out, new_state)

        (loss, (out, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return loss, grads, out, new_state

    eval_fn = jax.jit(lambda p, s: apply(p, s, x, train=False))

    y_eval, state_after_eval = eval_fn(params, state)
    y_eval2, _ = eval_fn(params, state)
    assert np.isfinite(np.asarray(y_eval)).all()
    np.testing.assert_array_equal(np.asarray(y_eval), np.asarray(y_eval2))
    k1, k2 = jax.random.key(2), jax.random.key(3)
    loss0, grads, out1, new_state = train_fn(params, state, k1)
    assert np.isfinite(float(loss0))
    for path, g in named_leaves(grads).items():
        g = np.asarray(g)
        assert np.isfinite(g).all(), f"{name}: non-finite gradient for {path}"
        assert np.abs(g).max() > 0, f"{name}: zero gradient for {path}"

    stats_before = named_leaves(nnx.filter_state(state, nnx.BatchStat))
    if stats_before:  # BN: training updates the running statistics, evaluation does not
        after_train = named_leaves(nnx.filter_state(new_state, nnx.BatchStat))
        after_eval = named_leaves(nnx.filter_state(state_after_eval, nnx.BatchStat))
        assert any(not np.allclose(stats_before[k], after_train[k]) for k in stats_before)
        assert all(np.array_equal(stats_before[k], after_eval[k]) for k in stats_before)
        main = out1[0] if isinstance(out1, tuple) else out1
        assert not np.allclose(np.asarray(main), np.asarray(y_eval))  # batch vs running stats

    cfg = model.config
    stochastic = getattr(cfg, "dropout", 0) > 0 or getattr(cfg, "drop_path", 0) > 0
    if stochastic:  # same key, same bits; another key, other bits
        _, _, out_same, _ = train_fn(params, state, k1)
        _, _, out_other, _ = train_fn(params, state, k2)
        first = lambda o: np.asarray(o[0] if isinstance(o, tuple) else o)
        np.testing.assert_array_equal(first(out1), first(out_same))
        assert not np.allclose(first(out1), first(out_other))

    # one gradient step lowers the loss on the same batch (same key: same dropout masks); the
    # step has a fixed length; short ones for BN over tiny batches and 1x1 maps (high curvature)
    norm = optax.global_norm(grads)
    losses = []
    for lr in (1e-2, 1e-3, 1e-4, 1e-5):
        stepped = jax.tree.map(lambda p, g, lr=lr: p - lr * g / norm, params, grads)
        losses.append(float(train_fn(stepped, state, k1)[0]))
    assert min(losses) < float(loss0), (losses, float(loss0))


def test_googlenet_aux_heads_only_in_training():
    name, overrides, side = TINY[10]
    model = create_model(name, rngs=nnx.Rngs(0), **overrides)
    x = jnp.zeros((2, side, side, 3))
    out_eval = jax.eval_shape(lambda m: m(x, train=False), model)
    out_train = jax.eval_shape(lambda m: m(x, train=True, rngs=nnx.Rngs(0)), model)
    assert out_eval.shape == (2, 1000)
    assert isinstance(out_train, tuple) and [o.shape for o in out_train] == [(2, 1000)] * 3
