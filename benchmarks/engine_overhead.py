"""What the training engine costs on top of the model: `Trainer.fit` against a bare `jax.jit` +
optax loop over the same pure apply and the same batches, and against Keras 3 `model.fit` (JAX
backend) of the same architecture; plus the LSTM and GRU layers (forward + backward) against
Keras's.

    python benchmarks/engine_overhead.py                 # the figures (minutes on a 2-core CPU)
    python benchmarks/engine_overhead.py --smoke         # tiny sizes, a few steps (seconds)
    python benchmarks/engine_overhead.py --no-keras      # without the Keras rows

Workloads: mlp 64-128-64-10 (the registered `mlp`) at batch 32 and 128, lenet5 32x32x1 at batch
64, each on in-memory random data (classification, 10 classes, Adam 1e-3):

- `fit`: `Trainer(model, optimizer="adam", learning_rate=1e-3).fit((x, y), epochs=1,
  batch_size=..., verbose=0)`, time per step from whole epochs, after a warm-up epoch that compiles.
- `bare`: `jaxdl.functional.pure(model)`, one `jax.jit` step (softmax cross-entropy, `optax.adam`),
  numpy batches shuffled beforehand, `jax.device_put` per step as a plain user loop would.
- `keras`: `keras.Sequential` of the same layers (same parameter count, checked), `compile` with
  Adam and sparse categorical cross-entropy from logits, `fit(x, y, epochs=1, batch_size=...)`.
- `lstm_layer` / `gru_layer`: `benchmarks/rnn_layers.py`'s jaxdl layer and `keras.layers.LSTM` /
  `GRU`, B 32, T 64, in 128, hidden 256, one jitted value_and_grad of mean(y^2) per step.

One process, interleaved rounds (every workload and implementation once per round, in turn), so a
load that comes and goes hits all of them alike; per workload and implementation the min and the
median over rounds. Ratios are speed ratios from the minima (bare time / impl time, keras time /
impl time: above 1 is faster). Writes results/engine_overhead_cpu.csv and prints the table.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from _common import RESULTS, console
from rnn_layers import jax_layer

from jaxdl.errors import JaxdlError, unknown_name
from jaxdl.functional import count_params, pure
from jaxdl.models import create_model
from jaxdl.train import Trainer

WORKLOADS = ("mlp_b32", "mlp_b128", "lenet5_b64", "lstm_layer", "gru_layer")
COLUMNS = (
    "workload",
    "impl",
    "us_per_step_min",
    "us_per_step_median",
    "ratio_vs_bare",
    "ratio_vs_keras",
    "device",
    "date",
    "versions",
)


@dataclass(frozen=True)
class Config:
    rounds: int = 7
    steps_per_epoch: int = 50
    """Batches per timed epoch (the dataset holds steps_per_epoch x batch rows)."""
    rnn_steps: int = 3
    """fwd+bwd calls per round for the recurrent layers."""
    keras: bool = True
    workloads: tuple[str, ...] = ()
    """Names to run (default: all of WORKLOADS); an unknown name is an error."""
    out: Path = RESULTS
    smoke: bool = False


@dataclass(frozen=True)
class Workload:
    name: str
    model: str
    overrides: tuple[tuple[str, object], ...]
    batch: int
    params: int  # the published / hand-counted size, checked for both frameworks


def workloads(smoke: bool) -> list[Workload]:
    mlp = (("input_shape", (64,)), ("hidden", (128, 64)), ("num_classes", 10))
    return [
        Workload("mlp_b32", "mlp", mlp, 8 if smoke else 32, 17_226),
        Workload("mlp_b128", "mlp", mlp, 16 if smoke else 128, 17_226),
        Workload("lenet5_b64", "lenet5", (), 4 if smoke else 64, 61_706),
    ]


def data(w: Workload, shape, steps: int):
    r = np.random.default_rng(0)
    n = steps * w.batch
    return r.normal(size=(n, *shape)).astype(np.float32), r.integers(0, 10, n).astype(np.int32)


def keras_model(w: Workload, shape):
    import keras

    L = keras.layers
    if w.model == "mlp":
        layers = [L.Dense(128, activation="relu"), L.Dense(64, activation="relu"), L.Dense(10)]
    elif w.model == "lenet5":
        layers = [
            L.Conv2D(6, 5, activation="tanh"),
            L.AveragePooling2D(2),
            L.Conv2D(16, 5, activation="tanh"),
            L.AveragePooling2D(2),
            L.Flatten(),
            L.Dense(120, activation="tanh"),
            L.Dense(84, activation="tanh"),
            L.Dense(10),
        ]
    else:
        raise JaxdlError(f"engine_overhead: no Keras twin for model {w.model!r}")
    m = keras.Sequential([keras.Input(shape), *layers])
    m.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    if m.count_params() != w.params:
        raise JaxdlError(f"{w.name}: Keras twin has {m.count_params()} params, want {w.params}")
    return m


def make_runners(w: Workload, cfg: Config) -> dict:
    """impl -> a function that runs one timed epoch and returns its number of steps."""
    model = create_model(w.model, **dict(w.overrides))
    shape = tuple(model.config.input_shape)
    x, y = data(w, shape, cfg.steps_per_epoch)
    steps = cfg.steps_per_epoch
    runners = {}

    trainer = Trainer(model, optimizer="adam", learning_rate=1e-3)

    def fit():
        trainer.fit((x, y), epochs=1, batch_size=w.batch, verbose=0)
        return steps

    runners["fit"] = fit

    apply, params, state = pure(create_model(w.model, **dict(w.overrides)))
    if count_params(params) != w.params:
        raise JaxdlError(f"{w.name}: {count_params(params)} params, want {w.params}")
    tx = optax.adam(1e-3)

    @jax.jit
    def train_step(params, opt_state, xb, yb):
        def loss_fn(p):
            logits, _ = apply(p, state, xb, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    carry = [params, tx.init(params)]
    rng = np.random.default_rng(1)

    def bare():
        perm = rng.permutation(len(x))  # shuffled beforehand, as a plain loop would
        batches = [(x[i], y[i]) for i in np.split(perm, steps)]
        loss = None
        for xb, yb in batches:
            carry[0], carry[1], loss = train_step(
                carry[0], carry[1], jax.device_put(xb), jax.device_put(yb)
            )
        jax.block_until_ready(loss)
        return steps

    runners["bare"] = bare

    if cfg.keras:
        km = keras_model(w, shape)

        def keras_fit():
            km.fit(x, y, epochs=1, batch_size=w.batch, verbose=0, shuffle=True)
            return steps

        runners["keras"] = keras_fit
    return runners


def rnn_runners(cell: str, cfg: Config) -> dict:
    """impl -> one round of `rnn_steps` jitted fwd+bwd calls of the layer (returns the count)."""
    B, T, d, h = (2, 4, 8, 8) if cfg.smoke else (32, 64, 128, 256)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, d)).astype(np.float32))
    apply, params, state = pure(jax_layer(cell, h, 1, in_features=d))

    def loss(p, x):
        y, _ = apply(p, state, x, train=True)
        return jnp.mean(jnp.square(y))

    ours = jax.jit(jax.value_and_grad(loss))
    fns = {"jaxdl": lambda: ours(params, x)}
    if cfg.keras:
        import keras

        kl = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell](h, return_sequences=True)
        kl.build((B, T, d))
        tv = [v.value for v in kl.trainable_variables]
        ntv = [v.value for v in kl.non_trainable_variables]

        def kloss(tv, x):
            y, _ = kl.stateless_call(tv, ntv, x, training=True)
            return jnp.mean(jnp.square(y))

        theirs = jax.jit(jax.value_and_grad(kloss))
        fns["keras"] = lambda: theirs(tv, x)

    def runner(f):
        def run():
            for _ in range(cfg.rnn_steps):
                jax.block_until_ready(f())
            return cfg.rnn_steps

        return run

    return {impl: runner(f) for impl, f in fns.items()}


def versions() -> str:
    import flax

    v = f"jax {jax.__version__}; flax {flax.__version__}; optax {optax.__version__}"
    if importlib.util.find_spec("keras") is not None:
        import keras

        v += f"; keras {keras.__version__}"
    return v


def main(cfg: Config) -> list[dict]:
    if cfg.smoke:
        cfg = replace(cfg, rounds=2, steps_per_epoch=2, rnn_steps=1)
    if cfg.keras and importlib.util.find_spec("keras") is None:
        raise JaxdlError("engine_overhead: keras is not installed; pass --no-keras to skip it")
    if cfg.keras:
        import keras

        if keras.backend.backend() != "jax":
            raise JaxdlError(
                f"engine_overhead: Keras must run on the JAX backend (KERAS_BACKEND=jax), "
                f"got {keras.backend.backend()!r}"
            )
    chosen = cfg.workloads or WORKLOADS
    for name in chosen:
        if name not in WORKLOADS:
            raise unknown_name("engine_overhead workload", name, WORKLOADS)
    units = {}  # (workload, impl) -> runner
    for w in workloads(cfg.smoke):
        if w.name in chosen:
            for impl, run in make_runners(w, cfg).items():
                units[(w.name, impl)] = run
    for cell in ("lstm", "gru"):
        if f"{cell}_layer" in chosen:
            for impl, run in rnn_runners(cell, cfg).items():
                units[(f"{cell}_layer", impl)] = run
    for run in units.values():  # warm-up: compiles (one epoch / one round each)
        run()
    times = {k: [] for k in units}
    for r in range(cfg.rounds):
        for k, run in units.items():
            t0 = time.perf_counter()
            n = run()
            times[k].append((time.perf_counter() - t0) / n * 1e6)
        console.print(f"round {r + 1}/{cfg.rounds} done", style="dim")
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}, {os.cpu_count()} cores)"
    date, vers = datetime.now(UTC).date().isoformat(), versions()
    best = {k: min(v) for k, v in times.items()}
    rows = []
    for (workload, impl), v in times.items():
        ref_bare = best.get((workload, "bare"))
        ref_keras = best.get((workload, "keras"))
        rows.append(
            {
                "workload": workload,
                "impl": impl,
                "us_per_step_min": round(min(v), 1),
                "us_per_step_median": round(float(np.median(v)), 1),
                "ratio_vs_bare": round(ref_bare / min(v), 3) if ref_bare else None,
                "ratio_vs_keras": round(ref_keras / min(v), 3) if ref_keras else None,
                "device": device,
                "date": date,
                "versions": vers,
            }
        )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "engine_overhead_cpu.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("n/a" if row[k] is None else row[k]) for k in COLUMNS})
    console.print(
        f"{'workload':12s} {'impl':6s} {'min us':>10s} {'median us':>10s} "
        f"{'vs bare':>8s} {'vs keras':>8s}"
    )
    for row in rows:
        vb, vk = row["ratio_vs_bare"], row["ratio_vs_keras"]
        console.print(
            f"{row['workload']:12s} {row['impl']:6s} {row['us_per_step_min']:10.1f} "
            f"{row['us_per_step_median']:10.1f} {'' if vb is None else f'{vb:.2f}x':>8s} "
            f"{'' if vk is None else f'{vk:.2f}x':>8s}"
        )
    console.print(f"{device}, {date}; wrote {path}")
    return rows


if __name__ == "__main__":
    main(tyro.cli(Config))
