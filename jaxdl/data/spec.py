"""The options part of a dataset spec: `KIND:PATH[,OPTION=VALUE...]` (see
`jaxdl.data.registry` for the kinds)."""

from __future__ import annotations

from collections.abc import Callable

from jaxdl.errors import JaxdlError


def spec_options(kind: str, arg: str | None, allowed: dict[str, Callable[[str], object]]):
    """'PATH,key=value,...' -> (PATH, {key: parsed value}); unknown keys are an error."""
    if not arg:
        raise JaxdlError(f"dataset {kind!r} needs an argument: {kind}:PATH")
    path, *items = arg.split(",")
    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in allowed:
            raise JaxdlError(
                f"{kind}: option {item!r} is not one of {', '.join(f'{k}=...' for k in allowed)}"
            )
        try:
            opts[key] = allowed[key](value)
        except ValueError as e:
            raise JaxdlError(f"{kind}: bad value in {item!r}: {e}") from None
    return path, opts


def parse_size(text: str) -> tuple[int, int]:
    """'64x48' -> (64, 48) (height x width); '64' -> (64, 64)."""
    h, sep, w = text.partition("x")
    size = (int(h), int(w)) if sep else (int(h), int(h))
    if min(size) < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return size
