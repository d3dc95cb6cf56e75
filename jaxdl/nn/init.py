"""Initialisers by name: Glorot/Xavier (variance 2/(fan_in+fan_out)), He (2/fan_in), LeCun,
orthogonal."""

from __future__ import annotations

from flax import nnx

from jaxdl.errors import unknown_name

_I = nnx.initializers
INITIALIZERS = {
    "glorot_uniform": _I.glorot_uniform(),
    "glorot_normal": _I.glorot_normal(),
    "xavier_uniform": _I.glorot_uniform(),
    "xavier_normal": _I.glorot_normal(),
    "he_normal": _I.he_normal(),
    "he_uniform": _I.he_uniform(),
    "lecun_normal": _I.lecun_normal(),
    "lecun_uniform": _I.lecun_uniform(),
    "orthogonal": _I.orthogonal(),
    "zeros": _I.zeros_init(),
    "ones": _I.ones_init(),
}


def get_initializer(name):
    """An initializer by name; callables pass through."""
    if callable(name):
        return name
    if name not in INITIALIZERS:
        raise unknown_name("initializer", name, INITIALIZERS)
    return INITIALIZERS[name]
