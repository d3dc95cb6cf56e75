"""Augmentation in JAX: geometry of each op, value ranges, determinism per key, the spec parser,
and parity with Keras 3's preprocessing layers given the same random draws."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data import augment as A
from jaxdl.errors import JaxdlError


def _img(h=9, w=9, c=3, seed=0):
    return jnp.asarray(np.random.default_rng(seed).random((h, w, c)), jnp.float32)


def _smooth(h=24, w=24, c=2):
    """A smooth image: bilinear and Keras's resampler agree up to rounding on it."""
    r, q = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    chans = [np.sin(3 * r + 2 * q + k) * 0.5 + 0.5 for k in range(c)]
    return np.stack(chans, -1).astype(np.float32)


def _np(x):
    return np.asarray(x)


# ---- geometry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fill", A.FILL_MODES)
def test_quarter_turn_is_rot90(fill):
    x = _img(8, 8)
    out = A.Rotate((0.25, 0.25), fill_mode=fill)(x, jax.random.key(0))  # exactly +90 degrees
    np.testing.assert_allclose(_np(out), np.rot90(_np(x), 1, axes=(0, 1)), atol=1e-5)
    back = A.Rotate((-0.25, -0.25), fill_mode=fill)(out, jax.random.key(1))
    np.testing.assert_allclose(_np(back), _np(x), atol=1e-5)


def test_two_flips_are_the_identity_and_one_flip_mirrors():
    x = _img(5, 7)
    for mode, ref in (
        ("horizontal", _np(x)[:, ::-1]),
        ("vertical", _np(x)[::-1]),
        ("horizontal_and_vertical", _np(x)[::-1, ::-1]),
    ):
        f = A.Flip(mode)
        np.testing.assert_array_equal(_np(f.apply(x, True)), ref)
        np.testing.assert_array_equal(_np(f.apply(f.apply(x, True), True)), _np(x))
        np.testing.assert_array_equal(_np(f.apply(x, False)), _np(x))


def test_zoom_one_shift_zero_shear_zero_are_identities():
    x = _img(6, 10)
    key = jax.random.key(3)
    for op in (
        A.Zoom((0.0, 0.0)),
        A.Zoom((0.0, 0.0), (0.0, 0.0)),
        A.Shift((0.0, 0.0), (0.0, 0.0)),
        A.Shear((0.0, 0.0), (0.0, 0.0)),
        A.Rotate((0.0, 0.0)),
    ):
        np.testing.assert_allclose(_np(op(x, key)), _np(x), atol=1e-6, err_msg=str(op))


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_shift_by_k_pixels_is_a_roll_with_the_fill(interpolation):
    x = _img(6, 8)
    k = 3
    # constant fill: the uncovered columns hold the fill value
    out = _np(
        A.Shift(fill_mode="constant", fill_value=0.5, interpolation=interpolation).apply(
            x, 0.0, float(k)
        )
    )
    ref = np.roll(_np(x), k, axis=1)
    ref[:, :k] = 0.5
    np.testing.assert_allclose(out, ref, atol=1e-6)
    # wrap fill: exactly a roll; nearest fill: the edge column repeated; down by 2 rows too
    np.testing.assert_allclose(
        _np(A.Shift(fill_mode="wrap").apply(x, 2.0, float(k))),
        np.roll(_np(x), (2, k), axis=(0, 1)),
        atol=1e-6,
    )
    edge = _np(A.Shift(fill_mode="nearest").apply(x, 0.0, float(-k)))
    np.testing.assert_allclose(edge[:, -k:], np.repeat(_np(x)[:, -1:], k, axis=1), atol=1e-6)
    # reflect: (d c b a | a b c d)
    refl = _np(A.Shift(fill_mode="reflect").apply(x, 0.0, 2.0))
    np.testing.assert_allclose(refl[:, :2], _np(x)[:, 1::-1], atol=1e-6)


def test_zoom_factor_semantics():
    """Positive factors zoom out (content shrinks), negative zoom in, about the centre."""
    x = np.zeros((9, 9, 1), np.float32)
    x[3:6, 3:6] = 1.0
    zin = _np(
        A.Zoom(fill_mode="constant", interpolation="nearest").apply(jnp.asarray(x), 1 / 3, 1 / 3)
    )
    assert zin.sum() == 81.0  # the 3x3 centre fills the frame
    zout = _np(
        A.Zoom(fill_mode="constant", interpolation="nearest").apply(jnp.asarray(x), 3.0, 3.0)
    )
    assert zout[4, 4, 0] == 1.0 and zout.sum() == 1.0  # shrunk to one pixel at the centre
    with pytest.raises(JaxdlError, match=r"must lie in \[-1.0, 1.0\]"):
        A.Zoom(1.5)


def test_crop_with_padding_and_resize_rescale_normalize():
    x = _img(8, 8)
    crop = A.RandomCrop(8, 8, padding=2)
    np.testing.assert_array_equal(_np(crop.apply(x, 2, 2)), _np(x))  # the centre window
    corner = _np(crop.apply(x, 0, 0))
    assert (corner[:2] == 0).all() and (corner[:, :2] == 0).all()
    np.testing.assert_array_equal(corner[2:, 2:], _np(x)[:6, :6])
    outs = {tuple(_np(crop(x, jax.random.key(i))).ravel()[:5]) for i in range(20)}
    assert len(outs) > 5  # offsets vary with the key
    assert A.Resize(4, 6)(x).shape == (4, 6, 3)
    np.testing.assert_allclose(_np(A.Rescale(1 / 127.5, -1.0)(x * 255)), _np(x) * 2 - 1, atol=1e-5)
    n = _np(A.Normalize((0.5, 0.25, 0.0), (0.5, 0.5, 2.0))(x))
    np.testing.assert_allclose(n[..., 1], (_np(x)[..., 1] - 0.25) / 0.5, rtol=1e-6)


# ---- ranges, keys, the spec ---------------------------------------------------------------------

SPEC = "flip=both,rotate=0.2,zoom=0.3,shift=0.2,shear=0.2,brightness=0.3,contrast=0.5,crop=2"


def test_value_ranges_and_determinism_per_key():
    aug = A.parse_augment(SPEC)
    x = jnp.asarray(np.random.default_rng(0).random((6, 12, 12, 3)), jnp.float32)
    batch = {"x": x, "y": jnp.arange(6), "weight": jnp.ones(6)}
    out = jax.jit(aug)(batch, jax.random.key(1))
    assert out["x"].shape == x.shape and out["x"].dtype == x.dtype
    assert float(out["x"].min()) >= 0.0 and float(out["x"].max()) <= 1.0
    np.testing.assert_array_equal(_np(out["y"]), np.arange(6))  # labels pass through
    again = jax.jit(aug)(batch, jax.random.key(1))
    np.testing.assert_array_equal(_np(out["x"]), _np(again["x"]))
    other = aug(batch, jax.random.key(2))
    assert not np.allclose(_np(out["x"]), _np(other["x"]))
    # one key per example: identical images in a batch are augmented differently
    same = aug({"x": jnp.broadcast_to(x[:1], x.shape)}, jax.random.key(1))["x"]
    assert not np.allclose(_np(same[0]), _np(same[1]))
    # geometric resampling (bilinear, reflect) stays within the input's range
    geo = A.parse_augment("rotate=0.3,zoom=0.3,shear=0.3")({"x": x}, jax.random.key(4))["x"]
    assert float(geo.min()) >= float(x.min()) - 1e-6 and float(geo.max()) <= float(x.max()) + 1e-6
    brighter = A.Brightness((0.5, 0.5))(x[0], jax.random.key(0))
    assert float(brighter.max()) == 1.0 and float(brighter.min()) >= 0.5


def test_spec_parser():
    aug = A.parse_augment("flip,rotate=0.1,zoom=0.2,shift=0.1")
    assert [type(o).__name__ for o in aug.ops] == ["Flip", "Rotate", "Zoom", "Shift"]
    assert (
        aug.ops[1].factor == 0.1
        and aug.ops[2].height_factor == 0.2
        and aug.ops[2].width_factor is None
    )
    aug = A.parse_augment(
        "fill=wrap,interpolation=nearest,rotate=-0.1:0.2,rescale=1/255,resize=16x12,crop=24x20,"
        "normalize=0.5:0.25,wshift=0.1,value_range=0:255,brightness=0.2"
    )
    rot = aug.ops[0]
    assert rot.factor == (-0.1, 0.2) and rot.fill_mode == "wrap" and rot.interpolation == "nearest"
    assert aug.ops[1].scale == pytest.approx(1 / 255) and aug.ops[2] == A.Resize(16, 12, "nearest")
    assert aug.ops[3] == A.RandomCrop(24, 20) and aug.ops[4] == A.Normalize(0.5, 0.25)
    assert aug.ops[5].height_factor == 0.0 and aug.ops[5].width_factor == 0.1
    assert aug.ops[6].value_range == (0.0, 255.0)
    assert A.parse_augment("crop=4").ops[0].fill_mode == "constant"  # zero padding by default
    with pytest.raises(JaxdlError, match="unknown augmentation 'rotat'.*rotate"):
        A.parse_augment("flip,rotat=0.1")
    with pytest.raises(JaxdlError, match="rotate=.*is not a number"):
        A.parse_augment("rotate=a lot")
    with pytest.raises(JaxdlError, match="zoom needs a value"):
        A.parse_augment("zoom")
    with pytest.raises(JaxdlError, match="unknown fill_mode 'mirror'"):
        A.parse_augment("fill=mirror,rotate=0.1")
    with pytest.raises(JaxdlError, match="empty"):
        A.parse_augment(" , ")
    with pytest.raises(JaxdlError, match=r"images \[batch, height, width, channels\]"):
        A.parse_augment("flip")({"x": jnp.zeros((2, 8))}, jax.random.key(0))


# ---- parity with Keras 3 ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("Keras parity needs KERAS_BACKEND=jax")
    return keras


def test_keras_flip_crop_resize_rescale(keras):
    x = _smooth(10, 12, 3)[None].repeat(2, 0)
    for mode in ("horizontal", "vertical", "horizontal_and_vertical"):
        layer = keras.layers.RandomFlip(mode)
        flips = np.array([True, False]).reshape(2, 1, 1, 1)
        ref = _np(layer.transform_images(jnp.asarray(x), {"flips": flips, "input_shape": x.shape}))
        ours = np.stack(
            [_np(A.Flip(mode).apply(jnp.asarray(x[i]), bool(flips[i, 0, 0, 0]))) for i in range(2)]
        )
        np.testing.assert_array_equal(ours, ref)
    crop = keras.layers.RandomCrop(6, 7)
    ref = _np(crop.transform_images(jnp.asarray(x), (3, 2)))
    np.testing.assert_array_equal(_np(A.RandomCrop(6, 7).apply(jnp.asarray(x[0]), 3, 2)), ref[0])
    for interp in ("bilinear", "nearest"):
        for hw in ((6, 5), (20, 16)):  # shrink and enlarge
            ref = _np(keras.layers.Resizing(*hw, interpolation=interp)(x))
            ours = _np(A.Resize(*hw, interp)(jnp.asarray(x[0])))
            np.testing.assert_allclose(ours, ref[0], atol=1e-5)
    ref = _np(keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x * 255))
    np.testing.assert_allclose(
        _np(A.Rescale(1 / 127.5, -1.0)(jnp.asarray(x * 255))), ref, atol=1e-5
    )


def test_keras_brightness_contrast(keras):
    x = (_smooth(8, 8, 3) * 255)[None]
    for delta in (-0.3, 0.2, 0.7):  # 0.7 clips at 255
        layer = keras.layers.RandomBrightness(0.9, value_range=(0, 255))
        ref = _np(
            layer.transform_images(
                jnp.asarray(x), {"rgb_delta": np.full((1, 1, 1, 1), delta * 255.0)}
            )
        )
        ours = _np(A.Brightness(0.9, value_range=(0, 255)).apply(jnp.asarray(x[0]), delta))
        np.testing.assert_allclose(ours, ref[0], rtol=1e-6, atol=1e-4)
    for c in (0.4, 1.0, 1.8):
        layer = keras.layers.RandomContrast(0.9, value_range=(0, 255))
        ref = _np(
            layer.transform_images(jnp.asarray(x), {"contrast_factor": np.full((1, 1, 1, 1), c)})
        )
        ours = _np(A.Contrast(0.9, value_range=(0, 255)).apply(jnp.asarray(x[0]), c))
        np.testing.assert_allclose(ours, ref[0], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("fill", ["reflect", "constant", "nearest", "wrap"])
def test_keras_rotation_zoom_translation(keras, fill):
    x = _smooth(16, 20, 2)[None]
    rot = keras.layers.RandomRotation(0.2, fill_mode=fill, interpolation="bilinear")
    t = rot.get_random_transformation(
        jnp.asarray(x), training=True, seed=keras.random.SeedGenerator(1)
    )
    ref = _np(rot.transform_images(jnp.asarray(x), t))[0]
    ours = _np(
        A.Rotate(0.2, fill_mode=fill).apply(jnp.asarray(x[0]), float(t["angle"][0]) * math.pi / 180)
    )
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    zoom = keras.layers.RandomZoom((-0.4, 0.4), (-0.4, 0.4), fill_mode=fill)
    t = zoom.get_random_transformation(
        jnp.asarray(x), training=True, seed=keras.random.SeedGenerator(2)
    )
    ref = _np(zoom.transform_images(jnp.asarray(x), t))[0]
    ours = _np(
        A.Zoom(0.4, 0.4, fill_mode=fill).apply(
            jnp.asarray(x[0]), float(t["height_zoom"][0, 0]), float(t["width_zoom"][0, 0])
        )
    )
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    shift = keras.layers.RandomTranslation(0.3, 0.3, fill_mode=fill)
    t = shift.get_random_transformation(
        jnp.asarray(x), training=True, seed=keras.random.SeedGenerator(3)
    )
    ref = _np(shift.transform_images(jnp.asarray(x), t))[0]
    dx, dy = (float(v) for v in t["translations"][0])
    ours = _np(A.Shift(0.3, 0.3, fill_mode=fill).apply(jnp.asarray(x[0]), dy, dx))
    np.testing.assert_allclose(ours, ref, atol=2e-3)


@pytest.mark.parametrize("fill", ["reflect", "constant", "nearest", "wrap"])
def test_keras_shear(keras, fill):
    """keras.layers.RandomShear with fixed factors (its transformation dict) equals Shear with
    about='corner' and the same factors; the default (about the centre) differs by a shift."""
    x = _smooth(16, 20, 2)[None]
    layer = keras.layers.RandomShear(0.3, 0.3, fill_mode=fill, interpolation="bilinear")
    for sx, sy in ((0.25, 0.0), (0.0, -0.2), (-0.3, 0.15)):
        t = {"shear_factor": np.array([[sx, sy]], np.float32), "input_shape": x.shape}
        ref = _np(layer.transform_images(jnp.asarray(x), t))[0]
        op = A.Shear(0.3, 0.3, about="corner", fill_mode=fill)
        np.testing.assert_allclose(_np(op.apply(jnp.asarray(x[0]), sx, sy)), ref, atol=2e-3)
        centred = _np(A.Shear(0.3, 0.3, fill_mode=fill).apply(jnp.asarray(x[0]), sx, sy))
        assert np.max(np.abs(centred - ref)) > 1e-2
    # sampled factors: Keras's own draw (sign flip included) replayed through ours
    t = layer.get_random_transformation(
        jnp.asarray(x), training=True, seed=keras.random.SeedGenerator(4)
    )
    sx, sy = (float(v) for v in np.asarray(t["shear_factor"])[0])
    ref = _np(layer.transform_images(jnp.asarray(x), t))[0]
    ours = _np(A.Shear(0.3, 0.3, about="corner", fill_mode=fill).apply(jnp.asarray(x[0]), sx, sy))
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    with pytest.raises(JaxdlError, match="about must be 'center' or 'corner'"):
        A.Shear(about="middle")
