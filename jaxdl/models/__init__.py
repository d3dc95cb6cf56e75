"""Model families. Importing this package imports every family module in it, each of which
registers its variants; add a family by adding a module, nothing else."""

import importlib
import pkgutil

from jaxdl.models.registry import (
    abstract_model,
    create_model,
    get_config,
    get_entry,
    list_models,
    register,
)

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _m.name not in ("registry", "inputs") and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["abstract_model", "create_model", "get_config", "get_entry", "list_models", "register"]
