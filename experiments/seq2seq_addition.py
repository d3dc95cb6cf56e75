"""Learning to add with an LSTM encoder-decoder: read "123+456", write "579".

The classic toy task for sequence to sequence learning (Zaremba & Sutskever, 2014; the Keras
addition_rnn example). Operands are 0...999 (a number of `digits`); the source is "a+b"
left-padded with spaces to 2*digits+1 characters and fed reversed, which shortens the paths
between the digits that are added together (Sutskever et al., 2014); the padding (id 0) is
masked. The decoder starts from '=' and writes the sum right-padded with spaces, trained with
teacher forcing; evaluation decodes greedily and counts a sum right only if every character is.
With `reverse_target` (the default) the decoder writes the digits least significant first, the
order in which carries propagate, and the printed answer is turned back ("579"): in the natural
order the first digit already depends on every carry, which takes several times more training.
Held-out pairs never appear in training.

    python experiments/seq2seq_addition.py [--epochs 12] [--units 128] [--smoke]
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from flax import nnx
from rich.console import Console

from jaxdl import create_model
from jaxdl.data import ArrayDataset
from jaxdl.data.text import CharVocab
from jaxdl.functional import split
from jaxdl.train import LanguageModelTask, Trainer, make_schedule
from jaxdl.viz import save_run_pictures

VOCAB = CharVocab.from_text(" 0123456789+=")  # ' ' sorts first: padding is id 0
START = "="


@dataclass(frozen=True)
class Config:
    digits: int = 3
    train_size: int = 50_000
    test_size: int = 5_000
    epochs: int = 25
    batch_size: int = 128
    units: int = 128
    embed_dim: int = 32
    lr: float = 3e-3
    reverse_target: bool = True
    seed: int = 0
    smoke: bool = False
    out: str = "runs/seq2seq_addition"
    """Run directory for the pictures."""


def make_pairs(n: int, digits: int, rng: np.random.Generator, exclude: set | None = None):
    """n distinct (a, b) pairs of numbers below 10**digits, none of them in `exclude`."""
    top = 10**digits
    if n > top * top - len(exclude or ()):
        raise ValueError(f"cannot draw {n} distinct pairs of {digits}-digit numbers")
    seen, out = set(exclude or ()), []
    while len(out) < n:
        for code in rng.integers(0, top * top, size=2 * (n - len(out))):
            if code not in seen:
                seen.add(code)
                out.append(code)
                if len(out) == n:
                    break
    codes = np.array(out)
    return codes // top, codes % top, set(out)


def encode_pairs(a, b, digits: int, reverse_target: bool):
    """(source [N, S] reversed and left-padded, decoder input [N, T], target [N, T])."""
    S, T = 2 * digits + 1, digits + 1
    src = ["".join(reversed(f"{x}+{y}".rjust(S))) for x, y in zip(a, b, strict=True)]
    tgt = [
        (str(x + y)[::-1] if reverse_target else str(x + y)).ljust(T)
        for x, y in zip(a, b, strict=True)
    ]
    source = np.stack([VOCAB.encode(s) for s in src])
    target = np.stack([VOCAB.encode(t) for t in tgt])
    dec_in = np.concatenate([np.full((len(a), 1), VOCAB.index[START], np.int32), target[:, :-1]], 1)
    return source, dec_in, target


def main(cfg: Config) -> dict:
    console = Console(highlight=False)
    train_size, test_size, epochs = cfg.train_size, cfg.test_size, cfg.epochs
    if cfg.smoke:
        train_size, test_size, epochs = 2_000, 200, 1
    rng = np.random.default_rng(cfg.seed)
    a_tr, b_tr, used = make_pairs(train_size, cfg.digits, rng)
    a_te, b_te, _ = make_pairs(test_size, cfg.digits, rng, exclude=used)
    src, dec_in, tgt = encode_pairs(a_tr, b_tr, cfg.digits, cfg.reverse_target)
    S, T = src.shape[1], tgt.shape[1]
    train = ArrayDataset(np.concatenate([src, dec_in], 1), tgt)

    model = create_model(
        "seq2seq_lstm",
        input_shape=(S + T,),
        source_len=S,
        vocab_size=len(VOCAB),
        embed_dim=cfg.embed_dim,
        units=(cfg.units,),
        mask_zero=True,
        rngs=nnx.Rngs(cfg.seed),
    )
    steps = epochs * -(-train_size // cfg.batch_size)
    schedule = make_schedule("cosine", cfg.lr, total_steps=steps, end_value=cfg.lr / 20)
    trainer = Trainer(
        model,
        task=LanguageModelTask(len(VOCAB)),
        learning_rate=schedule,
        clip_norm=1.0,
        seed=cfg.seed,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    h = trainer.fit(train, epochs=epochs, batch_size=cfg.batch_size, verbose=1)
    save_run_pictures(cfg.out, h, title=f"seq2seq LSTM addition, {cfg.digits} digits")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0

    src_te, _, tgt_te = encode_pairs(a_te, b_te, cfg.digits, cfg.reverse_target)
    graphdef, params, state = split(trainer.model)

    @jax.jit
    def decode(params, state, source):
        m = nnx.merge(graphdef, params, state, copy=True)
        return m.greedy_decode(source, T, VOCAB.index[START])

    pred = np.asarray(decode(params, state, jnp.asarray(src_te)))
    exact = float(np.mean(np.all(pred == tgt_te, axis=1)))
    char_acc = float(np.mean(pred == tgt_te))
    for i in range(5):
        q, answer = f"{a_te[i]}+{b_te[i]}", VOCAB.decode(pred[i]).strip()
        console.print(
            f"  {q:>9} = {answer[::-1] if cfg.reverse_target else answer:<5} "
            f"({'ok' if (pred[i] == tgt_te[i]).all() else 'wrong, ' + str(a_te[i] + b_te[i])})"
        )
    console.print(
        f"held-out exact match {exact:.4f} (character accuracy {char_acc:.4f}) on "
        f"{test_size} unseen sums; training {wall:.0f}s wall, {cpu:.0f}s CPU"
    )
    return {
        "exact_match": exact,
        "char_accuracy": char_acc,
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "epochs": epochs,
        "train_size": train_size,
    }


if __name__ == "__main__":
    main(tyro.cli(Config))
