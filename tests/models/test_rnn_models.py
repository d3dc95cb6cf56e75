"""Recurrent models (rnn_lm, lstm_lm, gru_lm, lstm_classifier, lstm_tagger, seq2seq_lstm) and the
char_rnn / seq2seq_addition experiments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, assert_pictures
from flax import nnx

from jaxdl import create_model, list_models
from jaxdl.data import ArrayDataset
from jaxdl.data.text import CharVocab, generate_text
from jaxdl.errors import JaxdlError
from jaxdl.models.registry import get_entry
from jaxdl.nn.decoding import beam_search, generate
from jaxdl.train import LanguageModelTask, Trainer

RECURRENT = [n for n in list_models() if get_entry(n).family in ("rnn", "seq2seq")]
SMALL = dict(
    units=(8,), embed_dim=6
)  # the families at test size (the registered widths are bigger)


def small(name, **kw):
    return create_model(name, rngs=nnx.Rngs(0), **SMALL, **kw)


def test_registry_has_the_recurrent_models():
    assert set(RECURRENT) == {
        "rnn_lm",
        "lstm_lm",
        "gru_lm",
        "lstm_classifier",
        "lstm_tagger",
        "seq2seq_lstm",
    }


@pytest.mark.parametrize("name", ["rnn_lm", "lstm_lm", "gru_lm"])
def test_greedy_generation_equals_full_forward(name):
    """Generation carries the state step by step; it must match re-reading the whole text."""
    m = small(name, vocab_size=11, num_classes=11)
    prompt = jnp.array([[1, 5, 2], [3, 3, 7]])
    toks = m.generate(prompt, 6, key=None)
    seq = prompt
    for _ in range(6):
        nxt = jnp.argmax(m(seq)[:, -1], axis=-1)
        seq = jnp.concatenate([seq, nxt[:, None]], axis=1)
    assert toks.tolist() == seq[:, 3:].tolist()
    a = m.generate(prompt, 6, key=jax.random.key(0), top_k=3)
    assert a.tolist() == m.generate(prompt, 6, key=jax.random.key(0), top_k=3).tolist()


@pytest.mark.parametrize("name", ["lstm_lm", "gru_lm"])
def test_cached_decoding_equals_full_forward(name):
    """The generation API: init_cache is the zero state, decode carries it; prefill 4 tokens,
    then one at a time, equals one full forward pass; nn.decoding.generate runs the model."""
    m = create_model(
        name, vocab_size=11, num_classes=11, units=(8, 8), embed_dim=6, rngs=nnx.Rngs(0)
    )
    x = jax.random.randint(jax.random.key(1), (2, 9), 1, 11)
    full = m(x)
    cache = m.init_cache(2)
    logits, cache = m.decode(x[:, :4], cache, 0)
    steps = [logits]
    for i in range(4, 9):
        logits, cache = m.decode(x[:, i : i + 1], cache, i)
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5)
    out = generate(m, x[:, :3], 4)  # prompt + new tokens, as for GPT
    assert out.shape == (2, 7) and out[:, 3:].tolist() == m.generate(x[:, :3], 4, key=None).tolist()
    with pytest.raises(JaxdlError, match="unidirectional many-to-many language model"):
        small("lstm_tagger", vocab_size=11, num_classes=5).init_cache(2)


def test_seq2seq_cached_decoding_equals_teacher_forcing():
    """The LSTM encoder-decoder under the generation API: encode once, decode token by token
    from the encoder's states = the teacher-forced forward; greedy_decode is the step-by-step
    argmax and beam search runs on it."""
    m = small("seq2seq_lstm")
    S = m.config.source_len
    x = jax.random.randint(jax.random.key(3), (3, 11), 1, m.config.vocab_size)
    full = m(x)
    memory, mask = m.encode(x[:, :S])
    cache = m.init_cache(3)
    steps = []
    for i in range(11 - S):
        logits, cache = m.decode(x[:, S + i : S + i + 1], memory, mask, cache, i)
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5)
    out = m.greedy_decode(x[:, :S], 4, start_id=1)
    seq = jnp.ones((3, 1), jnp.int32)
    for _ in range(4):  # reference without a cache: rerun the whole target prefix
        nxt = jnp.argmax(m(jnp.concatenate([x[:, :S], seq], axis=1))[:, -1], axis=-1)
        seq = jnp.concatenate([seq, nxt[:, None].astype(jnp.int32)], axis=1)
    np.testing.assert_array_equal(out, seq[:, 1:])
    assert beam_search(m, x[:, :S], 4, bos_id=1, beam_size=3).shape == (3, 4)


def test_classifier_ignores_padding_and_tagger_shape():
    m = small("lstm_classifier", vocab_size=20, num_classes=3)
    ids = jnp.array([[4, 7, 9, 2]])
    padded = jnp.array([[4, 7, 9, 2, 0, 0, 0]])  # id 0 is padding (mask_zero)
    np.testing.assert_allclose(m(ids), m(padded), atol=1e-6)
    t = small("lstm_tagger", vocab_size=20, num_classes=5)
    assert t(padded).shape == (1, 7, 5)
    # bidirectional: the first tag sees the last real token
    changed = padded.at[0, 3].set(5)
    assert float(jnp.abs(t(changed)[0, 0] - t(padded)[0, 0]).max()) > 0


def test_feature_input_classifier():
    m = create_model(
        "lstm_classifier",
        vocab_size=None,
        input_shape=(9, 3),
        num_classes=2,
        units=(8, 8),
        bidirectional=True,
        mask_zero=False,
        rngs=nnx.Rngs(0),
    )
    assert m(jnp.ones((4, 9, 3))).shape == (4, 2)
    with pytest.raises(JaxdlError, match=r"input shape \(4, 9, 2\) does not fit the model"):
        m(jnp.ones((4, 9, 2)))


def test_lm_trains_and_generates_text():
    text = "abcabcabdabcabcabd" * 20
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    x = np.stack([ids[i : i + 12] for i in range(0, 300, 3)])
    y = np.stack([ids[i + 1 : i + 13] for i in range(0, 300, 3)])
    m = create_model(
        "gru_lm",
        input_shape=(12,),
        vocab_size=len(vocab),
        num_classes=len(vocab),
        units=(32,),
        embed_dim=8,
        rngs=nnx.Rngs(0),
    )
    t = Trainer(m, task=LanguageModelTask(len(vocab)), learning_rate=1e-2, clip_norm=1.0)
    before = t.evaluate(ArrayDataset(x, y))["loss"]
    t.fit(ArrayDataset(x, y), epochs=15, batch_size=32, verbose=0)
    after = t.evaluate(ArrayDataset(x, y))
    assert after["loss"] < 0.5 * before and after["bits_per_token"] < 1.0
    out = generate_text(t.model, vocab, "abc", 9, seed=None)
    assert out.startswith("abcab")
    with pytest.raises(JaxdlError, match=r"outside the vocabulary: \['z'\]"):
        generate_text(t.model, vocab, "abz", 5)


def test_seq2seq_greedy_decode_equals_teacher_forcing_on_own_output():
    m = small("seq2seq_lstm")
    S = m.config.source_len
    src = jax.random.randint(jax.random.key(0), (3, S), 1, 14)
    out = m.greedy_decode(src, 4, start_id=13)
    dec_in = jnp.concatenate([jnp.full((3, 1), 13), out[:, :-1]], axis=1)
    logits = m(jnp.concatenate([src, dec_in], axis=1))
    assert out.tolist() == jnp.argmax(logits, -1).tolist()


def test_model_bad_input():
    with pytest.raises(JaxdlError, match="unknown recurrent cell 'lstmm'. Did you mean: lstm"):
        create_model("lstm_lm", cell="lstmm")
    m = small("lstm_lm")
    with pytest.raises(JaxdlError, match=r"input shape \(2, 5, 3\) does not fit the model"):
        m(jnp.ones((2, 5, 3), jnp.int32))
    with pytest.raises(JaxdlError, match="initial_state must hold one state per layer"):
        m(jnp.ones((2, 5), jnp.int32), initial_state=[])
    with pytest.raises(JaxdlError, match="generate needs a unidirectional"):
        small("lstm_tagger").generate(jnp.ones((1, 3), jnp.int32), 2, key=None)
    s2s = small("seq2seq_lstm")
    with pytest.raises(JaxdlError, match="must hold the source"):
        s2s(jnp.ones((2, s2s.config.source_len), jnp.int32))


def run_experiment(*args):
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_char_rnn_smoke(cell, shared_data, tmp_path):
    r = run_experiment("experiments/char_rnn.py", "--cell", cell, "--smoke", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "validation bits per character" in r.stdout and "ROMEO:" in r.stdout
    assert_pictures(tmp_path, ["curves.png"])


def test_char_rnn_bad_input(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("hello world, hello there. " * 200)
    r = run_experiment("experiments/char_rnn.py", "--text", str(f), "--smoke", "--prompt", "HELLO")
    assert r.returncode != 0 and "outside the vocabulary" in r.stderr
    r = run_experiment("experiments/char_rnn.py", "--text", str(f), "--smoke", "--cell", "lstmx")
    assert r.returncode != 0 and "--cell must be one of rnn, lstm, gru" in r.stderr


def test_seq2seq_addition_smoke(tmp_path):
    r = run_experiment("experiments/seq2seq_addition.py", "--smoke", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "held-out exact match" in r.stdout
    assert_pictures(tmp_path, ["curves.png"])


def test_summary_counts_recurrent_macs():
    from jaxdl.bench.summary import summarize

    m = small("lstm_lm", vocab_size=11, num_classes=11)
    s = summarize(m, jax.ShapeDtypeStruct((2, 5), jnp.int32))
    # LSTM: T (d + u) 4u per sequence; head: T u V
    assert s.macs == 2 * 5 * ((6 + 8) * 4 * 8 + 8 * 11)
