"""Layers and blocks: composable NNX modules, each with a pure view through jaxdl.functional."""

from jaxdl.nn.activations import (
    ACTIVATIONS,
    Maxout,
    get_activation,
    hard_sigmoid,
    hard_swish,
    heaviside,
)
from jaxdl.nn.blocks import (
    BasicBlock,
    Bottleneck,
    ClassifierConfig,
    ConvNet,
    DenseBlock,
    DenseLayer,
    DoubleConv,
    DropPath,
    Head,
    InvertedResidual,
    SqueezeExcite,
    Transition,
    UpBlock,
)
from jaxdl.nn.conv import (
    BN,
    TORCH_BN,
    AvgPool,
    ConvBN,
    Flatten,
    MaxPool,
    SeparableConv,
    avg_pool,
    conv_output_size,
    conv_params,
    global_pool,
    max_pool,
    receptive_field,
)
from jaxdl.nn.inception import Branches, InceptionE, ResidualInception
from jaxdl.nn.init import INITIALIZERS, get_initializer
from jaxdl.nn.regularization import ActivityRegularization
from jaxdl.nn.sampling import sample_logits
from jaxdl.nn.shapes import check_input

__all__ = [
    "ACTIVATIONS",
    "Maxout",
    "get_activation",
    "hard_sigmoid",
    "hard_swish",
    "heaviside",
    "INITIALIZERS",
    "get_initializer",
    "ActivityRegularization",
    "check_input",
    "sample_logits",
    "BN",
    "TORCH_BN",
    "AvgPool",
    "ConvBN",
    "Flatten",
    "MaxPool",
    "SeparableConv",
    "avg_pool",
    "conv_output_size",
    "conv_params",
    "global_pool",
    "max_pool",
    "receptive_field",
    "BasicBlock",
    "Bottleneck",
    "ClassifierConfig",
    "ConvNet",
    "DenseBlock",
    "DenseLayer",
    "DoubleConv",
    "DropPath",
    "Head",
    "InvertedResidual",
    "SqueezeExcite",
    "Transition",
    "UpBlock",
    "Branches",
    "InceptionE",
    "ResidualInception",
]
from jaxdl.nn.recurrent import (  # noqa: E402
    CELLS,
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    Embedding,
    GRUCell,
    LSTMCell,
    RecurrentCell,
    RecurrentStack,
    SimpleRNN,
    SimpleRNNCell,
    TimeDistributed,
    get_cell,
    get_layer,
    masking,
)

__all__ += [
    "CELLS",
    "GRU",
    "LSTM",
    "RNN",
    "Bidirectional",
    "Embedding",
    "GRUCell",
    "LSTMCell",
    "RecurrentCell",
    "RecurrentStack",
    "SimpleRNN",
    "SimpleRNNCell",
    "TimeDistributed",
    "get_cell",
    "get_layer",
    "masking",
]
from jaxdl.nn.attention import (
    LearnedPositions,
    MultiHeadAttention,
    apply_rotary,
    causal_mask,
    combine_masks,
    dot_product_attention,
    padding_mask,
    sinusoidal_positions,
)
from jaxdl.nn.decoding import beam_search, generate, greedy_decode
from jaxdl.nn.transformer import FeedForward, LayerConfig, TransformerLayer, TransformerStack

__all__ += [
    "LearnedPositions",
    "MultiHeadAttention",
    "apply_rotary",
    "causal_mask",
    "combine_masks",
    "dot_product_attention",
    "padding_mask",
    "sinusoidal_positions",
    "beam_search",
    "generate",
    "greedy_decode",
    "FeedForward",
    "LayerConfig",
    "TransformerLayer",
    "TransformerStack",
]
from jaxdl.nn.norm import (  # noqa: E402
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    LocalResponseNorm,
    local_response_norm,
)
from jaxdl.nn.resample import AdaptiveAvgPool, adaptive_avg_pool, bilinear_kernel  # noqa: E402

__all__ += [
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "LocalResponseNorm",
    "local_response_norm",
    "AdaptiveAvgPool",
    "adaptive_avg_pool",
    "bilinear_kernel",
]
