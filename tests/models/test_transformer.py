"""Transformer models (beyond the registry battery): the encoder-decoder count from the paper's
shapes, scan = loop, KV cache = full forward, decoding, position interpolation, bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _pinned import PINNED
from flax import nnx

from jaxdl import create_model
from jaxdl.errors import JaxdlError
from jaxdl.functional import count_params, make_apply, split
from jaxdl.models.registry import get_entry
from jaxdl.models.vit import resize_positions, with_image_size
from jaxdl.nn.decoding import beam_search, generate, greedy_decode
from jaxdl.nn.transformer import LayerConfig, TransformerStack
from jaxdl.train import LanguageModelTask, Trainer


@functools.cache
def abstract(name, **kw):
    return nnx.eval_shape(lambda: create_model(name, rngs=nnx.Rngs(0), **kw))


def n_params(model):
    return count_params(split(model)[1])


def test_transformer_base_count_from_the_paper_shapes():
    d, ff, v, n = 512, 2048, 37000, 6
    attn, mlp, ln = 4 * (d * d + d), d * ff + ff + ff * d + d, 2 * d
    expected = v * d + n * (attn + mlp + 2 * ln) + n * (2 * attn + mlp + 3 * ln)
    assert n_params(abstract("transformer_base")) == expected  # 63,082,496 ("65M" in Table 3)
    # unshared: two embeddings and a separate output projection with bias
    unshared = abstract("transformer_base", share_embeddings=False)
    assert n_params(unshared) == expected + v * d + (d * v + v)


@pytest.mark.parametrize("name", ["gpt2", "vit_b16"])
def test_scan_layers_keeps_the_count(name):
    assert n_params(abstract(name, scan_layers=True)) == PINNED[name]


# small instances of each family, for the numerical tests: the registry's test overrides
SMALL = {
    n: dict(get_entry(n).test_overrides)
    for n in ("gpt_mini", "bert_mini", "vit_ti16", "transformer_small")
}


def jitted(model):
    """model's inference forward, compiled (eager op-by-op dispatch is slow on a small CPU)."""
    apply, params, state = make_apply(split(model)[0]), *split(model)[1:]
    return lambda x: jax.jit(apply)(params, state, x)[0]


def jitted_method(model, method):
    """A compiled call of model.<method>(*args) (traced integer positions are fine)."""
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda st, *a: getattr(nnx.merge(graphdef, st), method)(*a))
    return lambda *a: fn(state, *a)


def small(name, seed=0, **kw):
    return create_model(name, rngs=nnx.Rngs(seed), **{**SMALL[name], **kw})


def example(name, model, batch=2, seed=1):
    c = model.config
    key = jax.random.key(seed)
    if name.startswith("vit"):
        return jax.random.uniform(key, (batch, *c.input_shape))
    vocab = getattr(c, "vocab_size", None) or c.src_vocab
    return jax.random.randint(key, (batch, *c.input_shape), 1, vocab)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_scan_equals_loop_with_the_same_weights(name):
    loop = small(name)
    scan = small(name, scan_layers=True)
    # the scan model's state is the loop's with each stack's `layers` {0: tree, 1: tree, ...}
    # replaced by one tree stacked on a leading layer axis
    pure = nnx.to_pure_dict(nnx.state(loop, nnx.Param))
    for stack in ("blocks", "encoder", "decoder"):
        if stack in pure:
            layers = pure[stack]["layers"]
            pure[stack]["layers"] = jax.tree.map(
                lambda *xs: jnp.stack(xs), *[layers[i] for i in sorted(layers)]
            )
    target = nnx.state(scan, nnx.Param)
    nnx.replace_by_pure_dict(target, pure)
    nnx.update(scan, target)
    x = example(name, loop)
    np.testing.assert_allclose(jitted(scan)(x), jitted(loop)(x), atol=2e-5)


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_gpt_kv_cache_equals_full_forward(scan, positions):
    m = create_model("gpt_mini", scan_layers=scan, positions=positions, rngs=nnx.Rngs(0))
    x = jax.random.randint(jax.random.key(1), (2, 11), 0, 65)
    full = jitted(m)(x)
    decode = jitted_method(m, "decode")
    cache = m.init_cache(2, 16)
    logits, cache = decode(x[:, :4], cache, 0)  # prefill 4, then one token at a time
    steps = [logits]
    for i in range(4, 11):
        logits, cache = decode(x[:, i : i + 1], cache, i)
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5)


@pytest.mark.parametrize("scan", [False, True])
def test_encoder_decoder_cache_equals_teacher_forcing(scan):
    m = small("transformer_small", scan_layers=scan)
    x = jax.random.randint(jax.random.key(2), (3, 14), 1, 30)
    full = jitted(m)(x)
    memory, src_mask = jitted_method(m, "encode")(x[:, :8])
    decode = jitted_method(m, "decode")
    cache = m.init_cache(3, 6)
    steps = []
    for i in range(6):
        logits, cache = decode(x[:, 8 + i : 9 + i], memory, src_mask, cache, i)
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5)


def test_generate_greedy_equals_argmax_of_the_full_forward():
    m = create_model("gpt_mini", rngs=nnx.Rngs(3))
    prompt = jnp.array([[5, 6, 7], [1, 2, 3]])
    out = generate(m, prompt, 6)
    seq = prompt
    for _ in range(6):  # reference without a cache: rerun the whole prefix each step
        seq = jnp.concatenate([seq, jnp.argmax(jitted(m)(seq)[:, -1], -1)[:, None]], axis=1)
    np.testing.assert_array_equal(out, seq)
    # sampling: deterministic per key, and top_k=1 is greedy
    key = jax.random.key(0)
    a = generate(m, prompt, 6, key=key, temperature=1.0, top_p=0.9)
    np.testing.assert_array_equal(a, generate(m, prompt, 6, key=key, temperature=1.0, top_p=0.9))
    np.testing.assert_array_equal(generate(m, prompt, 6, key=key, top_k=1), seq)


def sequence_logprob(m, src, tgt, bos):
    dec_in = jnp.concatenate([jnp.full((len(src), 1), bos), tgt[:, :-1]], axis=1)
    logp = jax.nn.log_softmax(jitted(m)(jnp.concatenate([src, dec_in], axis=1)))
    return jnp.sum(jnp.take_along_axis(logp, tgt[..., None], -1)[..., 0], axis=1)


def test_beam_search_finds_at_least_the_greedy_probability():
    m = small("transformer_small", seed=4)
    src = jax.random.randint(jax.random.key(5), (4, 8), 1, 30)
    greedy = greedy_decode(m, src, 6, bos_id=1)
    beam = beam_search(m, src, 6, bos_id=1, beam_size=5, length_penalty=0.0)
    np.testing.assert_array_equal(beam_search(m, src, 6, bos_id=1, beam_size=1), greedy)
    lp_greedy, lp_beam = sequence_logprob(m, src, greedy, 1), sequence_logprob(m, src, beam, 1)
    assert bool(jnp.all(lp_beam >= lp_greedy - 1e-4)), (lp_beam, lp_greedy)
    # greedy decode is the token-by-token argmax of the teacher-forced model
    np.testing.assert_array_equal(
        greedy[:, 0],
        jnp.argmax(jitted(m)(jnp.concatenate([src, jnp.ones((4, 6), jnp.int32)], 1))[:, 0], -1),
    )


def test_beam_search_stops_at_eos():
    m = small("transformer_small", seed=4)
    src = jax.random.randint(jax.random.key(5), (4, 8), 1, 30)
    out = np.asarray(beam_search(m, src, 6, bos_id=1, eos_id=2, beam_size=3))
    for row in out:
        hits = np.flatnonzero(row == 2)
        if hits.size:
            assert np.all(row[hits[0] :] == 2)


def test_vit_position_interpolation():
    m = small("vit_ti16")
    x = example("vit_ti16", m)
    same = with_image_size(m, (16, 16))
    np.testing.assert_allclose(jitted(same)(x), jitted(m)(x), atol=1e-6)
    big = with_image_size(m, (32, 32))
    assert big.pos_embed.shape == (1 + 8 * 8, 32)
    assert jitted(big)(jnp.ones((2, 32, 32, 3))).shape == (2, 5)
    # a constant grid stays constant; the class position is kept
    pe = jnp.concatenate([jnp.full((1, 3), 7.0), jnp.ones((4, 3))])
    expected = jnp.concatenate([jnp.full((1, 3), 7.0), jnp.ones((9, 3))])
    np.testing.assert_allclose(resize_positions(pe, (2, 2), (3, 3)), expected, atol=1e-6)


def test_bad_input():
    gpt = create_model("gpt_mini", rngs=nnx.Rngs(0))
    with pytest.raises(JaxdlError, match="65 tokens is longer than the context of 64"):
        gpt(jnp.zeros((1, 65), jnp.int32))
    with pytest.raises(JaxdlError, match="= 66 tokens is longer than the context of 64"):
        generate(gpt, jnp.zeros((1, 6), jnp.int32), 60)
    with pytest.raises(JaxdlError, match="image size 30x30 is not divisible into 16x16 patches"):
        create_model("vit_b16", input_shape=(30, 30, 3))
    vit = small("vit_ti16")
    with pytest.raises(JaxdlError, match="image size 18x18 is not divisible into 4x4 patches"):
        vit(jnp.ones((1, 18, 18, 3)))
    with pytest.raises(JaxdlError, match="images shape"):
        vit(jnp.ones((1, 20, 20, 3)))
    with pytest.raises(JaxdlError, match="num_heads=3 does not divide the model width 32"):
        small("bert_mini", num_heads=3)
    bert = small("bert_mini")
    with pytest.raises(JaxdlError, match="17 tokens is longer than max_len 16"):
        bert(jnp.ones((1, 17), jnp.int32))
    with pytest.raises(JaxdlError, match="share_embeddings needs one vocabulary"):
        small("transformer_small", tgt_vocab=31)
    stack = TransformerStack(LayerConfig(16, 4), 1, rngs=nnx.Rngs(0))
    with pytest.raises(JaxdlError, match=r"mask of shape \(1, 1, 3, 3\) does not broadcast"):
        stack(jnp.ones((2, 5, 16)), mask=jnp.ones((1, 1, 3, 3), bool))


@pytest.mark.parametrize("pre_ln", [True, False])
def test_training_lowers_the_loss_on_a_repeated_batch(pre_ln):
    m = create_model(
        "transformer_small",
        rngs=nnx.Rngs(0),
        **{**SMALL["transformer_small"], "pre_ln": pre_ln, "dropout": 0.0},
    )
    x = np.asarray(jax.random.randint(jax.random.key(0), (16, 14), 1, 30))
    y = x[:, :6]
    t = Trainer(m, task=LanguageModelTask(30), learning_rate=3e-3)
    before = t.evaluate((x, y))["loss"]
    t.fit((x, y), epochs=5, batch_size=16, verbose=0)
    assert t.evaluate((x, y))["loss"] < before - 0.3


def test_dropout_is_deterministic_per_key_and_off_in_inference():
    m = small("bert_mini")
    apply, (_, params, state) = jax.jit(make_apply(split(m)[0]), static_argnames="train"), split(m)
    x = example("bert_mini", m)
    a, _ = apply(params, state, x, train=True, key=jax.random.key(0))
    b, _ = apply(params, state, x, train=True, key=jax.random.key(0))
    c, _ = apply(params, state, x, train=True, key=jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_allclose(apply(params, state, x)[0], jitted(m)(x), atol=1e-6)
