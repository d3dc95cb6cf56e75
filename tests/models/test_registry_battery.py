"""One test battery over the model registry: every `list_models()` name, checked from its entry.

Each registration carries its task kind (what the model outputs, `jaxdl.models.registry.TASKS`)
and `test_overrides` that make a tiny instance. For every registered name:

- the output at the registered size matches the task's output spec
  (`jaxdl.models.inputs.task_output_spec`), traced abstractly (`nnx.eval_shape`), and the
  trainable parameter count equals the published one where one is pinned (tests/_pinned.py);
- on the tiny instance: every parameter gets a finite, non-zero gradient of the task's loss;
  initialisation and the forward pass are deterministic (same key, same bits); the jitted
  forward equals the eager one; one gradient step lowers the loss on a repeated batch; and the
  parameters and state survive a safetensors round trip bit for bit.

A model registered without a task or test overrides fails `test_every_entry_has_a_spec`. Variants
whose tiny configs coincide (vgg11..vgg19 at tiny widths, ...) share one numerical check.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _pinned import PINNED
from flax import nnx

from jaxdl.functional import count_params, named_leaves, output_spec
from jaxdl.models import abstract_model, create_model, get_config, get_entry, list_models
from jaxdl.models.inputs import example_input, task_output_spec
from jaxdl.models.registry import TASKS, register, unregister
from jaxdl.models.vae import kl_divergence
from jaxdl.weights.io import read_safetensors, write_safetensors

NAMES = list_models()
BATCH = 4


def missing_spec(name: str) -> list[str]:
    """What the registry entry of `name` lacks for this battery (empty when complete)."""
    entry = get_entry(name)
    problems = []
    if entry.task not in TASKS:
        problems.append(f"{name}: task must be one of {TASKS}, got {entry.task!r}")
    if entry.test_overrides is None:
        problems.append(f"{name}: no test_overrides (a tiny instance for the test battery)")
    return problems


def test_every_entry_has_a_spec():
    problems = [p for n in NAMES for p in missing_spec(n)]
    assert not problems, "\n".join(problems)


def test_an_entry_without_a_spec_fails_the_battery():
    entry = get_entry("mlp")
    register("_battery_probe", entry.builder, entry.config, family="mlp")
    try:
        assert "_battery_probe" in list_models()
        problems = missing_spec("_battery_probe")
        assert len(problems) == 2 and "task" in problems[0] and "test_overrides" in problems[1]
    finally:
        unregister("_battery_probe")
    assert "_battery_probe" not in list_models()


def test_pinned_counts_name_registered_models():
    assert set(PINNED) <= set(NAMES)


# --- at the registered size, abstractly

# the deepest abstract traces (tens of seconds on a loaded 2-core machine)
SLOW_ABSTRACT = {"densenet264", "efficientnet_b7", "resnet152", "inception_resnet_v2", "vit_l16"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_ABSTRACT else []) for n in NAMES],
)
def test_registered_size_output_spec_and_count(name):
    entry = get_entry(name)
    model = abstract_model(name)
    x = example_input(model.config, 2)
    got = output_spec(model, x)
    want = task_output_spec(entry.task, model.config, 2)
    assert jax.tree.map(lambda s: (s.shape, s.dtype), got) == jax.tree.map(
        lambda s: (s.shape, s.dtype), want
    ), name
    if name in PINNED:
        assert count_params(nnx.state(model, nnx.Param)) == PINNED[name]


# --- the tiny instance, numerically


def _tiny_groups() -> list[list[str]]:
    """Names grouped by (builder, tiny config): one numerical check per group."""
    groups: dict = {}
    for n in NAMES:
        entry = get_entry(n)
        key = (entry.builder, get_config(n, **(entry.test_overrides or {})))
        groups.setdefault(key, []).append(n)
    return list(groups.values())


GROUPS = _tiny_groups()
# the costliest compiles: CI runs them, -m "not slow" skips them
SLOW_TINY = {"inception_v3", "efficientnet_b0", "googlenet", "inception_resnet_v2", "xception"}


def tiny(name, seed=0):
    return create_model(name, rngs=nnx.Rngs(seed), **get_entry(name).test_overrides)


def batch_for(task, config, key):
    """(x, labels) of BATCH examples for the task; labels None where the input is the target."""
    kx, ky = jax.random.split(key)
    x_spec = example_input(config, BATCH)
    if jnp.issubdtype(x_spec.dtype, jnp.integer):
        vocab = getattr(config, "vocab_size", None) or config.src_vocab
        x = jax.random.randint(kx, x_spec.shape, 1, vocab)
    elif task in ("reconstruct", "vae"):
        x = jax.random.uniform(kx, x_spec.shape)
    else:
        x = jax.random.normal(kx, x_spec.shape)
    out = task_output_spec(task, config, BATCH)
    if task in ("reconstruct", "vae", "gan"):
        return x, None
    if task == "seq2seq":  # the next target token after each decoder input
        return x, x[:, -out.shape[1] :]
    if task == "perceptron":
        return x, (x[:, :1] > 0).astype(jnp.float32)
    if task == "classify" and out.shape[-1] == 1:  # one sigmoid output (mlp_xor)
        return x, (x[:, :1] > 0).astype(jnp.float32)
    return x, jax.random.randint(ky, out.shape[:-1], 0, out.shape[-1])


def ce(logits, y):
    if logits.shape[-1] == 1:
        return optax.sigmoid_binary_cross_entropy(logits, y).mean()
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def task_loss(task, out, x, y):
    if task == "vae":
        rec = optax.sigmoid_binary_cross_entropy(out["logits"], x).reshape(len(x), -1).sum(-1)
        return (rec + kl_divergence(out["mean"], out["logvar"])).mean()
    if task == "reconstruct":
        return optax.sigmoid_binary_cross_entropy(out, x).mean()
    if task == "gan":  # the discriminator's and the generator's losses, both through the pair
        real, fake = out
        return (jax.nn.softplus(-real) + jax.nn.softplus(fake) + jax.nn.softplus(-fake)).mean()
    if isinstance(out, tuple):  # auxiliary heads in training (GoogLeNet)
        return ce(out[0], y) + 0.3 * sum(ce(o, y) for o in out[1:])
    return ce(out, y)


def forward(task, graphdef, params, state, x, *, train, key):
    """The model's output (for 'gan': D on real images and on G's images) and its new state."""
    model = nnx.merge(graphdef, params, state, copy=True)
    rngs = nnx.Rngs(key) if key is not None else None
    if task == "gan":
        z = jax.random.normal(jax.random.key(7), (len(x), model.config.latent_dim))
        fake = model.generator(z, train=train, rngs=rngs)
        out = (model(x, train=train, rngs=rngs), model.discriminator(fake, train=train, rngs=rngs))
    else:
        out = model(x, train=train, rngs=rngs)
    return out, nnx.state(model, nnx.Not(nnx.Param))


def bits(tree):
    return [np.asarray(v) for v in jax.tree.leaves(tree)]


def assert_same_bits(a, b, what):
    for u, v in zip(bits(a), bits(b), strict=True):
        assert u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes(), what


def check_perceptron(name):
    """Gradient-free: the delta rule is its training step. AND is linearly separable, so the
    rule reaches zero errors in finitely many epochs (the perceptron convergence theorem); one
    epoch alone may make more errors than the start (zero weights get 3 of the 4 right)."""
    from jaxdl.models.mlp import delta_rule_epoch

    model = tiny(name)
    x = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    d = jnp.array([[0.0], [0.0], [0.0], [1.0]])
    w, b = model.w[...], model.b[...]
    errors = lambda w, b: int(jnp.sum(jnp.heaviside(x @ w + b, 0.0) != d))
    history = [errors(w, b)]
    for _ in range(20):
        w, b, _ = delta_rule_epoch(w, b, x, d, 0.5)
        history.append(errors(w, b))
        if history[-1] == 0:
            break
    assert history[0] > 0 and history[-1] == 0, history


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(g, id="+".join(g), marks=[pytest.mark.slow] if set(g) & SLOW_TINY else [])
        for g in GROUPS
    ],
)
def test_tiny_instance_behaviour(names, tmp_path):
    name = names[0]
    task = get_entry(name).task
    if task == "perceptron":
        check_perceptron(name)
    model = tiny(name)
    # determinism of initialisation: same key, same bits
    assert_same_bits(nnx.state(model), nnx.state(tiny(name)), f"{name}: init is not deterministic")
    graphdef, params, state = nnx.split(model, nnx.Param, ...)
    x, y = batch_for(task, model.config, jax.random.key(1))

    @jax.jit
    def eval_fn(params, state, x):
        return forward(task, graphdef, params, state, x, train=False, key=None)[0]

    y_jit = eval_fn(params, state, x)
    y_eager = forward(task, graphdef, params, state, x, train=False, key=None)[0]
    for a, b in zip(jax.tree.leaves(y_jit), jax.tree.leaves(y_eager), strict=True):
        assert np.isfinite(np.asarray(a)).all(), f"{name}: non-finite output"
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"{name}: jit != eager")
    assert_same_bits(y_jit, eval_fn(params, state, x), f"{name}: evaluation is not deterministic")
    if task == "perceptron":
        return

    @jax.jit
    def train_fn(params, state, key):
        def loss_fn(p):
            out, new_state = forward(task, graphdef, p, state, x, train=True, key=key)
            return task_loss(task, out, x, y), out

        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    k1 = jax.random.key(2)
    (loss0, out1), grads = train_fn(params, state, k1)
    assert np.isfinite(float(loss0)), name
    for path, g in named_leaves(grads).items():
        g = np.asarray(g)
        assert np.isfinite(g).all(), f"{name}: non-finite gradient for {path}"
        assert np.abs(g).max() > 0, f"{name}: zero gradient for {path}"
    (_, out_same), _ = train_fn(params, state, k1)
    assert_same_bits(out1, out_same, f"{name}: training forward differs for the same key")

    # one gradient step lowers the loss on the same batch (same key: same dropout masks); the
    # step has a fixed length; short ones for BN over tiny batches and 1x1 maps (high curvature)
    norm = optax.tree.norm(grads)
    losses = []
    for lr in (1e-2, 1e-3, 1e-4, 1e-5):
        stepped = jax.tree.map(lambda p, g, lr=lr: p - lr * g / norm, params, grads)
        losses.append(float(train_fn(stepped, state, k1)[0][0]))
    assert min(losses) < float(loss0), (name, losses, float(loss0))

    # checkpoint round trip: parameters and state to safetensors and back, bit for bit
    tensors = named_leaves(nnx.state(model, nnx.Not(nnx.RngState)))
    write_safetensors(tmp_path / "w.safetensors", {k: np.asarray(v) for k, v in tensors.items()})
    read, _ = read_safetensors(tmp_path / "w.safetensors")
    assert sorted(read) == sorted(tensors)
    fresh = tiny(name, seed=5)
    target = nnx.state(fresh, nnx.Not(nnx.RngState))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
    restored = [read[p] for p in named_leaves(target)]
    assert len(restored) == len(leaves)
    nnx.update(fresh, jax.tree_util.tree_unflatten(treedef, [jnp.asarray(v) for v in restored]))
    assert_same_bits(nnx.state(fresh, nnx.Param), params, f"{name}: round trip changed params")
    _, params2, state2 = nnx.split(fresh, nnx.Param, ...)
    assert_same_bits(eval_fn(params2, state2, x), y_jit, f"{name}: round trip changed outputs")


def test_tiny_configs_really_are_tiny():
    """The battery's cost is bounded: every tiny instance has under 300k parameters."""
    for name in NAMES:
        m = nnx.eval_shape(lambda name=name: tiny(name))
        n = count_params(nnx.state(m, nnx.Param))
        assert n < 300_000, (name, n)


def test_abstract_build_falls_back_only_for_kept_streams():
    """abstract builds use counting streams; a model that keeps its streams (nnx.Dropout(rngs=))
    is rebuilt with a real nnx.Rngs, and every other build error surfaces as it is."""
    from jaxdl.models.registry import abstract_from_config

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        n: int = 3

    class Keeps(nnx.Module):
        def __init__(self, c, *, rngs):
            self.fc = nnx.Linear(c.n, 2, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

    class Broken(nnx.Module):
        def __init__(self, c, *, rngs):
            self.fc = nnx.Linear(c.n, 2, rngs=rngs, no_such_option=1)

    assert abstract_from_config(Keeps, Cfg()).fc.kernel.shape == (3, 2)
    with pytest.raises(TypeError, match="no_such_option"):
        abstract_from_config(Broken, Cfg())
