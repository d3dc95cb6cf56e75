"""Registry of model names -> (family builder, frozen config), docs/design.md, decision 2.

A family is written once; variants are rows (frozen dataclass configs). `create_model` applies
keyword overrides to the config with `dataclasses.replace`, so an override that is not a field of
the family's config is an error that lists the fields. Each override is checked against the
field's annotation (int, float, bool, str, Literal, tuples, unions with None): a value of
another type is a JaxdlError naming the option, the expected type and the value; a list is
stored as a tuple and an int as a float where a float is expected.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jax
from flax import nnx

from jaxdl.errors import JaxdlError, unknown_name


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nnx.Module]  # builder(config, *, rngs) -> Module
    config: Any  # a frozen dataclass instance
    family: str
    description: str = ""
    task: str | None = None  # one of TASKS: what the output is (docs/design.md, model contract)
    test_overrides: Mapping[str, Any] | None = None  # config overrides for a tiny test instance


_REGISTRY: dict[str, ModelEntry] = {}

# The model contract's task kinds; `jaxdl.models.inputs.task_output_spec` gives each one's output.
TASKS = ("classify", "tag", "lm", "seq2seq", "reconstruct", "vae", "gan", "segment", "perceptron")


# Where each family lives in the repository besides its module: the docs page that describes it
# and the test module of what is specific to it (every model is also in the registry battery,
# tests/models/test_registry_battery.py). `jaxdl models NAME --where` prints them; a family
# registered without a row here fails tests/models/test_registry.py.
_CNN = ("docs/cnn.md", "tests/models/test_cnn_models.py")
FAMILY_FILES: dict[str, tuple[str, str]] = {
    "perceptron": ("README.md", "tests/models/test_neurons.py"),
    "mlp": ("README.md", "tests/models/test_neurons.py"),
    **dict.fromkeys(("lenet", "vgg", "inception", "xception", "resnet", "densenet"), _CNN),
    "alexnet": ("docs/cnn.md", "tests/models/test_course_items.py"),
    **dict.fromkeys(("mobilenet", "efficientnet", "unet"), _CNN),
    "fcn": ("docs/cnn.md", "tests/models/test_fcn.py"),
    "rnn": ("docs/rnn.md", "tests/models/test_rnn_models.py"),
    "seq2seq": ("docs/rnn.md", "tests/models/test_rnn_models.py"),
    **dict.fromkeys(
        ("transformer", "gpt", "bert", "vit"),
        ("docs/transformers.md", "tests/models/test_transformer.py"),
    ),
    **dict.fromkeys(
        ("autoencoder", "vae", "gan"), ("docs/generative.md", "tests/models/test_generative.py")
    ),
}
BATTERY = "tests/models/test_registry_battery.py"


def where(name: str) -> dict[str, str]:
    """Where model `name` lives: its source module, the class and variant row that build it,
    its docs page and its tests (paths relative to the repository root)."""
    import inspect

    e = get_entry(name)
    source = Path(inspect.getsourcefile(e.builder)).resolve()
    root = Path(__file__).resolve().parents[2]
    docs, tests = FAMILY_FILES.get(e.family, ("", ""))
    return {
        "source": source.relative_to(root).as_posix(),
        "builder": e.builder.__qualname__,
        "config": type(e.config).__name__,
        "docs": docs,
        "tests": f"{tests}, {BATTERY}" if tests else BATTERY,
    }


def register(
    name: str,
    builder,
    config,
    *,
    family: str,
    description: str = "",
    task: str | None = None,
    test_overrides: Mapping[str, Any] | None = None,
) -> None:
    """Register a variant. `config` must be a frozen dataclass instance; `task` (one of TASKS)
    says what the model outputs and `test_overrides` make a tiny instance of it for the registry
    test battery (tests/models/test_registry_battery.py fails for an entry without them)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config for {name!r} must be a dataclass instance, got {type(config)}")
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    if task is not None and task not in TASKS:
        raise unknown_name("task", task, TASKS)
    overrides = None if test_overrides is None else MappingProxyType(dict(test_overrides))
    _REGISTRY[name] = ModelEntry(name, builder, config, family, description, task, overrides)


def unregister(name: str) -> None:
    """Remove a registration (tests that register a throw-away model clean up with it)."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise unknown_name("model", name, _REGISTRY)
    del _REGISTRY[name]


def _ensure_loaded() -> None:
    # Importing jaxdl.models imports every family module, which registers its variants.
    import jaxdl.models  # noqa: F401


def natural_key(name: str) -> tuple:
    """Sort key putting resnet18 before resnet101 (digit runs compared as numbers)."""
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names in natural order (resnet18 before resnet101); `pattern` is a
    shell-style glob ('resnet*') or, without wildcards, a substring ('vit' finds vit_b16)."""
    import fnmatch

    _ensure_loaded()
    names = sorted(_REGISTRY, key=natural_key)
    if pattern is None:
        return names
    if not any(c in pattern for c in "*?["):
        return [n for n in names if pattern.lower() in n.lower()]
    return [n for n in names if fnmatch.fnmatch(n, pattern)]


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise unknown_name("model", name, _REGISTRY)
    return _REGISTRY[name]


def get_config(name: str, **overrides) -> Any:
    """The variant's config with `overrides` applied (validated against the config's fields)."""
    entry = get_entry(name)
    fields = {f.name for f in dataclasses.fields(entry.config)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise JaxdlError(
            f"create_model({name!r}): unknown option(s) {', '.join(bad)} for family "
            f"{entry.family!r}; expected some of: {', '.join(sorted(fields))}"
        )
    if not overrides:
        return entry.config
    hints = _field_types(type(entry.config))
    checked = {}
    for k, v in overrides.items():
        tp = hints.get(k)
        ok, value = _coerce(v, tp) if tp is not None else (True, v)
        if not ok:
            raise JaxdlError(
                f"create_model({name!r}): option {k} expects {_type_name(tp)}, got {v!r} "
                f"({type(v).__name__})"
            )
        checked[k] = value
    return dataclasses.replace(entry.config, **checked)


def _field_types(cls) -> dict:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that cannot be evaluated: left unchecked
        return {}


def _type_name(tp) -> str:
    if tp is type(None):
        return "None"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {_type_name(args[0])}"
        return f"a tuple of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    return getattr(tp, "__name__", str(tp))


_UNCHECKED = object()


def _coerce(v, tp) -> tuple[bool, Any]:
    """(v fits the annotation tp, v as stored): a list becomes a tuple, an int a float where a
    float is expected; types this does not know (callables, nested configs) pass unchecked."""
    if tp is Any or tp is _UNCHECKED:
        return True, v
    if tp is type(None):
        return v is None, v
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            ok, out = _coerce(v, a)
            if ok:
                return True, out
        return False, v
    if origin is typing.Literal:
        return v in args, v
    if origin is tuple:
        if not isinstance(v, (tuple, list)):
            return False, v
        if len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(x, args[0]) for x in v]
        elif not args:
            return True, tuple(v)
        elif len(args) != len(v):
            return False, v
        else:
            items = [_coerce(x, a) for x, a in zip(v, args, strict=True)]
        return all(ok for ok, _ in items), tuple(out for _, out in items)
    if tp is bool:
        return isinstance(v, bool), v
    if tp is int:  # numpy integers too (dataset sizes), stored as int
        ok = isinstance(v, numbers.Integral) and not isinstance(v, bool)
        return ok, int(v) if ok else v
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return False, v
        return True, float(v)
    if tp is str:
        return isinstance(v, str), v
    return True, v  # other annotations (callables, dataclasses, generics): not checked here


def create_model(name: str, *, rngs: nnx.Rngs | None = None, **overrides) -> nnx.Module:
    """Build a registered model: `create_model('resnet50', num_classes=10, rngs=nnx.Rngs(0))`."""
    entry = get_entry(name)
    config = get_config(name, **overrides)
    return entry.builder(config, rngs=rngs if rngs is not None else nnx.Rngs(0))


class _KeepsRngs(Exception):
    """Raised by the abstract streams when a module keeps or forks them (nnx.Dropout(rngs=...)
    does): such a model is built abstractly with a real nnx.Rngs instead."""


class _CountingStream:
    """An rng stream whose counter is a Python int (see `abstract_model`)."""

    def __init__(self, key):
        self.key, self.count = key, 0

    def __call__(self):
        self.count += 1
        return jax.random.fold_in(self.key, self.count)

    def fork(self, *args, **kwargs):
        raise _KeepsRngs


class _AbstractRngs:
    """Stands in for nnx.Rngs while building under `nnx.eval_shape`: every stream (`params`,
    `dropout`, ...) is one counting stream. Only for shape evaluation, never for training."""

    def __init__(self, seed: int = 0):
        self._stream = _CountingStream(jax.random.key(seed))

    def __getattr__(self, name):
        if name.startswith("__"):  # copy/pickle/graph probes: not a stream
            raise AttributeError(name)
        return self._stream

    def __getitem__(self, name):
        return self._stream

    def fork(self, *args, **kwargs):
        raise _KeepsRngs

    def __call__(self):
        return self._stream()


def abstract_model(name: str, **overrides) -> nnx.Module:
    """`create_model(name, **overrides)` under `nnx.eval_shape`: parameters are ShapeDtypeStructs,
    nothing is allocated. Counting, summaries and shape checks of big models go through it.

    It builds with a Python-counted rng stream: nnx.Rngs updates its counter Variable on every
    draw, and on a tracer that update asks for `.sharding`, whose error message walks the whole
    trace so far, so building a deep net abstractly with nnx.Rngs is quadratic in its size
    (densenet264: ~40 s instead of ~5 s)."""
    return abstract_from_config(get_entry(name).builder, get_config(name, **overrides))


def abstract_from_config(builder, config) -> nnx.Module:
    """`builder(config, rngs=...)` under `nnx.eval_shape` (see `abstract_model`), for code that
    holds a config rather than a registered name (the weight converters)."""
    try:
        return nnx.eval_shape(lambda: builder(config, rngs=_AbstractRngs(0)))
    except (_KeepsRngs, TypeError) as e:
        # a model that keeps or forks its streams (nnx.Dropout(rngs=...) checks for an nnx.Rngs)
        # needs a real one; any other error is the build's own and is raised as it is
        if isinstance(e, TypeError) and "must be a Rngs" not in str(e):
            raise
        return nnx.eval_shape(lambda: builder(config, rngs=nnx.Rngs(0)))
