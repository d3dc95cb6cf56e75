"""The encoder-decoder Transformer learns to reverse sequences, a task generated on the fly.

Source: `length` random symbols; target: the same symbols reversed. Trained with teacher forcing
(decoder input = BOS + target[:-1]) through the ordinary Trainer, then scored by exact match of
the autoregressive greedy decode (KV cache) on held-out sequences.

    python experiments/transformer_seq2seq.py [--steps ...] [--smoke]
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import tyro
from rich.console import Console

from jaxdl import create_model
from jaxdl.data import ArrayDataset
from jaxdl.functional import count_params
from jaxdl.nn.decoding import beam_search, greedy_decode
from jaxdl.train import LanguageModelTask, Trainer
from jaxdl.viz import save_run_pictures

PAD, BOS = 0, 1  # symbols are 2 .. 2 + num_symbols - 1


@dataclass(frozen=True)
class Config:
    length: int = 12
    num_symbols: int = 10
    train_size: int = 20000
    test_size: int = 1000
    epochs: int = 6
    batch_size: int = 64
    d_model: int = 64
    num_heads: int = 4
    layers: int = 2
    lr: float = 1e-3
    seed: int = 0
    smoke: bool = False
    out: str = "runs/transformer_seq2seq"
    """Run directory for the pictures."""


def reversal_data(n: int, length: int, num_symbols: int, seed: int):
    """(packed x [n, 2 * length], y [n, length], src [n, length]): x = [src | BOS, y[:-1]]."""
    rng = np.random.default_rng(seed)
    src = rng.integers(2, 2 + num_symbols, size=(n, length), dtype=np.int32)
    y = src[:, ::-1].copy()
    dec_in = np.concatenate([np.full((n, 1), BOS, np.int32), y[:, :-1]], axis=1)
    return np.concatenate([src, dec_in], axis=1), y, src


def main(cfg: Config) -> dict:
    vocab = 2 + cfg.num_symbols
    n_train, epochs = (2000, 1) if cfg.smoke else (cfg.train_size, cfg.epochs)
    x, y, _ = reversal_data(n_train, cfg.length, cfg.num_symbols, cfg.seed)
    _, _, test_src = reversal_data(cfg.test_size, cfg.length, cfg.num_symbols, cfg.seed + 1)
    model = create_model(
        "transformer_small",
        input_shape=(2 * cfg.length,),
        src_len=cfg.length,
        src_vocab=vocab,
        tgt_vocab=vocab,
        d_model=cfg.d_model,
        num_heads=cfg.num_heads,
        enc_layers=cfg.layers,
        dec_layers=cfg.layers,
        d_ff=4 * cfg.d_model,
        dropout=0.0,
        max_len=cfg.length,
        pad_id=PAD,
    )
    t = Trainer(
        model, task=LanguageModelTask(vocab), optimizer="adam", learning_rate=cfg.lr, seed=cfg.seed
    )
    t0 = time.perf_counter()
    h = t.fit(ArrayDataset(x, y), epochs=epochs, batch_size=cfg.batch_size, verbose=1)
    save_run_pictures(cfg.out, h, title="transformer encoder-decoder")
    train_s = time.perf_counter() - t0
    trained = t.model
    pred = np.asarray(greedy_decode(trained, jnp.asarray(test_src), cfg.length, bos_id=BOS))
    target = test_src[:, ::-1]
    exact = float(np.mean(np.all(pred == target, axis=1)))
    token_acc = float(np.mean(pred == target))
    beam = np.asarray(
        beam_search(trained, jnp.asarray(test_src[:200]), cfg.length, bos_id=BOS, beam_size=4)
    )
    beam_exact = float(np.mean(np.all(beam == target[:200], axis=1)))
    total_s = time.perf_counter() - t0
    params = count_params(t.params)
    Console(highlight=False).print(
        f"reversal of {cfg.length} symbols: greedy exact match {exact:.4f} (token accuracy "
        f"{token_acc:.4f}) on {cfg.test_size} held-out sequences; beam-4 exact match "
        f"{beam_exact:.4f} on 200; {params:,} params; train {train_s:.1f}s, total {total_s:.1f}s"
    )
    return {
        "exact_match": exact,
        "token_accuracy": token_acc,
        "beam_exact_match": beam_exact,
        "params": params,
        "train_time_s": train_s,
        "total_time_s": total_s,
        "steps": epochs * -(-n_train // cfg.batch_size),
    }


if __name__ == "__main__":
    main(tyro.cli(Config))
