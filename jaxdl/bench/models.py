"""Which models a run measures, how they are built, what their input and output look like, and
the synthetic data fed to them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from jaxdl.bench.options import BenchOptions
from jaxdl.errors import JaxdlError
from jaxdl.functional import output_spec


def resolve_models(patterns) -> list[str]:
    """Model names for `patterns`: 'all', shell globs ('resnet*') and exact names, in order,
    without repeats. An unknown name or a glob that matches nothing is an error."""
    from jaxdl.models.registry import get_entry, list_models

    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise JaxdlError("give a model name, a pattern such as 'resnet*', or 'all'")
    names: list[str] = []
    for p in patterns:
        if p == "all":
            found = list_models()
        elif any(ch in p for ch in "*?["):
            found = list_models(p)
            if not found:
                raise JaxdlError(
                    f"no model matches {p!r}; `jaxdl models` lists the "
                    f"{len(list_models())} registered names"
                )
        else:
            found = [get_entry(p).name]  # raises with the close names
        names += [n for n in found if n not in names]
    return names


def model_overrides(name: str, opts: BenchOptions) -> dict[str, Any]:
    """`opts.overrides` with `opts.input` turned into the config's input shape."""
    from jaxdl.models.inputs import resize_input_shape
    from jaxdl.models.registry import get_config

    overrides = dict(opts.overrides)
    if opts.input is not None:
        overrides["input_shape"] = resize_input_shape(get_config(name, **overrides), opts.input)
    return overrides


def build_model(name: str, opts: BenchOptions, *, abstract: bool = False):
    """The registered model with `opts.overrides` and `opts.input` applied (abstract: the
    registry's shapes-only build, allocating nothing)."""
    from flax import nnx

    from jaxdl.models.registry import abstract_model, create_model

    overrides = model_overrides(name, opts)
    if abstract:
        return abstract_model(name, **overrides)
    return create_model(name, rngs=nnx.Rngs(0), **overrides)


@dataclass(frozen=True)
class ModelIO:
    """What a benchmark needs to know of a model's input and output (no arrays)."""

    config: Any
    x: jax.ShapeDtypeStruct  # the input, batch included
    loss: str  # 'ce' | 'bce' | 'mse'
    label_shape: tuple[int, ...]  # without the batch axis
    num_labels: int
    vocab: int | None  # token ids are drawn from [0, vocab)
    items_per_sample: int  # tokens per sequence for token inputs, else 1
    unit: str


def model_io(config, x: jax.ShapeDtypeStruct, out) -> ModelIO:
    """The loss from the output's shape: mean squared error against the input for a
    reconstruction, sigmoid cross-entropy for one logit, softmax cross-entropy over the last axis
    otherwise (classifiers [B, C], language models [B, T, V], segmentation [B, H, W, C])."""
    main = out[0] if isinstance(out, (tuple, list)) else out
    if main.shape == x.shape and jnp.issubdtype(x.dtype, jnp.floating):
        loss, label_shape, n = "mse", (), 0
    elif main.shape[-1] == 1:
        loss, label_shape, n = "bce", tuple(main.shape[1:-1]), 2
    else:
        loss, label_shape, n = "ce", tuple(main.shape[1:-1]), int(main.shape[-1])
    tokens = jnp.issubdtype(x.dtype, jnp.integer) and len(x.shape) >= 2
    vocab = getattr(config, "vocab_size", None) or (n if tokens else None)
    items = math.prod(x.shape[1:]) if tokens else 1
    return ModelIO(
        config, x, loss, label_shape, n, vocab, items, "tokens/s" if tokens else "samples/s"
    )


def abstract_model_io(name: str, opts: BenchOptions, batch: int) -> ModelIO:
    """model_io without building any array (for the PyTorch side of an isolated run)."""
    from jaxdl.models.inputs import example_input

    model = build_model(name, opts, abstract=True)
    x = example_input(model.config, batch)
    return model_io(model.config, x, output_spec(model, x))


def synthetic_input(spec: jax.ShapeDtypeStruct, key, vocab: int | None = None) -> jax.Array:
    """Token ids uniform in [0, vocab) for integer inputs, standard normals otherwise."""
    if jnp.issubdtype(spec.dtype, jnp.integer):
        return jax.random.randint(key, spec.shape, 0, vocab or 2, spec.dtype)
    return jax.random.normal(key, spec.shape, spec.dtype)


def synthetic_batch(io: ModelIO, batch: int, seed: int = 1) -> dict[str, Any]:
    """A host batch as the data pipeline makes them ({'x', 'y', 'weight'} numpy arrays): inputs
    as `synthetic_input`, labels uniform over the classes (zeros for a reconstruction), weights
    one. `batch` rows (a multiple of io.x's batch is fine: fit's in-memory data set)."""
    import numpy as np

    kx, ky = jax.random.split(jax.random.key(seed))
    x_spec = jax.ShapeDtypeStruct((batch, *io.x.shape[1:]), io.x.dtype)
    # drawn on the device (an allocation too big fails there, cleanly), then brought to the host
    x = jax.block_until_ready(synthetic_input(x_spec, kx, io.vocab))
    if io.loss == "mse":
        y = np.zeros((batch,), np.int32)
    else:
        y = jax.random.randint(ky, (batch, *io.label_shape), 0, max(io.num_labels, 2), jnp.int32)
        y = np.asarray(jax.block_until_ready(y))
    return {"x": np.asarray(x), "y": y, "weight": np.ones((batch,), np.float32)}
