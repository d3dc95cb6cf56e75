"""One way to say what was wrong: the argument, what was expected, and what came."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class JaxdlError(ValueError):
    """Bad input to jaxdl. A ValueError, so callers that catch ValueError keep working."""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> JaxdlError:
    """Error for an unknown registry key, listing the closest known names (or all, if few)."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    if not close:
        close = [k for k in known if name.lower() in k.lower() or k.lower() in name.lower()][:5]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    listing = ", ".join(known) if len(known) <= 40 else f"{len(known)} names; see the listing"
    return JaxdlError(f"unknown {kind} {name!r}.{hint} Known {kind}s: {listing}.")


def check_positive(name: str, value, *, integer: bool = False) -> None:
    """Raise if `value` is not a positive number (an int where `integer`)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        raise JaxdlError(f"{name} must be {kind}, got {value!r}")
