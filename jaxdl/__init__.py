"""jaxdl: deep-learning reference implementations in JAX and Flax NNX."""

from jaxdl.bench.summary import summary
from jaxdl.models.registry import create_model, get_config, list_models
from jaxdl.weights.saving import load, save

__version__ = "0.1.0"
__all__ = ["create_model", "get_config", "list_models", "load", "save", "summary", "__version__"]
