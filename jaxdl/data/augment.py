"""Image augmentation in pure JAX, run inside the jitted train step (docs/design.md, decision 8).

Each op is a frozen dataclass called on ONE image `x [H, W, C]` with its own key; `Augment`
vmaps a sequence of ops over the batch with one key per example, so it is jit-able and runs on the
accelerator next to the model. Parameters follow Keras 3's preprocessing layers:

* a factor `f` means the range `(-f, f)`, a pair `(lo, hi)` is the range itself;
* rotation factors are fractions of a full turn (0.1 = up to +-36 degrees);
* zoom factors: positive zooms out (the content shrinks), negative zooms in; the zoom is
  `1 + U(lo, hi)` input pixels per output pixel; `width_factor=None` keeps the aspect ratio;
* shift factors are fractions of the height / width;
* brightness adds `U(lo, hi) * (value_range span)`; contrast scales the distance to the per-channel
  mean by `U(1 - f, 1 + f)`; both clip to `value_range`.

Geometric ops resample through one 3x3 matrix that maps output pixel coordinates (column x, row
y, 1) to input coordinates (Keras's convention, rotation about ((W-1)/2, (H-1)/2)), with
`jax.scipy.ndimage.map_coordinates`: interpolation 'bilinear' or 'nearest', fill modes
'reflect' (d c b a | a b c d | d c b a), 'wrap', 'nearest' (edge), 'constant' (`fill_value`).

The default `value_range` is (0, 1) because jaxdl's datasets are scaled to [0, 1]; Keras's
default is (0, 255) — pass it explicitly for 0..255 images.

    aug = parse_augment("flip,rotate=0.1,zoom=0.2,shift=0.1")
    batch = aug(batch, key)        # batch['x']: [B, H, W, C]; other keys pass through
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from jaxdl.errors import JaxdlError, unknown_name

# Keras's fill modes have the same meaning under the same names in map_coordinates: 'wrap' tiles
# the image (index mod size), 'reflect' repeats the edge pixel (scipy's half-sample reflection).
FILL_MODES = ("reflect", "wrap", "nearest", "constant")
INTERPOLATIONS = {"nearest": 0, "bilinear": 1}


def factor_range(name: str, factor, *, bound: float | None = 1.0) -> tuple[float, float]:
    """Keras's factor semantics: f -> (-f, f); (lo, hi) as given; checked against +-bound."""
    if isinstance(factor, (int, float)):
        lo, hi = -abs(float(factor)), abs(float(factor))
    elif isinstance(factor, Sequence) and len(factor) == 2:
        lo, hi = float(factor[0]), float(factor[1])
    else:
        raise JaxdlError(f"{name} must be a number or a (lower, upper) pair, got {factor!r}")
    if lo > hi:
        raise JaxdlError(f"{name}: lower bound {lo} exceeds upper bound {hi}")
    if bound is not None and (lo < -bound or hi > bound):
        raise JaxdlError(f"{name} must lie in [{-bound}, {bound}], got ({lo}, {hi})")
    return lo, hi


def _check_geometry(fill_mode: str, interpolation: str):
    if fill_mode not in FILL_MODES:
        raise unknown_name("fill_mode", fill_mode, FILL_MODES)
    if interpolation not in INTERPOLATIONS:
        raise unknown_name("interpolation", interpolation, INTERPOLATIONS)


def _uniform(key, lo: float, hi: float, shape=()):
    return jax.random.uniform(key, shape, jnp.float32, lo, hi)


def affine_transform(
    x,
    matrix,
    *,
    fill_mode: str = "reflect",
    fill_value: float = 0.0,
    interpolation: str = "bilinear",
):
    """Resample x [H, W, C] at `matrix @ (col, row, 1)` for each output pixel (matrix [3, 3])."""
    _check_geometry(fill_mode, interpolation)
    h, w = x.shape[0], x.shape[1]
    rows, cols = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    src = jnp.tensordot(matrix.astype(jnp.float32), jnp.stack([cols, rows, jnp.ones_like(rows)]), 1)
    order = INTERPOLATIONS[interpolation]

    def channel(img):
        return map_coordinates(
            img.astype(jnp.float32),
            [src[1], src[0]],
            order=order,
            mode=fill_mode,
            cval=fill_value,
        )

    return jax.vmap(channel, in_axes=-1, out_axes=-1)(x).astype(x.dtype)


def _about_center(linear, h: int, w: int, translate=(0.0, 0.0)):
    """[3, 3] matrix applying the 2x2 `linear` map about the image centre, then a translation."""
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    c = jnp.array([cx, cy])
    offset = c - linear @ c + jnp.asarray(translate, jnp.float32)
    top = jnp.concatenate([linear, offset[:, None]], axis=1)
    return jnp.concatenate([top, jnp.array([[0.0, 0.0, 1.0]])], axis=0)


@dataclass(frozen=True, kw_only=True)
class _Geometric:
    fill_mode: str = "reflect"
    fill_value: float = 0.0
    interpolation: str = "bilinear"

    def __post_init__(self):
        _check_geometry(self.fill_mode, self.interpolation)

    def _warp(self, x, matrix):
        return affine_transform(
            x,
            matrix,
            fill_mode=self.fill_mode,
            fill_value=self.fill_value,
            interpolation=self.interpolation,
        )


@dataclass(frozen=True)
class Flip:
    """Keras RandomFlip: with probability 1/2 flip left-right ('horizontal'), up-down
    ('vertical') or both ('horizontal_and_vertical', one draw for both as in Keras)."""

    mode: str = "horizontal"

    def __post_init__(self):
        modes = ("horizontal", "vertical", "horizontal_and_vertical")
        if self.mode not in modes:
            raise unknown_name("flip mode", self.mode, modes)

    def apply(self, x, flip):
        y = x
        if self.mode in ("horizontal", "horizontal_and_vertical"):
            y = y[:, ::-1]
        if self.mode in ("vertical", "horizontal_and_vertical"):
            y = y[::-1]
        return jnp.where(flip, y, x)

    def __call__(self, x, key):
        return self.apply(x, jax.random.uniform(key) <= 0.5)


@dataclass(frozen=True)
class Rotate(_Geometric):
    """Keras RandomRotation: angle U(lo, hi) * 2*pi; input = R(angle) (output - centre) + centre,
    so +pi/2 equals np.rot90(x, 1) (counter-clockwise as displayed)."""

    factor: float | tuple[float, float] = 0.1

    def __post_init__(self):
        super().__post_init__()
        factor_range("rotation factor", self.factor, bound=None)

    def apply(self, x, angle):
        c, s = jnp.cos(angle), jnp.sin(angle)
        return self._warp(x, _about_center(jnp.array([[c, -s], [s, c]]), x.shape[0], x.shape[1]))

    def __call__(self, x, key):
        lo, hi = factor_range("rotation factor", self.factor, bound=None)
        return self.apply(x, _uniform(key, lo, hi) * 2 * math.pi)


@dataclass(frozen=True)
class Zoom(_Geometric):
    """Keras RandomZoom: input pixels per output pixel 1 + U(lo, hi) per axis (positive: out)."""

    height_factor: float | tuple[float, float] = 0.1
    width_factor: float | tuple[float, float] | None = None

    def __post_init__(self):
        super().__post_init__()
        factor_range("zoom height_factor", self.height_factor)
        if self.width_factor is not None:
            factor_range("zoom width_factor", self.width_factor)

    def apply(self, x, zoom_h, zoom_w):
        linear = jnp.diag(
            jnp.stack([jnp.asarray(zoom_w, jnp.float32), jnp.asarray(zoom_h, jnp.float32)])
        )
        return self._warp(x, _about_center(linear, x.shape[0], x.shape[1]))

    def __call__(self, x, key):
        kh, kw = jax.random.split(key)
        zh = 1.0 + _uniform(kh, *factor_range("zoom height_factor", self.height_factor))
        zw = (
            zh
            if self.width_factor is None
            else 1.0 + _uniform(kw, *factor_range("zoom width_factor", self.width_factor))
        )
        return self.apply(x, zh, zw)


@dataclass(frozen=True)
class Shift(_Geometric):
    """Keras RandomTranslation: shift by U(lo, hi) * height rows and U(lo, hi) * width columns
    (positive: content moves down / right)."""

    height_factor: float | tuple[float, float] = 0.1
    width_factor: float | tuple[float, float] = 0.1

    def __post_init__(self):
        super().__post_init__()
        factor_range("shift height_factor", self.height_factor)
        factor_range("shift width_factor", self.width_factor)

    def apply(self, x, dy, dx):
        return self._warp(x, _about_center(jnp.eye(2), x.shape[0], x.shape[1], (-dx, -dy)))

    def __call__(self, x, key):
        kh, kw = jax.random.split(key)
        h, w = x.shape[0], x.shape[1]
        dy = _uniform(kh, *factor_range("shift height_factor", self.height_factor)) * h
        dx = _uniform(kw, *factor_range("shift width_factor", self.width_factor)) * w
        return self.apply(x, dy, dx)


@dataclass(frozen=True)
class Shear(_Geometric):
    """Shear about the centre: input col = col + sx * (row - cy), input row = row + sy * (col - cx),
    sx ~ U(x range), sy ~ U(y range) (shear ratios, i.e. tan of the shear angle).

    `about='corner'` shears about the top-left pixel instead (input col = col + sx * row, input
    row = row + sy * col), which is what keras.layers.RandomShear (Keras 3) computes: with the
    same factors the two give the same image (tests/data/test_augment.py). Keras also flips the sign
    of both factors with probability 1/2, which for the symmetric default range (-f, f) changes
    nothing."""

    x_factor: float | tuple[float, float] = 0.1
    y_factor: float | tuple[float, float] = 0.0
    about: str = "center"  # 'center' | 'corner' (Keras 3's RandomShear)

    def __post_init__(self):
        super().__post_init__()
        factor_range("shear x_factor", self.x_factor)
        factor_range("shear y_factor", self.y_factor)
        if self.about not in ("center", "corner"):
            raise JaxdlError(f"shear about must be 'center' or 'corner', got {self.about!r}")

    def apply(self, x, sx, sy):
        linear = jnp.stack(
            [
                jnp.stack([jnp.float32(1.0), jnp.asarray(sx, jnp.float32)]),
                jnp.stack([jnp.asarray(sy, jnp.float32), jnp.float32(1.0)]),
            ]
        )
        if self.about == "corner":
            top = jnp.concatenate([linear, jnp.zeros((2, 1), jnp.float32)], axis=1)
            return self._warp(x, jnp.concatenate([top, jnp.array([[0.0, 0.0, 1.0]])], axis=0))
        return self._warp(x, _about_center(linear, x.shape[0], x.shape[1]))

    def __call__(self, x, key):
        kx, ky = jax.random.split(key)
        return self.apply(
            x,
            _uniform(kx, *factor_range("shear x_factor", self.x_factor)),
            _uniform(ky, *factor_range("shear y_factor", self.y_factor)),
        )


@dataclass(frozen=True)
class Brightness:
    """Keras RandomBrightness: add U(lo, hi) * (value_range span), clip to value_range."""

    factor: float | tuple[float, float] = 0.1
    value_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        factor_range("brightness factor", self.factor)

    def apply(self, x, delta):
        lo, hi = self.value_range
        return jnp.clip(x + delta * (hi - lo), lo, hi).astype(x.dtype)

    def __call__(self, x, key):
        return self.apply(x, _uniform(key, *factor_range("brightness factor", self.factor)))


@dataclass(frozen=True)
class Contrast:
    """Keras RandomContrast: (x - mean) * c + mean with the per-channel mean over H, W and
    c ~ U(1 - lo, 1 + hi) for factor f = (lo, hi) (a number f means (f, f)); clip to value_range."""

    factor: float | tuple[float, float] = 0.1
    value_range: tuple[float, float] = (0.0, 1.0)

    def _bounds(self):
        f = self.factor
        lo, hi = (f, f) if isinstance(f, (int, float)) else f
        if not (0 <= lo <= 1 and hi >= 0):
            raise JaxdlError(
                f"contrast factor must be in [0, 1] (a pair: lower in [0, 1], upper >= 0), "
                f"got {f!r}"
            )
        return 1.0 - lo, 1.0 + hi

    def __post_init__(self):
        self._bounds()

    def apply(self, x, c):
        mean = jnp.mean(x, axis=(0, 1), keepdims=True)
        return jnp.clip((x - mean) * c + mean, *self.value_range).astype(x.dtype)

    def __call__(self, x, key):
        return self.apply(x, _uniform(key, *self._bounds()))


@dataclass(frozen=True)
class RandomCrop:
    """A random `height x width` window, after padding each side by `padding` pixels with the
    fill mode (the CIFAR recipe: padding 4, crop back to 32x32). With padding 0 this is Keras's
    RandomCrop in training (offsets uniform over the valid positions)."""

    height: int
    width: int
    padding: int = 0
    fill_mode: str = "constant"
    fill_value: float = 0.0

    def __post_init__(self):
        if self.height < 1 or self.width < 1 or self.padding < 0:
            raise JaxdlError(
                f"RandomCrop needs height, width >= 1 and padding >= 0, got "
                f"{self.height}x{self.width} padding {self.padding}"
            )
        _check_geometry(self.fill_mode, "nearest")

    def _pad(self, x):
        p = self.padding
        if not p:
            return x
        widths = ((p, p), (p, p), (0, 0))
        if self.fill_mode == "constant":
            return jnp.pad(x, widths, constant_values=self.fill_value)
        return jnp.pad(
            x,
            widths,
            mode={"reflect": "symmetric", "wrap": "wrap", "nearest": "edge"}[self.fill_mode],
        )

    def apply(self, x, top, left):
        x = self._pad(x)
        if x.shape[0] < self.height or x.shape[1] < self.width:
            raise JaxdlError(
                f"RandomCrop of {self.height}x{self.width} from a padded image of "
                f"{x.shape[0]}x{x.shape[1]}"
            )
        return jax.lax.dynamic_slice(x, (top, left, 0), (self.height, self.width, x.shape[2]))

    def __call__(self, x, key):
        kt, kl = jax.random.split(key)
        p = 2 * self.padding
        top = jax.random.randint(kt, (), 0, x.shape[0] + p - self.height + 1)
        left = jax.random.randint(kl, (), 0, x.shape[1] + p - self.width + 1)
        return self.apply(x, top, left)


@dataclass(frozen=True)
class Resize:
    """Resize to height x width with jax.image.resize; like Keras's Resizing, no antialiasing
    by default (jax.image.resize's own default antialiases when shrinking)."""

    height: int
    width: int
    interpolation: str = "bilinear"
    antialias: bool = False

    def __post_init__(self):
        _check_geometry("constant", self.interpolation)

    def __call__(self, x, key=None):
        shape = (self.height, self.width, x.shape[2])
        return jax.image.resize(x, shape, self.interpolation, antialias=self.antialias).astype(
            x.dtype
        )


@dataclass(frozen=True)
class Rescale:
    """x * scale + offset (Keras Rescaling): 1/255 for [0, 1]; 1/127.5 and offset -1 for [-1, 1]."""

    scale: float
    offset: float = 0.0

    def __call__(self, x, key=None):
        return x * self.scale + self.offset


@dataclass(frozen=True)
class Normalize:
    """(x - mean) / std per channel (scalars or one value per channel)."""

    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0

    def __post_init__(self):
        if jnp.any(jnp.asarray(self.std) <= 0):
            raise JaxdlError(f"normalize std must be > 0, got {self.std!r}")

    def __call__(self, x, key=None):
        return (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)


Op = Callable  # op(x [H, W, C], key) -> x'


@dataclass(frozen=True)
class Augment:
    """A sequence of ops applied to batch['x'] [B, H, W, C], one key per example (and per op)."""

    ops: tuple[Op, ...] = field(default_factory=tuple)

    def images(self, x, key):
        """x [B, H, W, C] -> augmented x; example i uses fold_in(key, i)-derived keys."""
        if x.ndim != 4:
            raise JaxdlError(
                f"augmentation expects images [batch, height, width, channels], got shape {x.shape}"
            )
        keys = jax.random.split(key, x.shape[0])

        def one(img, k):
            for i, op in enumerate(self.ops):
                img = op(img, jax.random.fold_in(k, i))
            return img

        return jax.vmap(one)(x, keys)

    def __call__(self, batch: dict, key) -> dict:
        return {**batch, "x": self.images(batch["x"], key)}


def _number(text: str, name: str) -> float:
    try:
        if "/" in text:
            num, den = text.split("/")
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise JaxdlError(f"augment spec: {name}={text!r} is not a number") from None


def _factor(text: str, name: str):
    """'0.1' -> 0.1 (Keras: (-0.1, 0.1)); '-0.1:0.3' -> (-0.1, 0.3)."""
    if ":" in text:
        lo, hi = text.split(":", 1)
        return (_number(lo, name), _number(hi, name))
    return _number(text, name)


def _size(text: str, name: str) -> tuple[int, int]:
    h, sep, w = text.partition("x")
    try:
        return (int(h), int(w)) if sep else (int(h), int(h))
    except ValueError:
        raise JaxdlError(f"augment spec: {name}={text!r} is not a size like 24x24") from None


SPEC_HELP = (
    "flip[=horizontal|vertical|both], rotate=F, zoom=F, shift=F, hshift=F, wshift=F, "
    "shear=F, brightness=F, contrast=F, crop=PAD or crop=HxW, resize=HxW, rescale=S, "
    "normalize=MEAN:STD; options fill=reflect|wrap|nearest|constant, fill_value=V, "
    "interpolation=bilinear|nearest, value_range=LO:HI (F: a number f for (-f, f) or LO:HI)"
)


def parse_augment(spec: str) -> Augment:
    """Build an `Augment` from 'flip,rotate=0.1,zoom=0.2,shift=0.1' (see SPEC_HELP).

    Options (fill, fill_value, interpolation, value_range) apply to every op of the spec, wherever
    they are written. crop=PAD pads by PAD pixels and crops back to the input size, which is only
    known at call time, so it is resolved per call."""
    if not isinstance(spec, str):
        raise JaxdlError(f"augment spec must be a string such as 'flip,rotate=0.1', got {spec!r}")
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise JaxdlError(f"augment spec is empty; expected e.g. 'flip,rotate=0.1' ({SPEC_HELP})")
    opts = {"fill": "reflect", "fill_value": "0", "interpolation": "bilinear", "value_range": "0:1"}
    ops_spec, given = [], set()
    for item in items:
        name, _, value = item.partition("=")
        if name in opts:
            opts[name] = value
            given.add(name)
        else:
            ops_spec.append((name, value))
    geo = dict(
        fill_mode=opts["fill"],
        fill_value=_number(opts["fill_value"], "fill_value"),
        interpolation=opts["interpolation"],
    )
    vr = _factor(opts["value_range"], "value_range")
    if not isinstance(vr, tuple):
        raise JaxdlError(f"augment spec: value_range must be LO:HI, got {opts['value_range']!r}")
    ops = []
    for name, value in ops_spec:

        def need(v=value, n=name):
            if not v:
                raise JaxdlError(f"augment spec: {n} needs a value, e.g. {n}=0.1")
            return v

        if name == "flip":
            mode = {"": "horizontal", "both": "horizontal_and_vertical"}.get(value, value)
            ops.append(Flip(mode))
        elif name == "rotate":
            ops.append(Rotate(factor=_factor(need(), name), **geo))
        elif name == "zoom":
            ops.append(Zoom(height_factor=_factor(need(), name), **geo))
        elif name in ("shift", "hshift", "wshift"):
            f = _factor(need(), name)
            ops.append(
                Shift(
                    height_factor=0.0 if name == "wshift" else f,
                    width_factor=0.0 if name == "hshift" else f,
                    **geo,
                )
            )
        elif name == "shear":
            ops.append(Shear(x_factor=_factor(need(), name), **geo))
        elif name == "brightness":
            ops.append(Brightness(_factor(need(), name), value_range=vr))
        elif name == "contrast":
            ops.append(Contrast(_factor(need(), name), value_range=vr))
        elif name == "crop":
            v = need()
            if "x" in v:
                ops.append(RandomCrop(*_size(v, name)))
            else:
                # zero padding (the CIFAR recipe) unless a fill mode is given
                fill = geo["fill_mode"] if "fill" in given else "constant"
                ops.append(_PadCrop(int(_number(v, name)), fill, geo["fill_value"]))
        elif name == "resize":
            ops.append(Resize(*_size(need(), name), interpolation=geo["interpolation"]))
        elif name == "rescale":
            ops.append(Rescale(_number(need(), name)))
        elif name == "normalize":
            m = _factor(need(), name)
            if not isinstance(m, tuple):
                raise JaxdlError(f"augment spec: normalize needs MEAN:STD, got {value!r}")
            ops.append(Normalize(*m))
        else:
            raise unknown_name(
                "augmentation",
                name,
                [
                    "flip",
                    "rotate",
                    "zoom",
                    "shift",
                    "hshift",
                    "wshift",
                    "shear",
                    "brightness",
                    "contrast",
                    "crop",
                    "resize",
                    "rescale",
                    "normalize",
                    *opts,
                ],
            )
    return Augment(tuple(ops))


@dataclass(frozen=True)
class _PadCrop:
    """Pad by `padding` and randomly crop back to the input's own size (spec `crop=PAD`)."""

    padding: int
    fill_mode: str = "constant"
    fill_value: float = 0.0

    def __call__(self, x, key):
        return RandomCrop(x.shape[0], x.shape[1], self.padding, self.fill_mode, self.fill_value)(
            x, key
        )
