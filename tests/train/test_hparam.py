"""Grid and random search, the vmapped form, and their bad input."""

import itertools
from dataclasses import dataclass

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image
from rich.console import Console

from jaxdl import create_model
from jaxdl.errors import JaxdlError
from jaxdl.parallel import make_mesh
from jaxdl.train import Trainer
from jaxdl.train.hparam import (
    IntUniform,
    LogUniform,
    Uniform,
    grid,
    grid_search,
    random_points,
    random_search,
    train_vmapped,
)


@dataclass(frozen=True)
class Toy:
    lr: float = 0.1
    depth: int = 1
    optimizer: str = "sgd"
    note: str = "unsearched"


def toy_score(cfg: Toy) -> dict:
    """A known landscape: best at lr = 1e-2, depth = 3, adam."""
    score = (
        -abs(np.log10(cfg.lr) + 2) - abs(cfg.depth - 3) + (0.5 if cfg.optimizer == "adam" else 0)
    )
    return {"score": score, "loss": -score}


def test_grid_search_finds_the_known_best_and_reports(tmp_path):
    space = {"lr": [1e-3, 1e-2, 1e-1], "depth": [1, 3, 5], "optimizer": ["sgd", "adam"]}
    res = grid_search(toy_score, Toy(), space, metric="score", verbose=False)
    assert len(res.trials) == 18
    assert res.best.overrides == {"lr": 1e-2, "depth": 3, "optimizer": "adam"}
    assert res.best_config == Toy(lr=1e-2, depth=3, optimizer="adam")
    assert (
        grid_search(toy_score, Toy(), space, metric="loss", mode="min", verbose=False).best.index
        == res.best.index
    )
    console = Console(record=True, width=150)
    console.print(res.table())
    text = console.export_text()
    assert "18 trials, ranked by score" in text and "adam" in text
    png = res.plot(tmp_path / "search.png")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (1260, 330)  # 3 panels of 4.2 x 3.3 in, 100 dpi


def test_grid_order_and_random_points_are_seeded_and_in_range():
    assert grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    space = {
        "lr": LogUniform(1e-4, 1e-1),
        "depth": IntUniform(1, 4),
        "x": Uniform(0, 1),
        "optimizer": ["sgd", "adam"],
    }
    a, b = random_points(space, 50, seed=3), random_points(space, 50, seed=3)
    assert a == b and a != random_points(space, 50, seed=4)
    assert all(1e-4 <= p["lr"] <= 1e-1 and 1 <= p["depth"] <= 4 for p in a)
    assert {p["depth"] for p in a} == {1, 2, 3, 4} and {p["optimizer"] for p in a} == {
        "sgd",
        "adam",
    }
    # log-uniform: about half the draws fall below the geometric midpoint 10^-2.5
    lrs = np.array([p["lr"] for p in random_points({"lr": LogUniform(1e-4, 1e-1)}, 2000, seed=0)])
    assert 0.45 < np.mean(lrs < 10**-2.5) < 0.55


def test_random_search_over_config():
    space = {"lr": LogUniform(1e-3, 1e-1), "depth": IntUniform(1, 5), "optimizer": ["sgd", "adam"]}
    res = random_search(toy_score, Toy(), space, 40, metric="score", seed=0, verbose=False)
    assert len(res.trials) == 40 and res.best_config.note == "unsearched"
    assert res.best.metrics["score"] == max(t.metrics["score"] for t in res.trials)
    assert res.best_config.depth == 3 and res.best_config.optimizer == "adam"


@pytest.mark.parametrize(
    "space,message",
    [
        ({}, "search space is empty"),
        ({"lrr": [0.1]}, "unknown field of Toy in the search space 'lrr'. Did you mean: lr"),
        ({"lr": []}, r"search space\['lr'\] is an empty list"),
        ({"optimizer": "adam"}, r"search space\['optimizer'\] must be a list of values"),
    ],
)
def test_bad_search_spaces(space, message):
    with pytest.raises(JaxdlError, match=message):
        grid_search(toy_score, Toy(), space, metric="score", verbose=False)
    with pytest.raises(JaxdlError, match=message):
        random_search(toy_score, Toy(), space, 3, metric="score", verbose=False)


def test_bad_search_arguments():
    with pytest.raises(JaxdlError, match="grid search needs a list of values for 'lr'"):
        grid_search(toy_score, Toy(), {"lr": LogUniform(1e-3, 1e-1)}, metric="score")
    with pytest.raises(JaxdlError, match="train_fn returned no 'accuracy'"):
        grid_search(toy_score, Toy(), {"lr": [0.1]}, metric="accuracy", verbose=False)
    with pytest.raises(JaxdlError, match="n_trials must be a positive integer"):
        random_search(toy_score, Toy(), {"lr": [0.1]}, 0, metric="score")
    with pytest.raises(JaxdlError, match="LogUniform needs 0 < low"):
        LogUniform(0.0, 1.0)


def _mlp(rngs, **kw):
    return create_model("mlp", input_shape=(8, 8, 1), hidden=(16,), rngs=rngs, **kw)


def test_vmapped_search_equals_k_separate_trainer_runs(digits):
    lrs, seeds = zip(*itertools.product([3e-3, 3e-2], [0, 1]), strict=False)
    res = train_vmapped(
        lambda rngs: _mlp(rngs, dropout=0.2),
        digits.train,
        learning_rates=lrs,
        seeds=seeds,
        epochs=2,
        batch_size=128,
        validation_data=digits.val,
    )
    assert len(res.history) == 4 and len(res.history[0]["loss"]) == 2
    for k, (lr, seed) in enumerate(zip(lrs, seeds, strict=False)):
        t = Trainer(
            _mlp(nnx.Rngs(seed), dropout=0.2),
            learning_rate=lr,
            seed=seed,
            mesh=make_mesh(num_devices=1),
        )
        h = t.fit(digits.train, epochs=2, batch_size=128, verbose=0)
        pairs = zip(jax.tree.leaves(res.params(k)), jax.tree.leaves(t.state.params), strict=False)
        for a, b in pairs:
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(res.history[k]["loss"], h.history["loss"], rtol=1e-5)
        np.testing.assert_allclose(res.val[k]["accuracy"], t.evaluate(digits.val)["accuracy"])
    # the runs really differ: different seeds, different learning rates
    assert len({round(h["loss"][-1], 6) for h in res.history}) == 4
    search = res.to_search("val_accuracy")
    assert search.best.overrides["lr"] in lrs and len(search.trials) == 4


def test_vmapped_bad_input(digits):
    with pytest.raises(JaxdlError, match="learning_rates is empty"):
        train_vmapped(_mlp, digits.train, learning_rates=[], seeds=[])
    with pytest.raises(JaxdlError, match="must pair up; got 2 learning rates and 1 seeds"):
        train_vmapped(_mlp, digits.train, learning_rates=[0.1, 0.2], seeds=[0])
    with pytest.raises(JaxdlError, match="learning_rate must be a positive number"):
        train_vmapped(_mlp, digits.train, learning_rates=[-1.0], seeds=[0])
