"""Resampling layers: torch's adaptive average pooling (a fixed output grid for any input size)
and the bilinear initialisation of transposed convolutions (FCN's upsampling, Long et al. 2015).

Channels-last: x [B, H, W, C].
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.errors import JaxdlError


def adaptive_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in]: torch's AdaptiveAvgPool1d as a matrix (output i averages inputs
    floor(i n_in / n_out) .. ceil((i + 1) n_in / n_out) - 1)."""
    if n_in < 1 or n_out < 1:
        raise JaxdlError(f"adaptive pooling needs positive sizes, got {n_in} -> {n_out}")
    m = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool(x, output_size: int | Sequence[int]):
    """torch.nn.functional.adaptive_avg_pool2d in NHWC: [B, H, W, C] -> [B, oh, ow, C], output
    (i, j) the mean of rows floor(i H / oh) .. ceil((i+1) H / oh) - 1 and the same for columns
    (windows overlap when H is not a multiple of oh)."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    if x.ndim != 4:
        raise JaxdlError(f"adaptive_avg_pool: input must be [B, H, W, C], got shape {x.shape}")
    ph = jnp.asarray(adaptive_pool_matrix(x.shape[1], oh), x.dtype)
    pw = jnp.asarray(adaptive_pool_matrix(x.shape[2], ow), x.dtype)
    return jnp.einsum("bhwc,ih,jw->bijc", x, ph, pw)


class AdaptiveAvgPool(nnx.Module):
    """Module form of `adaptive_avg_pool` (no parameters)."""

    def __init__(self, output_size: int | Sequence[int]):
        self.output_size = output_size

    def __call__(self, x, *, train: bool = False, rngs=None):
        return adaptive_avg_pool(x, self.output_size)


def bilinear_kernel(size: int, channels: int) -> np.ndarray:
    """[size, size, channels, channels]: the transposed-convolution kernel that upsamples each
    channel by bilinear interpolation (channel c to channel c only), FCN's `upsample_filt`:
    f(t) = 1 - |t - centre| / factor, factor = ceil(size / 2), centre = factor - 1 (odd size) or
    factor - 0.5 (even size). With stride s and size 2s, output pixel o interpolates the input at
    (o + 0.5) / s - 1."""
    if size < 1 or channels < 1:
        raise JaxdlError(f"bilinear_kernel: size and channels must be >= 1, got {size}, {channels}")
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    t = np.arange(size)
    f1 = 1 - np.abs(t - centre) / factor
    filt = np.outer(f1, f1)
    k = np.zeros((size, size, channels, channels), np.float32)
    k[:, :, np.arange(channels), np.arange(channels)] = filt[:, :, None]
    return k


def bilinear_init(key, shape, dtype=jnp.float32):
    """An initializer for a ConvTranspose kernel [k, k, C, C] (square, cin == cout): the
    bilinear upsampling kernel (`bilinear_kernel`)."""
    kh, kw, cin, cout = shape
    if kh != kw or cin != cout:
        raise JaxdlError(
            f"bilinear_init needs a square kernel with equal in and out channels, got {shape}"
        )
    return jnp.asarray(bilinear_kernel(kh, cin), dtype)


__all__ = [
    "AdaptiveAvgPool",
    "adaptive_avg_pool",
    "adaptive_pool_matrix",
    "bilinear_init",
    "bilinear_kernel",
]
