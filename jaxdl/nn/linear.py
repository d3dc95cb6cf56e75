"""`Linear`: Flax's dense layer under the model contract (`__call__(x, *, train, rngs)`), so it
composes in `jaxdl.models.compose.Chain` (as a new head on a backbone, say). Parameters are
nnx.Linear's (`kernel` [in, out], `bias` [out]), so paths and converters are unchanged."""

from __future__ import annotations

from flax import nnx


class Linear(nnx.Linear):
    """nnx.Linear(in_features, out_features, ..., rngs=...) taking `train` and `rngs`."""

    def __call__(self, x, *, train: bool = False, rngs=None):
        return super().__call__(x)
