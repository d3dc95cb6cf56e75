"""Pretrained weights: converters from Keras applications and torchvision / timm state dicts, safe
file reading, the preprocessing each source expects, and a cache of converted weights.

    model, prep = jaxdl.weights.load("resnet50", source="keras")            # downloads if online
    model, prep = jaxdl.weights.load("resnet50", source="torchvision", path="resnet50.pth")
    model, prep = jaxdl.weights.load("vit_b16", source="timm", path="vit.safetensors")
    logits = model(prep.apply(images_0_255))
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from flax import nnx

from jaxdl.errors import JaxdlError, unknown_name
from jaxdl.weights.convert import assign, build_for_weights, model_tensors
from jaxdl.weights.io import read_safetensors, read_weights, write_safetensors
from jaxdl.weights.preprocess import Preprocessing
from jaxdl.weights.saving import load as load_saved
from jaxdl.weights.saving import save

SOURCES = ("keras", "torchvision", "timm")


def pretrained_sources(name: str) -> list[str]:
    """The SOURCES with a converter for registered model `name` (converters, not downloads:
    whether the file is reachable is only known when loading)."""
    from jaxdl.models.registry import get_entry
    from jaxdl.weights.keras import _keras_models
    from jaxdl.weights.timm import TIMM_MODELS
    from jaxdl.weights.torchvision import TORCHVISION_CONVERTERS

    family = get_entry(name).family
    found = {
        "keras": name in _keras_models(),
        "torchvision": family in TORCHVISION_CONVERTERS,
        "timm": name in TIMM_MODELS,
    }
    return [s for s in SOURCES if found[s]]


def cache_dir() -> Path:
    return Path(os.environ.get("JAXDL_CACHE", Path.home() / ".cache" / "jaxdl")) / "weights"


def _cached(name: str, source: str, rngs) -> tuple[nnx.Module, Preprocessing] | None:
    path = cache_dir() / f"{name}-{source}.safetensors"
    if not path.exists():
        return None
    import json

    tensors, meta = read_safetensors(path)
    model = build_for_weights(
        name,
        rngs,
        **{
            k: tuple(v) if isinstance(v, list) else v
            for k, v in json.loads(meta["overrides"]).items()
        },
    )
    assign(model, tensors, source=f"cached {path.name}")
    return model, Preprocessing.from_json(meta["preprocessing"])


def _store(name, source, model, prep, overrides):
    import json

    import numpy as np

    write_safetensors(
        cache_dir() / f"{name}-{source}.safetensors",
        {k: np.asarray(v) for k, v in model_tensors(model).items()},
        {"preprocessing": prep.to_json(), "overrides": json.dumps(overrides), "source": source},
    )


def load(
    name: str,
    source: str = "keras",
    path: str | os.PathLike | None = None,
    *,
    rngs: nnx.Rngs | None = None,
    cache: bool = True,
    num_classes: int | None = None,
    include_top: bool | None = None,
    pooling: str | None = None,
    progress: bool = False,
) -> tuple[nnx.Module, Preprocessing]:
    """(model with pretrained ImageNet weights, its Preprocessing).

    With `path`, converts that local file (Keras: a .weights.h5 / .h5 of the keras.applications
    model; torchvision / timm: a state dict as .pth/.pt (weights_only) or .safetensors). Without,
    asks the source library to download (needs network) and otherwise explains where to put the
    file. torchvision names follow ours except vit_b16 (vit_b_16); timm: vit_b16
    (vit_base_patch16_224), resnet50, efficientnet_b0.
    Converted weights are cached as safetensors under $JAXDL_CACHE (~/.cache/jaxdl)/weights.

    num_classes / include_top / pooling: the same backbone with another head, e.g.
    `load("resnet50", num_classes=2)` (a new, randomly initialised 2-class head from `rngs`) or
    `load("resnet50", include_top=False, pooling="avg")` (features); every other variable holds
    the pretrained values. progress: print what is being read and converted (stderr)."""
    if source not in SOURCES:
        raise unknown_name("weight source", source, SOURCES)
    model, prep = _load_full(name, source, path, rngs, cache, progress)
    if num_classes is None and include_top is None and pooling is None:
        return model, prep
    return with_head(model, num_classes, include_top, pooling, rngs=rngs), prep


def _say(progress: bool, message: str) -> None:
    if progress:
        import sys

        print(message, file=sys.stderr, flush=True)


def with_head(
    model: nnx.Module,
    num_classes: int | None = None,
    include_top: bool | None = None,
    pooling: str | None = None,
    *,
    rngs: nnx.Rngs | None = None,
) -> nnx.Module:
    """A copy of registry model `model` built with another head (`num_classes`, `include_top`,
    `pooling` of its config), holding `model`'s values in every variable whose name and shape
    are unchanged; the new head is initialised from `rngs` (default nnx.Rngs(0)). A variable
    outside the head that cannot be carried over is an error, never left random silently."""
    import dataclasses

    from jaxdl.weights.saving import registry_name

    config = getattr(model, "config", None)
    name = registry_name(model)
    if name is None:
        raise JaxdlError("with_head: the model must be a registry model with a config")
    changes = {
        k: v
        for k, v in (
            ("num_classes", num_classes),
            ("include_top", include_top),
            ("pooling", pooling),
        )
        if v is not None
    }
    fields = {f.name for f in dataclasses.fields(config)}
    bad = sorted(set(changes) - fields)
    if bad:
        raise JaxdlError(f"{name}: its config has no {', '.join(bad)}; fields: {sorted(fields)}")
    from jaxdl.models.registry import get_entry

    new = get_entry(name).builder(
        dataclasses.replace(config, **changes), rngs=rngs if rngs is not None else nnx.Rngs(0)
    )
    transfer(model_tensors(model), new, source="pretrained backbone")
    return new


def transfer(tensors: dict, model: nnx.Module, *, source: str = "weights") -> list[str]:
    """Write into `model` every tensor of `tensors` whose name and shape it has; the variables
    left as they are must form whole top-level modules absent from (or reshaped in) `tensors`,
    i.e. a new head; anything else is an error. Returns the names left as they were."""
    dst = model_tensors(model)
    kept = {k for k, v in dst.items() if k in tensors and tuple(np.shape(tensors[k])) == v.shape}
    fresh = sorted(set(dst) - kept)
    top = lambda k: k.split("/")[0]
    mixed = sorted(k for k in fresh if any(top(j) == top(k) for j in kept))
    if mixed or not kept:
        raise JaxdlError(
            f"{source} do not fit the model: "
            + (
                f"{', '.join(mixed[:5])} differ but belong to modules whose other "
                "variables are kept (only a whole new head may differ)"
                if mixed
                else "no variable has a matching name and shape"
            )
        )
    assign(model, {k: tensors[k] if k in kept else dst[k] for k in dst}, source=source)
    return fresh


def _load_full(name, source, path, rngs, cache, progress):
    if path is None and cache and (hit := _cached(name, source, rngs)) is not None:
        _say(progress, f"{name}: {source} weights from the cache {cache_dir()}")
        return hit
    _say(progress, f"{name}: converting {source} weights{f' from {path}' if path else ''}...")
    if source == "keras":
        model, prep, overrides = _load_keras(name, path, rngs)
    elif source == "torchvision":
        model, prep, overrides = _load_torchvision(name, path, rngs)
    else:
        model, prep, overrides = _load_timm(name, path, rngs)
    if cache:
        _store(name, source, model, prep, overrides)
        _say(progress, f"{name}: cached as {cache_dir() / f'{name}-{source}.safetensors'}")
    return model, prep


def _load_keras(name, path, rngs):
    from jaxdl.weights.keras import _keras_models, from_keras, imagenet_input_layers

    table = _keras_models()
    if name not in table:
        raise unknown_name("Keras-convertible model", name, table)
    import keras

    ctor = getattr(keras.applications, table[name][0])
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise JaxdlError(f"Keras weight file {p} does not exist")
        km = ctor(weights=None, classifier_activation=None)
        try:
            km.load_weights(str(p))
        except Exception as e:
            raise JaxdlError(f"{p} does not hold {table[name][0]} weights: {e}") from e
    else:
        try:
            km = ctor(weights="imagenet", classifier_activation=None)
        except Exception as e:
            raise JaxdlError(
                f"could not download Keras {table[name][0]} ImageNet weights "
                f"({type(e).__name__}). Offline, put the file keras.applications downloads "
                f"(its name is in keras/src/applications/) into "
                f"~/.keras/models/, or pass path= to a .weights.h5 file"
            ) from e
    model, prep = from_keras(name, km, rngs=rngs)
    if path is not None:  # built with weights=None: the input layers only 'imagenet' adds
        prep = imagenet_input_layers(name, prep)
    return model, prep, _config_overrides(name, model)


def _config_overrides(name, model) -> dict:
    """The fields of `model.config` that differ from the registered variant's (Keras's
    architecture options, input shape, head), so the cache rebuilds the same model."""
    import dataclasses

    from jaxdl.models.registry import get_entry

    default = get_entry(name).config
    return {
        f.name: getattr(model.config, f.name)
        for f in dataclasses.fields(default)
        if getattr(model.config, f.name) != getattr(default, f.name)
    }


def _state_dict(module) -> dict:
    return {
        k: v.detach().float().numpy() if v.is_floating_point() else v.detach().numpy()
        for k, v in module.state_dict().items()
    }


def _load_torchvision(name, path, rngs):
    from jaxdl.models.registry import get_entry
    from jaxdl.weights.torchvision import (
        TORCHVISION_CONVERTERS,
        TORCHVISION_NAMES,
        convert_torchvision,
        torchvision_preprocessing,
    )

    family = get_entry(name).family
    if family not in TORCHVISION_CONVERTERS:
        raise unknown_name("torchvision-convertible family", family, TORCHVISION_CONVERTERS)
    tv_name = TORCHVISION_NAMES.get(name, name)
    if path is not None:
        sd = read_weights(path)
    else:
        try:
            import torchvision

            weights = torchvision.models.get_model_weights(tv_name).DEFAULT
            # the file as published: googlenet / inception_v3 keep their auxiliary heads here
            sd = {
                k: v.float().numpy() if v.is_floating_point() else v.numpy()
                for k, v in weights.get_state_dict(progress=False).items()
            }
        except Exception as e:
            raise JaxdlError(
                f"could not get torchvision {tv_name} weights ({type(e).__name__}: {e}). "
                f"Offline, download the state dict elsewhere (its URL: torchvision.models."
                f"get_model_weights('{tv_name}').DEFAULT.url) and pass path= to it"
            ) from e
    model = build_for_weights(name, rngs)
    assign(
        model,
        convert_torchvision(family, sd, model.config),
        source=f"torchvision {tv_name} weights",
    )
    return model, torchvision_preprocessing(name), {}


def _load_timm(name, path, rngs):
    from jaxdl.models.registry import get_entry
    from jaxdl.weights.timm import TIMM_MODELS, convert_timm, timm_preprocessing

    if name not in TIMM_MODELS:
        raise unknown_name("timm-convertible model", name, TIMM_MODELS)
    timm_name, prep = TIMM_MODELS[name]
    if path is not None:
        sd = read_weights(path)
    else:
        try:
            import timm

            tm = timm.create_model(timm_name, pretrained=True)
            sd = _state_dict(tm)
            prep = timm_preprocessing(dict(tm.pretrained_cfg), prep)
        except Exception as e:
            raise JaxdlError(
                f"could not get timm {timm_name} weights ({type(e).__name__}: {e}). "
                f"Offline, download its state dict elsewhere (timm.create_model('{timm_name}', "
                f"pretrained=True).state_dict(), or model.safetensors from the Hugging Face hub "
                f"repo timm/{timm_name}.*) and pass path= to it"
            ) from e
    model = build_for_weights(name, rngs)
    assign(
        model,
        convert_timm(get_entry(name).family, sd, model.config),
        source=f"timm {timm_name} weights",
    )
    return model, prep, {}


__all__ = [
    "SOURCES",
    "load",
    "with_head",
    "save",
    "load_saved",
    "assign",
    "model_tensors",
    "read_weights",
    "Preprocessing",
]
