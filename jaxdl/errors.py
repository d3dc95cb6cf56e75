"""One way to say what was wrong: the argument, what was expected, and what came."""

from __future__ import annotations

import difflib
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
    """Raise if `value` is not a positive number (an int where `integer`)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        raise JaxdlError(f"{name} must be {kind}, got {value!r}")
