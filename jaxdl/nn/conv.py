"""Convolution layers, pooling and the arithmetic of convolutions.

Layout is channels-last: 1D inputs are [B, T, C], 2D inputs [B, H, W, C]. Kernels are
[*kernel, Cin / groups, Cout] (nnx.Conv's layout, the same as Keras's).

Padding (the same names for convolutions, transposed convolutions and pooling):
- 'valid': no padding, out = floor((n - d (k - 1) - 1) / s) + 1.
- 'same': the course's and Keras/TensorFlow's rule, out = ceil(n / s) for any kernel, stride and
  dilation. The total padding max((ceil(n / s) - 1) s + d (k - 1) + 1 - n, 0) is split with the
  extra pixel at the end (bottom / right), as XLA's 'SAME'.
- 'same_symmetric': torchvision's `padding=k // 2`: d (k - 1) // 2 on each side. Equal to 'same'
  for stride 1 and odd k; for stride 2 on an even input torchvision pads (1, 1) where Keras pads
  (0, 1), which moves the sampling grid by one pixel (same size for odd k), and an even kernel
  gives n - 1 at stride 1. The families whose reference is torchvision / timm use it.
- 'same_keras': an older name of 'same' (kept so configs written with it still load).
- 'causal' (1-D only, Keras's Conv1D): d (k - 1) zeros at the start, so output t sees inputs
  <= t; out = ceil(n / s).
- an int p: p pixels on each side (torch's padding=p); or explicit ((lo, hi), ...) per axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.nn.activations import get_activation
from jaxdl.parallel import logical as L

# He-normal on fan_out, torchvision's init for convolutions (kaiming_normal_, mode='fan_out').
conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def _tuple(v, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, Sequence) else (v,) * n


PADDINGS = ("valid", "same", "same_symmetric", "same_keras", "causal")
SAME_SYMMETRIC = "same_symmetric"  # torchvision's k // 2 on each side


def same_pads(n: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of 'same' along an axis of length n: the total
    max((ceil(n / s) - 1) s + d (k - 1) + 1 - n, 0), the extra pixel at the end (Keras / XLA)."""
    eff = dilation * (kernel - 1) + 1
    total = max((-(-n // stride) - 1) * stride + eff - n, 0)
    return total // 2, total - total // 2


def _check_padding(padding, ndim: int) -> None:
    if isinstance(padding, bool) or (isinstance(padding, str) and padding not in PADDINGS):
        raise JaxdlError(
            f"padding must be one of {', '.join(map(repr, PADDINGS))}, an int or ((lo, hi), ...) "
            f"pairs; got {padding!r}"
        )
    if padding == "causal" and ndim != 1:
        raise JaxdlError(
            f"padding='causal' is for 1-D convolutions (Conv1D); this one has {ndim} spatial dims"
        )


def resolve_padding(padding, kernel, dilation=1, ndim: int = 2):
    """'valid' | 'same' | 'same_symmetric' | 'causal' | int | pairs -> what nnx.Conv and
    lax.reduce_window take ('same' stays XLA's 'SAME', which lax resolves per input size)."""
    _check_padding(padding, ndim)
    k, d = _tuple(kernel, ndim), _tuple(dilation, ndim)
    if isinstance(padding, int):
        return tuple((padding, padding) for _ in k)
    if padding == "valid":
        return "VALID"
    if padding in ("same", "same_keras"):
        return "SAME"
    if padding == "same_symmetric":
        return tuple(
            ((di * (ki - 1)) // 2, (di * (ki - 1)) // 2) for ki, di in zip(k, d, strict=True)
        )
    if padding == "causal":
        return ((d[0] * (k[0] - 1), 0),)
    if not isinstance(padding, str) and all(
        isinstance(p, Sequence) and len(p) == 2 for p in padding
    ):
        if len(padding) != ndim:
            raise JaxdlError(f"padding needs {ndim} (lo, hi) pairs, got {padding!r}")
        return tuple(tuple(int(v) for v in p) for p in padding)
    raise JaxdlError(
        f"padding must be one of {PADDINGS}, an int or (lo, hi) pairs, got {padding!r}"
    )


def conv_output_size(
    n: int, kernel: int, stride: int = 1, padding="valid", dilation: int = 1
) -> int:
    """Output length of a convolution or pooling along one axis of length n.

    'valid': floor((n - d (k - 1) - 1) / s) + 1; 'same' and 'causal': ceil(n / s);
    'same_symmetric' / int p: floor((n + 2p - d (k - 1) - 1) / s) + 1 with p = d (k - 1) // 2
    for 'same_symmetric'; a (lo, hi) pair: floor((n + lo + hi - d (k - 1) - 1) / s) + 1."""
    eff = dilation * (kernel - 1) + 1
    _check_padding(padding, 1 if padding == "causal" else 2)
    if padding in ("same", "same_keras", "causal"):
        return -(-n // stride)
    if padding == "valid":
        lo = hi = 0
    elif padding == "same_symmetric":
        lo = hi = (eff - 1) // 2
    elif isinstance(padding, int):
        lo = hi = padding
    else:
        lo, hi = padding
    out = (n + lo + hi - eff) // stride + 1
    if out < 1:
        raise JaxdlError(
            f"a {kernel}x{kernel} window (dilation {dilation}) does not fit an input of {n}"
        )
    return out


def conv_transpose_output_size(
    n: int,
    kernel: int,
    stride: int = 1,
    padding="valid",
    dilation: int = 1,
    output_padding: int | None = None,
) -> int:
    """Output length of a transposed convolution (Keras's Conv2DTranspose rule): 'same' gives
    n s, 'valid' n s + max(d (k - 1) + 1 - s, 0); with `output_padding` p,
    (n - 1) s + d (k - 1) + 1 - 2 pad + p where pad = 0 ('valid') or d (k - 1) // 2 ('same')."""
    if padding not in ("valid", "same"):
        raise JaxdlError(f"transposed conv padding must be 'valid' or 'same', got {padding!r}")
    eff = dilation * (kernel - 1) + 1
    if output_padding is None:
        return n * stride if padding == "same" else n * stride + max(eff - stride, 0)
    pad = 0 if padding == "valid" else (eff - 1) // 2
    return (n - 1) * stride + eff - 2 * pad + output_padding


def receptive_field(layers: Sequence[tuple[int, int]]) -> int:
    """Receptive field of a stack of (kernel, stride) layers: r = 1 + sum (k_l - 1) prod_{i<l} s_i.

    Two stacked 3x3 stride-1 convolutions see 5x5, three see 7x7 (VGG's argument)."""
    r, jump = 1, 1
    for k, s in layers:
        r += (k - 1) * jump
        jump *= s
    return r


def conv_params(
    kernel: int | Sequence[int], cin: int, cout: int, *, bias: bool = True, groups: int = 1
) -> int:
    """(prod(k) * cin / groups + bias) * cout, the course's (kh kw cin + 1) cout."""
    k = math.prod(_tuple(kernel, 2) if isinstance(kernel, int) else kernel)
    return (k * cin // groups + int(bias)) * cout


@dataclass(frozen=True)
class BN:
    """BatchNorm settings. Keras: momentum 0.99, epsilon 1e-3; torchvision: momentum 0.1 in
    torch's convention = 0.9 here, epsilon 1e-5. `scale=False` drops gamma (Keras InceptionV3)."""

    momentum: float = 0.99
    epsilon: float = 1e-3
    scale: bool = True


TORCH_BN = BN(momentum=0.9, epsilon=1e-5)


def batch_norm(c: int, bn: BN, rngs: nnx.Rngs, *, axis: str = L.CONV_OUT) -> nnx.BatchNorm:
    meta = L.axes(axis)  # the channels of the convolution it follows
    return nnx.BatchNorm(
        c,
        momentum=bn.momentum,
        epsilon=bn.epsilon,
        use_scale=bn.scale,
        scale_metadata=meta,
        bias_metadata=meta,
        rngs=rngs,
    )


class ConvBN(nnx.Module):
    """Convolution -> optional BatchNorm -> optional activation; 1D or 2D.

    x: [B, *spatial, cin] -> [B, *spatial', cout]. Parameters: `conv/kernel`, `conv/bias` (only
    when `use_bias`; by default only without norm, since BN's beta makes a bias redundant),
    `bn/scale`, `bn/bias`; state `bn/mean`, `bn/var`."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | Sequence[int] = 3,
        *,
        stride=1,
        padding="same",
        dilation=1,
        groups: int = 1,
        bn: BN | None = BN(),
        activation: str | None = "relu",
        use_bias: bool | None = None,
        ndim: int = 2,
        rngs: nnx.Rngs,
    ):
        if cin % groups or cout % groups:
            raise JaxdlError(f"groups={groups} must divide in ({cin}) and out ({cout}) channels")
        if max(_tuple(stride, ndim)) > 1 and max(_tuple(dilation, ndim)) > 1:
            raise JaxdlError(
                f"ConvBN: stride > 1 together with dilation > 1 is not allowed (Keras refuses it "
                f"too); got stride={stride}, dilation={dilation}. Use stride 1 or dilation 1"
            )
        self.conv = nnx.Conv(
            cin,
            cout,
            _tuple(kernel, ndim),
            _tuple(stride, ndim),
            padding=resolve_padding(padding, kernel, dilation, ndim),
            kernel_dilation=_tuple(dilation, ndim),
            feature_group_count=groups,
            use_bias=bn is None if use_bias is None else use_bias,
            kernel_init=conv_init,
            kernel_metadata=L.conv_axes(ndim, depthwise=groups > 1),
            bias_metadata=L.axes(L.CONV_OUT),
            rngs=rngs,
        )
        self.bn = batch_norm(cout, bn, rngs) if bn is not None else None
        self.act = get_activation(activation)

    def __call__(self, x, *, train: bool = False, rngs=None):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, use_running_average=not train)
        return self.act(x)


class SeparableConv(nnx.Module):
    """Depthwise kxk conv then pointwise 1x1 conv, no bias between (Keras SeparableConv2D,
    Chollet 2017). Parameters `depthwise/kernel` [k, k, 1, cin], `pointwise/kernel`
    [1, 1, cin, cout]. x: [B, H, W, cin] -> [B, H', W', cout]."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 3,
        *,
        stride: int = 1,
        padding="same",
        use_bias: bool = False,
        rngs: nnx.Rngs,
    ):
        self.depthwise = nnx.Conv(
            cin,
            cin,
            (kernel, kernel),
            (stride, stride),
            padding=resolve_padding(padding, kernel),
            feature_group_count=cin,
            use_bias=False,
            kernel_init=conv_init,
            kernel_metadata=L.conv_axes(depthwise=True),
            rngs=rngs,
        )
        self.pointwise = nnx.Conv(
            cin,
            cout,
            (1, 1),
            use_bias=use_bias,
            kernel_init=conv_init,
            kernel_metadata=L.conv_axes(),
            bias_metadata=L.axes(L.CONV_OUT),
            rngs=rngs,
        )

    def __call__(self, x, *, train: bool = False, rngs=None):
        return self.pointwise(self.depthwise(x))


def _pool(x, init, op, window, stride, padding, ceil_mode: bool):
    """reduce_window over the spatial axes; returns (result, window, strides, paddings)."""
    nd = x.ndim - 2
    w, s = _tuple(window, nd), _tuple(stride if stride is not None else window, nd)
    if padding == "causal":
        raise JaxdlError(
            "pooling padding must be 'valid', 'same', 'same_symmetric' or an int, got 'causal'"
        )
    pad = resolve_padding(padding, w, 1, nd)
    if pad == "SAME":
        pad = tuple(jax.lax.padtype_to_pads(x.shape[1:-1], w, s, "SAME"))
    elif pad == "VALID":
        pad = tuple((0, 0) for _ in w)
    if ceil_mode:  # torch's ceil_mode: keep a last, partial window
        pad = tuple(
            (lo, hi + (-(n + lo + hi - k) % st))
            for (lo, hi), n, k, st in zip(pad, x.shape[1:-1], w, s, strict=True)
        )
    dims, strides, full = (1, *w, 1), (1, *s, 1), ((0, 0), *pad, (0, 0))
    return jax.lax.reduce_window(x, init, op, dims, strides, full), dims, strides, full


def max_pool(x, window=2, stride=None, padding="valid", *, ceil_mode: bool = False):
    """Max pooling over the spatial axes of x: [B, *spatial, C] (padding counts as -inf).
    `stride` defaults to `window`; `ceil_mode` keeps a last partial window (torch)."""
    return _pool(x, -jnp.inf, jax.lax.max, window, stride, padding, ceil_mode)[0]


def avg_pool(
    x,
    window=2,
    stride=None,
    padding="valid",
    *,
    count_include_pad: bool = True,
    ceil_mode: bool = False,
):
    """Average pooling over the spatial axes of x: [B, *spatial, C]. `count_include_pad=False`
    divides by the number of real elements under the window (Keras; torch's option)."""
    total, dims, strides, full = _pool(x, 0.0, jax.lax.add, window, stride, padding, ceil_mode)
    if count_include_pad and not ceil_mode:
        return total / math.prod(dims)
    ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
    return total / jax.lax.reduce_window(ones, 0.0, jax.lax.add, dims, strides, full)


def global_pool(x, kind: str = "avg"):
    """[B, *spatial, C] -> [B, C] by the mean ('avg') or the maximum ('max') over space."""
    axes = tuple(range(1, x.ndim - 1))
    if kind == "avg":
        return jnp.mean(x, axis=axes)
    if kind == "max":
        return jnp.max(x, axis=axes)
    raise JaxdlError(f"pooling must be 'avg' or 'max', got {kind!r}")


class Flatten(nnx.Module):
    """[B, ...] -> [B, prod(...)] (Keras Flatten; channels-last order)."""

    def __call__(self, x, *, train: bool = False, rngs=None):
        return x.reshape(x.shape[0], -1)


class MaxPool(nnx.Module):
    """Module form of `max_pool` (no parameters), so it shows in summaries."""

    def __init__(self, window=2, stride=None, padding="valid", *, ceil_mode: bool = False):
        self.window, self.stride, self.padding, self.ceil_mode = window, stride, padding, ceil_mode

    def __call__(self, x, *, train: bool = False, rngs=None):
        return max_pool(x, self.window, self.stride, self.padding, ceil_mode=self.ceil_mode)


class AvgPool(nnx.Module):
    """Module form of `avg_pool` (no parameters)."""

    def __init__(
        self,
        window=2,
        stride=None,
        padding="valid",
        *,
        count_include_pad: bool = True,
        ceil_mode: bool = False,
    ):
        self.window, self.stride, self.padding = window, stride, padding
        self.count_include_pad, self.ceil_mode = count_include_pad, ceil_mode

    def __call__(self, x, *, train: bool = False, rngs=None):
        return avg_pool(
            x,
            self.window,
            self.stride,
            self.padding,
            count_include_pad=self.count_include_pad,
            ceil_mode=self.ceil_mode,
        )
