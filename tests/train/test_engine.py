"""The one engine: step contract, input paths, device-side metrics, steps_per_execution, the
user's model after fit, precision, GANs and sweeps on the Trainer."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import create_model
from jaxdl.data import ArrayDataset
from jaxdl.errors import JaxdlError
from jaxdl.functional import pure
from jaxdl.parallel import make_mesh
from jaxdl.train import (
    BackupAndRestore,
    EarlyStopping,
    LambdaCallback,
    NonFiniteLossError,
    Trainer,
    loop,
)
from jaxdl.train.checkpoint import keys_as_data
from jaxdl.train.generative import GANTrainer
from jaxdl.train.hparam import train_vmapped


@pytest.fixture(scope="module")
def small(digits):
    return digits.train.subset(slice(0, 200)), digits.val


def _mlp(seed=0, **kw):
    return create_model("mlp", input_shape=(8, 8, 1), hidden=(16,), rngs=nnx.Rngs(seed), **kw)


def _trainer(model=None, **kw):
    kw.setdefault("mesh", make_mesh(num_devices=1))
    return Trainer(model if model is not None else _mlp(), seed=0, **kw)


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(jax.device_get(keys_as_data(tree)))]


def _equal(a, b):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_model_passed_in_holds_the_trained_weights(small):
    train, val = small
    model = _mlp()
    before = _leaves(nnx.state(model, nnx.Param))
    t = Trainer(model, learning_rate=1e-2, mesh=make_mesh())
    t.fit(train, epochs=2, batch_size=32, verbose=0)
    assert t.model is model
    apply, params, state = pure(model)  # usable: nothing of it was donated
    _equal(params, t.state.params)
    assert any(not np.array_equal(a, b) for a, b in zip(before, _leaves(params), strict=True))
    logits, _ = apply(params, state, jnp.asarray(val.x[:4]))
    np.testing.assert_allclose(logits, t.predict(val.x[:4]), rtol=1e-5, atol=1e-6)
    t.fit(train, epochs=1, batch_size=32, verbose=0)  # a second fit continues, model still usable
    _equal(pure(model)[1], t.state.params)


def test_no_recompilation_after_the_first_epoch(small):
    train, val = small
    t = _trainer()
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: (
            compiles.append(event)
            if event == "/jax/core/compile/backend_compile_duration"
            else None
        )
    )
    t.fit(train, epochs=1, batch_size=32, validation_data=val, verbose=0)
    first = len(compiles)
    assert first >= 1
    t.fit(train, epochs=3, batch_size=32, validation_data=val, verbose=0)
    t.evaluate(val, batch_size=32)  # the validation program of fit, again
    assert len(compiles) == first, f"{len(compiles) - first} recompilations after epoch 1"


@pytest.mark.parametrize("k", [3, 7])
def test_steps_per_execution_equals_single_steps_bit_for_bit(small, k):
    train, _ = small
    ref = _trainer(_mlp(dropout=0.2))
    h1 = ref.fit(train, epochs=2, batch_size=32, verbose=0)
    t = _trainer(_mlp(dropout=0.2), steps_per_execution=k)
    h2 = t.fit(train, epochs=2, batch_size=32, verbose=0)
    _equal(t.state, ref.state)
    assert h1.history == h2.history and t.step_count == ref.step_count == 14


def test_host_batches_equal_resident_data_bit_for_bit(small, monkeypatch):
    train, val = small
    ref = _trainer(_mlp(dropout=0.2))
    h1 = ref.fit(train, epochs=2, batch_size=32, validation_data=val, verbose=0)
    monkeypatch.setattr(loop, "DEVICE_DATA_DEFAULT_BYTES", 0)  # nothing fits on the "device"
    for k in (1, 3):
        t = _trainer(_mlp(dropout=0.2), steps_per_execution=k)
        with pytest.warns(RuntimeWarning, match="does not fit the on-device input path"):
            h2 = t.fit(train, epochs=2, batch_size=32, validation_data=val, verbose=0)
        _equal(t.state, ref.state)
        assert h1.history == h2.history


def test_uint8_images_travel_as_integers_and_train_as_their_float_view(small, monkeypatch):
    train, val = small
    pixels = np.round(train.x * 255).astype(np.uint8)
    scaled = ArrayDataset(pixels, train.y, x_scale=1 / 255)
    floats = ArrayDataset(scaled.scaled_x(), train.y)
    ref = _trainer()
    h1 = ref.fit(floats, epochs=2, batch_size=32, validation_data=floats, verbose=0)
    t = _trainer()
    h2 = t.fit(scaled, epochs=2, batch_size=32, validation_data=scaled, verbose=0)
    _equal(t.state, ref.state)
    assert h1.history == h2.history
    data = t._resident_data(scaled).arrays["x"]
    assert data.dtype == jnp.uint8  # on the device as it came
    monkeypatch.setattr(loop, "DEVICE_DATA_DEFAULT_BYTES", 0)  # host batches: uint8 too
    t = _trainer()
    with pytest.warns(RuntimeWarning):
        t.fit(scaled, epochs=2, batch_size=32, verbose=0)
    _equal(t.state, ref.state)
    with pytest.raises(JaxdlError, match="x_scale is for integer x"):
        ArrayDataset(train.x, train.y, x_scale=0.5)


def test_a_nan_step_changes_nothing_and_stops_fit(small):
    train, _ = small
    x = train.x.copy()
    x[3 * 32 + 1] = np.nan  # batch 3 of the unshuffled epoch
    snaps = []
    t = _trainer()
    cb = LambdaCallback(on_train_batch_end=lambda b, logs: snaps.append(_leaves(t.state.params)))
    with pytest.raises(NonFiniteLossError, match=r"NaN or inf at step 3 \(epoch"):
        t.fit(
            ArrayDataset(x, train.y),
            epochs=3,
            batch_size=32,
            shuffle=False,
            verbose=0,
            callbacks=[cb],
        )
    final = _leaves(t.state.params)
    for a, b in zip(final, snaps[2], strict=True):  # the values after step 2, the last finite one
        np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(a).all() for a in final)


def test_bf16_policy_runs_convolutions_and_dots_in_bf16():
    model = create_model("lenet5", rngs=nnx.Rngs(0))  # conv + BN-free; dense layers after
    t = Trainer(model, mixed_precision="bf16", mesh=make_mesh(num_devices=1))
    shape = model.config.input_shape
    batch = {
        "x": jnp.zeros((8, *shape), jnp.float32),
        "y": jnp.zeros((8,), jnp.int32),
        "weight": jnp.ones((8,), jnp.float32),
    }
    text = t.train_step.lower(t.state, t.init_metrics(), batch).as_text()
    ops = [ln for ln in text.splitlines() if re.search(r"stablehlo\.(convolution|dot_general)", ln)]
    # the metrics stay float32: the confusion matrix is a [10, B] x [B, 10] product
    ops = [ln for ln in ops if not ln.rstrip().endswith("tensor<10x10xf32>")]
    assert len(ops) >= 5, "the model's convolutions and dots are missing from the lowered step"
    for ln in ops:
        sig = ln.split(":")[-1]
        assert "f32" not in sig.split("->")[0], f"a float32 operand in: {ln.strip()[:160]}"
    # params stay float32 (master copy)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(t.state.params))


def test_bf16_batchnorm_does_not_promote_to_float32():
    model = create_model("resnet18", num_classes=10, input_shape=(32, 32, 3), rngs=nnx.Rngs(0))
    t = Trainer(model, mixed_precision="bf16", mesh=make_mesh(num_devices=1))
    batch = {
        "x": jnp.zeros((2, 32, 32, 3), jnp.float32),
        "y": jnp.zeros((2,), jnp.int32),
        "weight": jnp.ones((2,), jnp.float32),
    }
    text = t.train_step.lower(t.state, t.init_metrics(), batch).as_text()
    convs = [ln for ln in text.splitlines() if "stablehlo.convolution" in ln]
    assert len(convs) > 20
    assert all("f32" not in ln.split(":")[-1].split("->")[0] for ln in convs)
    # the running statistics keep float32 storage
    assert all(
        a.dtype == jnp.float32
        for a in jax.tree.leaves(t.state.model_state)
        if jnp.issubdtype(a.dtype, jnp.floating)
    )


# ---- GANs on the engine ----------------------------------------------------------------------


def _gan():
    return create_model(
        "dcgan",
        input_shape=(8, 8, 1),
        latent_dim=4,
        features=(4, 8),
        kernel_size=3,
        rngs=nnx.Rngs(0),
    )


class _Interrupt(Exception):
    pass


def _gan_run(x, workdir, interrupt_at=None):
    t = GANTrainer(_gan(), seed=0, mesh=make_mesh(num_devices=1))

    def begin(epoch, logs):
        if epoch == interrupt_at:
            raise _Interrupt

    cbs = [LambdaCallback(on_epoch_begin=begin), BackupAndRestore(workdir, delete_checkpoint=False)]
    try:
        h = t.fit(x, epochs=4, batch_size=16, verbose=0, callbacks=cbs)
    except _Interrupt:
        return None
    return h.history, _leaves(t.state)


def test_gan_resumes_bit_for_bit_through_the_trainer(digits, tmp_path):
    x = digits.train.x[:64] * 2.0 - 1.0
    ref_h, ref_state = _gan_run(x, tmp_path / "ref")
    assert _gan_run(x, tmp_path / "run", interrupt_at=2) is None
    h, state = _gan_run(x, tmp_path / "run")
    assert h == ref_h and set(h) == {"d_loss", "g_loss", "d_real", "d_fake"}
    for a, b in zip(state, ref_state, strict=True):
        np.testing.assert_array_equal(a, b)


def test_gan_refuses_options_it_cannot_use(digits):
    with pytest.raises(JaxdlError, match="neither ema_decay nor fp16"):
        GANTrainer(_gan(), ema_decay=0.9)
    gan = GANTrainer(_gan())
    with pytest.raises(JaxdlError, match="monitors 'val_loss', which a GAN does not report"):
        gan.fit(
            np.zeros((8, 8, 8, 1), np.float32),
            batch_size=8,
            verbose=0,
            callbacks=[EarlyStopping(monitor="val_loss")],
        )
    with pytest.raises(JaxdlError, match="no evaluation loss"):
        gan.evaluate(np.zeros((8, 8, 8, 1), np.float32))


# ---- sweeps on the engine --------------------------------------------------------------------


def _mlp_from(rngs):
    return create_model("mlp", input_shape=(8, 8, 1), hidden=(16,), rngs=rngs)


def test_sweep_refuses_single_value_callbacks_and_resumes(small, tmp_path):
    train, _ = small
    with pytest.raises(JaxdlError, match="a sweep trains 2 runs at once"):
        train_vmapped(
            _mlp_from,
            train,
            learning_rates=[1e-3, 1e-2],
            seeds=[0, 1],
            callbacks=[EarlyStopping(monitor="loss")],
        )

    def run(workdir, interrupt_at=None):
        def begin(epoch, logs):
            if epoch == interrupt_at:
                raise _Interrupt

        cbs = [
            LambdaCallback(on_epoch_begin=begin),
            BackupAndRestore(workdir, delete_checkpoint=False),
        ]
        return train_vmapped(
            _mlp_from,
            train,
            learning_rates=[1e-3, 1e-2],
            seeds=[0, 1],
            epochs=3,
            batch_size=32,
            callbacks=cbs,
        )

    ref = run(tmp_path / "ref")
    with pytest.raises(_Interrupt):
        run(tmp_path / "run", interrupt_at=1)
    got = run(tmp_path / "run")
    assert got.history == ref.history
    _equal(got.state.params, ref.state.params)
