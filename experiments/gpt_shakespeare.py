"""A character-level GPT on Tiny Shakespeare: validation loss (nats and bits per character) and
a sample drawn with the KV cache.

The text's last 10% is the validation split; windows of `context` characters, y shifted by one.

    JAXDL_SHARED_DATA=/path/to/data python experiments/gpt_shakespeare.py [--epochs 5] [--smoke]
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
from jaxdl.data import shared_data_dir
from jaxdl.data.text import CharVocab, lm_windows, read_text
from jaxdl.errors import JaxdlError
from jaxdl.functional import count_params
from jaxdl.nn.decoding import generate
from jaxdl.train import LanguageModelTask, Trainer
from jaxdl.viz import save_run_pictures


@dataclass(frozen=True)
class Config:
    context: int = 128
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 4
    dropout: float = 0.1
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    sample_len: int = 300
    temperature: float = 0.8
    top_k: int | None = 20
    seed: int = 0
    smoke: bool = False
    out: str = "runs/gpt_shakespeare"
    """Run directory for the pictures."""


def main(cfg: Config) -> dict:
    data = shared_data_dir()
    path = data / "tinyshakespeare" / "input.txt" if data else None
    if path is None or not path.exists():
        raise JaxdlError("tinyshakespeare/input.txt not found; set JAXDL_SHARED_DATA")
    text = read_text(path)
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]
    context, d, layers, epochs = cfg.context, cfg.d_model, cfg.num_layers, cfg.epochs
    if cfg.smoke:
        train_ids, val_ids = train_ids[:20000], val_ids[:4000]
        context, d, layers, epochs = 32, 32, 1, 1
    train, val = lm_windows(train_ids, context), lm_windows(val_ids, context)
    model = create_model(
        "gpt_mini",
        input_shape=(context,),
        vocab_size=len(vocab),
        context=context,
        d_model=d,
        num_heads=cfg.num_heads,
        num_layers=layers,
        dropout=cfg.dropout,
        rngs=nnx.Rngs(cfg.seed),
    )
    t = Trainer(
        model,
        task=LanguageModelTask(len(vocab)),
        optimizer="adamw",
        learning_rate=cfg.lr,
        clip_norm=1.0,
        seed=cfg.seed,
    )
    t0 = time.perf_counter()
    h = t.fit(train, epochs=epochs, batch_size=cfg.batch_size, validation_data=val, verbose=1)
    train_s = time.perf_counter() - t0
    ev = t.evaluate(val, batch_size=cfg.batch_size)
    save_run_pictures(cfg.out, h, title="GPT on tiny Shakespeare")
    prompt = jnp.asarray(vocab.encode("ROMEO:"))[None]
    n = min(cfg.sample_len, context - prompt.shape[1])
    out = generate(
        t.model,
        prompt,
        n,
        key=jax.random.key(cfg.seed),
        temperature=cfg.temperature,
        top_k=cfg.top_k,
    )
    sample = vocab.decode(np.asarray(out[0]))
    steps = epochs * -(-len(train) // cfg.batch_size)
    params = count_params(t.params)
    c = Console(highlight=False)
    c.print(
        f"char GPT: {params:,} params, {steps} steps of {cfg.batch_size}x{context} tokens, "
        f"val loss {ev['loss']:.4f} nats/char = {ev['bits_per_token']:.4f} bits/char, "
        f"train {train_s:.0f}s"
    )
    c.print("sample:\n" + sample)
    return {
        "val_loss": ev["loss"],
        "val_bits_per_char": ev["bits_per_token"],
        "params": params,
        "steps": steps,
        "train_time_s": train_s,
        "sample": sample,
    }


if __name__ == "__main__":
    main(tyro.cli(Config))
