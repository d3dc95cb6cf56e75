"""The `jaxdl` command: models, summary, train, bench and plot.

    jaxdl models
    jaxdl summary resnet50 --input 224
    jaxdl train mlp --dataset digits --epochs 30 --batch-size 32 --optimizer adam --lr 1e-3 --json
    jaxdl bench 'resnet*' --mode train --batch 64 128 --dtype bf16 --compare torch --plot
    jaxdl train mlp --dataset digits --epochs 20 --workdir W   # resumes from W/checkpoints
    jaxdl plot W                                               # W/log.csv -> W/curves.png

Exit codes of `train`: 0 done, 2 bad input, 3 the loss became NaN or inf (EXIT_NONFINITE),
75 stopped by SIGTERM after saving a checkpoint (EXIT_PREEMPTED: run it again to resume).

Each subcommand is a frozen dataclass parsed by tyro (docs/design.md, decision 9); `--set KEY=VALUE`
overrides a field of the model's config (values are Python literals: `--set hidden=(256,128)`).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from typing import Annotated, Literal

import tyro

from jaxdl.errors import JaxdlError, check_int, check_positive, compile_pattern

SEED_MAX = 2**32 - 1
# settings of `train` that do not change what is computed: a resume may differ in these
NOT_HYPERPARAMETERS = frozenset(
    {
        "workdir",
        "quiet",
        "json",
        "workers",
        "coordinator",
        "num_processes",
        "process_id",
        "init_timeout",
        "allow_changes",
        "tensorboard",
        "log_every",
        "profile_steps",
        "keep_checkpoints",
        "checkpoint_every",
        "devices",  # a checkpoint loads onto any mesh
        "mesh",
        "fsdp",
        "sharding",  # layouts only: the same values on any of them
        "sequence_parallel",
        "steps_per_execution",  # the same results as single steps, bit for bit
    }
)


def validate_train(cmd: Train) -> None:
    """Every numeric and pattern argument of `train` checked before anything is loaded."""
    check_positive("--epochs", cmd.epochs, integer=True)
    check_positive("--batch-size", cmd.batch_size, integer=True)
    check_positive("--lr", cmd.lr)
    check_positive("--init-timeout", cmd.init_timeout, integer=True)
    check_positive("--grad-accum", cmd.grad_accum, integer=True)
    check_positive("--steps-per-execution", cmd.steps_per_execution, integer=True)
    check_int("--warmup-steps", cmd.warmup_steps, low=0)
    check_int("--seed", cmd.seed, low=0, high=SEED_MAX)
    check_int("--workers", cmd.workers, low=0)
    check_positive("--keep-checkpoints", cmd.keep_checkpoints, integer=True)
    if cmd.clip_norm is not None:
        check_positive("--clip-norm", cmd.clip_norm)
    if cmd.devices is not None:
        check_positive("--devices", cmd.devices, integer=True)
    if cmd.early_stopping is not None:
        check_positive("--early-stopping", cmd.early_stopping, integer=True)
    for name, f in (("--val-fraction", cmd.val_fraction), ("--test-fraction", cmd.test_fraction)):
        if not 0.0 <= f < 1.0:
            raise JaxdlError(f"{name} must be in [0, 1), got {f!r}")
    if cmd.val_fraction + cmd.test_fraction >= 1.0:
        raise JaxdlError(
            f"--val-fraction + --test-fraction must be < 1 (some data must be left to train "
            f"on), got {cmd.val_fraction} + {cmd.test_fraction}"
        )
    for p in cmd.freeze:
        compile_pattern(p, "--freeze pattern")
    if cmd.profile_steps is not None:
        a, b = cmd.profile_steps
        if not 0 <= a <= b:
            raise JaxdlError(
                f"--profile-steps must be START STOP with 0 <= START <= STOP, got {a} {b}"
            )
    if cmd.log_every < 0:
        raise JaxdlError(f"--log-every must be >= 0 (0: per epoch only), got {cmd.log_every}")
    allowed_changes(cmd)
    if cmd.augment is not None:
        from jaxdl.data import parse_augment

        parse_augment(cmd.augment)  # before the data is loaded


def _process_index_hint(cmd: Train) -> int:
    """This process's index in a multi-host run as the flags or the environment give it, before
    jax.distributed starts (0 for a single process)."""
    import os

    for v in (
        cmd.process_id,
        os.environ.get("JAXDL_PROCESS_ID"),
        os.environ.get("JAX_PROCESS_ID"),
        os.environ.get("SLURM_PROCID"),
    ):
        if v is not None and str(v).strip().isdigit():
            return int(v)
    return 0


def allowed_changes(cmd: Train) -> frozenset[str]:
    """The names of --allow-changes (lr or --lr, comma-separated), checked against the flags."""
    if not cmd.allow_changes:
        return frozenset()
    fields = {f.name for f in dataclasses.fields(cmd)} - NOT_HYPERPARAMETERS
    names = set()
    for n in cmd.allow_changes.split(","):
        key = n.strip().lstrip("-").replace("-", "_")
        if key not in fields:
            raise JaxdlError(
                f"--allow-changes: {n.strip()!r} is not a setting of train; expected some of "
                + ", ".join(sorted(f.replace("_", "-") for f in fields))
            )
        names.add(key.replace("_", "-"))
    return frozenset(names)


def run_config(cmd: Train) -> dict:
    """The settings a resume must share with the run it continues (JSON), keyed by flag name.
    epochs is left out where it changes nothing computed so far (a constant schedule): a run may
    be continued for more epochs."""
    out = {}
    for f in dataclasses.fields(cmd):
        if f.name in NOT_HYPERPARAMETERS or (f.name == "epochs" and cmd.schedule == "constant"):
            continue
        v = getattr(cmd, f.name)
        out[f.name.replace("_", "-")] = list(v) if isinstance(v, tuple) else v
    return out


# the finite choices, spelled out for --help (tests check them against the engine's tables)
Optimizer = Literal[
    "sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamw"
]
Schedule = Literal["constant", "cosine", "warmup_cosine", "exponential", "step", "linear"]
Precision = Literal["fp32", "bf16", "fp16"]
DATASET_KINDS = ("digits", "mnist_idx", "folder", "csv", "tfds", "text")


def _meta(metavar: str):
    """An option's placeholder in --help (tyro would print `{None}|STR` for `str | None`)."""
    return tyro.conf.arg(metavar=metavar)


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
    """List the registered models.

    Usage examples (run these as they are):
      jaxdl models
      jaxdl models vit             # names containing 'vit'
      jaxdl models 'resnet*'       # a shell pattern
      jaxdl models resnet50 --where   # its source, variants table, docs page and tests
    """

    pattern: Annotated[tyro.conf.Positional[str | None], _meta("PATTERN")] = None
    """A substring ('vit') or a shell-style pattern ('resnet*')."""
    pretrained: Annotated[Literal["keras", "torchvision", "timm"] | None, _meta("SOURCE")] = None
    """Only models with a weight converter from this source."""
    params: bool = True
    """Show trainable parameter counts (from shapes only; cached in $JAXDL_CACHE)."""
    where: bool = False
    """Show where each model lives: its source module and class, its config (the variants
    table), its docs page and its tests (e.g. `jaxdl models resnet50 --where`)."""

    def run(self) -> int:
        from rich.table import Table

        from jaxdl.models.registry import get_entry, list_models, where

        names = list_models(self.pattern)
        if self.pretrained is not None:
            from jaxdl.weights import pretrained_sources

            names = [n for n in names if self.pretrained in pretrained_sources(n)]
        if not names:
            what = f" with {self.pretrained} weights" if self.pretrained else ""
            raise JaxdlError(f"no model matches {self.pattern!r}{what}")
        console = _console()
        counts = param_counts(names) if self.params else {}
        t = Table(title=f"{len(names)} models")
        info = ("source", "config", "docs", "tests") if self.where else ("description",)
        for col in ("name", "family", "params", *info):
            if col != "params" or counts:
                right, wrap = col == "params", col in ("tests", "source")
                t.add_column(col, justify="right" if right else "left", no_wrap=not wrap)
        for n in names:
            e = get_entry(n)
            cells = [n, e.family] + ([f"{counts[n]:,}"] if counts else [])
            if self.where:
                w = where(n)
                cells += [f"{w['source']}:{w['builder']}", w["config"], w["docs"], w["tests"]]
            else:
                cells.append(e.description)
            t.add_row(*cells)
        console.print(t)
        return 0


def param_counts(names) -> dict[str, int]:
    """Trainable parameters (nnx.Param, the published counts) of each model, from
    `abstract_model` (shapes only); kept in $JAXDL_CACHE/param_counts.json by name and config,
    so a listing is slow (about a second a model on 2 CPU cores) only once."""
    import os
    from pathlib import Path

    import jax
    from flax import nnx

    from jaxdl.models import abstract_model
    from jaxdl.models.registry import get_entry

    path = (
        Path(os.environ.get("JAXDL_CACHE", Path.home() / ".cache" / "jaxdl")) / "param_counts.json"
    )
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    out, todo = {}, []
    for n in names:
        key = f"params {n} {get_entry(n).config!r}"
        (todo.append((n, key)) if key not in cache else out.__setitem__(n, cache[key]))
    for i, (n, key) in enumerate(todo):
        if sys.stderr.isatty():
            print(f"\rcounting parameters {i + 1}/{len(todo)}: {n:<30}", end="", file=sys.stderr)
        state = nnx.state(abstract_model(n), nnx.Param)
        out[n] = cache[key] = sum(int(x.size) for x in jax.tree.leaves(state))
    if todo and sys.stderr.isatty():
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    if todo:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cache, indent=0, sort_keys=True))
        except OSError:  # a read-only home: counted again next time
            pass
    return out


@dataclass(frozen=True)
class SummaryCmd:
    """Keras-style table of a model: layer, type, output shape, parameters, trainable, MACs,
    memory; and totals. Nothing is allocated (the model is traced with jax.eval_shape).

    Usage examples (run these as they are):
      jaxdl summary resnet50                  # top-level modules
      jaxdl summary resnet50 --depth 2        # and one level below
      jaxdl summary vit_b16 --depth all --input 384
      jaxdl summary mlp --set hidden=(256,128) | less
    """

    name: Annotated[tyro.conf.Positional[str], _meta("MODEL")]
    """Registered model name (see jaxdl models)."""
    input: Annotated[int | None, _meta("SIZE")] = None
    """Input size: the spatial side for images (e.g. 224), the length for sequences."""
    batch: int = 1
    """Batch size of the traced input (MACs are for the whole batch)."""
    depth: Annotated[str, _meta("N|all")] = "1"
    """Show modules down to this nesting depth: 1 = top-level modules (Keras's view), 2, ...,
    or 'all'. The rows of any depth add up to the totals."""
    freeze: Annotated[tuple[str, ...], _meta("REGEX ...")] = ()
    """Regexes of parameter names to count as frozen (non-trainable), as in train --freeze."""
    width: Annotated[int | None, _meta("COLUMNS")] = None
    """Table width in columns (default: the terminal's; when piped, as wide as the table)."""
    set: Annotated[tuple[str, ...], _meta("KEY=VALUE ...")] = ()
    """Model config overrides KEY=VALUE, e.g. --set num_classes=10."""

    def run(self) -> int:

        from jaxdl.bench.summary import render, summarize
        from jaxdl.models import abstract_model
        from jaxdl.models.inputs import example_input, resize_input_shape
        from jaxdl.models.registry import get_config

        check_positive("--batch", self.batch, integer=True)
        if self.input is not None:
            check_positive("--input", self.input, integer=True)
        if self.depth == "all":
            depth = None
        elif self.depth.isdigit():
            depth = int(self.depth)
        else:
            raise JaxdlError(f"--depth must be a number >= 0 or 'all', got {self.depth!r}")
        overrides = parse_overrides(self.set)
        if self.input is not None:
            cfg = get_config(self.name, **overrides)
            overrides["input_shape"] = resize_input_shape(cfg, self.input)
        model = abstract_model(self.name, **overrides)
        x = example_input(model.config, self.batch)
        render(
            summarize(model, x, name=self.name, freeze=self.freeze),
            max_depth=depth,
            console=_console(self.width),
        )
        return 0


def _console(width: int | None = None):
    """A rich Console: `width` columns, else the terminal's, else (a pipe, a file) wide enough
    that no table or total wraps."""
    from rich.console import Console

    if width is None and not sys.stdout.isatty():
        width = 400
    return Console(highlight=False, width=width)


@dataclass(frozen=True)
class Train:
    """Train a model on a dataset and print its test metrics.

    Usage examples (run these as they are):
      jaxdl train mlp --dataset digits --epochs 30 --optimizer adam --lr 1e-3
      jaxdl train lenet5 --dataset mnist_idx:../shared/data/mnist --workdir runs/lenet
      jaxdl train resnet18 --dataset folder:imgs,size=64x64 --weights r18.safetensors
      jaxdl train mlp --workdir W --epochs 20     # run again to resume from W/checkpoints

    Exit codes: 0 done, 2 bad input, 3 non-finite loss, 75 stopped by SIGTERM (resumable).
    """

    name: Annotated[tyro.conf.Positional[str], _meta("MODEL")]
    """Registered model name (see jaxdl models)."""
    dataset: Annotated[str, _meta("KIND[:ARG]")] = "digits"
    """KIND[:ARG]: digits, mnist_idx:PATH (e.g. mnist_idx:../shared/data/mnist), tfds:NAME,
    folder:PATH[,size=HxW,color=rgb|grayscale,on_error=raise|skip], csv:PATH[,label=COL],
    text:PATH[,level=char|byte|word,seq_len=T]."""
    augment: Annotated[str | None, _meta("SPEC")] = None
    """Augmentation spec run in the train step, e.g. flip,rotate=0.1,zoom=0.2,shift=0.1."""
    workers: int = 0
    """Worker processes that read/decode training batches (Grain)."""
    epochs: int = 10
    """Passes over the training split."""
    batch_size: int = 32
    """Examples per step (global, over all devices; a multiple of the data-parallel size)."""
    optimizer: Optimizer = "adam"
    """Optimizer (Keras defaults for its options)."""
    lr: float = 1e-3
    """Peak learning rate."""
    schedule: Schedule = "constant"
    """Learning-rate schedule over the whole run."""
    warmup_steps: int = 0
    """Linear warm-up steps (warmup_cosine)."""
    clip_norm: Annotated[float | None, _meta("NORM")] = None
    """Clip gradients to this global L2 norm."""
    seed: int = 0
    """Seed of initialisation, shuffling, dropout and the dataset split."""
    val_fraction: float = 0.1
    """Share of the data held out for validation (0: none)."""
    test_fraction: float = 0.2
    """Share of the data held out for the final test."""
    devices: Annotated[int | None, _meta("N")] = None
    """Use the first N devices (default: all, of every process)."""
    mesh: Annotated[str | None, _meta("AXES")] = None
    """Mesh axes, e.g. data=8, data=2,model=4 or 2x4 (default: one data axis of all devices)."""
    fsdp: bool = False
    """Shard parameters and optimizer state over the data axis (FSDP) instead of replicating."""
    sharding: Annotated[Literal["tp", "auto"] | None, _meta("{tp,auto}")] = None
    """tp: tensor parallel over the mesh's model axis by logical axis names (Megatron layouts,
    e.g. --mesh data=2,model=4 --sharding tp); auto: the same, but a dimension the model axis
    does not divide is replicated (a warning lists them) instead of an error. Default: weights
    replicated over data (or split with --fsdp), split by shape on any other axis."""
    sequence_parallel: bool = False
    """With --sharding tp/auto: split the residual stream (norms, dropout) on its length over
    the model axis (Megatron sequence parallelism)."""
    coordinator: Annotated[str | None, _meta("HOST:PORT")] = None
    """Multi-host: HOST:PORT of process 0 (else JAXDL_COORDINATOR / JAX_COORDINATOR_ADDRESS or
    the cluster, e.g. Slurm, TPU pod)."""
    num_processes: Annotated[int | None, _meta("N")] = None
    """Multi-host: number of processes (else JAXDL_NUM_PROCESSES / JAX_NUM_PROCESSES / cluster)."""
    process_id: Annotated[int | None, _meta("I")] = None
    """Multi-host: this process's id, 0..N-1 (else JAXDL_PROCESS_ID / JAX_PROCESS_ID / cluster)."""
    init_timeout: int = 300
    """Multi-host: seconds to wait for the coordinator and the other processes."""
    workdir: Annotated[str | None, _meta("DIR")] = None
    """Where metrics.json, log.csv and checkpoints/ go; an existing run there is resumed from
    its newest complete checkpoint."""
    checkpoint_every: Annotated[int | None, _meta("STEPS")] = None
    """With --workdir: checkpoint every N steps (default: every epoch)."""
    keep_checkpoints: int = 2
    """With --workdir: how many checkpoints to keep (the newest)."""
    early_stopping: Annotated[int | None, _meta("EPOCHS")] = None
    """Stop when val_loss has not improved for this many epochs (restoring the best weights)."""
    tensorboard: bool = False
    """With --workdir: TensorBoard logs in WORKDIR/tensorboard (scalars, histograms, images)."""
    log_every: Annotated[int, _meta("STEPS")] = 10
    """With --tensorboard: per-step scalars (batch_loss, batch metrics, learning rate) every
    STEPS steps, beside the per-epoch ones; 0 for per-epoch scalars only."""
    profile_steps: Annotated[tuple[int, int] | None, _meta("START STOP")] = None
    """With --tensorboard: jax.profiler trace of steps START STOP."""
    mixed_precision: Annotated[Precision | None, _meta("{fp32,bf16,fp16}")] = None
    """bf16 (bf16 compute, fp32 params), fp16 (with dynamic loss scaling); default fp32."""
    grad_accum: int = 1
    """Accumulate gradients over this many batches per update (optax.MultiSteps)."""
    steps_per_execution: int = 1
    """Training steps per device call (a lax.scan over K batches already on the device; the
    same results as K single steps, fewer dispatches; Keras's option of the same name)."""
    freeze: Annotated[tuple[str, ...], _meta("REGEX ...")] = ()
    """Regexes of parameter names to freeze, e.g. 'layers/0/.*'."""
    weights: Annotated[str | None, _meta("PATH")] = None
    """Start from the weights in this .safetensors file (jaxdl names: written by jaxdl.save, or
    a converted file of the weights cache); a head of another size is replaced, the rest loaded."""
    from_checkpoint: Annotated[str | None, _meta("DIR")] = None
    """Start from the weights of this checkpoint directory (a ModelCheckpoint directory, or
    WORKDIR/checkpoints of an earlier run): the best by val_loss where recorded, else the newest."""
    json: bool = False
    """Print the final metrics as one JSON object on the last line."""
    quiet: bool = False
    """No progress bar or tables (errors still go to stderr)."""
    set: Annotated[tuple[str, ...], _meta("KEY=VALUE ...")] = ()
    """Model config overrides KEY=VALUE, e.g. --set hidden=(256,128) activation=tanh."""
    allow_changes: Annotated[str | None, _meta("NAME[,NAME...]")] = None
    """With --workdir: settings a resume may change from the checkpointed run, e.g. lr,epochs
    (recorded in metrics.json's allowed_changes); any other difference is refused."""

    def run(self) -> int:
        from jaxdl.train.checkpoint import WorkdirLock, check_not_link, check_writable_dir

        validate_train(self)
        if self.workdir is None:
            return self._run(None)
        workdir = check_writable_dir(self.workdir, what="--workdir")
        for name in ("metrics.json", "timing.json", "log.csv", "checkpoints", "tensorboard"):
            check_not_link(workdir / name, what=f"--workdir entry {name}")
        if _process_index_hint(self) != 0:  # multi-host: process 0 holds the workdir's lock
            return self._run(workdir)
        with WorkdirLock(workdir):  # one writer per workdir; exit 2 naming the holder if taken
            return self._run(workdir)

    def _run(self, workdir) -> int:
        import jax
        from rich.console import Console
        from rich.table import Table

        from jaxdl.data import Pipeline, load_dataset, num_batches, parse_augment
        from jaxdl.errors import check_positive
        from jaxdl.models import create_model
        from jaxdl.parallel import initialize_distributed, local_rows, make_mesh, tp_rules
        from jaxdl.parallel.mesh import check_batch_size
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
        from jaxdl.train.checkpoint import write_file
        from jaxdl.train.tasks import LanguageModelTask

        # before anything touches a device: a multi-host run sees every process's devices
        initialize_distributed(
            self.coordinator, self.num_processes, self.process_id, timeout=self.init_timeout
        )
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
        if self.allow_changes and self.workdir is None:
            raise JaxdlError("--allow-changes needs --workdir (it concerns resuming a run)")
        console = Console(highlight=False, stderr=False)
        if not self.quiet:  # files, folders and TFDS take seconds: say what is happening
            console.print(f"loading dataset {self.dataset}...", soft_wrap=True)
        t_load = time.perf_counter()
        splits = load_dataset(
            self.dataset,
            seed=self.seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
        )
        t_load = time.perf_counter() - t_load
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
        if self.weights is not None and self.from_checkpoint is not None:
            raise JaxdlError("--weights and --from-checkpoint cannot be used together: pick one")
        model = create_model(self.name, **overrides)  # type-checks the overrides
        explicit = overrides.get("input_shape")
        if explicit is not None and tuple(explicit) != tuple(splits.input_shape):
            raise JaxdlError(
                f"--set input_shape={tuple(explicit)} does not match the examples of "
                f"{self.dataset}, {tuple(splits.input_shape)}: drop the override (the dataset "
                "sets it) or resize the data"
            )
        if self.weights is not None:
            from jaxdl.weights import read_weights, transfer

            fresh = transfer(read_weights(self.weights), model, source=f"--weights {self.weights}")
            if not self.quiet:
                print(
                    f"loaded --weights {self.weights}"
                    + (f"; new: {', '.join(fresh)}" * bool(fresh))
                )
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
        check_batch_size(self.batch_size, mesh)  # before local_rows, which assumes it
        if self.sequence_parallel and self.sharding is None:
            raise JaxdlError("--sequence-parallel needs --sharding tp or --sharding auto")
        rules = tp_rules(fsdp=self.fsdp, sequence_parallel=True) if self.sequence_parallel else None
        augment = parse_augment(self.augment) if self.augment is not None else None
        trainer = Trainer(
            model,
            optimizer=self.optimizer,
            learning_rate=lr,
            clip_norm=self.clip_norm,
            seed=self.seed,
            mesh=mesh,
            fsdp=self.fsdp,
            sharding=self.sharding,
            rules=rules,
            augment=augment,
            task=LanguageModelTask(len(vocab)) if vocab else None,
            mixed_precision=self.mixed_precision,
            grad_accum=self.grad_accum,
            steps_per_execution=self.steps_per_execution,
            freeze=self.freeze,
        )
        if self.from_checkpoint is not None:
            from jaxdl.train.checkpoint import best_checkpoint_args, restore_weights

            where, monitor, mode = best_checkpoint_args([], self.from_checkpoint)
            step = restore_weights(where, trainer, monitor=monitor, mode=mode)
            if not self.quiet:
                print(f"loaded the weights of checkpoint {step} in {where}")
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
                        update_freq=self.log_every or "epoch",
                        sample_data=sample.subset(slice(0, 256)),
                    )
                )
            callbacks.append(
                BackupAndRestore(
                    workdir / "checkpoints",
                    save_freq=self.checkpoint_every or "epoch",
                    delete_checkpoint=False,
                    keep=self.keep_checkpoints,
                    run_config=run_config(self),
                    allow_changes=allowed_changes(self),
                )
            )
        if not self.quiet:
            console.print(
                f"[bold]{self.name}[/] on {splits.name} (loaded in {t_load:.1f}s): "
                f"{len(splits.train)} train / "
                f"{len(splits.val) if splits.val else 0} val / {len(splits.test)} test, "
                f"{mesh.devices.size} device(s), mesh {dict(mesh.shape)}"
                f"{', FSDP' if self.fsdp else ''}"
                f"{f', sharding {self.sharding}' if self.sharding else ''}"
                f"{', sequence parallel' if self.sequence_parallel else ''}",
                soft_wrap=True,
            )
        if workdir is not None and not self.quiet:
            _say_resume(callbacks[-1].checkpoints, console)
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
        result = {"model": self.name, "dataset": self.dataset, "epochs": len(history.epoch)}
        timing = {"train_time_s": round(train_time, 3)}
        changes = next((c.changes for c in callbacks if isinstance(c, BackupAndRestore)), [])
        if changes:
            result["allowed_changes"] = changes
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
            # metrics.json holds only what the run computed (byte-identical to an uninterrupted
            # run's after a resume); wall-clock figures go to timing.json
            write_file(workdir / "metrics.json", json.dumps(result, indent=2), what="metrics.json")
            write_file(workdir / "timing.json", json.dumps(timing, indent=2), what="timing.json")
        if self.json:
            print(json.dumps({**result, **timing}))
        return 0


def _say_resume(checkpoints, console) -> None:
    """'resuming from step N (epoch E)' when the workdir holds a checkpoint to resume from."""
    step = checkpoints.latest_step()
    if step is None:
        return
    try:
        meta = checkpoints.read_meta(step)
    except Exception:  # a damaged newest one: fit moves it aside and says so
        return
    epoch, _ = meta.get("position", [0, 0])
    console.print(f"resuming from step {meta.get('step_count', step)} (epoch {epoch + 1})")


@dataclass(frozen=True)
class Bench:
    """Parameters, MACs/FLOPs, compile and step time, throughput, memory and MFU of models
    (optionally beside PyTorch); a table, DIR/TAG.csv and DIR/TAG.json (jaxdl.bench.runner).

    Usage examples (run these as they are):
      jaxdl bench resnet50 --batch 32 64
      jaxdl bench 'resnet*' --mode train --batch 64 128 --dtype bf16 --compare torch --plot
    """

    models: Annotated[tyro.conf.Positional[tuple[str, ...]], _meta("MODEL ...")]
    """Model names, shell patterns ('resnet*') or 'all'."""
    mode: Literal["infer", "train"] = "infer"
    """infer: the forward pass; train: the Trainer's full train step."""
    batch: tuple[int, ...] = (32,)
    """One or more batch sizes (a row each): --batch 32 64 128."""
    dtype: Literal["fp32", "bf16"] = "fp32"
    """bf16: bf16 compute over fp32 parameters (training) / bf16 weights (inference)."""
    input: Annotated[int | None, _meta("SIZE")] = None
    """Input size: the spatial side for images (e.g. 224), the length for sequences."""
    steps: int = 20
    """Timed steps (median reported), after --warmup untimed ones."""
    warmup: int = 3
    """Untimed steps before the timed ones (the first compiles)."""
    optimizer: Optimizer = "adamw"
    """--mode train: the optimizer of the timed step."""
    lr: float = 1e-4
    """--mode train: its learning rate."""
    compare: Annotated[Literal["torch"] | None, _meta("{torch}")] = None
    """'torch': the same architecture in PyTorch (torchvision / timm / a written reference)."""
    torch_compile: bool = True
    """Use torch.compile for the PyTorch side."""
    isolate: bool = False
    """Each row in a fresh process (per-row peak memory; a crashed row cannot take the run)."""
    fit: bool = True
    """Train mode: also time Trainer.fit end to end on in-memory synthetic data."""
    out: Annotated[str, _meta("DIR")] = "bench_results"
    """Directory for TAG.csv, TAG.json (and TAG.png)."""
    tag: Annotated[str, _meta("NAME")] = "bench"
    """Name of the output files."""
    plot: bool = False
    """Also draw throughput against batch size (TAG.png)."""
    set: Annotated[tuple[str, ...], _meta("KEY=VALUE ...")] = ()
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
            fit=self.fit,
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


@dataclass(frozen=True)
class Plot:
    """Redraw a run's training curves (train and validation, one panel per metric) from the
    log.csv that `jaxdl train --workdir W` writes.

    Usage examples (run these as they are):
      jaxdl plot runs/mlp                      # runs/mlp/log.csv -> runs/mlp/curves.png
      jaxdl plot runs/mlp --out mlp_curves.png
    """

    workdir: Annotated[tyro.conf.Positional[str], _meta("WORKDIR")]
    """A run directory of `jaxdl train --workdir` (it holds log.csv)."""
    out: Annotated[str | None, _meta("PATH")] = None
    """Where to write the PNG (default: WORKDIR/curves.png)."""
    title: Annotated[str | None, _meta("TEXT")] = None
    """Title above the panels (default: the workdir's name)."""

    def run(self) -> int:
        import io
        from pathlib import Path

        from jaxdl.train.checkpoint import check_not_link, write_file
        from jaxdl.viz import history_from_csv, save_history

        workdir = check_not_link(self.workdir, what="WORKDIR")
        if not workdir.is_dir():
            raise JaxdlError(
                f"WORKDIR {self.workdir!r} is not a directory: expected the --workdir of a "
                "`jaxdl train` run"
            )
        log = check_not_link(workdir / "log.csv", what="WORKDIR/log.csv")
        if not log.exists():
            raise JaxdlError(
                f"{str(log)!r} not found: no epoch of a `jaxdl train --workdir "
                f"{self.workdir}` run has finished there yet"
            )
        history = history_from_csv(log)
        out = Path(self.out) if self.out else workdir / "curves.png"
        if out.suffix.lower() != ".png":
            raise JaxdlError(f"--out must name a .png file, got {self.out!r}")
        buf = io.BytesIO()
        save_history(history, buf, title=self.title or workdir.resolve().name)
        write_file(out, buf.getvalue(), what="--out")
        epochs = max(len(v) for v in history.values())
        print(f"{out}: {', '.join(sorted(history))} over {epochs} epoch(s)")
        return 0


COMMANDS = {
    "models": Models,
    "summary": SummaryCmd,
    "train": Train,
    "bench": Bench,
    "plot": Plot,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--version"], ["-V"]):
        from jaxdl import __version__

        print(f"jaxdl {__version__}")
        return 0
    cmd = tyro.extras.subcommand_cli_from_dict(
        COMMANDS,
        args=args,
        prog="jaxdl",
        description="jaxdl: models, summary, train, bench, plot (--version; CMD --help)",
    )
    try:
        return cmd.run()
    except JaxdlError as e:
        print(f"jaxdl: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
