"""Layers and blocks: composable NNX modules, each with a pure view through jaxdl.functional."""

from jaxdl.nn.activations import ACTIVATIONS, Maxout, get_activation, hard_sigmoid, hard_swish, heaviside
from jaxdl.nn.init import INITIALIZERS, get_initializer
from jaxdl.nn.regularization import ActivityRegularization
from jaxdl.nn.sampling import sample_logits
from jaxdl.nn.shapes import check_input

__all__ = [
    "ACTIVATIONS", "Maxout", "get_activation", "hard_sigmoid", "hard_swish", "heaviside",
    "INITIALIZERS", "get_initializer", "ActivityRegularization", "check_input", "sample_logits",
]
from jaxdl.nn.recurrent import (  # noqa: E402
    CELLS, GRU, LSTM, RNN, Bidirectional, Embedding, GRUCell, LSTMCell, RecurrentCell, RecurrentStack,
    SimpleRNN, SimpleRNNCell, TimeDistributed, get_cell, get_layer, padding_mask,
)

__all__ += [
    "CELLS", "GRU", "LSTM", "RNN", "Bidirectional", "Embedding", "GRUCell", "LSTMCell", "RecurrentCell",
    "RecurrentStack", "SimpleRNN", "SimpleRNNCell", "TimeDistributed", "get_cell", "get_layer",
    "padding_mask",
]
