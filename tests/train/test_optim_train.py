"""Optimizers, schedules, regularisation and the training loop (fit / evaluate / predict)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import create_model
from jaxdl.data import ArrayDataset, batches, num_batches
from jaxdl.errors import JaxdlError
from jaxdl.functional import pure
from jaxdl.parallel import make_mesh
from jaxdl.train import (
    OPTIMIZERS,
    Callback,
    Regularizer,
    Trainer,
    current_learning_rate,
    make_optimizer,
    make_schedule,
    scale_learning_rate,
)


def test_one_adam_step_equals_the_formula():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    w = jnp.array([1.0, -2.0, 3.0])
    g = jnp.array([0.5, -0.1, 2.0])
    tx = make_optimizer("adam", lr)
    updates, _ = tx.update(g, tx.init(w), w)
    m = (1 - b1) * g
    v = (1 - b2) * g**2
    m_hat, v_hat = m / (1 - b1), v / (1 - b2)
    expected = w - lr * m_hat / (jnp.sqrt(v_hat) + eps)
    np.testing.assert_allclose(optax.apply_updates(w, updates), expected, rtol=1e-6)


def test_sgd_momentum_and_nesterov_steps():
    w, g = jnp.array([1.0]), jnp.array([0.5])
    for name, expected in [
        ("sgd", 1 - 0.1 * 0.5),
        ("momentum", 1 - 0.1 * 0.5),
        ("nesterov", 1 - 0.1 * (0.5 + 0.9 * 0.5)),
    ]:
        tx = make_optimizer(name, 0.1)
        u, _ = tx.update(g, tx.init(w), w)
        np.testing.assert_allclose(w + u, [expected], rtol=1e-6)


def test_clipping_and_lr_injection():
    tx = make_optimizer("sgd", 1.0, clip_norm=1.0)
    g = {"a": jnp.array([3.0, 4.0])}
    u, st = tx.update(g, tx.init(g), g)
    np.testing.assert_allclose(u["a"], [-0.6, -0.8], rtol=1e-6)
    assert float(current_learning_rate(st)) == 1.0


def test_schedules():
    s = make_schedule("warmup_cosine", 1.0, total_steps=100, warmup_steps=10)
    assert float(s(0)) == 0.0 and abs(float(s(10)) - 1.0) < 1e-6 and float(s(100)) < 1e-6
    e = make_schedule("exponential", 1.0, decay_rate=0.5, decay_steps=10)
    np.testing.assert_allclose(e(20), 0.25, rtol=1e-6)
    assert scale_learning_rate(0.1, 512, 256) == 0.2
    with pytest.raises(JaxdlError, match="total_steps"):
        make_schedule("cosine", 1.0)


def test_bad_optimizer_name_and_lr():
    with pytest.raises(JaxdlError, match="unknown optimizer 'adamm'.*Did you mean: adam"):
        make_optimizer("adamm")
    with pytest.raises(JaxdlError, match="learning_rate must be a positive number, got -1"):
        make_optimizer("adam", -1)


def test_regularizer_penalty():
    apply, params, _ = pure(create_model("mlp", hidden=(4,)))
    k = params["layers"][0]["kernel"][...]
    b = params["layers"][0]["bias"][...]
    kh = params["head"]["kernel"][...]
    np.testing.assert_allclose(
        Regularizer(l2=0.1)(params), 0.1 * (jnp.sum(k**2) + jnp.sum(kh**2)), rtol=1e-5
    )
    np.testing.assert_allclose(
        Regularizer(l1=0.1, pattern=r"layers/0/bias$")(params), 0.1 * jnp.sum(jnp.abs(b)), rtol=1e-5
    )


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_trains_mlp_on_digits(name, digits):
    lr = {
        "sgd": 0.1,
        "momentum": 0.05,
        "nesterov": 0.05,
        "adagrad": 0.1,
        "adadelta": 1.0,
        "rmsprop": 1e-3,
        "adam": 1e-3,
        "adamw": 1e-3,
    }[name]
    t = Trainer(
        create_model("mlp", input_shape=(8, 8, 1)), optimizer=name, learning_rate=lr, seed=0
    )
    t.fit(digits.train, epochs=25, batch_size=32, verbose=0)
    acc = t.evaluate(digits.test)["accuracy"]
    assert acc >= 0.95, f"{name}: test accuracy {acc:.3f}"


def test_eight_devices_equal_one_device(digits):
    assert jax.device_count() == 8
    results = []
    for n in (8, 1):
        t = Trainer(
            create_model("mlp", input_shape=(8, 8, 1), batch_norm=True, rngs=nnx.Rngs(0)),
            optimizer="sgd",
            learning_rate=0.05,
            mesh=make_mesh(num_devices=n),
            seed=1,
        )
        t.fit(digits.train, epochs=2, batch_size=64, verbose=0)
        results.append((jax.device_get(t.state.params), t.evaluate(digits.test)))
    (p8, e8), (p1, e1) = results
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), p8, p1)
    np.testing.assert_allclose(e8["loss"], e1["loss"], rtol=1e-4)


def test_same_seed_same_bits_and_dropout_uses_step_keys(digits):
    def run(seed):
        t = Trainer(create_model("mlp", input_shape=(8, 8, 1), dropout=0.3), seed=seed)
        h = t.fit(digits.train, epochs=2, batch_size=32, verbose=0)
        return jax.device_get(t.state.params), h.history["loss"]

    (pa, la), (pb, lb), (pc, lc) = run(0), run(0), run(1)
    jax.tree.map(np.testing.assert_array_equal, pa, pb)
    assert la == lb and la != lc
    assert not np.array_equal(jax.tree.leaves(pa)[0], jax.tree.leaves(pc)[0])


def test_gradient_descent_variants_iterations(digits):
    """Batch, stochastic and mini-batch descent: iterations per epoch = ceil(N / batch_size)."""
    small = digits.train.subset(np.arange(40))
    for bs, iters in ((40, 1), (8, 5), (16, 3)):
        t = Trainer(create_model("mlp", input_shape=(8, 8, 1)), optimizer="sgd", learning_rate=0.1)
        t.fit(small, epochs=2, batch_size=bs, verbose=0)
        assert int(t.state.step) == 2 * iters == 2 * num_batches(40, bs)
    t = Trainer(
        create_model("mlp", input_shape=(8, 8, 1)),
        optimizer="sgd",
        learning_rate=0.01,
        mesh=make_mesh(num_devices=1),
    )
    t.fit(
        small.subset(np.arange(6)), epochs=1, batch_size=1, verbose=0
    )  # stochastic: one example a step
    assert int(t.state.step) == 6


def test_fit_history_evaluate_predict_and_callbacks(digits):
    seen = []

    class Probe(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, logs["loss"], logs["val_accuracy"]))

    t = Trainer(create_model("mlp", input_shape=(8, 8, 1)), learning_rate=2e-3)
    h = t.fit(
        digits.train,
        epochs=3,
        batch_size=32,
        validation_data=digits.val,
        callbacks=[Probe()],
        verbose=0,
    )
    assert (
        h.epoch == [0, 1, 2]
        and len(h.history["val_loss"]) == 3
        and h.history["lr"][0] == pytest.approx(2e-3)
    )
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert [s[0] for s in seen] == [0, 1, 2]
    ev = t.evaluate(digits.test, detailed=True)
    assert np.sum(ev["confusion_matrix"]) == len(digits.test)  # every example counted, padding not
    pred = t.predict(digits.test.x)
    assert pred.shape == (len(digits.test), 10)
    np.testing.assert_allclose((pred.argmax(-1) == digits.test.y).mean(), ev["accuracy"], rtol=1e-6)


def test_activity_and_kernel_regularisation_enter_the_loss(digits):
    base = Trainer(create_model("mlp", input_shape=(8, 8, 1), rngs=nnx.Rngs(0)), seed=0)
    reg = Trainer(
        create_model("mlp", input_shape=(8, 8, 1), activity_l2=0.01, rngs=nnx.Rngs(0)),
        regularizers=[Regularizer(l2=0.01)],
        seed=0,
    )
    lb = base.fit(digits.train, epochs=1, batch_size=64, verbose=0).history["loss"][0]
    lr = reg.fit(digits.train, epochs=1, batch_size=64, verbose=0).history["loss"][0]
    assert lr > lb + 0.01


def test_bad_input_errors(digits):
    t = Trainer(create_model("mlp", input_shape=(8, 8, 1)))
    with pytest.raises(JaxdlError, match="batch_size 30 is not divisible by the 8 devices"):
        t.fit(digits.train, epochs=1, batch_size=30, verbose=0)
    with pytest.raises(JaxdlError, match="epochs must be a positive integer, got 0"):
        t.fit(digits.train, epochs=0, verbose=0)
    with pytest.raises(JaxdlError, match="batch_size must be a positive integer, got -8"):
        t.fit(digits.train, epochs=1, batch_size=-8, verbose=0)
    bad = ArrayDataset(digits.train.x, np.where(digits.train.y == 3, 12, digits.train.y))
    with pytest.raises(
        JaxdlError,
        match=r"labels out of range: expected integers in \[0, 9\].*got values in \[0, 12\]",
    ):
        t.fit(bad, epochs=1, verbose=0)
    with pytest.raises(
        JaxdlError,
        match=r"input shape \(32, 8, 8\) does not fit the model; expected \(B, 8, 8, 1\)",
    ):
        t.fit((digits.train.x[..., 0], digits.train.y), epochs=1, verbose=0)


def test_batches_pad_and_shuffle_by_seed_and_epoch():
    ds = ArrayDataset(np.arange(10)[:, None], np.arange(10))
    b = list(batches(ds, 4, seed=0, epoch=0))
    assert len(b) == 3 and b[-1]["weight"].tolist() == [1, 1, 0, 0]
    seen = np.concatenate([x["y"][x["weight"] > 0] for x in b])
    assert sorted(seen) == list(range(10))
    again = np.concatenate([x["y"] for x in batches(ds, 4, seed=0, epoch=0)])
    other = np.concatenate([x["y"] for x in batches(ds, 4, seed=0, epoch=1)])
    assert np.array_equal(np.concatenate([x["y"] for x in b]), again) and not np.array_equal(
        again, other
    )
    resumed = np.concatenate([x["y"] for x in batches(ds, 4, seed=0, epoch=0, start=1)])
    np.testing.assert_array_equal(resumed, again[4:])
