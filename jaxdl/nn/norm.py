"""Normalisation layers of their own: layer, group and instance
normalisation with Keras 3's definitions and defaults, and AlexNet's local response
normalisation (Krizhevsky et al. 2012, section 3.3).

Channels-last throughout. Keras's epsilon default is 1e-3 for all three (torch's is 1e-5:
pass `epsilon=1e-5` for torch weights). Parameters `scale` (Keras's gamma) and `bias` (beta).

- `LayerNorm`: statistics over `axis` (the last by default) per example, gamma/beta of the
  shape of those axes (keras.layers.LayerNormalization).
- `GroupNorm`: channels split into `groups` groups; statistics per example and group over the
  spatial axes and the group's channels; gamma/beta per channel
  (keras.layers.GroupNormalization, Wu & He 2018).
- `InstanceNorm`: GroupNorm with one channel per group (Keras: GroupNormalization(groups=-1);
  Ulyanov et al. 2016).
- `LocalResponseNorm`: b_c = a_c / (k + alpha sum_{c'=c-n/2}^{c+n/2} a_{c'}^2)^beta over the n
  neighbouring channels (clipped at the ends), the paper's k=2, n=5, alpha=1e-4, beta=0.75;
  tf.nn.local_response_normalization(depth_radius=n//2, bias=k, alpha=alpha, beta=beta) computes
  the same. torch's nn.LocalResponseNorm and Caffe divide alpha by n: pass `alpha / n` here.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError


def _axes(axis, ndim: int) -> tuple[int, ...]:
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise JaxdlError(f"axis {a} is outside an input of rank {ndim}")
        out.append(a % ndim)
    return tuple(sorted(out))


class LayerNorm(nnx.Module):
    """keras.layers.LayerNormalization: y = (x - mean) / sqrt(var + epsilon) * scale + bias, mean
    and (biased) variance over `axis` per example. `features` is the size of `axis` (a tuple when
    `axis` is a tuple). x: [B, ..., features] -> same shape. Parameters `scale`, `bias`."""

    def __init__(
        self,
        features: int | Sequence[int],
        *,
        axis: int | Sequence[int] = -1,
        epsilon: float = 1e-3,
        use_scale: bool = True,
        use_bias: bool = True,
        rngs: nnx.Rngs | None = None,
    ):
        shape = (features,) if isinstance(features, int) else tuple(features)
        n_axes = 1 if isinstance(axis, int) else len(tuple(axis))
        if len(shape) != n_axes or min(shape) < 1:
            raise JaxdlError(
                f"LayerNorm: features must give one positive size per normalised axis "
                f"(axis={axis!r}), got {features!r}"
            )
        if epsilon <= 0:
            raise JaxdlError(f"LayerNorm: epsilon must be > 0, got {epsilon}")
        self.features, self.axis, self.epsilon = shape, axis, epsilon
        self.scale = nnx.Param(jnp.ones(shape)) if use_scale else None
        self.bias = nnx.Param(jnp.zeros(shape)) if use_bias else None

    def __call__(self, x, *, train: bool = False, rngs=None):
        axes = _axes(self.axis, x.ndim)
        if tuple(x.shape[a] for a in axes) != self.features:
            raise JaxdlError(
                f"LayerNorm: input shape {x.shape} has {tuple(x.shape[a] for a in axes)} on "
                f"axis {self.axis!r}, the layer was built for {self.features}"
            )
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        mean = jnp.mean(xf, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=axes, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.epsilon)
        # gamma/beta cover the normalised axes; broadcast them into place
        bshape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
        if self.scale is not None:
            y = y * self.scale[...].reshape(bshape)
        if self.bias is not None:
            y = y + self.bias[...].reshape(bshape)
        return y.astype(x.dtype)


class GroupNorm(nnx.Module):
    """keras.layers.GroupNormalization (axis=-1): the C channels form `groups` groups of C/groups;
    each example's group is normalised over its spatial positions and channels, then scaled and
    shifted per channel. `groups=-1` means one group per channel (instance normalisation, as in
    Keras). x: [B, *spatial, C] -> same shape. Parameters `scale` [C], `bias` [C]."""

    def __init__(
        self,
        channels: int,
        groups: int = 32,
        *,
        epsilon: float = 1e-3,
        use_scale: bool = True,
        use_bias: bool = True,
        rngs: nnx.Rngs | None = None,
    ):
        groups = channels if groups == -1 else groups
        if channels < 1 or groups < 1 or channels % groups:
            raise JaxdlError(
                f"GroupNorm: groups must divide the channels (or be -1); got groups={groups}, "
                f"channels={channels}"
            )
        if epsilon <= 0:
            raise JaxdlError(f"GroupNorm: epsilon must be > 0, got {epsilon}")
        self.channels, self.groups, self.epsilon = channels, groups, epsilon
        self.scale = nnx.Param(jnp.ones((channels,))) if use_scale else None
        self.bias = nnx.Param(jnp.zeros((channels,))) if use_bias else None

    def __call__(self, x, *, train: bool = False, rngs=None):
        if x.ndim < 2 or x.shape[-1] != self.channels:
            raise JaxdlError(
                f"{type(self).__name__}: input must be [B, ..., {self.channels}] (channels "
                f"last), got shape {x.shape}"
            )
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        g = xf.reshape(*x.shape[:-1], self.groups, self.channels // self.groups)
        axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)  # spatial axes and the in-group channels
        mean = jnp.mean(g, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(g - mean), axis=axes, keepdims=True)
        y = ((g - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
        if self.scale is not None:
            y = y * self.scale[...]
        if self.bias is not None:
            y = y + self.bias[...]
        return y.astype(x.dtype)


class InstanceNorm(GroupNorm):
    """Instance normalisation (Ulyanov et al. 2016): every channel of every example normalised
    over its spatial positions; = GroupNorm(channels, groups=channels) = Keras
    GroupNormalization(groups=-1). x: [B, *spatial, C] -> same shape."""

    def __init__(
        self,
        channels: int,
        *,
        epsilon: float = 1e-3,
        use_scale: bool = True,
        use_bias: bool = True,
        rngs: nnx.Rngs | None = None,
    ):
        super().__init__(
            channels, channels, epsilon=epsilon, use_scale=use_scale, use_bias=use_bias
        )


def local_response_norm(x, n: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75):
    """x / (k + alpha * sum of x^2 over the n channels centred on each channel)^beta, channels
    last (Krizhevsky et al. 2012, section 3.3; the window is clipped at the first and last
    channel). x: [..., C] -> same shape."""
    if n < 1 or n % 2 == 0:
        raise JaxdlError(f"local response normalisation: n must be a positive odd number, got {n}")
    r = n // 2
    sq = jnp.square(x.astype(jnp.promote_types(x.dtype, jnp.float32)))
    dims, pad = (1,) * (x.ndim - 1) + (n,), ((0, 0),) * (x.ndim - 1) + ((r, r),)
    s = jax.lax.reduce_window(sq, 0.0, jax.lax.add, dims, (1,) * x.ndim, pad)
    return (x / (k + alpha * s) ** beta).astype(x.dtype)


class LocalResponseNorm(nnx.Module):
    """Module form of `local_response_norm` (no parameters); defaults are AlexNet's."""

    def __init__(self, n: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75):
        if n < 1 or n % 2 == 0:
            raise JaxdlError(f"LocalResponseNorm: n must be a positive odd number, got {n}")
        self.n, self.k, self.alpha, self.beta = n, k, alpha, beta

    def __call__(self, x, *, train: bool = False, rngs=None):
        return local_response_norm(x, self.n, self.k, self.alpha, self.beta)


__all__ = ["LayerNorm", "GroupNorm", "InstanceNorm", "LocalResponseNorm", "local_response_norm"]
