"""The train state: everything a step reads and writes, and everything a checkpoint holds."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any  # nnx.State of nnx.Param
    model_state: Any  # nnx.State of the rest (BatchNorm statistics, ...)
    opt_state: Any
    rng: jax.Array  # raw uint32[2] key; step t uses fold_in(rng, t)

    @classmethod
    def create(cls, params, model_state, tx: optax.GradientTransformation, seed: int = 0) -> TrainState:
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=model_state,
            opt_state=tx.init(params),
            rng=jax.random.PRNGKey(seed),
        )
