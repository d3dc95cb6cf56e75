"""The `jaxdl` command: models, summary, train (and, from the bench module, bench).

    jaxdl models
    jaxdl summary resnet50 --input 224
    jaxdl train mlp --dataset digits --epochs 30 --batch-size 32 --optimizer adam --lr 1e-3 --json
    jaxdl bench 'resnet*' --mode train --batch 64 128 --dtype bf16 --compare torch --plot
    jaxdl train mlp --dataset digits --epochs 20 --workdir W   # resumes from W/checkpoints

Exit codes of `train`: 0 done, 2 bad input, 3 the loss became NaN or inf (EXIT_NONFINITE),
75 stopped by SIGTERM after saving a checkpoint (EXIT_PREEMPTED: run it again to resume).

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
from typing import Literal

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
    """Fill the config fields a dataset determines (input_shape, num_classes) where the model
    has them."""
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
        from jaxdl.models.inputs import example_input, resize_input_shape
        from jaxdl.models.registry import get_config

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
    """KIND[:ARG]: digits, mnist_idx:PATH (e.g. mnist_idx:../shared/data/mnist), tfds:NAME,
    folder:PATH[,size=HxW,color=rgb|grayscale,on_error=raise|skip], csv:PATH[,label=COL],
    text:PATH[,level=char|byte|word,seq_len=T]."""
    augment: str | None = None
    """Augmentation spec run in the train step, e.g. flip,rotate=0.1,zoom=0.2,shift=0.1."""
    workers: int = 0
    """Worker processes that read/decode training batches (Grain)."""
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
    """Use the first N devices (default: all, of every process)."""
    mesh: str | None = None
    """Mesh axes, e.g. data=8, data=2,model=4 or 2x4 (default: one data axis of all devices)."""
    fsdp: bool = False
    """Shard parameters and optimizer state over the data axis (FSDP) instead of replicating."""
    coordinator: str | None = None
    """Multi-host: HOST:PORT of process 0 (else JAXDL_COORDINATOR / JAX_COORDINATOR_ADDRESS or
    the cluster, e.g. Slurm, TPU pod)."""
    num_processes: int | None = None
    """Multi-host: number of processes (else JAXDL_NUM_PROCESSES / JAX_NUM_PROCESSES / cluster)."""
    process_id: int | None = None
    """Multi-host: this process's id, 0..N-1 (else JAXDL_PROCESS_ID / JAX_PROCESS_ID / cluster)."""
    init_timeout: int = 300
    """Multi-host: seconds to wait for the coordinator and the other processes."""
    workdir: str | None = None
    """Where metrics.json, log.csv and checkpoints/ go; an existing run there is resumed from
    its newest complete checkpoint."""
    checkpoint_every: int | None = None
    """With --workdir: checkpoint every N steps (default: every epoch)."""
    keep_checkpoints: int = 2
    early_stopping: int | None = None
    """Stop when val_loss has not improved for this many epochs (restoring the best weights)."""
    tensorboard: bool = False
    """With --workdir: TensorBoard logs in WORKDIR/tensorboard (scalars, histograms, images)."""
    profile_steps: tuple[int, int] | None = None
    """With --tensorboard: jax.profiler trace of steps START STOP."""
    mixed_precision: str | None = None
    """bf16 (bf16 compute, fp32 params) or fp16 (with dynamic loss scaling)."""
    grad_accum: int = 1
    """Accumulate gradients over this many batches per update (optax.MultiSteps)."""
    freeze: tuple[str, ...] = ()
    """Regexes of parameter names to freeze, e.g. 'layers/0/.*'."""
    json: bool = False
    """Print the final metrics as one JSON object on the last line."""
    quiet: bool = False
    set: tuple[str, ...] = ()
    """Model config overrides KEY=VALUE, e.g. --set hidden=(256,128) activation=tanh."""

    def run(self) -> int:
        import jax
        from rich.console import Console
        from rich.table import Table

        from jaxdl.data import Pipeline, load_dataset, num_batches, parse_augment
        from jaxdl.errors import check_positive
        from jaxdl.models import create_model
        from jaxdl.parallel import initialize_distributed, local_rows, make_mesh
        from jaxdl.train import (
            EXIT_NONFINITE,
            EXIT_PREEMPTED,
            BackupAndRestore,
            CSVLogger,
            EarlyStopping,
            NonFiniteLossError,
            Preempted,
            TensorBoard,
            Trainer,
            make_schedule,
        )
        from jaxdl.train.checkpoint import check_writable_dir
        from jaxdl.train.tasks import LanguageModelTask

        check_positive("--epochs", self.epochs, integer=True)
        check_positive("--batch-size", self.batch_size, integer=True)
        check_positive("--lr", self.lr)
        check_positive("--init-timeout", self.init_timeout, integer=True)
        # before anything touches a device: a multi-host run sees every process's devices
        initialize_distributed(
            self.coordinator, self.num_processes, self.process_id, timeout=self.init_timeout
        )
        check_positive("--grad-accum", self.grad_accum, integer=True)
        if self.workdir is None:
            for flag, value in (
                ("--checkpoint-every", self.checkpoint_every),
                ("--tensorboard", self.tensorboard or None),
            ):
                if value is not None:
                    raise JaxdlError(f"{flag} needs --workdir (where checkpoints and logs go)")
        if self.profile_steps is not None and not self.tensorboard:
            raise JaxdlError("--profile-steps needs --tensorboard")
        if self.checkpoint_every is not None:
            check_positive("--checkpoint-every", self.checkpoint_every, integer=True)
        workdir = check_writable_dir(self.workdir, what="--workdir") if self.workdir else None
        splits = load_dataset(
            self.dataset,
            seed=self.seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
        )
        vocab = splits.info.get("vocab")  # text datasets: next-token prediction
        overrides = model_overrides_for(
            self.name,
            {
                "input_shape": splits.input_shape,
                "num_classes": splits.num_classes,
                **({"vocab_size": len(vocab)} if vocab else {}),
            },
            parse_overrides(self.set),
        )
        model = create_model(self.name, **overrides)
        if vocab:
            import jax

            from jaxdl.train.loop import output_shape

            want = (1, *splits.input_shape, len(vocab))
            got = output_shape(model, jax.ShapeDtypeStruct((1, *splits.input_shape), "int32"))
            if got != want:
                raise JaxdlError(
                    f"{self.dataset} is next-token text: the model must map tokens "
                    f"{(1, *splits.input_shape)} to logits {want}; "
                    f"{self.name} gives {got}"
                )
        total_steps = (
            self.epochs * num_batches(len(splits.train), self.batch_size) // self.grad_accum
        )
        lr = make_schedule(
            self.schedule, self.lr, total_steps=max(total_steps, 1), warmup_steps=self.warmup_steps
        )
        if self.schedule == "constant":
            lr = self.lr  # a number, so ReduceLROnPlateau-style callbacks may change it
        mesh = make_mesh(num_devices=self.devices, axes=self.mesh)
        augment = parse_augment(self.augment) if self.augment else None
        trainer = Trainer(
            model,
            optimizer=self.optimizer,
            learning_rate=lr,
            clip_norm=self.clip_norm,
            seed=self.seed,
            mesh=mesh,
            fsdp=self.fsdp,
            augment=augment,
            task=LanguageModelTask(len(vocab)) if vocab else None,
            mixed_precision=self.mixed_precision,
            grad_accum=self.grad_accum,
            freeze=self.freeze,
        )
        train = Pipeline(
            splits.train,
            self.batch_size,
            seed=self.seed,
            num_workers=self.workers,
            rows=local_rows(self.batch_size, mesh),
        )
        callbacks = []
        if self.early_stopping is not None:
            if splits.val is None:
                raise JaxdlError("--early-stopping monitors val_loss: needs --val-fraction > 0")
            callbacks.append(
                EarlyStopping("val_loss", patience=self.early_stopping, restore_best_weights=True)
            )
        if workdir is not None:
            callbacks.append(CSVLogger(workdir / "log.csv"))
            if self.tensorboard:
                sample = splits.val if splits.val is not None else splits.test
                callbacks.append(
                    TensorBoard(
                        workdir / "tensorboard",
                        histogram_freq=1,
                        write_images=True,
                        profile_batch=self.profile_steps or 0,
                        sample_data=sample.subset(slice(0, 256)),
                    )
                )
            callbacks.append(
                BackupAndRestore(
                    workdir / "checkpoints",
                    save_freq=self.checkpoint_every or "epoch",
                    delete_checkpoint=False,
                    keep=self.keep_checkpoints,
                )
            )
        console = Console(highlight=False, stderr=False)
        if not self.quiet:
            console.print(
                f"[bold]{self.name}[/] on {splits.name}: {len(splits.train)} train / "
                f"{len(splits.val) if splits.val else 0} val / {len(splits.test)} test, "
                f"{mesh.devices.size} device(s), mesh {dict(mesh.shape)}"
                f"{', FSDP' if self.fsdp else ''}"
            )
        t0 = time.perf_counter()
        try:
            history = trainer.fit(
                train,
                epochs=self.epochs,
                batch_size=self.batch_size,
                validation_data=splits.val,
                callbacks=callbacks,
                verbose=0 if self.quiet else 1,
            )
        except NonFiniteLossError as e:
            print(f"jaxdl: error: {e}", file=sys.stderr)
            return EXIT_NONFINITE
        except Preempted as e:
            print(f"jaxdl: {e}", file=sys.stderr)
            return EXIT_PREEMPTED
        train_time = time.perf_counter() - t0
        test = trainer.evaluate(splits.test, batch_size=max(self.batch_size, 256))
        result = {
            "model": self.name,
            "dataset": self.dataset,
            "epochs": len(history.epoch),
            "train_time_s": round(train_time, 3),
        }
        last = {k: v[-1] for k, v in history.history.items()}
        result.update(
            {
                f"train_{k}" if not k.startswith("val_") and k != "lr" else k: v
                for k, v in last.items()
            }
        )
        result.update({f"test_{k}": v for k, v in test.items()})
        table = Table(title="final metrics")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in result.items():
            table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
        if not self.quiet:
            console.print(table)
        if workdir is not None and jax.process_index() == 0:  # one writer in a multi-host run
            workdir.mkdir(parents=True, exist_ok=True)
            (workdir / "metrics.json").write_text(json.dumps(result, indent=2))
        if self.json:
            print(json.dumps(result))
        return 0


@dataclass(frozen=True)
class Bench:
    """Parameters, MACs/FLOPs, compile and step time, throughput, memory and MFU of models
    (optionally beside PyTorch); a table, DIR/TAG.csv and DIR/TAG.json (jaxdl.bench.runner)."""

    models: tyro.conf.Positional[tuple[str, ...]]
    """Model names, shell patterns ('resnet*') or 'all'."""
    mode: Literal["infer", "train"] = "infer"
    batch: tuple[int, ...] = (32,)
    """One or more batch sizes (a row each): --batch 32 64 128."""
    dtype: Literal["fp32", "bf16"] = "fp32"
    """bf16: bf16 compute over fp32 parameters (training) / bf16 weights (inference)."""
    input: int | None = None
    """Input size: the spatial side for images (e.g. 224), the length for sequences."""
    steps: int = 20
    """Timed steps (median reported), after --warmup untimed ones."""
    warmup: int = 3
    optimizer: str = "adamw"
    lr: float = 1e-4
    compare: Literal["torch"] | None = None
    """'torch': the same architecture in PyTorch (torchvision / timm / a written reference)."""
    torch_compile: bool = True
    """Use torch.compile for the PyTorch side."""
    isolate: bool = False
    """Each row in a fresh process (per-row peak memory; a crashed row cannot take the run)."""
    out: str = "bench_results"
    """Directory for TAG.csv, TAG.json (and TAG.png)."""
    tag: str = "bench"
    plot: bool = False
    """Also draw throughput against batch size (TAG.png)."""
    set: tuple[str, ...] = ()
    """Model config overrides KEY=VALUE."""

    def run(self) -> int:
        from rich.console import Console

        from jaxdl.bench.runner import (
            BenchOptions,
            environment,
            render,
            resolve_models,
            write_outputs,
        )
        from jaxdl.bench.runner import run as run_bench

        opts = BenchOptions(
            mode=self.mode,
            batches=self.batch,
            dtype=self.dtype,
            input=self.input,
            overrides=tuple(parse_overrides(self.set).items()),
            warmup=self.warmup,
            steps=self.steps,
            optimizer=self.optimizer,
            lr=self.lr,
            compare=self.compare,
            torch_compile=self.torch_compile,
            isolate=self.isolate,
        )
        opts.validate()
        names = resolve_models(self.models)
        # a pipe gets the full table rather than 80 columns of ellipses
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
        progress = lambda r: console.print(
            f"{r['model']} batch {r['batch']}: {r['status']}", style="dim"
        )
        rows, peaks = run_bench(names, opts, progress=progress)
        render(rows, peaks, opts, console=console)
        paths = write_outputs(rows, self.out, self.tag, environment(peaks), plot=self.plot)
        console.print("wrote " + ", ".join(map(str, paths)))
        return 0


COMMANDS = {"models": Models, "summary": SummaryCmd, "train": Train, "bench": Bench}


def main(argv: list[str] | None = None) -> int:
    cmd = tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="jaxdl")
    try:
        return cmd.run()
    except JaxdlError as e:
        print(f"jaxdl: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
