"""The model contract for layers: every layer class jaxdl.nn exports takes `train` and `rngs`
keyword arguments, so `Chain` composes any of them. Each one is chained after an identity-shaped
layer, called in inference and in training (with random streams), and must give the output of
calling it directly."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxdl.nn as jnn
from jaxdl.errors import JaxdlError
from jaxdl.models.compose import Chain
from jaxdl.nn.conv import BN
from jaxdl.nn.transformer import LayerConfig

R = lambda: nnx.Rngs(0)  # noqa: E731
IMG = (2, 8, 8, 4)
SEQ = (2, 5, 4)
IDS = (2, 5)
CFG = LayerConfig(8, 2)

# name -> (factory, input shape, input dtype)
LAYERS = {
    "Dense": (lambda: jnn.Dense(4, 3, activation="relu", rngs=R()), (2, 4), jnp.float32),
    "LayerNorm": (lambda: jnn.LayerNorm(4, rngs=R()), IMG, jnp.float32),
    "GroupNorm": (lambda: jnn.GroupNorm(4, 2, rngs=R()), IMG, jnp.float32),
    "InstanceNorm": (lambda: jnn.InstanceNorm(4, rngs=R()), IMG, jnp.float32),
    "LocalResponseNorm": (lambda: jnn.LocalResponseNorm(3), IMG, jnp.float32),
    "AdaptiveAvgPool": (lambda: jnn.AdaptiveAvgPool(3), IMG, jnp.float32),
    "Maxout": (lambda: jnn.Maxout(4, 3, rngs=R()), (2, 4), jnp.float32),
    "Linear": (lambda: jnn.Linear(4, 3, rngs=R()), (2, 4), jnp.float32),
    "ActivityRegularization": (lambda: jnn.ActivityRegularization(0.1, 0.1), (2, 4), jnp.float32),
    "AvgPool": (lambda: jnn.AvgPool(2), IMG, jnp.float32),
    "MaxPool": (lambda: jnn.MaxPool(2), IMG, jnp.float32),
    "Flatten": (lambda: jnn.Flatten(), IMG, jnp.float32),
    "ConvBN": (lambda: jnn.ConvBN(4, 6, 3, rngs=R()), IMG, jnp.float32),
    "SeparableConv": (lambda: jnn.SeparableConv(4, 6, rngs=R()), IMG, jnp.float32),
    "BasicBlock": (lambda: jnn.BasicBlock(4, 4, bn=BN(), rngs=R()), IMG, jnp.float32),
    "Bottleneck": (lambda: jnn.Bottleneck(4, 2, bn=BN(), rngs=R()), IMG, jnp.float32),
    "DenseBlock": (lambda: jnn.DenseBlock(4, 2, 2, 2, bn=BN(), dropout=0.5, rngs=R()), IMG, None),
    "DenseLayer": (lambda: jnn.DenseLayer(4, 2, 2, bn=BN(), dropout=0.5, rngs=R()), IMG, None),
    "DoubleConv": (lambda: jnn.DoubleConv(4, 4, padding="same", bn=BN(), rngs=R()), IMG, None),
    "DropPath": (lambda: jnn.DropPath(0.5), IMG, jnp.float32),
    "Head": (lambda: jnn.Head(4, 3, dropout=0.5, rngs=R()), IMG, jnp.float32),
    "InvertedResidual": (lambda: jnn.InvertedResidual(4, 8, 4, bn=BN(), rngs=R()), IMG, None),
    "SqueezeExcite": (lambda: jnn.SqueezeExcite(4, 2, rngs=R()), IMG, jnp.float32),
    "Transition": (lambda: jnn.Transition(4, 2, bn=BN(), rngs=R()), IMG, jnp.float32),
    "Branches": (
        lambda: jnn.Branches([[jnn.ConvBN(4, 2, 1, rngs=R())], [jnn.MaxPool(3, 1, "same")]]),
        IMG,
        jnp.float32,
    ),
    "InceptionE": (lambda: jnn.InceptionE(4, ch=lambda c: 2, bn=BN(), rngs=R()), IMG, None),
    "ResidualInception": (
        lambda: jnn.ResidualInception(
            jnn.Branches([[jnn.ConvBN(4, 2, 1, rngs=R())]]), 2, 4, 0.2, rngs=R()
        ),
        IMG,
        jnp.float32,
    ),
    "GRU": (lambda: jnn.GRU(4, 3, rngs=R()), SEQ, jnp.float32),
    "LSTM": (lambda: jnn.LSTM(4, 3, return_sequences=True, rngs=R()), SEQ, jnp.float32),
    "SimpleRNN": (lambda: jnn.SimpleRNN(4, 3, rngs=R()), SEQ, jnp.float32),
    "RNN": (lambda: jnn.RNN(jnn.LSTMCell(4, 3, rngs=R())), SEQ, jnp.float32),
    "Bidirectional": (
        lambda: jnn.Bidirectional(
            jnn.GRU(4, 3, rngs=R()), jnn.GRU(4, 3, go_backwards=True, rngs=nnx.Rngs(1))
        ),
        SEQ,
        jnp.float32,
    ),
    "RecurrentStack": (
        lambda: jnn.RecurrentStack("lstm", 4, (3, 3), dropout=0.5, rngs=R()),
        SEQ,
        jnp.float32,
    ),
    "TimeDistributed": (lambda: jnn.TimeDistributed(jnn.Linear(4, 3, rngs=R())), SEQ, None),
    "Embedding": (lambda: jnn.Embedding(10, 4, rngs=R()), IDS, jnp.int32),
    "LearnedPositions": (lambda: jnn.LearnedPositions(8, 4, rngs=R()), SEQ, jnp.float32),
    "MultiHeadAttention": (lambda: jnn.MultiHeadAttention(2, 4, rngs=R()), SEQ, jnp.float32),
    "FeedForward": (lambda: jnn.FeedForward(CFG, rngs=R()), (2, 5, 8), jnp.float32),
    "TransformerLayer": (lambda: jnn.TransformerLayer(CFG, rngs=R()), (2, 5, 8), jnp.float32),
    "TransformerStack": (lambda: jnn.TransformerStack(CFG, 2, rngs=R()), (2, 5, 8), jnp.float32),
}
# Not layers of a chain: recurrent cells are steps `cell.step(state, x)` run by RNN; ConvNet is
# the base class of the CNN models (the registry battery covers every model); UpBlock takes the
# skip connection as a second input.
NOT_CHAINABLE = {"RecurrentCell", "SimpleRNNCell", "LSTMCell", "GRUCell", "ConvNet", "UpBlock"}


def exported_layer_classes():
    return sorted(
        name
        for name in jnn.__all__
        if inspect.isclass(getattr(jnn, name)) and issubclass(getattr(jnn, name), nnx.Module)
    )


def test_every_exported_layer_is_covered():
    assert set(exported_layer_classes()) == set(LAYERS) | NOT_CHAINABLE


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_chain_composes_the_layer(name):
    factory, shape, dtype = LAYERS[name]
    dtype = dtype or jnp.float32
    if dtype == jnp.int32:
        x = jax.random.randint(jax.random.key(0), shape, 1, 10)
        chain = Chain(layer=factory())
    else:
        x = jax.random.normal(jax.random.key(0), shape)
        # after a layer that passes x through (and records an activity penalty)
        chain = Chain(pre=jnn.ActivityRegularization(), layer=factory())
    direct = factory()
    for train in (False, True):
        got = chain(x, train=train, rngs=nnx.Rngs(5))
        want = direct(x, train=train, rngs=nnx.Rngs(5))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=f"{name} train={train}")


def test_chain_rejects_a_plain_flax_layer():
    with pytest.raises(JaxdlError, match=r"plain Flax layer \(Linear\).*jaxdl.nn.Linear"):
        Chain(head=nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
