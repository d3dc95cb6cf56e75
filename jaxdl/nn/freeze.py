"""Freezing parts of a model, with Keras's semantics: a frozen layer's
weights do not change and its BatchNorm layers run in inference mode (moving statistics fixed and
used for normalisation) even while the rest of the model trains.

Two halves, both selected by the same `jaxdl.functional.path_str` names:
- the optimizer half (no update, no optimizer state) is `jaxdl.train.optim` masking by pattern;
- the module half is `freeze_batchnorm(model, pattern)`, which turns matching `nnx.BatchNorm`
  modules into `FrozenBatchNorm` (same variables, always inference mode).
"""

from __future__ import annotations

import re

from flax import nnx

from jaxdl.errors import compile_pattern


class FrozenBatchNorm(nnx.BatchNorm):
    """A BatchNorm that always normalises with its moving statistics and never updates them."""

    def __call__(self, x, use_running_average=None, *, mask=None):
        return super().__call__(x, use_running_average=True, mask=mask)


def _module_paths(model: nnx.Module):
    for path, module in nnx.iter_modules(model):
        yield "/".join(str(p) for p in path), module


def freeze_batchnorm(model: nnx.Module, pattern: str, *, unfreeze: bool = False) -> list[str]:
    """Switch BatchNorm modules whose path matches `pattern` (a regex searched in 'stages/0/...'
    style paths) to inference mode (or back, with `unfreeze`). Returns the paths changed.

    The module's class is what the graph definition records, so a model split afterwards carries
    the frozen behaviour into its pure `apply`."""
    rx = compile_pattern(pattern, "BatchNorm pattern")
    changed = []
    for path, m in _module_paths(model):
        if not rx.search(path):
            continue
        if not unfreeze and type(m) is nnx.BatchNorm:
            m.__class__ = FrozenBatchNorm
            changed.append(path)
        elif unfreeze and type(m) is FrozenBatchNorm:
            m.__class__ = nnx.BatchNorm
            changed.append(path)
    return changed


def block_pattern(prefix: str, blocks, *, anchor: bool = True) -> str:
    """A regex selecting blocks by index under `prefix`: block_pattern('stages', range(0, 3))
    matches 'stages/0/...', 'stages/1/...', 'stages/2/...'."""
    idx = "|".join(str(int(b)) for b in blocks)
    return rf"{'^' if anchor else ''}{re.escape(prefix)}/({idx})(/|$)"


def freeze_batchnorm_of_params(model: nnx.Module, patterns) -> list[str]:
    """Freeze (inference mode) every BatchNorm whose trainable parameters ('<path>/scale' or
    '<path>/bias') match one of the regexes `patterns`: the layers whose weights are frozen keep
    their statistics fixed too."""
    rx = [compile_pattern(p, "freeze pattern") for p in patterns]
    changed = []
    for path, m in _module_paths(model):
        if type(m) is nnx.BatchNorm and any(
            r.search(f"{path}/{v}") for r in rx for v in ("scale", "bias")
        ):
            m.__class__ = FrozenBatchNorm
            changed.append(path)
    return changed
