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
    rng: jax.Array  # typed key (jax.random.key); step t uses fold_in(rng, t)
    ema_params: Any = None  # exponential moving average of params (Trainer(ema_decay=...))
    loss_scale: Any = None  # dynamic fp16 loss scale {'scale': f32, 'good_steps': i32}
    # int32 scalar: 1 once a step had a NaN or inf loss; from then on steps change nothing
    nonfinite: Any = None

    @classmethod
    def create(
        cls,
        params,
        model_state,
        tx: optax.GradientTransformation,
        seed: int = 0,
        *,
        ema: bool = False,
        loss_scale: float | None = None,
    ) -> TrainState:
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=model_state,
            opt_state=tx.init(params),
            rng=jax.random.key(seed),
            ema_params=jax.tree.map(jnp.copy, params) if ema else None,
            loss_scale=None
            if loss_scale is None
            else {
                "scale": jnp.asarray(loss_scale, jnp.float32),
                "good_steps": jnp.zeros((), jnp.int32),
            },
            nonfinite=jnp.zeros((), jnp.int32),
        )
