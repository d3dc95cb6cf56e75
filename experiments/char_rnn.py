"""Character-level language model (Karpathy's char-rnn) with a SimpleRNN, LSTM or GRU.

Trains on any UTF-8 text file (default: tiny Shakespeare), the first 90% for training and the
last 10% for validation, cut into windows of `seq_len` characters whose targets are the next
characters. Reports validation bits per character and a sample generated from a prompt.

    python experiments/char_rnn.py --cell lstm [--text PATH] [--steps 1500] [--units 256]
    python experiments/char_rnn.py --cell gru --param-budget 150000   # units from a budget

`--param-budget N` picks, for the chosen cell, the widest layer whose model (embedding, cell and
softmax head) has at most N parameters, so the three cells can be compared at equal size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import tyro
from flax import nnx
from rich.console import Console

from jaxdl import create_model
from jaxdl.data import shared_data_dir
from jaxdl.data.text import CharVocab, generate_text, lm_windows, read_text
from jaxdl.errors import JaxdlError
from jaxdl.functional import param_counts
from jaxdl.train import Callback, LanguageModelTask, Trainer, make_schedule
from jaxdl.viz import save_run_pictures

CELL_PARAMS = {  # the closed-form parameters of one layer of u units on d inputs
    "rnn": lambda d, u: u * d + u * u + u,
    "lstm": lambda d, u: 4 * (u * d + u * u + u),
    "gru": lambda d, u: 3 * (u * d + u * u + 2 * u),  # reset_after=True
}


@dataclass(frozen=True)
class Config:
    cell: str = "lstm"  # rnn | lstm | gru
    text: str | None = None  # default: tinyshakespeare/input.txt in the shared data folder
    # many small updates learn faster early on than few big ones: 32 x 64 characters per step
    steps: int = 1500
    batch_size: int = 32
    seq_len: int = 64
    units: int = 256
    param_budget: int | None = None  # overrides units
    embed_dim: int = 64
    lr: float = 6e-3
    clip_norm: float = 1.0
    prompt: str = "ROMEO:"
    sample_len: int = 300
    temperature: float = 0.8
    top_k: int | None = None
    seed: int = 0
    smoke: bool = False
    out: str = "runs/char_rnn"
    """Run directory for the pictures."""


class StopAfter(Callback):
    """Stops training after `steps` optimizer steps (fit counts in epochs)."""

    def __init__(self, steps: int):
        self.steps, self.seen = steps, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen >= self.steps:
            self.trainer.stop_training = True


def units_for_budget(cell: str, budget: int, vocab: int, embed_dim: int) -> int:
    """The largest width u whose model (embedding + cell + head) has at most `budget` params."""
    total = lambda u: vocab * embed_dim + CELL_PARAMS[cell](embed_dim, u) + u * vocab + vocab
    u = 1
    while total(u + 1) <= budget:
        u += 1
    if total(u) > budget:
        raise JaxdlError(f"--param-budget {budget} is too small for a {cell} model")
    return u


def main(cfg: Config) -> dict:
    console = Console(highlight=False)
    if cfg.cell not in CELL_PARAMS:
        raise JaxdlError(f"--cell must be one of {', '.join(CELL_PARAMS)}, got {cfg.cell!r}")
    path = cfg.text
    if path is None:
        data = shared_data_dir()
        if data is None:
            raise JaxdlError(
                "no --text given and the shared data folder was not found (set JAXDL_SHARED_DATA)"
            )
        path = str(data / "tinyshakespeare" / "input.txt")
    text = read_text(path)
    steps, seq_len, sample_len, batch_size = cfg.steps, cfg.seq_len, cfg.sample_len, cfg.batch_size
    units = cfg.units
    if cfg.smoke:
        text, steps, seq_len, sample_len, batch_size, units = text[:5_000], 3, 16, 40, 16, 32
    vocab = CharVocab.from_text(text)
    vocab.encode(cfg.prompt)  # a prompt outside the vocabulary fails now, not after training
    ids = vocab.encode(text)
    cut = int(0.9 * len(ids))
    train, val = lm_windows(ids[:cut], seq_len), lm_windows(ids[cut:], seq_len)
    units = (
        units
        if cfg.param_budget is None
        else units_for_budget(cfg.cell, cfg.param_budget, len(vocab), cfg.embed_dim)
    )
    model = create_model(
        f"{cfg.cell}_lm",
        input_shape=(seq_len,),
        vocab_size=len(vocab),
        num_classes=len(vocab),
        embed_dim=cfg.embed_dim,
        units=(units,),
        rngs=nnx.Rngs(cfg.seed),
    )
    n_params = param_counts(model)["trainable"]
    console.print(
        f"{cfg.cell}: {units} units, {n_params:,} parameters, vocabulary {len(vocab)}, "
        f"{len(train)} training windows of {seq_len}, {steps} steps of {batch_size}"
    )
    per_epoch = -(-len(train) // batch_size)
    schedule = make_schedule("cosine", cfg.lr, total_steps=steps, end_value=cfg.lr / 10)
    trainer = Trainer(
        model,
        task=LanguageModelTask(len(vocab)),
        learning_rate=schedule,
        clip_norm=cfg.clip_norm,
        seed=cfg.seed,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    h = trainer.fit(
        train,
        epochs=-(-steps // per_epoch),
        batch_size=batch_size,
        validation_data=val,
        callbacks=[StopAfter(steps)],
        verbose=1,
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ev = trainer.evaluate(val, batch_size=batch_size)
    save_run_pictures(cfg.out, h, title=f"char {cfg.cell} language model")
    sample = generate_text(
        trainer.model,
        vocab,
        cfg.prompt,
        sample_len,
        seed=cfg.seed,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
    )
    console.print(
        f"validation bits per character {ev['bits_per_token']:.3f} (loss {ev['loss']:.3f} "
        f"nats, accuracy {ev['accuracy']:.3f}); training {wall:.0f}s wall, {cpu:.0f}s CPU"
    )
    console.print("sample:")
    console.print(sample, markup=False)
    return {
        "cell": cfg.cell,
        "units": units,
        "params": n_params,
        "steps": steps,
        "val_bpc": ev["bits_per_token"],
        "val_accuracy": ev["accuracy"],
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "sample": sample,
    }


if __name__ == "__main__":
    main(tyro.cli(Config))
