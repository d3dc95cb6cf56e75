"""What CNN families do beyond the registry battery (tests/models/test_registry_battery.py,
which checks every model's outputs, gradients, determinism and one training step): BatchNorm
statistics used in evaluation and updated in training, dropout / stochastic depth only in
training and another key giving other bits, and GoogLeNet's auxiliary heads only in training.
Tiny instances come from each entry's `test_overrides`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.functional import named_leaves, pure
from jaxdl.models import create_model, get_entry
from jaxdl.models.inputs import example_input


def tiny(name):
    return create_model(name, rngs=nnx.Rngs(0), **get_entry(name).test_overrides)


# one family per kind of normalisation / stochastic layer
BN_MODELS = ["resnet18", "vgg11_bn", "mobilenet_v2", "densenet121"]
STOCHASTIC = ["lenet5", "densenet121", "mobilenet_v1"]  # dropout (densenet: per layer)


@pytest.mark.parametrize("name", BN_MODELS)
def test_batchnorm_statistics_train_vs_eval(name):
    model = tiny(name)
    apply, params, state = pure(model)
    x = jax.random.normal(jax.random.key(1), example_input(model.config, 4).shape)
    fn = jax.jit(apply, static_argnames="train")
    y_eval, after_eval = fn(params, state, x, train=False)
    y_train, after_train = fn(params, state, x, train=True, key=jax.random.key(2))
    before = named_leaves(nnx.filter_state(state, nnx.BatchStat))
    assert before, f"{name} has no BatchNorm statistics"
    trained = named_leaves(nnx.filter_state(after_train, nnx.BatchStat))
    evaluated = named_leaves(nnx.filter_state(after_eval, nnx.BatchStat))
    assert any(not np.allclose(before[k], trained[k]) for k in before)
    assert all(np.array_equal(before[k], evaluated[k]) for k in before)
    assert not np.allclose(np.asarray(y_train), np.asarray(y_eval))  # batch vs running stats


@pytest.mark.parametrize("name", STOCHASTIC)
def test_dropout_only_in_training_and_keyed(name):
    model = tiny(name)
    apply, params, state = pure(model)
    x = jax.random.normal(jax.random.key(1), example_input(model.config, 4).shape)
    fn = jax.jit(apply, static_argnames="train")
    a = fn(params, state, x, train=True, key=jax.random.key(2))[0]
    b = fn(params, state, x, train=True, key=jax.random.key(3))[0]
    assert not np.allclose(np.asarray(a), np.asarray(b))
    e1 = fn(params, state, x, train=False, key=jax.random.key(2))[0]
    e2 = fn(params, state, x, train=False, key=jax.random.key(3))[0]
    np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))


def test_googlenet_aux_heads_only_in_training():
    model = tiny("googlenet")
    assert model.config.aux_logits
    x = jnp.zeros((2, *model.config.input_shape))
    out_eval = jax.eval_shape(lambda m: m(x, train=False), model)
    out_train = jax.eval_shape(lambda m: m(x, train=True, rngs=nnx.Rngs(0)), model)
    classes = model.config.num_classes
    assert out_eval.shape == (2, classes)
    assert isinstance(out_train, tuple)
    assert [o.shape for o in out_train] == [(2, classes)] * 3
