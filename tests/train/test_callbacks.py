"""Callbacks (Keras 3 parity), resume behaviour of stateful callbacks (R7), the NaN guard (R5),
training options (mixed precision, gradient accumulation, freezing, EMA) and logging."""

import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import create_model
from jaxdl.data import ArrayDataset
from jaxdl.errors import JaxdlError
from jaxdl.parallel import make_mesh
from jaxdl.train import (
    BackupAndRestore,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    NonFiniteLossError,
    ReduceLROnPlateau,
    SwapEMAWeights,
    TensorBoard,
    TerminateOnNaN,
    Trainer,
    make_schedule,
)


@pytest.fixture(scope="module")
def small(digits):
    return digits.train.subset(slice(0, 320)), digits.val


def mlp_trainer(**kw):
    kw.setdefault("mesh", make_mesh(num_devices=1))
    return Trainer(
        create_model("mlp", input_shape=(8, 8, 1), hidden=(32,), dropout=kw.pop("dropout", 0.0)),
        **{"seed": 0, **kw},
    )


# ---- Keras parity on scripted monitor values ------------------------------------------------


class _FakeTrainer:
    def __init__(self, lr=0.1):
        self.stop_training, self.lr = False, lr
        self.state = type("S", (), {"params": {"w": jnp.zeros(2)}})()

    @property
    def learning_rate(self):
        return self.lr

    def set_learning_rate(self, v):
        self.lr = v


def _keras_model(lr):
    import keras

    m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    m.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    return m


VALUES = [1.0, 0.9, 0.95, 0.899, 0.97, 0.85, 0.86, 0.86, 0.87, 0.84, 0.9, 0.91, 0.92, 0.93]


@pytest.mark.parametrize(
    "kw",
    [
        dict(patience=2),
        dict(patience=1, min_delta=0.02),
        dict(patience=3, baseline=0.88),
        dict(patience=0, start_from_epoch=3),
    ],
)
def test_early_stopping_matches_keras(kw):
    import keras

    ours, theirs = (
        EarlyStopping(monitor="val_loss", **kw),
        keras.callbacks.EarlyStopping(monitor="val_loss", **kw),
    )
    ft, km = _FakeTrainer(), _keras_model(0.1)
    ours.set_trainer(ft)
    theirs.set_model(km)
    ours.on_train_begin()
    theirs.on_train_begin()
    stops = []
    for e, v in enumerate(VALUES):
        ours.on_epoch_end(e, {"val_loss": v})
        theirs.on_epoch_end(e, {"val_loss": v})
        assert (ours.wait, ours.best) == (theirs.wait, theirs.best), e
        stops.append((ft.stop_training, km.stop_training))
        if ft.stop_training:
            break
    assert all(a == b for a, b in stops) and ours.stopped_epoch == theirs.stopped_epoch


@pytest.mark.parametrize(
    "kw",
    [
        dict(patience=1, factor=0.5),
        dict(patience=2, cooldown=1, min_lr=0.02),
        dict(patience=1, min_delta=0.05, mode="min"),
    ],
)
def test_reduce_lr_on_plateau_matches_keras(kw):
    import keras

    ours = ReduceLROnPlateau(monitor="val_loss", **kw)
    theirs = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", **kw)
    ft, km = _FakeTrainer(0.1), _keras_model(0.1)
    ours.set_trainer(ft)
    theirs.set_model(km)
    ours.on_train_begin()
    theirs.on_train_begin()
    for e, v in enumerate(VALUES):
        ours.on_epoch_end(e, {"val_loss": v})
        theirs.on_epoch_end(e, {"val_loss": v})
        assert ft.lr == pytest.approx(float(km.optimizer.learning_rate), rel=1e-6), e


# ---- R7: stateful callbacks across a resume -------------------------------------------------


def _r7_run(small, workdir, interrupt_at=None):
    train, val = small
    t = mlp_trainer(optimizer="adam", learning_rate=0.02)

    class Interrupt(Exception):
        pass

    def begin(epoch, logs):
        if epoch == interrupt_at:
            raise Interrupt

    es = EarlyStopping(monitor="val_loss", patience=2, min_delta=0.005, restore_best_weights=True)
    rl = ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5, min_delta=0.01)
    mc = ModelCheckpoint(
        workdir / "best",
        monitor="val_accuracy",
        save_best_only=True,
        keep=2,
        name="epoch{epoch:02d}-{val_accuracy:.3f}",
        save_weights_only=True,
    )
    cbs = [
        LambdaCallback(on_epoch_begin=begin),
        es,
        rl,
        mc,
        BackupAndRestore(workdir / "backup", delete_checkpoint=False),
    ]
    try:
        h = t.fit(train, epochs=14, batch_size=32, validation_data=val, callbacks=cbs, verbose=0)
    except Interrupt:
        return None
    return {
        "history": h.history,
        "stopped": es.stopped_epoch,
        "best": es.best,
        "best_epoch": es.best_epoch,
        "saved": mc.saved,
        "kept": mc.checkpoints.steps(),
        "best_step": mc.checkpoints.best_step(),
        "params": jax.device_get(t.state.params),
    }


@pytest.mark.slow
def test_r7_callbacks_after_resume_equal_uninterrupted(small, tmp_path):
    ref = _r7_run(small, tmp_path / "ref")
    assert 0 < ref["stopped"] < 13, "the scenario must stop early"
    assert min(ref["history"]["lr"]) < 0.02, "the scenario must reduce the LR"
    assert len(ref["saved"]) >= 2
    for k in range(2, ref["stopped"] + 1, 2):  # interrupted at several epochs, resumed each time
        assert _r7_run(small, tmp_path / "run", interrupt_at=k) is None
    got = _r7_run(small, tmp_path / "run")
    for key in ("history", "stopped", "best", "best_epoch", "saved", "kept", "best_step"):
        assert got[key] == ref[key], key
    jax.tree.map(np.testing.assert_array_equal, got["params"], ref["params"])


# ---- R5: NaN -----------------------------------------------------------------------------


def test_r5_nan_stops_within_one_step_and_checkpoints_stay_finite(small, tmp_path):
    train, _ = small
    x = train.x.copy()
    bad_batch = 4
    x[bad_batch * 32 + 5] = np.nan
    t = mlp_trainer()
    snaps = {}
    snap = LambdaCallback(
        on_train_batch_end=lambda b, logs: snaps.__setitem__(
            t.step_count, jax.device_get(t.state.params)
        )
    )
    backup = BackupAndRestore(tmp_path, save_freq=1, delete_checkpoint=False, keep=100)
    with pytest.raises(NonFiniteLossError, match=r"NaN or inf at step 4 \(epoch 1"):
        t.fit(
            ArrayDataset(x, train.y),
            epochs=2,
            batch_size=32,
            shuffle=False,
            verbose=0,
            callbacks=[snap, backup],
        )
    assert t.step_count <= bad_batch + 2  # stopped within one step of the bad one
    params = jax.device_get(t.state.params)
    jax.tree.map(np.testing.assert_array_equal, params, snaps[bad_batch])  # last finite values
    assert all(np.isfinite(v).all() for v in jax.tree.leaves(params))
    steps = backup.checkpoints.steps()
    assert max(steps) <= bad_batch  # nothing saved once the loss went bad
    _, tree, _ = backup.checkpoints.restore(lambda m: t.checkpoint_abstract(m))
    assert all(
        np.isfinite(np.asarray(v, np.float32)).all() for v in jax.tree.leaves(tree["state"].params)
    )


def test_terminate_on_nan_and_cli_exit_code(small, tmp_path, capsys):
    from jaxdl.cli import main
    from jaxdl.data import Splits, register_dataset
    from jaxdl.train import EXIT_NONFINITE

    train, val = small
    x = train.x.copy()
    x[40] = np.inf
    register_dataset(
        "nan_digits",
        lambda **kw: Splits(
            name="nan_digits",
            train=ArrayDataset(x, train.y),
            val=val,
            test=val,
            num_classes=10,
            input_shape=(8, 8, 1),
        ),
    )
    rc = main(
        [
            "train",
            "mlp",
            "--dataset",
            "nan_digits",
            "--epochs",
            "2",
            "--quiet",
            "--workdir",
            str(tmp_path),
            "--checkpoint-every",
            "1",
            "--devices",
            "1",
        ]
    )
    assert rc == EXIT_NONFINITE == 3
    assert "became NaN or inf" in capsys.readouterr().err


# ---- options --------------------------------------------------------------------------------


def test_grad_accumulation_equals_the_big_batch(small):
    train, _ = small
    a = mlp_trainer(optimizer="sgd", learning_rate=0.1)
    b = mlp_trainer(optimizer="sgd", learning_rate=0.1, grad_accum=2)
    a.fit(train, epochs=1, batch_size=32, shuffle=False, verbose=0)
    b.fit(train, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert b.step_count == 2 * a.step_count
    jax.tree.map(
        lambda u, v: np.testing.assert_allclose(u, v, rtol=2e-5, atol=2e-6),
        jax.device_get(a.state.params),
        jax.device_get(b.state.params),
    )


def test_freeze_by_name_pattern_allocates_no_state(small):
    train, _ = small
    t = mlp_trainer(freeze=[r"layers/0/"])
    before = jax.device_get(t.state.params)
    t.fit(train, epochs=1, batch_size=32, verbose=0)
    after = jax.device_get(t.state.params)
    np.testing.assert_array_equal(
        after["layers"][0]["kernel"][...], before["layers"][0]["kernel"][...]
    )
    assert not np.array_equal(after["head"]["kernel"][...], before["head"]["kernel"][...])
    moments = sum(x.size for x in jax.tree.leaves(t.state.opt_state) if x.ndim >= 1)
    free = mlp_trainer()
    assert moments == sum(
        x.size for x in jax.tree.leaves(free.state.opt_state) if x.ndim >= 1
    ) - 2 * (64 * 32 + 32)
    with pytest.raises(
        JaxdlError, match=r"freeze pattern 'encoder/.\*' matches no parameter; names look like"
    ):
        mlp_trainer(freeze=["encoder/.*"])


def test_mixed_precision_bf16_and_fp16_loss_scaling(small):
    train, val = small
    ref = (
        mlp_trainer(learning_rate=3e-3)
        .fit(train, epochs=4, batch_size=32, verbose=0)
        .history["loss"]
    )
    bf = mlp_trainer(mixed_precision="bf16", learning_rate=3e-3)
    h = bf.fit(train, epochs=4, batch_size=32, verbose=0).history["loss"]
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(bf.state.params))
    assert h[-1] < 0.8 * h[0] and abs(h[-1] - ref[-1]) < 0.05 * ref[-1] and h != ref
    # fp16 with an initial scale that overflows: the first steps are skipped and the scale halved
    fp = mlp_trainer(mixed_precision="fp16", initial_loss_scale=2.0**40, learning_rate=3e-3)
    p0 = jax.device_get(fp.state.params)
    fp.fit(train.subset(slice(0, 32)), epochs=1, batch_size=32, verbose=0)
    assert float(fp.state.loss_scale["scale"]) == 2.0**39
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(fp.state.params), p0)
    fp = mlp_trainer(mixed_precision="fp16", learning_rate=3e-3)
    h = fp.fit(train, epochs=4, batch_size=32, verbose=0).history["loss"]
    assert float(fp.state.loss_scale["scale"]) <= 2.0**15 and abs(h[-1] - ref[-1]) < 0.05 * ref[-1]
    with pytest.raises(JaxdlError, match="unknown mixed precision mode 'fp8'"):
        mlp_trainer(mixed_precision="fp8")


def test_ema_and_swap_ema_weights(small):
    train, val = small
    t = mlp_trainer(ema_decay=0.9)
    seen = {}
    h = t.fit(
        train,
        epochs=2,
        batch_size=32,
        validation_data=val,
        verbose=0,
        callbacks=[
            SwapEMAWeights(),
            LambdaCallback(
                on_test_begin=lambda logs: seen.setdefault("p", jax.device_get(t.state.params))
            ),
        ],
    )
    ema, params = jax.device_get(t.state.ema_params), jax.device_get(t.state.params)
    assert not np.array_equal(ema["head"]["kernel"][...], params["head"]["kernel"][...])
    # validation ran on the averaged weights, training continued on the raw ones
    t.state = t.state.replace(params=t.state.ema_params)
    assert t.evaluate(val)["loss"] == pytest.approx(h.history["val_loss"][-1], rel=1e-6)
    with pytest.raises(JaxdlError, match="SwapEMAWeights needs a Trainer built with ema_decay"):
        mlp_trainer().fit(train, epochs=1, verbose=0, callbacks=[SwapEMAWeights()])


def test_scheduler_lambda_csv_and_terminate_on_nan(small, tmp_path):
    train, val = small
    t = mlp_trainer(learning_rate=0.01)
    calls = []
    h = t.fit(
        train,
        epochs=3,
        batch_size=32,
        validation_data=val,
        verbose=0,
        callbacks=[
            LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr),
            LambdaCallback(on_epoch_end=lambda e, logs: calls.append(e)),
            CSVLogger(tmp_path / "log.csv"),
        ],
    )
    assert h.history["lr"] == pytest.approx([0.01, 0.005, 0.0025]) and calls == [0, 1, 2]
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,accuracy") and len(rows) == 4 and rows[3].startswith("2,")
    x = train.x.copy()
    x[70] = np.nan
    t = mlp_trainer()
    t.fit(
        ArrayDataset(x, train.y),
        epochs=2,
        batch_size=32,
        shuffle=False,
        verbose=0,
        callbacks=[TerminateOnNaN()],
    )
    assert t.step_count == 3  # stopped at the batch whose loss was NaN (batch 2)


def test_bad_callback_options(small):
    train, val = small
    t = mlp_trainer()
    with pytest.raises(
        JaxdlError, match=r"monitor 'val_los' is not in the logs; available: accuracy, .*val_loss"
    ):
        t.fit(
            train,
            epochs=1,
            validation_data=val,
            verbose=0,
            callbacks=[EarlyStopping("val_los", mode="min")],
        )
    with pytest.raises(JaxdlError, match="val_\\* needs validation_data"):
        t.fit(train, epochs=1, verbose=0, callbacks=[EarlyStopping("val_loss")])
    with pytest.raises(JaxdlError, match="save_best_only=True needs a monitor"):
        ModelCheckpoint("/tmp/unused-jaxdl", monitor=None, save_best_only=True)
    with pytest.raises(JaxdlError, match="cannot tell whether 'wobble'"):
        EarlyStopping("wobble")
    with pytest.raises(JaxdlError, match="factor must be in"):
        ReduceLROnPlateau(factor=1.5)
    sched = mlp_trainer(learning_rate=make_schedule("cosine", 0.01, total_steps=100))
    with pytest.raises(
        JaxdlError, match="cannot set the learning rate of an optimizer built with a schedule"
    ):
        sched.fit(
            train,
            epochs=1,
            validation_data=val,
            verbose=0,
            callbacks=[ReduceLROnPlateau(patience=0)],
        )
    with pytest.raises(JaxdlError, match="save_freq must be 'epoch' or a positive number"):
        BackupAndRestore("/tmp/unused-jaxdl", save_freq=0)
    with pytest.raises(JaxdlError, match="unknown hook"):
        LambdaCallback(on_epoch_ending=print)


# ---- TensorBoard ------------------------------------------------------------------------


def _events(path):
    """Summary values of a TensorBoard event file (TFRecord framing, tensorboardX protos)."""
    from tensorboardX.proto import event_pb2

    data, out, i = path.read_bytes(), [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i : i + 8])
        ev = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
        i += 12 + n + 4
        out += [(v.tag, v.WhichOneof("value")) for v in ev.summary.value]
    return out


def test_tensorboard_scalars_histograms_images_text(small, tmp_path):
    train, val = small
    t = mlp_trainer()
    t.fit(
        train,
        epochs=2,
        batch_size=32,
        validation_data=val,
        verbose=0,
        callbacks=[
            TensorBoard(
                tmp_path, histogram_freq=1, write_images=True, sample_data=val, update_freq=5
            )
        ],
    )
    tr = _events(next((tmp_path / "train").glob("events*")))
    va = _events(next((tmp_path / "validation").glob("events*")))
    kinds = {}
    for tag, kind in tr:
        kinds.setdefault(kind, set()).add(tag)
    assert {
        "epoch_loss",
        "epoch_accuracy",
        "epoch_learning_rate",
        "epoch_samples_per_second",
    } <= kinds["simple_value"]
    steps = {tag for tag, _ in _events(next((tmp_path / "train_steps").glob("events*")))}
    assert {"batch_loss", "batch_accuracy", "batch_learning_rate"} <= steps
    assert {"weights/head/kernel", "gradients/head/kernel", "weights/layers/0/kernel"} <= kinds[
        "histo"
    ]
    assert {"input_samples", "confusion_matrix"} <= kinds["image"]
    assert any("model" in tag for tag, _ in tr if tag.startswith("model"))
    assert ("epoch_loss", "simple_value") in va and ("epoch_accuracy", "simple_value") in va
