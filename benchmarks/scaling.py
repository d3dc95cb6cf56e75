"""Data-parallel scaling: train-step time against the number of devices, and the expected
gradient all-reduce cost per step on an 8-GPU H100 host.

    python benchmarks/scaling.py                 # 1, 2, 4, 8 simulated CPU devices; DP and FSDP
    python benchmarks/scaling.py --smoke         # seconds (run by the tests)

Part 1 (measured). The same global batch is trained for the same steps on 1..8 devices of this
machine (on a CPU host: simulated devices, `--xla_force_host_platform_device_count`, which share
the same cores, so the figures measure correctness and the overhead of partitioning, not speed-up).
Each row records the step time (median over the timed steps, after a compiling warm-up epoch) and
the largest parameter difference from the 1-device run. On a GPU machine the devices are real.
Results: benchmarks/results/scaling_<platform>.csv.

Part 2 (computed). Ring all-reduce of G gradient bytes over N devices sends and receives
2 (N-1)/N x G per device; FSDP (ZeRO-3) reduce-scatters gradients and all-gathers weights twice
(forward, and again for the backward pass), 3 (N-1)/N x G. At a per-direction link bandwidth B
the time is that volume / B (bandwidth term only; latency terms are negligible at these sizes).

Part 3 (tensor parallel, compiled). GPT-2 124M's train step (the engine's `make_train_step`,
Adam) is lowered and compiled for each mesh shape (`--tp-meshes`, default 1, 8x1, 4x2, 2x4, 1x8)
with the Megatron rules (`sharding='tp'`), from abstract shapes only (nothing is allocated):
per-device parameter and train-state bytes, the compiled memory analysis (arguments,
temporaries), the collectives in the HLO (arrays and bytes all-reduced per device) against
`tp_comm` (the on-paper count), and the compile time. `--tp-time` also runs the step on a
shortened sequence where the state fits this machine (indicative only on simulated devices).
Part 4 (computed): `tp_comm` per step for GPT-2 124M and a 1.3B GPT on 8 x H100.
Results: benchmarks/results/scaling_tp_<platform>.csv.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    )

import re  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import tyro  # noqa: E402
from flax import nnx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from jaxdl import create_model  # noqa: E402
from jaxdl.data import ArrayDataset  # noqa: E402
from jaxdl.functional import make_apply, named_leaves, split  # noqa: E402
from jaxdl.parallel import (  # noqa: E402
    bytes_per_device,
    data_sharding,
    layout_rules,
    make_mesh,
    state_shardings,
    with_rules,
)
from jaxdl.train import Callback, LanguageModelTask, Trainer  # noqa: E402
from jaxdl.train.state import TrainState  # noqa: E402
from jaxdl.train.steps import make_train_step  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

# Parameter counts (published; the models' own tests pin them).
MODELS = {"resnet50": 25_557_032, "gpt2": 124_439_808}
NVLINK4_BIDIRECTIONAL = 900e9  # H100 SXM, per GPU; half of it each way
H100_DEVICES = 8


@dataclass(frozen=True)
class Config:
    devices: tuple[int, ...] = (1, 2, 4, 8)
    hidden: tuple[int, ...] = (1024, 1024, 1024)
    """MLP widths: big enough that the step is not pure dispatch overhead."""
    global_batch: int = 512
    steps: int = 20
    """Timed steps (one epoch); a first epoch compiles and warms up."""
    smoke: bool = False
    out: str | None = None
    """CSV path (default: benchmarks/results/scaling_<platform>.csv; none with --smoke)."""
    dp: bool = True
    """Part 1 (data parallel / FSDP step times)."""
    tp: bool = True
    """Part 3 (tensor parallel memory and collectives of GPT-2 124M per mesh shape)."""
    tp_meshes: tuple[str, ...] = ("1", "8x1", "4x2", "2x4")
    """Mesh shapes data x model (GPT-2's 12 heads rule out model=8: a clear error)."""
    tp_batch: int = 8
    """Global batch (sequences) of the compiled TP step."""
    tp_seq: int = 1024
    tp_vocab: int = 50304
    """GPT-2's 50,257 tokens padded to a multiple of 128 (Megatron and nanoGPT do the same): the
    vocabulary is split over the model axis, and 50,257 = 29 x 1,733 divides by no mesh size."""
    tp_time: bool = False
    """Also run the TP step (sequence `tp_time_seq`) where the state fits `tp_time_max_gb`."""
    tp_time_seq: int = 128
    tp_time_max_gb: float = 4.0


def allreduce_cost(
    params: int,
    *,
    bytes_per_value: int = 4,
    devices: int = H100_DEVICES,
    link_bytes_per_s: float = NVLINK4_BIDIRECTIONAL / 2,
    fsdp: bool = False,
) -> dict[str, float]:
    """Bytes each device moves per step for the gradient exchange and the time at the link
    bandwidth (bandwidth term of the ring algorithm)."""
    grad_bytes = params * bytes_per_value
    factor = (3 if fsdp else 2) * (devices - 1) / devices
    moved = factor * grad_bytes
    return {
        "grad_MB": grad_bytes / 1e6,
        "moved_MB": moved / 1e6,
        "ms": moved / link_bytes_per_s * 1e3,
    }


# GPT shapes for the on-paper communication: (layers, d, vocab, context). 1.3B: GPT-3 XL's
# depth and width (Brown et al., 2020, table 2.1) with 16 heads of 128, GPT-2's vocabulary.
GPT_SHAPES = {"gpt2": (12, 768, 50257, 1024), "gpt_1.3b": (24, 2048, 50257, 2048)}


def gpt_params(layers: int, d: int, vocab: int, context: int) -> int:
    """Weights of a GPT-2-style model (tied embedding, 4d MLP, biases, LayerNorms)."""
    per_layer = 12 * d * d + 13 * d  # QKV + out + MLP weights, their biases, two LayerNorms
    return layers * per_layer + vocab * d + context * d + 2 * d


def tp_comm(
    layers: int,
    d: int,
    vocab: int,
    context: int,
    *,
    batch: int,
    seq: int | None = None,
    data: int,
    model: int,
    act_bytes: int = 2,
    grad_bytes: int = 4,
    activation_allreduces_per_layer: int = 4,
    link_bytes_per_s: float = NVLINK4_BIDIRECTIONAL / 2,
) -> dict[str, float]:
    """Bytes each device sends (= receives) per train step on a data x model mesh, ring
    algorithms: an all-reduce of S bytes over n devices moves 2 (n-1)/n S per device.

    Tensor parallel (Megatron): per layer 2 all-reduces of the [B/data, T, d] activations forward
    and 2 backward (`activation_allreduces_per_layer`=4; jaxdl's XLA program does 6, see
    docs/parallel.md), plus one forward for the vocab-parallel embedding lookup. Data parallel:
    every device all-reduces the gradients of its 1/model of the weights over the data axis."""
    seq = seq or context
    n_act = activation_allreduces_per_layer * layers + 1
    act = batch // data * seq * d * act_bytes
    tp_bytes = n_act * 2 * (model - 1) / model * act if model > 1 else 0.0
    params = gpt_params(layers, d, vocab, context)
    dp_bytes = 2 * (data - 1) / data * params / model * grad_bytes if data > 1 else 0.0
    total = tp_bytes + dp_bytes
    return {
        "activation_allreduce_MB": act / 1e6,
        "activation_allreduces": n_act if model > 1 else 0,
        "tp_moved_MB": tp_bytes / 1e6,
        "dp_moved_MB": dp_bytes / 1e6,
        "moved_MB": total / 1e6,
        "ms": total / link_bytes_per_s * 1e3,
    }


_COLLECTIVE = re.compile(
    r"= (.*?) (all-reduce|reduce-scatter|all-gather|all-to-all|collective-permute)(?:-start)?\("
)
_DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "pred": 1, "s8": 1, "u8": 1}


def hlo_collectives(text: str) -> dict[str, dict[str, float]]:
    """{op: {'arrays': n, 'MB': size}} over a compiled (per-device) HLO module; XLA combines
    independent collectives into one op over a tuple, so arrays are counted, not ops."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        m = _COLLECTIVE.search(line)
        if not m:
            continue
        c = out.setdefault(m.group(2), {"arrays": 0, "MB": 0.0})
        for dtype, dims in re.findall(r"(\w+)\[([\d,]*)\]", m.group(1)):
            size = int(np.prod([int(x) for x in dims.split(",") if x], dtype=np.int64))
            c["arrays"] += 1
            c["MB"] += size * _DTYPE_BYTES.get(dtype, 4) / 1e6
    return out


def engine_step(apply, tx, task):
    """The engine's pure train step as step(state, batch) -> (state, metrics)."""
    if hasattr(task, "make_step"):  # the engine's step contract
        return task.make_step(apply=apply, tx=tx)
    step = make_train_step(apply, tx, task)  # the earlier (state, acc, batch) contract
    return lambda state, batch: step(state, task.init_metrics(), batch)


def tp_step(model_name: str, mesh_spec: str, *, batch: int, seq: int, overrides=None):
    """(jitted step, abstract (state, batch), mesh, abstract state, sharding mode) of the
    engine's train step for `model_name` on a mesh with the TP rules, from shapes only."""
    over = {"dropout": 0.0, **(overrides or {})}
    model = nnx.eval_shape(lambda: create_model(model_name, **over))
    vocab = model.config.vocab_size
    graphdef, params, mstate = split(model)
    tx = optax.adam(1e-4)
    state = jax.eval_shape(lambda p, s: TrainState.create(p, s, tx, 0), params, mstate)
    mesh = make_mesh(axes=mesh_spec) if mesh_spec != "1" else make_mesh(num_devices=1)
    sharding = "tp" if mesh_spec != "1" else None
    rules = layout_rules(sharding)
    shardings = state_shardings(state, mesh, sharding=sharding)
    abstract = jax.tree.map(
        lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh), state, shardings
    )
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    dsh = data_sharding(mesh)
    batch_tree = {
        "x": jax.ShapeDtypeStruct((batch, seq), jnp.int32, sharding=dsh),
        "y": jax.ShapeDtypeStruct((batch, seq), jnp.int32, sharding=dsh),
        "weight": jax.ShapeDtypeStruct((batch,), jnp.float32, sharding=dsh),
    }
    step = engine_step(make_apply(graphdef), tx, LanguageModelTask(vocab))
    jitted = jax.jit(
        with_rules(step, mesh, rules), donate_argnums=(0,), out_shardings=(shardings, rep)
    )
    return jitted, (abstract, batch_tree), mesh, state, sharding


def measure_tp(cfg: Config) -> list[dict]:
    name = "gpt_mini" if cfg.smoke else "gpt2"
    over = {"vocab_size": 64, "num_heads": 8, "context": 16, "input_shape": (16,)}
    over = over if cfg.smoke else {"vocab_size": cfg.tp_vocab}
    batch, seq = (8, 16) if cfg.smoke else (cfg.tp_batch, cfg.tp_seq)
    meshes = ("1", "2x4") if cfg.smoke else cfg.tp_meshes
    rows = []
    for spec in meshes:
        if math.prod(int(v) for v in spec.split("x")) > jax.device_count():
            continue
        jitted, args, mesh, state, sharding = tp_step(
            name, spec, batch=batch, seq=seq, overrides=over
        )
        t0 = time.perf_counter()
        compiled = jitted.lower(*args).compile()
        compile_s = time.perf_counter() - t0
        mem = compiled.memory_analysis()
        coll = hlo_collectives(compiled.as_text())
        cfgm = nnx.eval_shape(lambda: create_model(name, dropout=0.0, **over)).config
        data, model = mesh.shape.get("data", 1), mesh.shape.get("model", 1)
        paper = tp_comm(
            cfgm.num_layers,
            cfgm.d_model,
            cfgm.vocab_size,
            cfgm.context,
            batch=batch,
            seq=seq,
            data=data,
            model=model,
            act_bytes=4,
            activation_allreduces_per_layer=6,
        )
        ar = coll.get("all-reduce", {"arrays": 0, "MB": 0.0})
        row = {
            "platform": jax.devices()[0].platform,
            "model": name,
            "mesh": spec,
            "batch": batch,
            "seq": seq,
            "params_MB_per_device": bytes_per_device(state.params, mesh, sharding=sharding) / 1e6,
            "state_MB_per_device": bytes_per_device(state, mesh, sharding=sharding) / 1e6,
            "argument_MB": mem.argument_size_in_bytes / 1e6,
            "temp_MB": mem.temp_size_in_bytes / 1e6,
            "allreduce_arrays": ar["arrays"],
            "allreduce_MB_hlo": ar["MB"],
            "allreduce_MB_paper": (
                paper["activation_allreduces"] * paper["activation_allreduce_MB"]
                + (
                    gpt_params(cfgm.num_layers, cfgm.d_model, cfgm.vocab_size, cfgm.context)
                    / model
                    * 4
                    / 1e6
                    if data > 1
                    else 0.0
                )
            ),  # fmt: skip
            "allgather_MB_hlo": coll.get("all-gather", {"MB": 0.0})["MB"],
            "compile_s": compile_s,
            "step_ms": None,
        }
        if cfg.tp_time:
            row["step_ms"] = _time_tp(name, spec, cfg, over, row)
        rows.append(row)
        print(row, flush=True)  # a row at a time: a compile takes minutes on a CPU host
    return rows


def _time_tp(name, spec, cfg: Config, over, row) -> float | None:
    """One timed step (after a compiling one) on random tokens, sequence `tp_time_seq`, if the
    state of all devices together fits `tp_time_max_gb`."""
    seq = cfg.tp_time_seq
    devices = math.prod(int(v) for v in spec.split("x"))
    if row["state_MB_per_device"] * devices / 1e3 > cfg.tp_time_max_gb:
        return None
    jitted, (abstract, batch_tree), mesh, _, sharding = tp_step(
        name, spec, batch=row["batch"], seq=seq, overrides=over
    )
    model = create_model(name, dropout=0.0, **over)
    graphdef, params, mstate = split(model)
    state = jax.device_put(
        TrainState.create(params, mstate, optax.adam(1e-4), 0),
        jax.tree.map(lambda a: a.sharding, abstract),
    )
    tokens = np.random.default_rng(0).integers(0, model.config.vocab_size, (row["batch"], seq))
    batch = jax.device_put(
        {"x": tokens.astype(np.int32), "y": tokens.astype(np.int32)}
        | {"weight": np.ones(row["batch"], np.float32)},
        jax.tree.map(lambda a: a.sharding, batch_tree),
    )
    state, _ = jitted(state, batch)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    state, _ = jitted(state, batch)
    jax.block_until_ready(state)
    return 1e3 * (time.perf_counter() - t0)


class StepTimer(Callback):
    """Wall time of every train step, waiting for the device (steps are dispatched async)."""

    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        jax.block_until_ready(self.trainer.state)
        self.times.append(time.perf_counter() - self._t0)


def _dataset(n: int, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    return ArrayDataset(
        rng.normal(size=(n, 32, 32, 1)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)
    )


def measure(cfg: Config) -> list[dict]:
    steps = 3 if cfg.smoke else cfg.steps
    batch = 64 if cfg.smoke else cfg.global_batch
    hidden = (64,) if cfg.smoke else cfg.hidden
    ds = _dataset(steps * batch)
    rows, ref = [], None
    for fsdp in (False, True):
        for n in cfg.devices:
            if n > jax.device_count():
                continue
            model = create_model("mlp", input_shape=(32, 32, 1), hidden=hidden)
            # plain SGD: the difference from 1 device then shows the float summation order only
            # (Adam's normalisation turns the noise of a near-zero gradient into a full step)
            t = Trainer(
                model,
                optimizer="sgd",
                learning_rate=1e-2,
                seed=0,
                mesh=make_mesh(num_devices=n),
                fsdp=fsdp,
            )
            timer = StepTimer()
            t.fit(ds, epochs=2, batch_size=batch, verbose=0, shuffle=False, callbacks=[timer])
            params = {k: np.asarray(v) for k, v in named_leaves(jax.device_get(t.params)).items()}
            ref = params if ref is None else ref
            diff = max(float(np.abs(params[k] - ref[k]).max()) for k in ref)
            rows.append(
                {
                    "platform": jax.devices()[0].platform,
                    "devices": n,
                    "mode": "fsdp" if fsdp else "dp",
                    "global_batch": batch,
                    "params": sum(p.size for p in params.values()),
                    "timed_steps": steps,
                    "step_ms": round(1e3 * statistics.median(timer.times[steps:]), 3),
                    "max_diff_vs_1": diff,
                }
            )
    return rows


def main(cfg: Config) -> dict:
    console = Console(highlight=False)
    result: dict = {}
    if cfg.tp:
        result["tp"] = tp_rows = measure_tp(cfg)
        _print_rows(console, tp_rows, "tensor parallel train step vs mesh (compiled, per device)")
        if not cfg.smoke:
            _write(console, tp_rows, RESULTS / f"scaling_tp_{tp_rows[0]['platform']}.csv")
        result["tp_comm"] = _tp_comm_table(console)
    if not cfg.dp:
        return result
    rows = measure(cfg)
    table = Table(title=f"train step vs devices ({jax.devices()[0].device_kind})")
    for col in rows[0]:
        table.add_column(col)
    for r in rows:
        table.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r.values()))
    console.print(table)
    out = cfg.out or (None if cfg.smoke else RESULTS / f"scaling_{rows[0]['platform']}.csv")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        console.print(f"wrote {out}")

    cost = Table(
        title=f"gradient exchange per step, {H100_DEVICES} x H100, NVLink 4 "
        f"{NVLINK4_BIDIRECTIONAL / 2e9:.0f} GB/s each way"
    )
    for col in ("model", "params", "grads", "scheme", "moved per GPU (MB)", "time (ms)"):
        cost.add_column(col)
    analysis = {}
    for name, p in MODELS.items():
        for dtype, nbytes in (("fp32", 4), ("bf16", 2)):
            for fsdp in (False, True):
                c = allreduce_cost(p, bytes_per_value=nbytes, fsdp=fsdp)
                scheme = "FSDP RS+2AG" if fsdp else "DP ring AR"
                analysis[f"{name}/{dtype}/{'fsdp' if fsdp else 'dp'}"] = c
                cost.add_row(
                    name, f"{p:,}", dtype, scheme, f"{c['moved_MB']:.1f}", f"{c['ms']:.3f}"
                )
    console.print(cost)
    return {**result, "rows": rows, "allreduce": analysis}


def _print_rows(console, rows, title):
    table = Table(title=title)
    for col in rows[0]:
        table.add_column(col)
    for r in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()))
    console.print(table)


def _write(console, rows, out):
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    console.print(f"wrote {out}")


def _tp_comm_table(console) -> dict:
    """Part 4: on paper, per step, 8 x H100 NVLink, bf16 activations, fp32 gradients, a global
    batch of 16 sequences of the model's context."""
    table = Table(
        title=f"communication per step on {H100_DEVICES} x H100 (NVLink "
        f"{NVLINK4_BIDIRECTIONAL / 2e9:.0f} GB/s each way), 16 x context tokens"
    )
    for col in ("model", "mesh", "act AR (MB)", "n act AR", "TP moved", "DP moved", "ms"):
        table.add_column(col)
    out = {}
    for name, shape in GPT_SHAPES.items():
        for data in (8, 4, 2, 1):
            c = tp_comm(*shape, batch=16, data=data, model=H100_DEVICES // data)
            out[f"{name}/{data}x{H100_DEVICES // data}"] = c
            table.add_row(
                name,
                f"{data}x{H100_DEVICES // data}",
                f"{c['activation_allreduce_MB']:.1f}",
                str(c["activation_allreduces"]),
                f"{c['tp_moved_MB']:.0f}",
                f"{c['dp_moved_MB']:.0f}",
                f"{c['ms']:.2f}",
            )
    console.print(table)
    return out


if __name__ == "__main__":
    main(tyro.cli(Config))
    sys.exit(0)
