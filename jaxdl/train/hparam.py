"""Hyperparameter search: grid and random search over the fields of any
frozen-dataclass config, and the JAX-native form that trains K configurations in one program.

    space = {"lr": [1e-3, 3e-3], "hidden": [(64,), (128, 64)], "optimizer": ["adam", "sgd"]}
    result = grid_search(train_fn, Config(), space, metric="val_accuracy")
    result.table(); result.best_config; result.plot("runs/search.png")

`train_fn(config) -> dict of metrics` runs one trial: any field of the config can be searched
(learning rate, epochs, batch size, width, depth, optimizer...). Random search draws each field
from a list (uniformly) or a distribution (`LogUniform` for learning rates, Bergstra and
Bengio, 2012, "Random search for hyper-parameter optimization").

`train_vmapped` is the same search for what varies inside one compiled program: learning rates
and seeds. A `SweepTask` stacks K train states (the learning rate lives in the optimizer state,
through `optax.inject_hyperparams`) and the `Trainer` runs `jax.vmap` of the library's own train
step, so K configurations (or an ensemble of K seeds) cost one compilation and one dispatch per
step, with the engine's callbacks, checkpoints and resume; each run equals the `Trainer` run with
that learning rate and seed (tests/train/test_hparam.py checks this).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.data.core import ArrayDataset
from jaxdl.errors import JaxdlError, check_positive, unknown_name
from jaxdl.functional import output_shape, split
from jaxdl.train.optim import set_learning_rate
from jaxdl.train.state import TrainState
from jaxdl.train.tasks import ClassificationTask, Task

# ---------------------------------------------------------------------------------------------
# search spaces


@dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from [low, high]."""

    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class LogUniform:
    """A float whose logarithm is uniform on [log low, log high] (learning rates, decays)."""

    low: float
    high: float

    def __post_init__(self):
        if not 0 < self.low <= self.high:
            raise JaxdlError(
                f"LogUniform needs 0 < low <= high, got low={self.low}, high={self.high}"
            )

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


@dataclass(frozen=True)
class IntUniform:
    """An integer drawn uniformly from low..high inclusive (epochs, depth, width)."""

    low: int
    high: int

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))


Distribution = Uniform | LogUniform | IntUniform


def check_space(space: Mapping[str, Any], base) -> None:
    """Raise a clear error unless `space` maps fields of the dataclass `base` to non-empty value
    lists or distributions."""
    if not dataclasses.is_dataclass(base):
        raise JaxdlError(
            f"search: base config must be a dataclass instance, got {type(base).__name__}"
        )
    if not space:
        raise JaxdlError(
            "search space is empty: give at least one field and its values, "
            "e.g. {'lr': [1e-3, 1e-2]}"
        )
    fields = [f.name for f in dataclasses.fields(base)]
    for name, values in space.items():
        if name not in fields:
            raise unknown_name(f"field of {type(base).__name__} in the search space", name, fields)
        if isinstance(values, Distribution):
            continue
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise JaxdlError(
                f"search space[{name!r}] must be a list of values or a distribution "
                f"(Uniform, LogUniform, IntUniform), got {values!r}"
            )
        if len(values) == 0:
            raise JaxdlError(f"search space[{name!r}] is an empty list: give at least one value")


def grid(space: Mapping[str, Sequence]) -> list[dict[str, Any]]:
    """Every combination of the listed values, in order (the last field varies fastest)."""
    for name, values in space.items():
        if isinstance(values, Distribution):
            raise JaxdlError(
                f"grid search needs a list of values for {name!r}, got the distribution "
                f"{values}; use random_search for distributions"
            )
    names = list(space)
    return [
        dict(zip(names, combo, strict=False))
        for combo in itertools.product(*(space[n] for n in names))
    ]


def random_points(space: Mapping[str, Any], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` points: each field drawn independently (lists uniformly), seeded by `seed`."""
    check_positive("n_trials", n, integer=True)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        point = {}
        for name, values in space.items():
            if isinstance(values, Distribution):
                point[name] = values.sample(rng)
            else:
                point[name] = values[int(rng.integers(len(values)))]
        out.append(point)
    return out


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class Trial:
    index: int
    overrides: dict[str, Any]
    metrics: dict[str, float]
    seconds: float = 0.0


@dataclass
class SearchResult:
    """The trials of a search, ranked by `metric` (`mode` 'max' or 'min')."""

    base: Any
    trials: list[Trial]
    metric: str
    mode: str = "max"
    searched: tuple[str, ...] = field(default_factory=tuple)

    def ranked(self) -> list[Trial]:
        sign = -1.0 if self.mode == "max" else 1.0
        return sorted(self.trials, key=lambda t: sign * t.metrics[self.metric])

    @property
    def best(self) -> Trial:
        return self.ranked()[0]

    @property
    def best_config(self):
        """The base config with the best trial's values."""
        return dataclasses.replace(self.base, **self.best.overrides)

    def table(self, title: str | None = None):
        """A rich Table of the trials, best first."""
        from rich.table import Table

        metric_keys = list(self.trials[0].metrics) if self.trials else []
        t = Table(
            title=title or f"{len(self.trials)} trials, ranked by {self.metric} ({self.mode})"
        )
        for col in ("rank", *self.searched, *metric_keys, "time (s)"):
            t.add_column(col, justify="right")
        for rank, tr in enumerate(self.ranked(), 1):
            vals = [_fmt(tr.overrides[k]) for k in self.searched]
            t.add_row(
                str(rank), *vals, *(_fmt(tr.metrics[k]) for k in metric_keys), f"{tr.seconds:.1f}"
            )
        return t

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """A PNG with one panel per searched field (rows of at most three): the metric of every
        trial against the field's value, the best starred. Numbers are a numeric axis (log for
        positive ones spanning more than a decade); seeds, strings, booleans and tuples are
        categories, one tick each. `title` defaults to what was searched and how many trials."""
        from jaxdl.viz import panel_grid

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        names = list(self.searched)
        fig, axes = panel_grid(len(names))
        y = [t.metrics[self.metric] for t in self.trials]
        best = self.best
        for ax, name in zip(axes, names, strict=True):
            vals = [t.overrides[name] for t in self.trials]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
            if numeric and not _is_seed(name):
                x = np.asarray(vals, float)
                if x.min() > 0 and x.max() / x.min() > 10:
                    ax.set_xscale("log")
            else:
                labels = sorted({_fmt(v) for v in vals}, key=_natural)
                x = np.asarray([labels.index(_fmt(v)) for v in vals], float)
                ax.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 4 else 0)
                ax.set_xlim(-0.5, len(labels) - 0.5)
            ax.scatter(x, y, alpha=0.7, label="trial")
            bx = x[self.trials.index(best)]
            ax.scatter(
                [bx], [best.metrics[self.metric]], color="red", marker="*", s=150, label="best"
            )
            ax.set_xlabel(name)
            ax.set_ylabel(self.metric)
            ax.set_title(f"{self.metric} against {name}")
            ax.grid(alpha=0.3)
        axes[0].legend()
        best_text = ", ".join(f"{k}={_fmt(v)}" for k, v in best.overrides.items())
        fig.suptitle(
            title
            or f"{len(self.trials)} trials over {', '.join(names)}; best {self.metric} "
            f"{best.metrics[self.metric]:.4g} at {best_text}"
        )
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        _plt_close(fig)
        return path


def _is_seed(name: str) -> bool:
    """Seeds name random draws, not magnitudes: plotted as categories."""
    return name == "seed" or name.endswith("_seed") or name.startswith("seed_")


def _natural(label: str):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", label)]


def _plt_close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _run_trials(train_fn, base, points, metric, mode, verbose) -> SearchResult:
    if mode not in ("max", "min"):
        raise JaxdlError(f"mode must be 'max' or 'min', got {mode!r}")
    trials = []
    for i, point in enumerate(points):
        cfg = dataclasses.replace(base, **point)
        t0 = time.perf_counter()
        metrics = dict(train_fn(cfg))
        dt = time.perf_counter() - t0
        if metric not in metrics:
            raise JaxdlError(
                f"search: train_fn returned no {metric!r}; it returned {sorted(metrics)}"
            )
        trials.append(Trial(i, point, {k: float(v) for k, v in metrics.items()}, dt))
        if verbose:
            print(
                f"trial {i + 1}/{len(points)} {point}: {metric} {metrics[metric]:.4g} ({dt:.1f}s)",
                flush=True,
            )
    return SearchResult(base, trials, metric, mode, tuple(points[0]) if points else ())


def grid_search(
    train_fn: Callable[[Any], Mapping[str, float]],
    base,
    space: Mapping[str, Sequence],
    *,
    metric: str,
    mode: str = "max",
    verbose: bool = True,
) -> SearchResult:
    """Run `train_fn` on `base` with every combination of `space`'s values."""
    check_space(space, base)
    return _run_trials(train_fn, base, grid(space), metric, mode, verbose)


def random_search(
    train_fn: Callable[[Any], Mapping[str, float]],
    base,
    space: Mapping[str, Any],
    n_trials: int,
    *,
    metric: str,
    mode: str = "max",
    seed: int = 0,
    verbose: bool = True,
) -> SearchResult:
    """Run `train_fn` on `n_trials` random points of `space` (lists or distributions)."""
    check_space(space, base)
    return _run_trials(train_fn, base, random_points(space, n_trials, seed), metric, mode, verbose)


# ---------------------------------------------------------------------------------------------
# K configurations in one program


@dataclass(frozen=True)
class _LrSeed:
    """The implicit base 'config' of a vmapped search: its fields are what varies."""

    lr: float = 0.0
    seed: int = 0


@dataclass
class VmapResult:
    """K runs trained together: `history[k]` per-epoch training metrics, `val[k]` the final
    validation metrics (if validation data was given), `state` the stacked TrainState [K, ...]."""

    learning_rates: list[float]
    seeds: list[int]
    history: list[dict[str, list[float]]]
    val: list[dict[str, float]]
    state: TrainState
    seconds: float

    def params(self, k: int):
        """Run k's parameters (unstacked)."""
        return jax.tree.map(lambda a: a[k], self.state.params)

    def to_search(self, metric: str, mode: str = "max") -> SearchResult:
        trials = []
        for k, (lr, seed) in enumerate(zip(self.learning_rates, self.seeds, strict=False)):
            m = {f"train_{n}": v[-1] for n, v in self.history[k].items()}
            m.update({f"val_{n}": v for n, v in (self.val[k] if self.val else {}).items()})
            trials.append(Trial(k, {"lr": lr, "seed": seed}, m, self.seconds / len(self.seeds)))
        if metric not in trials[0].metrics:
            raise JaxdlError(f"no metric {metric!r}; have {sorted(trials[0].metrics)}")
        return SearchResult(_LrSeed(), trials, metric, mode, ("lr", "seed"))


def _index(tree, *index):
    """Every leaf of `tree` indexed by `index` (one run of stacked results)."""
    return jax.tree.map(lambda a: a[index], tree)


class SweepTask(Task):
    """K configurations of one model trained together by the one engine: every leaf of the train
    state has a leading axis K and the step is `jax.vmap` of `task`'s step, so K runs cost one
    compilation and one dispatch per step. Run k starts from `models[k]`'s weights, learns at
    `learning_rates[k]` (it lives in the optimizer state, through `optax.inject_hyperparams`) and
    reads the batches of `Trainer(..., seed=seeds[k])` in their order; it equals that Trainer run.

    Metrics are per run: `compute` gives lists of K values. A run whose loss became NaN keeps its
    last finite state (the guarded step) while the others go on; its `nonfinite` is 1. Callbacks
    that act on one monitored value (early stopping, LR on plateau, best checkpoints) cannot serve
    K runs and are refused."""

    stacked = True  # the engine's flag: batches [K, B, ...], one per run

    def __init__(self, task: Task, models, learning_rates, seeds):
        self.task, self.models = task, list(models)
        self.learning_rates, self.seeds = list(learning_rates), list(seeds)
        self.k = len(self.models)

    def create_state(self, params, model_state, tx, seed, **options):
        states = []
        for m, lr, s in zip(self.models, self.learning_rates, self.seeds, strict=True):
            _, p, ms = split(m)
            p, ms = jax.tree.map(jnp.copy, (p, ms))
            st = self.task.create_state(p, ms, tx, s, **options)
            states.append(st.replace(opt_state=set_learning_rate(st.opt_state, lr)))
        return jax.tree.map(lambda *a: jnp.stack(a), *states)

    def make_step(self, **kw):
        return jax.vmap(self.task.make_step(**kw))

    def make_eval_step(self, apply):
        return jax.vmap(self.task.make_eval_step(apply), in_axes=(0, 0, None))

    def data_seeds(self) -> list[int]:
        """The data-order seed of each run."""
        return self.seeds

    def model_weights(self, state):
        return None  # K runs: no single model to hold them (VmapResult.params(k) has each)

    def check_input(self, apply, state, x) -> None:
        self.task.check_input(apply, _index(state, 0), x)

    def check_labels(self, y, *, where="labels") -> None:
        self.task.check_labels(y, where=where)

    def check_callbacks(self, callbacks) -> None:
        for c in callbacks:
            if getattr(c, "monitor", None) is not None:
                raise JaxdlError(
                    f"{type(c).__name__} acts on one monitored value ({c.monitor!r}), but a sweep "
                    f"trains {self.k} runs at once; train the chosen configuration alone with it"
                )

    def init_metrics(self):
        return jax.tree.map(lambda a: jnp.stack([a] * self.k), self.task.init_metrics())

    def init_accumulators(self):
        """Per-run metric sums and NaN flags: every leaf [K]."""
        from jaxdl.train.steps import init_metrics

        return jax.tree.map(lambda a: jnp.stack([a] * self.k), init_metrics(self.task))

    def compute(self, acc, detailed: bool = False):
        acc = jax.device_get(acc)
        runs = [self.task.compute(_index(acc, k)) for k in range(self.k)]
        out = {n: [r[n] for r in runs] for n in runs[0]}
        if "nonfinite" in acc:
            out["nonfinite"] = [int(v > 0) for v in np.asarray(acc["nonfinite"])]
        return out


def train_vmapped(
    make_model: Callable[[nnx.Rngs], nnx.Module],
    train,
    *,
    learning_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int = 1,
    batch_size: int = 32,
    optimizer: str = "adam",
    task: Task | None = None,
    validation_data=None,
    shuffle: bool = True,
    callbacks: Sequence = (),
    mesh=None,
) -> VmapResult:
    """Train K = len(learning_rates) models in one compiled program (a `SweepTask` on the
    `Trainer`), run k with learning rate `learning_rates[k]`, weights from
    `make_model(nnx.Rngs(seeds[k]))`, and the data order and dropout keys of
    `Trainer(..., seed=seeds[k])`. Pair the lists with itertools.product for a grid of learning
    rates x seeds. Callbacks (checkpoints, BackupAndRestore: the sweep resumes like any fit) run
    as in `Trainer.fit`; the data must fit on the device (it stays there). Default mesh: one
    device. Returns per-run training histories and validation metrics."""
    from jaxdl.parallel.mesh import make_mesh
    from jaxdl.train.loop import Trainer

    lrs, seeds = [float(v) for v in learning_rates], [int(s) for s in seeds]
    if not lrs:
        raise JaxdlError("train_vmapped: learning_rates is empty; give at least one")
    if len(lrs) != len(seeds):
        raise JaxdlError(
            f"train_vmapped: learning_rates and seeds must pair up; got {len(lrs)} "
            f"learning rates and {len(seeds)} seeds"
        )
    for lr in lrs:
        check_positive("learning_rate", lr)
    check_positive("epochs", epochs, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    train = train if isinstance(train, ArrayDataset) else ArrayDataset(*map(np.asarray, train))
    if len(train) == 0:
        raise JaxdlError("train_vmapped: training data is empty")
    models, graphdef = [], None
    for seed in seeds:
        m = make_model(nnx.Rngs(seed))
        gd = split(m)[0]
        if graphdef is not None and gd != graphdef:
            raise JaxdlError(
                "train_vmapped: make_model must build the same architecture for every seed"
            )
        models.append(m)
        graphdef = gd
    if task is None:
        out = output_shape(models[0], jax.ShapeDtypeStruct((1, *train.x.shape[1:]), train.x.dtype))
        task = ClassificationTask(out[-1])
    trainer = Trainer(
        models[0],
        task=SweepTask(task, models, lrs, seeds),
        optimizer=optimizer,
        learning_rate=lrs[0],
        seed=seeds[0],
        mesh=mesh if mesh is not None else make_mesh(num_devices=1),
    )
    t0 = time.perf_counter()
    h = trainer.fit(
        train, epochs=epochs, batch_size=batch_size, shuffle=shuffle, callbacks=callbacks, verbose=0
    )
    seconds = time.perf_counter() - t0
    history = [{n: [ep[k] for ep in v] for n, v in h.history.items()} for k in range(len(lrs))]
    val = []
    if validation_data is not None:
        logs = trainer.evaluate(validation_data, batch_size=max(batch_size, 256))
        val = [{n: v[k] for n, v in logs.items()} for k in range(len(lrs))]
    return VmapResult(lrs, seeds, history, val, trainer.state, seconds)


__all__ = [
    "Uniform",
    "LogUniform",
    "IntUniform",
    "check_space",
    "grid",
    "random_points",
    "Trial",
    "SearchResult",
    "grid_search",
    "random_search",
    "VmapResult",
    "train_vmapped",
]
