"""The pure-function core composes with jit, grad and vmap (docs/design.md, decision 1)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl import create_model
from jaxdl.functional import make_apply, merge, param_counts, pure, split


def test_split_merge_roundtrip_and_counts():
    m = create_model("mlp", hidden=(16, 8), batch_norm=True, rngs=nnx.Rngs(1))
    graphdef, params, state = split(m)
    assert all(
        isinstance(v, nnx.Param)
        for v in jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nnx.Variable))
    )
    m2 = merge(graphdef, params, state)
    x = jax.random.normal(jax.random.key(0), (4, 64))
    np.testing.assert_array_equal(m(x), m2(x))
    # (64*16+16) + (16*8+8) + (8*10+10) trainable; BN: gamma/beta trainable, mean/var not
    c = param_counts(m)
    assert c["trainable"] == 64 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10 + 2 * (16 + 8)
    assert c["non_trainable"] == 2 * (16 + 8)


def test_apply_is_pure_and_jit_equals_eager():
    apply, params, state = pure(create_model("mlp", dropout=0.5, batch_norm=True))
    x = jax.random.normal(jax.random.key(0), (8, 64))
    key = jax.random.key(3)
    y1, s1 = apply(params, state, x, train=True, key=key)
    y2, s2 = jax.jit(lambda p, s, x, k: apply(p, s, x, train=True, key=k))(params, state, x, key)
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.tree.leaves(s1)[0], jax.tree.leaves(s2)[0], rtol=1e-5)
    # same key, same bits; another key, other dropout masks
    y3, _ = apply(params, state, x, train=True, key=key)
    np.testing.assert_array_equal(y1, y3)
    y4, _ = apply(params, state, x, train=True, key=jax.random.key(4))
    assert not np.allclose(y1, y4)
    # inference ignores the key and dropout
    e1, _ = apply(params, state, x, train=False)
    e2, _ = apply(params, state, x, train=False, key=key)
    np.testing.assert_array_equal(e1, e2)


def test_state_is_not_mutated_by_apply():
    apply, params, state = pure(create_model("mlp", batch_norm=True))
    before = jax.tree.map(np.array, state)
    _, new_state = apply(params, state, jnp.ones((4, 64)) * 3, train=True)
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, state))
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(new_state), strict=False)
    )


def test_grad_through_apply_matches_finite_differences():
    apply, params, state = pure(create_model("mlp", hidden=(5,), activation="tanh"))
    x = jax.random.normal(jax.random.key(0), (3, 64))

    def f(p):
        return jnp.sum(apply(p, state, x)[0] ** 2)

    g = jax.grad(f)(params)
    leaf = "head"
    eps = 1e-3

    def bump(delta):
        return jax.tree_util.tree_map_with_path(
            lambda path, a: (
                a.at[0, 0].add(delta) if "head" in str(path) and "kernel" in str(path) else a
            ),
            params,
        )

    fd = (f(bump(eps)) - f(bump(-eps))) / (2 * eps)
    np.testing.assert_allclose(g[leaf]["kernel"][0, 0], fd, rtol=2e-2)


def test_vmap_over_stacked_params_is_an_ensemble():
    models = [create_model("mlp", hidden=(8,), rngs=nnx.Rngs(i)) for i in range(4)]
    graphdef, _, state = split(models[0])
    apply = make_apply(graphdef)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[split(m)[1] for m in models])
    x = jax.random.normal(jax.random.key(0), (5, 64))
    ys, _ = jax.vmap(lambda p: apply(p, state, x))(stacked)
    assert ys.shape == (4, 5, 10)
    for i, m in enumerate(models):
        np.testing.assert_allclose(ys[i], m(x), rtol=1e-5, atol=1e-6)
