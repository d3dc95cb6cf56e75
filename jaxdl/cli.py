"""The `jaxdl` command: models, summary, train (and, from the bench module, bench).

    jaxdl models
    jaxdl summary resnet50 --input 224
    jaxdl train mlp --dataset digits --epochs 30 --batch-size 32 --optimizer adam --lr 1e-3 --json

Each subcommand is a frozen dataclass parsed by tyro (DESIGN.md decision 9); `--set KEY=VALUE`
overrides a field of the model's config (values are Python literals: `--set hidden=(256,128)`).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from jaxdl.errors import JaxdlError


def parse_overrides(items) -> dict:
    """['hidden=(256,128)', 'activation=tanh'] -> {'hidden': (256, 128), 'activation': 'tanh'}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise JaxdlError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value  # a bare string such as relu
    return out


def model_overrides_for(name: str, available: dict, explicit: dict) -> dict:
    """Fill config fields a dataset determines (input_shape, num_classes) where the model has them."""
    from jaxdl.models.registry import get_entry

    fields = {f.name for f in dataclasses.fields(get_entry(name).config)}
    out = {k: v for k, v in available.items() if k in fields}
    out.update(explicit)
    return out


@dataclass(frozen=True)
class Models:
    """List the registered models."""

    pattern: tyro.conf.Positional[str | None] = None
    """Shell-style filter, e.g. 'resnet*'."""

    def run(self) -> int:
        from rich.console import Console
        from rich.table import Table

        from jaxdl.models.registry import get_entry, list_models

        names = list_models(self.pattern)
        if not names:
            raise JaxdlError(f"no model matches {self.pattern!r}")
        t = Table(title=f"{len(names)} models")
        for col in ("name", "family", "description"):
            t.add_column(col)
        for n in names:
            e = get_entry(n)
            t.add_row(n, e.family, e.description)
        Console().print(t)
        return 0


@dataclass(frozen=True)
class SummaryCmd:
    """Keras-style table of a model: layer, output shape, parameters, MACs; and totals."""

    name: tyro.conf.Positional[str]
    input: int | None = None
    """Input size: the spatial side for images (e.g. 224), the length for sequences."""
    batch: int = 1
    depth: int | None = None
    """Show layers down to this nesting depth (default: all)."""
    set: tuple[str, ...] = ()
    """Model config overrides KEY=VALUE."""

    def run(self) -> int:
        from jaxdl.bench.summary import render, summarize
        from jaxdl.models import abstract_model
        from jaxdl.models.registry import get_config
        from jaxdl.models.inputs import example_input, resize_input_shape

        overrides = parse_overrides(self.set)
        if self.input is not None:
            cfg = get_config(self.name, **overrides)
            overrides["input_shape"] = resize_input_shape(cfg, self.input)
        model = abstract_model(self.name, **overrides)
        x = example_input(model.config, self.batch)
        render(summarize(model, x, name=self.name), max_depth=self.depth)
        return 0


@dataclass(frozen=True)
class Train:
    """Train a model on a dataset and print its test metrics."""

    name: tyro.conf.Positional[str]
    dataset: str = "digits"
    """KIND[:ARG]: digits, mnist_idx:PATH (e.g. mnist_idx:../shared/data/mnist)."""
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "constant"
    """constant, cosine, warmup_cosine, exponential, linear."""
    warmup_steps: int = 0
    clip_norm: float | None = None
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    devices: int | None = None
    """Use the first N devices (default: all)."""
    workdir: str | None = None
    """Where metrics.json (and checkpoints) go."""
    json: bool = False
    """Print the final metrics as one JSON object on the last line."""
    quiet: bool = False
    set: tuple[str, ...] = ()
    """Model config overrides KEY=VALUE, e.g. --set hidden=(256,128) activation=tanh."""

    def run(self) -> int:
        from rich.console import Console
        from rich.table import Table

        from jaxdl.data import load_dataset, num_batches
        from jaxdl.errors import check_positive
        from jaxdl.models import create_model
        from jaxdl.parallel import make_mesh
        from jaxdl.train import Trainer, make_schedule

        check_positive("--epochs", self.epochs, integer=True)
        check_positive("--batch-size", self.batch_size, integer=True)
        check_positive("--lr", self.lr)
        workdir = Path(self.workdir) if self.workdir else None
        if workdir is not None and workdir.exists() and not workdir.is_dir():
            raise JaxdlError(f"--workdir {workdir} exists and is not a directory")
        splits = load_dataset(self.dataset, seed=self.seed, val_fraction=self.val_fraction,
                              test_fraction=self.test_fraction)
        overrides = model_overrides_for(
            self.name, {"input_shape": splits.input_shape, "num_classes": splits.num_classes},
            parse_overrides(self.set))
        model = create_model(self.name, **overrides)
        total_steps = self.epochs * num_batches(len(splits.train), self.batch_size)
        lr = make_schedule(self.schedule, self.lr, total_steps=total_steps, warmup_steps=self.warmup_steps)
        mesh = make_mesh(num_devices=self.devices)
        trainer = Trainer(model, optimizer=self.optimizer, learning_rate=lr, clip_norm=self.clip_norm,
                          seed=self.seed, mesh=mesh)
        console = Console(highlight=False, stderr=False)
        if not self.quiet:
            console.print(f"[bold]{self.name}[/] on {splits.name}: {len(splits.train)} train / "
                          f"{len(splits.val) if splits.val else 0} val / {len(splits.test)} test, "
                          f"{mesh.shape['data']} device(s)")
        t0 = time.perf_counter()
        history = trainer.fit(splits.train, epochs=self.epochs, batch_size=self.batch_size,
                              validation_data=splits.val, verbose=0 if self.quiet else 1)
        train_time = time.perf_counter() - t0
        test = trainer.evaluate(splits.test, batch_size=max(self.batch_size, 256))
        result = {"model": self.name, "dataset": self.dataset, "epochs": len(history.epoch),
                  "train_time_s": round(train_time, 3)}
        last = {k: v[-1] for k, v in history.history.items()}
        result.update({f"train_{k}" if not k.startswith("val_") and k != "lr" else k: v for k, v in last.items()})
        result.update({f"test_{k}": v for k, v in test.items()})
        table = Table(title="final metrics")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in result.items():
            table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
        if not self.quiet:
            console.print(table)
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
            (workdir / "metrics.json").write_text(json.dumps(result, indent=2))
        if self.json:
            print(json.dumps(result))
        return 0


COMMANDS = {"models": Models, "summary": SummaryCmd, "train": Train}


def main(argv: list[str] | None = None) -> int:
    cmd = tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="jaxdl")
    try:
        return cmd.run()
    except JaxdlError as e:
        print(f"jaxdl: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
