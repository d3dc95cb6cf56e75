import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data.text import CharVocab, lm_windows
from jaxdl.errors import JaxdlError
from jaxdl.nn import sample_logits
from jaxdl.train import LanguageModelTask


def test_char_vocab_roundtrip_and_errors():
    v = CharVocab.from_text("hello world")
    assert len(v) == 8 and v.decode(v.encode("hello")) == "hello"
    with pytest.raises(JaxdlError, match=r"outside the vocabulary: \['z'\]"):
        v.encode("zoo")


def test_lm_windows_shift_by_one():
    ds = lm_windows(np.arange(11), 4)
    assert ds.x.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert ds.y.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_sampling_greedy_topk_topp():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    assert sample_logits(None, logits).tolist() == [0]
    keys = jax.random.split(jax.random.key(0), 2000)
    draw = lambda **kw: np.array([sample_logits(k, logits, **kw)[0] for k in keys[:400]])
    assert set(draw(top_k=2)) <= {0, 1}
    assert set(draw(top_p=0.7)) <= {0, 1}  # 0.5 < 0.7 needs the second token, not the third
    assert set(draw(top_p=0.5)) == {0}
    full = jax.vmap(lambda k: sample_logits(k, logits[0]))(keys)
    np.testing.assert_allclose(
        np.bincount(np.asarray(full), minlength=4) / 2000, [0.5, 0.3, 0.15, 0.05], atol=0.04
    )
    np.testing.assert_array_equal(
        sample_logits(keys[0], logits, temperature=0.7),
        sample_logits(keys[0], logits, temperature=0.7),
    )


def test_lm_task_masks_and_counts_tokens():
    t = LanguageModelTask(5)
    logits = jax.nn.one_hot(jnp.array([[1, 2, 3], [0, 0, 0]]), 5) * 10
    batch = {"y": jnp.array([[1, 2, 4], [0, 0, 0]]), "weight": jnp.array([1.0, 0.0])}
    per = t.loss(logits, batch)
    acc = t.update_metrics(t.init_metrics(), logits, batch, per, t.weights(batch, per))
    m = t.compute(acc)
    assert m["accuracy"] == pytest.approx(2 / 3) and float(acc["weight_sum"]) == 3.0
