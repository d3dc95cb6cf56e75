"""Input checks shared by every model: a clear error naming what was expected and what came."""

from __future__ import annotations

from collections.abc import Sequence

from jaxdl.errors import JaxdlError


def check_input(x, expected: Sequence[int | None], *, model: str, what: str = "input") -> None:
    """Raise unless x.shape[1:] matches `expected` (None matches any size).

    x: [B, *expected]. Shapes are static under jit, so this check costs nothing at run time."""
    shape = tuple(getattr(x, "shape", ()))
    exp = tuple(expected)
    ok = len(shape) == len(exp) + 1 and all(e is None or e == s for e, s in zip(exp, shape[1:], strict=False))
    if not ok:
        pretty = "(B, " + ", ".join("*" if e is None else str(e) for e in exp) + ")"
        raise JaxdlError(
            f"{model}: {what} shape {shape} does not fit the model; expected {pretty} "
            f"(batch first, then {len(exp)} dim(s))"
        )
