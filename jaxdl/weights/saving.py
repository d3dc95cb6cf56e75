"""`jaxdl.save(model, path)` and `jaxdl.load(path[, model])`: a model's weights as one
safetensors file, with the registry name and the full config beside them in its metadata.

    jaxdl.save(model, "mlp.safetensors")
    model = jaxdl.load("mlp.safetensors")           # rebuilt by name from the saved config
    jaxdl.load("mlp.safetensors", model)            # or loaded into a model you built

Every variable except RNG state is saved (params and BatchNorm statistics) under the names of
`jaxdl.weights.model_tensors`, in its own dtype, so a round trip is exact. Loading into a
model of another architecture or config raises one error listing every differing leaf.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.weights.convert import assign, build_for_weights, check_tensors, model_tensors
from jaxdl.weights.io import read_safetensors, write_safetensors

FORMAT = "jaxdl.save/1"


def _tuples(v):
    """JSON lists back to the tuples the frozen configs use."""
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def registry_name(model: nnx.Module) -> str | None:
    """The registered name whose config is `model.config`, or else the first registered variant
    of the same config class (the saved config then carries every difference); None for a
    model the registry did not build."""
    from jaxdl.models.registry import _REGISTRY, _ensure_loaded

    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return None
    _ensure_loaded()
    same_class = [e for e in _REGISTRY.values() if type(e.config) is type(config)]
    for e in same_class:
        if e.config == config:
            return e.name
    return same_class[0].name if same_class else None


def _config_json(config) -> dict:
    out = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    try:
        json.dumps(out)
    except TypeError as e:
        raise JaxdlError(f"save: the model's config cannot be written as JSON ({e})") from e
    return out


def save(model: nnx.Module, path: str | os.PathLike, *, name: str | None = None) -> Path:
    """Write `model`'s weights (every variable except RNG state) to `path` (.safetensors), with
    the registry name (`name`, or the one whose config class matches) and config, so that
    `load(path)` rebuilds it. Returns the path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise JaxdlError(f"save: path must end in .safetensors, got {str(path)!r}")
    if not isinstance(model, nnx.Module):
        raise JaxdlError(f"save: model must be an nnx.Module, got {type(model).__name__}")
    tensors = model_tensors(model)
    abstract = [k for k, v in tensors.items() if not isinstance(v, jax.Array)]
    if abstract:
        raise JaxdlError(
            f"save: the model holds no values (built with shapes only), e.g. {abstract[0]}"
        )
    config = getattr(model, "config", None)
    name = name if name is not None else registry_name(model)
    meta = {
        "format": FORMAT,
        "model": name or "",
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": _config_json(config) if dataclasses.is_dataclass(config) else None,
    }
    write_safetensors(path, {k: np.asarray(jax.device_get(v)) for k, v in tensors.items()}, meta)
    return path


def read_saved(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """(tensors, metadata with 'model', 'class' and 'config' decoded) of a file `save` wrote."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise JaxdlError(
            f"{path} was not written by jaxdl.save (its metadata has format "
            f"{meta.get('format')!r}, expected {FORMAT!r}); converted checkpoints load with "
            "jaxdl.weights.load"
        )
    config = json.loads(meta["config"]) if meta.get("config") not in (None, "null") else None
    return tensors, {**meta, "config": config}


def load(
    path: str | os.PathLike, model: nnx.Module | None = None, *, rngs: nnx.Rngs | None = None
) -> nnx.Module:
    """The model saved at `path`: rebuilt from its registry name and config, or, with `model`,
    loaded into that model in place (all variables or none). A file for another architecture or
    config raises JaxdlError listing the missing, unexpected and mis-shaped leaves."""
    tensors, meta = read_saved(path)
    source = f"weights in {path} (saved from {meta['model'] or meta['class']})"
    if model is not None:
        if not isinstance(model, nnx.Module):
            raise JaxdlError(f"load: model must be an nnx.Module, got {type(model).__name__}")
        current = model_tensors(model)
        expected = {k: v.shape for k, v in current.items()}
        try:
            check_tensors(expected, tensors, source=source)
        except JaxdlError as e:
            config = getattr(model, "config", None)
            if meta["config"] is not None and dataclasses.is_dataclass(config):
                mine = _config_json(config)
                diff = [
                    f"{k}: file {v!r}, model {mine.get(k)!r}"
                    for k, v in meta["config"].items()
                    if _tuples(v) != mine.get(k)
                ]
                if diff:
                    raise JaxdlError(f"{e}; config differs: {'; '.join(diff)}") from None
            raise
        return assign(model, tensors, source=source)
    if not meta["model"] or meta["config"] is None:
        raise JaxdlError(
            f"{path} holds a {meta['class']} that the registry did not build: "
            "build the model and pass it, load(path, model)"
        )
    overrides = {k: _tuples(v) for k, v in meta["config"].items()}
    return assign(build_for_weights(meta["model"], rngs, **overrides), tensors, source=source)
