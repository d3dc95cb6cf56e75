"""Autoencoders, the VAE and DCGAN: shapes, losses, training steps, sampling, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import create_model
from jaxdl.errors import JaxdlError
from jaxdl.functional import pure
from jaxdl.models.vae import kl_divergence
from jaxdl.parallel import make_mesh
from jaxdl.train import Trainer, make_optimizer, make_train_step
from jaxdl.train.generative import (
    ELBOTask,
    GANTrainer,
    ReconstructionTask,
    gan_losses,
)
from jaxdl.train.state import TrainState

SMALL = dict(input_shape=(8, 8, 1))  # digits-sized, so the tests stay fast


def test_dcgan_generates_images_in_range():
    """The registered dcgan's call is its discriminator (the battery checks it); its generator
    draws images in [-1, 1]."""
    model = create_model("dcgan", rngs=nnx.Rngs(0))
    imgs = model.generate(jax.random.key(0), 4)
    assert imgs.shape == (4, 28, 28, 1) and float(jnp.max(jnp.abs(imgs))) <= 1.0


def test_conv_autoencoder_halves_then_doubles():
    m = create_model("conv_autoencoder", features=(8, 16), latent_dim=4)
    x = jnp.zeros((2, 28, 28, 1))
    assert m.encode(x).shape == (2, 4)
    assert m.encoder.layers[1](m.encoder.layers[0](x)).shape == (2, 7, 7, 16)
    assert m.decode(jnp.zeros((2, 4))).shape == (2, 28, 28, 1)


def test_kl_divergence_matches_closed_form_and_is_zero_at_prior():
    mean = jnp.array([[0.5, -1.0]])
    logvar = jnp.array([[np.log(2.0), np.log(0.5)]])
    var = np.exp(np.asarray(logvar))
    # KL(N(m, s^2) || N(0, 1)) = 1/2 (s^2 + m^2 - 1 - log s^2), per dimension
    expected = 0.5 * np.sum(var + np.asarray(mean) ** 2 - 1 - np.log(var))
    np.testing.assert_allclose(kl_divergence(mean, logvar), [expected], rtol=1e-6)
    assert float(kl_divergence(jnp.zeros((1, 3)), jnp.zeros((1, 3)))[0]) == 0.0


def test_reparameterisation_is_differentiable_and_keyed():
    model = create_model("vae", hidden=(32,), latent_dim=4, **SMALL)
    apply, params, state = pure(model)
    x = jax.random.uniform(jax.random.key(0), (5, 8, 8, 1))
    a, _ = apply(params, state, x, train=True, key=jax.random.key(1))
    b, _ = apply(params, state, x, train=True, key=jax.random.key(1))
    c, _ = apply(params, state, x, train=True, key=jax.random.key(2))
    np.testing.assert_array_equal(a["logits"], b["logits"])
    assert not np.allclose(a["logits"], c["logits"])
    # without a key z is the mean: deterministic evaluation
    d, _ = apply(params, state, x)
    e, _ = apply(params, state, x)
    np.testing.assert_array_equal(d["logits"], e["logits"])

    def loss(p):
        out, _ = apply(p, state, x, train=True, key=jax.random.key(1))
        return jnp.mean(ELBOTask().loss(out, {"x": x}))

    grads = jax.grad(loss)(params)
    # the encoder's head gets gradient through both the sample (reparameterisation) and the KL
    assert float(jnp.abs(grads["encoder"]["out"]["kernel"][...]).sum()) > 0


def test_elbo_improves_on_a_repeated_batch():
    model = create_model("vae", hidden=(64,), latent_dim=4, **SMALL, rngs=nnx.Rngs(0))
    apply, params, state = pure(model)
    task = ELBOTask()
    tx = make_optimizer("adam", 1e-3)
    step = jax.jit(make_train_step(apply, tx, task))
    x = (jax.random.uniform(jax.random.key(3), (32, 8, 8, 1)) > 0.5).astype(jnp.float32)
    batch = {"x": x, "y": jnp.zeros(32, jnp.int32), "weight": jnp.ones(32)}
    ts = TrainState.create(params, state, tx, seed=0)

    def neg_elbo(ts):  # evaluated at z = mean, without sampling noise
        out, _ = apply(ts.params, ts.model_state, x)
        return float(jnp.mean(task.loss(out, batch)))

    before = neg_elbo(ts)
    for _ in range(30):
        ts, _ = step(ts, batch)
    after = neg_elbo(ts)
    assert after < before - 1.0, (before, after)


def test_vae_sampling_deterministic_per_key_and_interpolation_endpoints():
    model = create_model("vae", hidden=(32,), latent_dim=3, **SMALL, rngs=nnx.Rngs(0))
    a, b, c = (model.sample(jax.random.key(k), 4) for k in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == (4, 8, 8, 1) and float(a.min()) >= 0 and float(a.max()) <= 1
    xa, xb = jnp.zeros((8, 8, 1)), jnp.ones((8, 8, 1))
    path = model.interpolate(xa, xb, steps=5)
    assert path.shape == (5, 8, 8, 1)
    (ma, _), (mb, _) = model.encode(xa[None]), model.encode(xb[None])
    np.testing.assert_allclose(path[0], jax.nn.sigmoid(model.decode(ma))[0], rtol=1e-5)
    np.testing.assert_allclose(path[-1], jax.nn.sigmoid(model.decode(mb))[0], rtol=1e-5)


def test_autoencoder_trains_with_trainer_and_reconstruction_task(digits):
    model = create_model("autoencoder", hidden=(32,), latent_dim=8, input_shape=(8, 8, 1))
    t = Trainer(
        model, task=ReconstructionTask("bce"), learning_rate=3e-3, mesh=make_mesh(num_devices=1)
    )
    before = t.evaluate(digits.val)
    h = t.fit(digits.train, epochs=5, batch_size=64, verbose=0)
    after = t.evaluate(digits.val)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert after["pixel_mse"] < 0.5 * before["pixel_mse"]


def test_reconstruction_losses_by_hand():
    out = jnp.array([[0.0, 2.0]])
    x = jnp.array([[1.0, 0.0]])
    bce = ReconstructionTask("bce").loss(out, {"x": x})
    expected = (np.log(2.0) + np.log1p(np.exp(2.0))) / 2  # -log sigmoid(0), -log(1 - sigmoid(2))
    np.testing.assert_allclose(bce, [expected], rtol=1e-6)
    np.testing.assert_allclose(ReconstructionTask("mse").loss(out, {"x": x}), [2.5])


def _small_gan(**kw):
    return create_model(
        "dcgan",
        input_shape=(8, 8, 1),
        latent_dim=4,
        features=(4, 8),
        kernel_size=3,
        rngs=nnx.Rngs(0),
        **kw,
    )


def _sub(tree, name):
    return jax.tree.leaves(tree[name]) if name in tree else []


def test_gan_step_updates_both_networks_and_bn_stats():
    gan = GANTrainer(_small_gan(), seed=0)
    st0 = jax.tree.map(jnp.copy, gan.state)
    batch = {
        "x": jax.random.uniform(jax.random.key(0), (16, 8, 8, 1), minval=-1, maxval=1),
        "weight": jnp.ones(16),
    }
    st, m = jax.jit(gan.step)(gan.state, batch)
    for part in ("generator", "discriminator"):
        for which, everything in (("params", True), ("model_state", False)):
            changed = [
                not np.allclose(a, b)
                for a, b in zip(
                    _sub(getattr(st0, which), part), _sub(getattr(st, which), part), strict=True
                )
            ]
            assert changed and (all(changed) if everything else any(changed)), (part, which)
    assert int(st.step) == 1 and int(m["nonfinite"]) == 0
    assert np.isfinite(float(m["d_loss_sum"])) and np.isfinite(float(m["g_loss_sum"]))


def test_gan_step_gradients_match_the_losses():
    """The generator update is the gradient of the non-saturating loss through the updated D."""
    model = _small_gan(batch_norm=False)
    g_apply, g_params, g_state = pure(model.generator)
    d_apply, d_params, d_state = pure(model.discriminator)
    sgd = make_optimizer("sgd", 0.1)
    gan = GANTrainer(model, g_tx=sgd, d_tx=sgd)
    real = jax.random.uniform(jax.random.key(5), (6, 8, 8, 1), minval=-1, maxval=1)
    st, _ = gan.step(gan.state, {"x": real, "weight": jnp.ones(6)})
    k_d, k_g = jax.random.split(jax.random.fold_in(gan.state.rng, 0))
    z_d, z_g = jax.random.normal(k_d, (6, 4)), jax.random.normal(k_g, (6, 4))

    def d_loss(dp):
        fake = g_apply(g_params, g_state, z_d)[0]
        return gan_losses(
            d_apply(dp, d_state, real)[0], d_apply(dp, d_state, fake)[0], jnp.ones(6)
        )[0]

    d_new = jax.tree.map(lambda p, g: p - 0.1 * g, d_params, jax.grad(d_loss)(d_params))
    g_loss = lambda gp: jnp.mean(
        jax.nn.softplus(-d_apply(d_new, d_state, g_apply(gp, g_state, z_g)[0])[0])
    )
    g_new = jax.tree.map(lambda p, g: p - 0.1 * g, g_params, jax.grad(g_loss)(g_params))
    for a, b in zip(
        jax.tree.leaves(st.params["discriminator"]), jax.tree.leaves(d_new), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(st.params["generator"]), jax.tree.leaves(g_new), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gan_losses_values():
    d, g = gan_losses(jnp.array([[0.0]]), jnp.array([[0.0]]), jnp.ones(1))
    np.testing.assert_allclose([d, g], [2 * np.log(2.0), np.log(2.0)], rtol=1e-6)


def test_gan_fit_and_deterministic_generation(digits):
    model = _small_gan()
    gan = GANTrainer(model, seed=0)
    x = digits.train.x[:128] * 2.0 - 1.0
    h = gan.fit(x, epochs=2, batch_size=32, verbose=0)
    assert set(h.history) == {"d_loss", "g_loss", "d_real", "d_fake"} and len(h.epoch) == 2
    assert gan.model is model  # the model passed in holds the trained networks
    a, b = gan.generate(jax.random.key(1), 3), gan.generate(jax.random.key(1), 3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, gan.generate(jax.random.key(2), 3))


# ---- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("latent", [0, -2])
def test_vae_latent_size_zero_is_an_error(latent):
    with pytest.raises(JaxdlError, match="vae: latent_dim must be a positive integer, got"):
        create_model("vae", latent_dim=latent)


def test_generator_output_shape_must_match_the_data():
    gan = GANTrainer(_small_gan())
    with pytest.raises(
        JaxdlError,
        match=r"examples have shape \(28, 28, 1\), but the generator "
        r"makes images of shape \(8, 8, 1\)",
    ):
        gan.fit(np.zeros((4, 28, 28, 1), np.float32), epochs=1, batch_size=4, verbose=0)


@pytest.mark.parametrize(
    "name,kw,message",
    [
        (
            "conv_autoencoder",
            dict(input_shape=(30, 30, 1)),
            "divisible by 2\\^len\\(features\\) = 4",
        ),
        ("autoencoder", dict(kind="recurrent"), "kind must be one of"),
        ("dcgan", dict(input_shape=(784,)), "needs input_shape \\(H, W, C\\)"),
        ("autoencoder", dict(latent_dim=0), "latent_dim must be >= 1"),
    ],
)
def test_bad_configs(name, kw, message):
    with pytest.raises(JaxdlError, match=message):
        create_model(name, **kw)


def test_wrong_input_shape_and_loss_name():
    with pytest.raises(JaxdlError, match="vae: input shape"):
        create_model("vae")(jnp.zeros((2, 8, 8, 1)))
    with pytest.raises(JaxdlError, match="unknown reconstruction loss 'l1'"):
        ReconstructionTask("l1")
    with pytest.raises(JaxdlError, match="n must be a positive integer"):
        create_model("vae").sample(jax.random.key(0), 0)
