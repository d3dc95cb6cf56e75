"""The headline GPU figures in one call of at most 8 minutes: one JAX process, PyTorch in one
child process, stages in order of priority, each row written the moment it is measured.

    python benchmarks/gpu_headline.py --out benchmarks/results            # on the GPU machine
    python benchmarks/gpu_headline.py --stages resnet50 fit --budget-s 300 # a rerun of two
    python benchmarks/gpu_headline.py --smoke --out /tmp/h                 # every stage, CPU, tiny

Stages (each with its own time budget; once the call's budget is spent, the stages left are
written as rows with status 'skipped: ...'):

1. `versions`: python, jax, jaxlib, CUDA, cuDNN, torch; the bf16 matmul peak (8192^3);
2. `resnet50`: ResNet-50 bf16 training, batch 128, synthetic 224x224: the Trainer's own step
   (`Trainer(mixed_precision='bf16').train_step`, jaxdl.bench.jax_timing) vs torchvision's
   ResNet-50 (channels-last + autocast; then `torch.compile` if the stage has time left);
3. `gpt2`: GPT-2 124M training, batch 16 x 1024 tokens, bf16: tokens/s and MFU against the
   measured peak and the 989 TFLOP/s spec, in XLA's count of the step (multiply-add = 2 FLOPs)
   and PaLM's 6 N + 12 L d T per token, vs jaxdl.bench.compare's PyTorch GPT-2 (SDPA);
4. `vit_b16`: ViT-B/16 training, batch 128, bf16, vs timm's `vit_base_patch16_224`;
5. `lstm`: one LSTM layer, hidden 1024, batch 64, 256 steps, fp32 and bf16, training step vs
   `torch.nn.LSTM` (cuDNN);
6. `fit`: `Trainer.fit` end to end on ResNet-50 over in-memory synthetic data, vs stage 2's bare
   step (the engine's overhead on a GPU);
7. `extra`, while time is left: compile time vs depth (GPT-2, 12 and 48 layers, with and without
   scanned layers), then the CNN zoo in bf16 inference at batch 256.

Two warm-up and ten timed steps per row (median; `block_until_ready`, torch
`cuda.synchronize`). JAX runs with XLA_PYTHON_CLIENT_PREALLOCATE=false so that the PyTorch child
shares the GPU, and with a persistent compilation cache in a temporary folder (stage 6 reuses
stage 2's compiled step). A watchdog ends the process 20 s after the budget (a minute at the
least), whatever it is doing; what was written stays. Writes OUT/TAG.csv and OUT/TAG.json
(TAG: `h200_headline` on an H200; `smoke_headline` with --smoke). docs/bench.md describes the
plan, the wheels and reruns.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402 - after the environment JAX reads
import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
CALL_BUDGET_S = 480.0  # the device allows 10 minutes a command; 8 leave room for the start
WATCHDOG_GRACE_S = 20.0


# ---- sizes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """What each stage measures; `SMOKE` shrinks every model to seconds on a CPU."""

    warmup: int = 2
    steps: int = 10
    resnet: tuple = ()  # config overrides
    resnet_batch: int = 128
    gpt: tuple = (("dropout", 0.0),)
    gpt_batch: int = 16
    gpt_input: int | None = 1024
    vit: tuple = ()
    vit_batch: int = 128
    lstm: dict = field(default_factory=lambda: dict(hidden=1024, batch=64, seq_len=256))
    fit_batches: int = 10  # batches per fit epoch
    depth_model: str = "gpt2"
    depths: tuple[int, ...] = (12, 48)
    depth_batch: int = 8
    depth_input: int | None = 256
    zoo: tuple[str, ...] = (
        "resnet50",
        "resnet18",
        "vgg16",
        "mobilenet_v2",
        "efficientnet_b0",
        "densenet121",
        "inception_v3",
        "resnext50_32x4d",
        "xception",
        "alexnet",
    )
    zoo_batch: int = 256
    zoo_overrides: tuple = ()
    # the longest a stage may take; a stage starts only with `start_s` of the call's budget left
    budgets: dict = field(
        default_factory=lambda: dict(
            versions=40, resnet50=170, gpt2=100, vit_b16=90, lstm=70, fit=60, extra=600
        )
    )
    start_s: dict = field(
        default_factory=lambda: dict(
            versions=0, resnet50=60, gpt2=45, vit_b16=45, lstm=30, fit=25, extra=20
        )
    )
    torch_compile_min_s: float = 60.0  # torch.compile only with this much of the stage left


SMOKE = Sizes(
    warmup=1,
    steps=2,
    resnet=(
        ("layers", (1,)),
        ("widths", (4,)),
        ("stem_width", 4),
        ("num_classes", 10),
        ("input_shape", (32, 32, 3)),
    ),
    resnet_batch=2,
    gpt=(
        ("dropout", 0.0),
        ("num_layers", 1),
        ("d_model", 32),
        ("num_heads", 2),
        ("vocab_size", 64),
        ("context", 16),
        ("input_shape", (16,)),
    ),
    gpt_batch=2,
    gpt_input=None,
    vit=(
        ("num_layers", 1),
        ("d_model", 32),
        ("num_heads", 2),
        ("d_ff", 64),
        ("num_classes", 10),
        ("input_shape", (32, 32, 3)),
    ),
    vit_batch=2,
    lstm=dict(hidden=16, batch=2, seq_len=8),
    fit_batches=2,
    depth_model="gpt_mini",
    depths=(1,),
    depth_batch=2,
    depth_input=16,
    zoo=("lenet5",),
    zoo_batch=2,
    # no stage budget of its own in a smoke run (a loaded CPU compiles slowly); --budget-s holds
    budgets=dict.fromkeys(("versions", "resnet50", "gpt2", "vit_b16", "lstm", "fit", "extra"), 1e4),
    start_s=dict.fromkeys(("versions", "resnet50", "gpt2", "vit_b16", "lstm", "fit", "extra"), 0),
)


# ---- the run's state ----------------------------------------------------------------------


class Run:
    """The call's clock, its rows and files, and the PyTorch child."""

    def __init__(self, args, sizes: Sizes):
        self.args, self.sizes = args, sizes
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + args.budget_s
        self.stage_deadline = self.deadline
        self.out = Path(args.out)
        self.rows: list[dict] = []
        self.peaks = None
        self.meta: dict[str, Any] = {}
        self.tag = args.tag
        self.worker = None
        self.has_torch = importlib.util.find_spec("torch") is not None and not args.no_torch
        self.shared: dict[str, Any] = {}  # what a later stage reuses (stage 2's step figures)

    def left(self) -> float:
        """Seconds left to the running stage (its own budget, within the call's)."""
        return min(self.deadline, self.stage_deadline) - time.perf_counter()

    def call_left(self) -> float:
        return self.deadline - time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def row(self, stage: str, model: str, **values) -> dict:
        from jaxdl.bench import runner

        opts = runner.BenchOptions(
            mode=values.pop("mode", "train"), dtype=values.pop("dtype", "bf16")
        )
        r = runner.empty_row(model, opts, values.pop("batch", None))
        r.update(stage=stage, variant=values.pop("variant", None), **values)
        self.rows.append(r)
        return r

    def write(self) -> None:
        from jaxdl.bench.output import write_outputs

        self.meta["elapsed_s"] = round(self.elapsed(), 1)
        write_outputs(self.rows, self.out, self.tag, self.meta)

    def say(self, text: str) -> None:
        print(f"[{self.elapsed():6.1f} s] {text}", flush=True)

    def torch(self, job: dict, min_s: float = 5.0) -> Any:
        """`job` in the PyTorch child, within the stage's time; raises when there is none."""
        from jaxdl.bench.isolate import TorchWorker

        if not self.has_torch:
            raise Skip("torch is not installed")
        left = self.left()
        if left < min_s:
            raise Skip(f"no time left in the stage ({left:.0f} s)")
        if self.worker is None:
            self.worker = TorchWorker()
        return self.worker.call(job, timeout_s=left)


class Skip(Exception):
    """A part not measured, and why (written into the row's status)."""


def torch_part(run: Run, row: dict, job: dict, prefix: str = "torch_", **kw) -> None:
    """Run a PyTorch job into `row`'s torch columns (renamed to `prefix`), or its status."""
    from jaxdl.bench.options import failure_status

    try:
        t = run.torch(job, **kw)
    except Skip as e:
        row[f"{prefix}status"] = f"skipped: {e}"
    except Exception as e:  # noqa: BLE001 - reported in the row
        row[f"{prefix}status"] = failure_status(e)
    else:
        for k, v in t.items():
            if k.startswith("torch_"):
                row[prefix + k[len("torch_") :]] = v
        row[f"{prefix}status"] = t.get("torch_status", "ok")
    thr = row.get(f"{prefix}throughput")
    if row.get("throughput") and thr:
        ratio = "ratio_vs_torch" if prefix == "torch_" else f"ratio_vs_{prefix.rstrip('_')}"
        row[ratio] = row["throughput"] / thr
    run.write()


# ---- the stages -----------------------------------------------------------------------------


def stage_versions(run: Run) -> None:
    import platform
    from datetime import UTC, datetime

    from jaxdl.bench import runner
    from jaxdl.bench.output import versions

    v = versions(torch=False)  # torch stays out of this process; the child reports its own
    run.meta.update(
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        host=platform.node(),
        command=" ".join(sys.argv),
        budget_s=run.args.budget_s,
        smoke=run.args.smoke,
        versions=v,
    )
    r = run.row("versions", "versions", mode="infer", status="ok")
    r["notes"] = ", ".join(f"{k} {val}" for k, val in v.items() if k != "torch")
    run.write()  # the versions go first, before anything is measured
    if run.has_torch:
        job = {"kind": "call", "path": str(HERE), "function": "gpu_headline:torch_versions"}
        try:
            tv = run.torch(job)
        except Exception as e:  # noqa: BLE001 - the other versions stand
            r["notes"] += f", torch versions unknown ({e})"
        else:
            v["torch"] = tv["torch"]
            run.meta["torch_versions"] = tv
            r["notes"] += ", " + ", ".join(f"torch.{k} {val}" for k, val in tv.items())
    else:
        r["notes"] += ", torch not installed"
    run.write()
    run.peaks = runner.measure_peaks()
    run.meta.update(
        device=run.peaks.device,
        platform=run.peaks.platform,
        device_count=run.peaks.device_count,
        peak_tflops_measured_bf16_matmul=run.peaks.measured,
        peak_tflops_spec_bf16=run.peaks.spec,
    )
    p = run.row(
        "versions",
        "bf16 matmul peak",
        mode="infer",
        status="ok",
        device=run.peaks.device,
        tflops=run.peaks.measured,
        notes=f"spec {run.peaks.spec} TFLOP/s dense bf16 (None: not in jaxdl.bench.mfu's table)",
    )
    run.say(f"{p['device']}: bf16 matmul {p['tflops']:.1f} TFLOP/s; {r['notes']}")
    run.write()


def _model_stage(
    run: Run,
    stage: str,
    name: str,
    batch: int,
    overrides: tuple,
    *,
    input: int | None = None,
    optimizer: str = "adamw",
    lr: float = 1e-4,
    torch_job: Callable[[Any], dict] | None = None,
    extra: Callable[[dict], dict] | None = None,
    torch_compile: bool = False,
) -> dict:
    """The jaxdl row of `name` (the Trainer's bf16 step), then the PyTorch parts."""
    from jaxdl.bench import runner
    from jaxdl.bench.isolate import job_for

    s = run.sizes
    opts = runner.BenchOptions(
        mode="train",
        dtype="bf16",
        batches=(batch,),
        input=input,
        overrides=overrides,
        warmup=s.warmup,
        steps=s.steps,
        optimizer=optimizer,
        lr=lr,
        fit=False,
    )
    row = runner.run_one(name, opts, batch, run.peaks, parts=("jax",))
    row["stage"] = stage
    run.rows.append(row)
    if extra is not None and row["status"] == "ok":
        row.update(extra(row))
    run.say(f"{stage}: jaxdl {row['status']} {runner.fmt(row['throughput'])} {row['unit'] or ''}")
    run.write()
    topts = dataclasses.replace(opts, compare="torch", torch_compile=False)
    job = torch_job(topts) if torch_job else job_for(name, topts, batch, run.peaks, "torch")
    torch_part(run, row, job)
    run.say(
        f"{stage}: torch {row['torch_status']} {runner.fmt(row['torch_throughput'])}, "
        f"jaxdl/torch {runner.fmt(row['ratio_vs_torch'], 'ratio')}"
    )
    if torch_compile:
        if run.left() < s.torch_compile_min_s and not run.args.smoke:
            row["torch_compiled_status"] = f"skipped: {run.left():.0f} s left in the stage"
            run.write()
        else:
            copts = dataclasses.replace(topts, torch_compile=True)
            cjob = (
                torch_job(copts) if torch_job else job_for(name, copts, batch, run.peaks, "torch")
            )
            torch_part(run, row, cjob, prefix="torch_compiled_")
            run.say(
                f"{stage}: torch.compile {row['torch_compiled_status']} "
                f"{runner.fmt(row.get('torch_compiled_throughput'))}"
            )
    return row


def stage_resnet50(run: Run) -> None:
    s = run.sizes
    row = _model_stage(
        run,
        "resnet50",
        "resnet50",
        s.resnet_batch,
        s.resnet,
        optimizer="momentum",
        lr=0.1,
        torch_compile=True,
    )
    run.shared["resnet50_step"] = row


def stage_gpt2(run: Run) -> None:
    from jaxdl.bench.mfu import palm_columns

    s = run.sizes
    palm = palm_columns("gpt2", dict(s.gpt))
    _model_stage(run, "gpt2", "gpt2", s.gpt_batch, s.gpt, input=s.gpt_input, lr=6e-4, extra=palm)


def stage_vit_b16(run: Run) -> None:
    s = run.sizes

    def timm_job(opts) -> dict:
        return {
            "kind": "call",
            "path": str(HERE),
            "function": "gpu_headline:torch_timm_vit",
            "args": {
                "overrides": [list(kv) for kv in s.vit],
                "batch": s.vit_batch,
                "warmup": opts.warmup,
                "steps": opts.steps,
                "lr": opts.lr,
                "compile": opts.torch_compile,
            },
        }

    _model_stage(run, "vit_b16", "vit_b16", s.vit_batch, s.vit, lr=1e-3, torch_job=timm_job)


def stage_lstm(run: Run) -> None:
    import rnn_layers

    from jaxdl.bench.options import failure_status
    from jaxdl.bench.render import fmt

    s = run.sizes
    cfg = rnn_layers.Config(**s.lstm, warmup=s.warmup, steps=s.steps, compare=False)
    for dtype in ("fp32", "bf16"):
        if run.left() < 5:
            run.row("lstm", "lstm_layer", dtype=dtype, status="skipped: no time left in the stage")
            run.write()
            continue
        row = run.row(
            "lstm",
            "lstm_layer",
            dtype=dtype,
            batch=cfg.batch,
            unit="tokens/s",
            device=run.peaks.device,
            input_shape=f"{cfg.seq_len}x{cfg.hidden}",
            variant=f"hidden {cfg.hidden}",
        )
        try:
            rnn_layers.bench_jax(cfg, "lstm", dtype, row, run.peaks)
        except Exception as e:  # noqa: BLE001 - reported in the row
            row["status"] = failure_status(e)
        run.write()
        job = {
            "kind": "call",
            "path": str(HERE),
            "function": "gpu_headline:torch_lstm",
            "args": {**s.lstm, "dtype": dtype, "warmup": s.warmup, "steps": s.steps},
        }
        torch_part(run, row, job)
        run.say(
            f"lstm {dtype}: jaxdl {row['status']} {fmt(row['throughput'])} tokens/s, torch "
            f"{row['torch_status']} {fmt(row['torch_throughput'])}, "
            f"ratio {fmt(row['ratio_vs_torch'], 'ratio')}"
        )


def stage_fit(run: Run) -> None:
    from jaxdl.bench import jax_timing, runner
    from jaxdl.bench.loss import BenchLoss
    from jaxdl.bench.models import build_model, model_io, synthetic_batch
    from jaxdl.bench.options import failure_status
    from jaxdl.functional import output_spec
    from jaxdl.models.inputs import example_input

    s = run.sizes
    batch = s.resnet_batch
    opts = runner.BenchOptions(mode="train", dtype="bf16", overrides=s.resnet)
    row = run.row("fit", "resnet50", batch=batch, variant="Trainer.fit, in-memory data")
    try:
        model = build_model("resnet50", opts)
        x = example_input(model.config, batch)
        io = model_io(model.config, x, output_spec(model, x))
        trainer = jax_timing.make_trainer(
            model, BenchLoss(io.loss), dtype="bf16", optimizer="momentum", lr=0.1
        )
        data = synthetic_batch(io, batch * s.fit_batches)
        t0 = time.perf_counter()
        per_sample = jax_timing.time_fit(trainer, data, batch)
        row.update(
            fit_throughput=1.0 / per_sample,
            unit=io.unit,
            status="ok",
            device=run.peaks.device,
            notes=f"2 epochs of {s.fit_batches} batches in {time.perf_counter() - t0:.1f} s; "
            "the second timed",
        )
        step = run.shared.get("resnet50_step")
        if step and step.get("throughput"):
            row["throughput"] = step["throughput"]  # the bare step of stage 2, for the ratio
            row["fit_vs_step"] = row["fit_throughput"] / step["throughput"]
    except Exception as e:  # noqa: BLE001 - reported in the row
        row["status"] = failure_status(e)
    run.say(
        f"fit: {row['status']} {runner.fmt(row['fit_throughput'])} img/s, "
        f"fit/step {runner.fmt(row['fit_vs_step'], 'ratio')}"
    )
    run.write()


def stage_extra(run: Run) -> None:
    from jaxdl.bench import runner

    s = run.sizes
    for scan in (False, True):
        for depth in s.depths:
            # an unrolled deep stack compiles for minutes: start it only with time for it
            need = 0 if run.args.smoke else (20 if scan else 10 + 2.5 * depth)
            if run.left() < max(need, 1):
                return _skipped_rest(run, "extra", f"{run.left():.0f} s left, {need:.0f} s needed")
            overrides = (("num_layers", depth), ("scan_layers", scan), ("dropout", 0.0))
            opts = runner.BenchOptions(
                mode="train",
                dtype="bf16",
                batches=(s.depth_batch,),
                input=s.depth_input,
                overrides=overrides,
                warmup=1,
                steps=2,
                fit=False,
            )
            row = runner.run_one(s.depth_model, opts, s.depth_batch, run.peaks, parts=("jax",))
            row.update(stage="extra", variant=f"{'scan' if scan else 'loop'} {depth}", depth=depth)
            run.rows.append(row)
            run.say(
                f"compile vs depth {row['variant']}: {row['status']} lower "
                f"{runner.fmt(row['lower_s'])} s + compile {runner.fmt(row['compile_s'])} s"
            )
            run.write()
    for name in s.zoo:
        need = 0 if run.args.smoke else 30
        if run.left() < max(need, 1):
            return _skipped_rest(run, "extra", f"{run.left():.0f} s left, {need} s needed")
        opts = runner.BenchOptions(
            mode="infer",
            dtype="bf16",
            batches=(s.zoo_batch,),
            overrides=s.zoo_overrides,
            warmup=s.warmup,
            steps=s.steps,
        )
        row = runner.run_one(name, opts, s.zoo_batch, run.peaks, parts=("jax",))
        row.update(stage="extra", variant="cnn zoo")
        run.rows.append(row)
        run.say(f"zoo {name}: {row['status']} {runner.fmt(row['throughput'])} {row['unit']}")
        run.write()


def _skipped_rest(run: Run, stage: str, why: str) -> None:
    run.row(stage, "(rest of the stage)", status=f"skipped: {why}")
    run.write()


STAGES: dict[str, Callable[[Run], None]] = {
    "versions": stage_versions,
    "resnet50": stage_resnet50,
    "gpt2": stage_gpt2,
    "vit_b16": stage_vit_b16,
    "lstm": stage_lstm,
    "fit": stage_fit,
    "extra": stage_extra,
}


# ---- what the PyTorch child runs (`TorchWorker` jobs of kind 'call') ---------------------------


def torch_versions() -> dict:
    import torch

    out = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    for lib in ("torchvision", "timm"):
        try:
            out[lib] = importlib.import_module(lib).__version__
        except ImportError:
            out[lib] = None
    return out


def _torch_columns(r, items: float) -> dict:
    gib = 1024**3
    return {
        "torch_source": r.source,
        "torch_params": r.params,
        "torch_compile_s": r.first_step_s,
        "torch_step_ms": 1e3 * r.times.median_s,
        "torch_throughput": items / r.times.median_s,
        "torch_peak_mem_gib": None if r.peak_memory_bytes is None else r.peak_memory_bytes / gib,
        "torch_status": "ok",
    }


def torch_timm_vit(overrides, batch: int, warmup: int, steps: int, lr: float, compile: bool):
    """timm's vit_base_patch16_224 with the jaxdl config's dimensions, a bf16 training step."""
    import timm
    import torch

    from jaxdl.bench import compare
    from jaxdl.models import get_config

    c = get_config("vit_b16", **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = timm.create_model(
        "vit_base_patch16_224",
        img_size=c.input_shape[0],
        patch_size=c.patch_size,
        embed_dim=c.d_model,
        depth=c.num_layers,
        num_heads=c.num_heads,
        mlp_ratio=c.d_ff / c.d_model,
        num_classes=c.num_classes,
    )
    torch.manual_seed(0)
    x = compare.torch_inputs(c, batch, device)
    y = torch.randint(0, c.num_classes, (batch,), device=device)
    r = compare.bench_module(
        module,
        x,
        mode="train",
        dtype="bf16",
        loss_fn=lambda out: compare.classification_loss(out, y),
        optimizer="adamw",
        lr=lr,
        warmup=warmup,
        steps=steps,
        compile=compile,
        source="timm vit_base_patch16_224",
    )
    return _torch_columns(r, batch)


def torch_lstm(hidden: int, batch: int, seq_len: int, dtype: str, warmup: int, steps: int):
    import rnn_layers

    from jaxdl.bench import runner

    cfg = rnn_layers.Config(hidden=hidden, batch=batch, seq_len=seq_len, warmup=warmup, steps=steps)
    row = runner.empty_row("lstm_layer", runner.BenchOptions(mode="train"), batch)
    rnn_layers.bench_torch(cfg, "lstm", dtype, row)
    return {k: v for k, v in row.items() if k.startswith("torch_")}


# ---- the call -----------------------------------------------------------------------------


def _device_tag() -> str:
    import jax

    kind = jax.devices()[0].device_kind
    m = re.search(r"(H200|H100|A100|L40S|L4|B200|GH200)", kind)
    return (m.group(1) if m else re.sub(r"\W+", "_", kind)).lower()


def _watchdog(run: Run) -> None:
    def fire():
        # at least a minute in all: a tiny --budget-s still lets the versions stage finish
        wait = max(run.deadline - time.perf_counter() + WATCHDOG_GRACE_S, 60 - run.elapsed())
        time.sleep(max(wait, 0))
        run.meta["watchdog"] = f"stopped {WATCHDOG_GRACE_S:.0f} s past the budget"
        try:
            run.row("watchdog", "(the stage running)", status="killed: past the call's budget")
            run.write()
        finally:
            print("watchdog: past the budget, exiting", file=sys.stderr, flush=True)
            if run.worker is not None and run.worker.proc is not None:
                run.worker.proc.kill()
            os._exit(124)

    threading.Thread(target=fire, daemon=True).start()


def _compilation_cache() -> None:
    import jax

    path = Path(tempfile.gettempdir()) / "jaxdl_headline_jax_cache"
    jax.config.update("jax_compilation_cache_dir", str(path))
    for option, value in (
        ("jax_persistent_cache_min_compile_time_secs", 0.0),
        ("jax_persistent_cache_min_entry_size_bytes", 0),
    ):
        try:
            jax.config.update(option, value)
        except AttributeError:  # an option this jax does not have
            pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(HERE / "results"), help="folder for TAG.csv / TAG.json")
    p.add_argument("--tag", default=None, help="file name (default: DEVICE_headline)")
    p.add_argument(
        "--budget-s", type=float, default=None, help=f"call budget, default {CALL_BUDGET_S:.0f}"
    )
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    p.add_argument("--smoke", action="store_true", help="every stage at tiny sizes (CPU)")
    p.add_argument("--no-torch", action="store_true", help="skip every PyTorch part")
    args = p.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 300.0 if args.smoke else CALL_BUDGET_S
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else Sizes()
    sys.path.insert(0, str(HERE))  # rnn_layers, beside this script
    # jaxdl for this process and for the PyTorch child, wherever the script is started from
    sys.path.insert(0, str(HERE.parent))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p
    )
    _compilation_cache()
    args.tag = args.tag or ("smoke_headline" if args.smoke else f"{_device_tag()}_headline")
    run = Run(args, sizes)
    _watchdog(run)
    stages = ["versions"] + [s for s in args.stages if s != "versions"]  # versions always first
    try:
        for name in STAGES:
            if name not in stages:
                continue
            left = run.call_left()
            if name != "versions" and (left <= 0 or left < sizes.start_s[name]):
                run.row(
                    name,
                    name,
                    status=f"skipped: call budget spent ({max(left, 0):.0f} s left of "
                    f"{args.budget_s:.0f}, the stage starts with {sizes.start_s[name]} s)",
                )
                run.say(f"{name}: skipped ({max(left, 0):.0f} s left)")
                run.write()
                continue
            run.stage_deadline = time.perf_counter() + sizes.budgets[name]
            t0 = time.perf_counter()
            try:
                STAGES[name](run)
            except Exception as e:  # noqa: BLE001 - a broken stage must not take the others
                from jaxdl.bench.options import failure_status

                run.row(name, name, status=f"stage failed: {failure_status(e)}")
                run.write()
            run.meta.setdefault("stage_s", {})[name] = round(time.perf_counter() - t0, 1)
            run.write()
    finally:
        if run.worker is not None:
            run.worker.close()
    run.say(f"done; wrote {run.out / run.tag}.csv and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
