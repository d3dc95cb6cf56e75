"""One way to say what was wrong: the argument, what was expected, and what came."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable


class JaxdlError(ValueError):
    """Bad input to jaxdl. A ValueError, so callers that catch ValueError keep working."""


def unknown_name(kind: str, name, known: Iterable) -> JaxdlError:
    """Error for an unknown registry key, listing the closest known names (or all, if few).

    `name` and the entries of `known` may be any value (e.g. None as an option): non-strings
    are listed by their repr and get no close-name hint."""
    known = sorted(known, key=lambda k: (not isinstance(k, str), str(k)))
    names = [k for k in known if isinstance(k, str)]
    close = []
    if isinstance(name, str):
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        if not close:
            close = [k for k in names if name.lower() in k.lower() or k.lower() in name.lower()]
            close = close[:5]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    shown = [k if isinstance(k, str) else repr(k) for k in known]
    listing = ", ".join(shown) if len(known) <= 40 else f"{len(known)} names; see the listing"
    return JaxdlError(f"unknown {kind} {name!r}.{hint} Known {kind}s: {listing}.")


def check_positive(name: str, value, *, integer: bool = False) -> None:
    """Raise if `value` is not a positive finite number (an int where `integer`)."""
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        raise JaxdlError(f"{name} must be {kind}, got {value!r}")


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Raise unless `value` is an int (not a bool) in [low, high]; returns it."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and ((low is not None and value < low) or (high is not None and value > high)):
        ok = False
    if not ok:
        lo = "" if low is None else f">= {low}"
        hi = "" if high is None else f"<= {high}"
        rng = " and ".join(x for x in (lo, hi) if x)
        raise JaxdlError(f"{name} must be an integer{' ' + rng if rng else ''}, got {value!r}")
    return value


def compile_pattern(pattern, what: str = "pattern") -> re.Pattern:
    """re.compile with a JaxdlError naming the pattern when it is not a valid regex."""
    if not isinstance(pattern, str):
        raise JaxdlError(f"{what} must be a regex string, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise JaxdlError(f"{what} {pattern!r} is not a valid regular expression: {e}") from None
