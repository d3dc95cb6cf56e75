"""jaxdl bench: timing, MFU, mixed precision, the runner's rows and files, bad input, and the
PyTorch references (where torch is installed). Never asserts a timing, only what must hold."""

import csv
import importlib.util
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import cli
from jaxdl.bench import mfu as M
from jaxdl.bench import runner, timing
from jaxdl.errors import JaxdlError
from jaxdl.models import create_model

FAST = dict(warmup=1, steps=2)


# ---- timing --------------------------------------------------------------------------------


def test_time_steps_calls_warmup_then_timed_and_pipelined_steps():
    calls = []
    t = timing.time_steps(lambda: calls.append(1) or jnp.zeros(()), warmup=2, steps=5)
    assert len(calls) == 2 + 5 + 5 and len(t.times_s) == 5
    assert t.min_s <= t.median_s <= t.max_s and t.pipelined_s > 0


def test_time_steps_bad_counts():
    with pytest.raises(JaxdlError, match="steps must be a positive integer, got 0"):
        timing.time_steps(lambda: None, steps=0)
    with pytest.raises(JaxdlError, match="warmup must be an integer >= 0, got -1"):
        timing.time_steps(lambda: None, warmup=-1)


def test_compile_timed_gives_the_executable_and_its_memory():
    f = jax.jit(lambda a, b: a @ b)
    a = jax.ShapeDtypeStruct((64, 32), jnp.float32)
    b = jax.ShapeDtypeStruct((32, 16), jnp.float32)
    compiled, ct = timing.compile_timed(f, a, b)
    x, y = jnp.ones((64, 32)), jnp.ones((32, 16))
    np.testing.assert_allclose(compiled(x, y), f(x, y))
    assert ct.lower_s > 0 and ct.compile_s > 0 and ct.total_s == ct.lower_s + ct.compile_s
    assert ct.memory_bytes >= 4 * (64 * 32 + 32 * 16 + 64 * 16)  # arguments + output


def test_out_of_memory_is_recognised():
    assert timing.is_out_of_memory(
        RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 8 bytes")
    )
    assert timing.is_out_of_memory(MemoryError())
    assert not timing.is_out_of_memory(ValueError("shapes do not match"))


# ---- MFU ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,peak",
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L4", 121.0),
        ("TPU v5 lite", 197.0),
        ("TPU v5p", 459.0),
        ("cpu", None),
    ],
)
def test_spec_peaks(kind, peak):
    assert M.spec_peak_tflops(kind) == peak


def test_mfu():
    assert M.mfu(989e12 * 0.5, 1.0, 989.0) == pytest.approx(0.5)
    assert M.mfu(1e12, 0.01, None) is None and M.mfu(None, 0.01, 989.0) is None


def test_measured_matmul_peak_is_positive():
    assert M.measure_matmul_peak(128, steps=2) > 0


# ---- the Trainer's step -------------------------------------------------------------------


def _mlp_trainer(dtype):
    from jaxdl.bench import jax_timing
    from jaxdl.bench.loss import BenchLoss

    model = create_model("mlp", hidden=(32,))
    return jax_timing.make_trainer(model, BenchLoss("ce"), dtype=dtype, optimizer="adam")


def _mlp_shapes(batch):
    return {
        "x": jax.ShapeDtypeStruct((batch, 64), jnp.float32),
        "y": jax.ShapeDtypeStruct((batch,), jnp.int32),
        "weight": jax.ShapeDtypeStruct((batch,), jnp.float32),
    }


def test_bf16_train_step_is_the_trainers_mixed_precision_step():
    from jaxdl.bench import jax_timing

    trainer = _mlp_trainer("bf16")
    assert trainer.mixed_precision == "bf16" and trainer.mesh.devices.size == 1
    spec = jax_timing.batch_spec(trainer, _mlp_shapes(16))
    hlo = trainer.train_step.lower(trainer.state, trainer.init_metrics(), spec).as_text()
    # forward (2) and backward (3) matmuls all take bf16 operands; the params stay fp32
    dots = [ln for ln in hlo.splitlines() if "dot_general" in ln]
    assert len(dots) == 5 and all("bf16" in ln.split("->")[0] for ln in dots), dots
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(trainer.state.params))


def test_timed_steps_thread_the_trainers_state():
    from jaxdl.bench import jax_timing

    trainer = _mlp_trainer("fp32")
    before = jax.device_get(trainer.state.params)
    rng = np.random.default_rng(0)
    batch = {
        "x": rng.standard_normal((16, 64), np.float32),
        "y": rng.integers(0, 10, 16).astype(np.int32),
        "weight": np.ones(16, np.float32),
    }
    r = jax_timing.time_train_step(trainer, lambda: batch, _mlp_shapes(16), warmup=1, steps=2)
    # 1 warm-up, 2 timed one by one, 2 pipelined: the trainer holds the state after all five
    assert int(trainer.state.step) == 5 and len(r.times.times_s) == 2
    after = jax.device_get(trainer.state.params)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before), strict=True)
    )
    # and fit carries on from it
    per_sample = jax_timing.time_fit(
        trainer, {k: np.tile(v, (2,) + (1,) * (v.ndim - 1)) for k, v in batch.items()}, 16
    )
    assert per_sample > 0 and int(trainer.state.step) == 5 + 2 * 2


# ---- the runner -----------------------------------------------------------------------------


def test_resolve_models():
    assert runner.resolve_models(["mlp"]) == ["mlp"]
    assert runner.resolve_models(["mlp*", "mlp"]) == ["mlp", "mlp_xor"]
    assert "mlp" in runner.resolve_models("all")
    with pytest.raises(JaxdlError, match="unknown model 'mlpp'. Did you mean: mlp"):
        runner.resolve_models(["mlpp"])
    with pytest.raises(JaxdlError, match="no model matches 'zzz\\*'"):
        runner.resolve_models(["zzz*"])


def test_train_row_has_every_column_and_consistent_flops():
    opts = runner.BenchOptions(mode="train", batches=(8,), **FAST)
    rows, peaks = runner.run(["mlp"], opts)
    (row,) = rows
    assert set(row) == set(runner.COLUMNS)
    assert row["status"] == "ok", row["status"]
    assert row["params_trainable"] == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert row["unit"] == "samples/s" and row["throughput"] > 0 and row["step_ms"] > 0
    assert row["gflops_fwd"] == pytest.approx(2 * row["gmacs_fwd"])
    # a training step is about 3 forward passes (forward, two backward products) plus Adam
    assert 3 * row["gflops_fwd"] <= row["gflops_step_xla"] <= 4.5 * row["gflops_fwd"]
    assert row["mfu_measured"] == pytest.approx(row["tflops"] / peaks.measured)
    assert row["mfu_spec"] is None and peaks.spec is None  # a CPU has no spec peak
    # fit end to end over in-memory synthetic data, beside the bare step
    assert row["fit_throughput"] > 0
    assert row["fit_vs_step"] == pytest.approx(row["fit_throughput"] / row["throughput"])


def test_infer_bf16_row_flops_are_twice_the_macs():
    opts = runner.BenchOptions(mode="infer", batches=(16,), dtype="bf16", **FAST)
    (row,), _ = runner.run(["mlp"], opts)
    assert row["status"] == "ok", row["status"]
    assert 2 * row["gmacs_fwd"] <= row["gflops_step_xla"] <= 1.05 * 2 * row["gmacs_fwd"]


def test_oom_row_is_reported_and_the_run_carries_on():
    # 1e10 x 64 float32 inputs (2.56 TB) cannot be allocated: XLA raises RESOURCE_EXHAUSTED
    opts = runner.BenchOptions(mode="train", batches=(10**10, 8), **FAST)
    rows, _ = runner.run(["mlp"], opts)
    assert [r["status"] for r in rows] == ["OOM", "ok"]
    assert rows[0]["throughput"] is None and rows[1]["throughput"] > 0


def test_a_failing_row_is_reported_with_its_error(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("INTERNAL: something went wrong in the compiler")

    monkeypatch.setattr(timing, "compile_timed", broken)
    (row,), _ = runner.run(["mlp"], runner.BenchOptions(**FAST))
    assert row["status"] == "error: RuntimeError: INTERNAL: something went wrong in the compiler"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(mode="fit"), "--mode must be 'infer' or 'train', got 'fit'"),
        (dict(dtype="fp16"), "--dtype must be 'fp32' or 'bf16', got 'fp16'"),
        (dict(batches=(0,)), "--batch must be a positive integer, got 0"),
        (dict(compare="tf"), "--compare must be 'torch', got 'tf'"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(JaxdlError, match=message.replace("(", "\\(")):
        runner.BenchOptions(**kwargs).validate()


def test_compare_torch_without_torch(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    from jaxdl.bench import compare

    with pytest.raises(JaxdlError, match="--compare torch needs PyTorch, which is not installed"):
        compare.require_torch()
    assert cli.main(["bench", "mlp", "--compare", "torch"]) == 2
    assert "--compare torch needs PyTorch" in capsys.readouterr().err


def test_cli_bad_model_and_pattern(capsys):
    assert cli.main(["bench", "mlpx"]) == 2
    assert "unknown model 'mlpx'. Did you mean: mlp" in capsys.readouterr().err
    assert cli.main(["bench", "resnet9000*"]) == 2
    assert "no model matches 'resnet9000*'" in capsys.readouterr().err


def test_write_outputs_and_plot(tmp_path):
    rows = []
    for batch, thr, status in [(8, 100.0, "ok"), (16, 180.0, "ok"), (32, None, "OOM")]:
        r = runner.empty_row("mlp", runner.BenchOptions(mode="train"), batch)
        r.update(throughput=thr, unit="samples/s", status=status, torch_throughput=thr and thr / 2)
        rows.append(r)
    paths = runner.write_outputs(rows, tmp_path, "t", {"device": "cpu"}, plot=True)
    assert [p.name for p in paths] == ["t.csv", "t.json", "t.png"]
    table = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert tuple(table[0]) == runner.COLUMNS and table[2]["throughput"] == "n/a"
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["rows"][2]["status"] == "OOM" and "gflops_step_xla" in data["columns"]
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_isolated_rows_run_in_fresh_processes():
    opts = runner.BenchOptions(
        mode="infer", batches=(4,), isolate=True, overrides=(("hidden", (32, 16)),), **FAST
    )
    (row,), peaks = runner.run(["mlp"], opts)
    assert row["status"] == "ok" and row["throughput"] > 0 and peaks.measured > 0
    assert row["params_trainable"] == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10


# ---- PyTorch references (CPU) ---------------------------------------------------------------


def test_torch_references_match_jaxdl_counts_and_shapes():
    torch = pytest.importorskip("torch")
    from dataclasses import dataclass

    from jaxdl.bench import compare
    from jaxdl.models import get_config

    mlp = compare.mlp_reference(get_config("mlp"))
    assert sum(p.numel() for p in mlp.parameters()) == 17_226  # = jaxdl's mlp
    assert mlp(torch.randn(3, 64)).shape == (3, 10)

    @dataclass(frozen=True)
    class GPTConfig:
        input_shape: tuple = (1024,)
        vocab_size: int = 50257
        context: int = 1024
        d_model: int = 768
        num_heads: int = 12
        num_layers: int = 12

    with torch.device("meta"):
        gpt2 = compare.gpt_reference(GPTConfig())
    assert sum(p.numel() for p in gpt2.parameters()) == 124_439_808  # published, GPT-2 124M
    small = compare.gpt_reference(
        GPTConfig(
            input_shape=(16,), vocab_size=50, context=16, d_model=32, num_heads=4, num_layers=2
        )
    )
    assert small(torch.randint(0, 50, (2, 16))).shape == (2, 16, 50)

    lstm = compare.rnn_layer_reference("lstm", 32, 64)
    # cuDNN keeps two bias vectors per gate: 4 (u d + u u + 2 u), Keras's count plus 4 u
    assert sum(p.numel() for p in lstm.parameters()) == 4 * (64 * 32 + 64 * 64 + 2 * 64)
    assert lstm(torch.randn(2, 7, 32)).shape == (2, 7, 64)
    with pytest.raises(JaxdlError, match="unknown recurrent cell 'lstn'"):
        compare.rnn_layer_reference("lstn", 4, 4)


def test_compare_torch_row():
    pytest.importorskip("torch")
    opts = runner.BenchOptions(
        mode="train", batches=(8,), compare="torch", torch_compile=False, **FAST
    )
    (row,), _ = runner.run(["mlp"], opts)
    assert row["status"] == "ok" and row["torch_status"] == "ok", (
        row["status"],
        row["torch_status"],
    )
    assert row["torch_params"] == row["params_trainable"]
    assert row["ratio_vs_torch"] == pytest.approx(row["throughput"] / row["torch_throughput"])


def test_compare_torch_without_a_reference():
    pytest.importorskip("torch")
    opts = runner.BenchOptions(batches=(2,), compare="torch", torch_compile=False, **FAST)
    (row,), _ = runner.run(["perceptron"], opts)
    assert (
        row["status"] == "ok"
        and row["torch_status"] == "error: no PyTorch reference for 'perceptron'"
    )


def test_cli_bench_smoke(tmp_path):
    """`jaxdl bench mlp --mode train --batch 8` as a user runs it: table, CSV and JSON."""
    import os
    import subprocess

    from conftest import ROOT

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxdl.cli",
            "bench",
            "mlp",
            "--mode",
            "train",
            "--batch",
            "8",
            "--steps",
            "3",
            "--out",
            str(tmp_path),
            "--tag",
            "smoke",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XLA_FLAGS": ""},
    )
    assert r.returncode == 0, r.stderr
    for heading in (
        "GMACs fwd",
        "GFLOPs/step",
        "compile s",
        "step ms",
        "throughput",
        "peak mem",
        "MFU",
        "status",
        "samples/s",
    ):
        assert heading in r.stdout, heading
    table = list(csv.DictReader((tmp_path / "smoke.csv").open()))
    assert tuple(table[0]) == runner.COLUMNS and table[0]["status"] == "ok"
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert set(data["rows"][0]) == set(runner.COLUMNS)
    assert data["environment"]["jax"] == jax.__version__


@pytest.mark.slow
def test_benchmark_script_smoke_and_resume(tmp_path):
    """A benchmark script writes its results and, run again, measures only what is missing."""
    import os
    import subprocess

    from conftest import ROOT

    def script():
        return subprocess.run(
            [
                sys.executable,
                "benchmarks/cnn_zoo.py",
                "--smoke",
                "--mode",
                "infer",
                "--out",
                str(tmp_path),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)},
        )

    r = script()
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "cnn_zoo_infer_bf16.json").read_text())["rows"]
    assert [(x["model"], x["status"]) for x in rows] == [("mlp", "ok")]
    assert (tmp_path / "cnn_zoo_infer_bf16.png").exists()
    r = script()
    assert r.returncode == 0 and "already measured" in r.stdout
    assert json.loads((tmp_path / "cnn_zoo_infer_bf16.json").read_text())["rows"] == rows


# ---- benchmarks/gpu_headline.py -------------------------------------------------------------


def _headline(tmp_path, *args):
    import os
    import subprocess

    from conftest import ROOT

    r = subprocess.run(
        [sys.executable, "benchmarks/gpu_headline.py", "--smoke", "--out", str(tmp_path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((tmp_path / "smoke_headline.json").read_text())
    table = list(csv.DictReader((tmp_path / "smoke_headline.csv").open()))
    assert [t["model"] for t in table] == [x["model"] for x in data["rows"]]
    return data


def test_gpu_headline_smoke_writes_a_row_per_stage(tmp_path):
    """Every stage at tiny sizes on the CPU; PyTorch parts say why they were skipped."""
    data = _headline(tmp_path, "--budget-s", "1200")
    rows = data["rows"]
    assert rows[0]["model"] == "versions" and "jax " in rows[0]["notes"]  # versions first
    assert data["environment"]["versions"]["jaxlib"] == jax.__version__
    by = {}
    for r in rows:
        by.setdefault(r["stage"], []).append(r)
    assert list(by) == ["versions", "resnet50", "gpt2", "vit_b16", "lstm", "fit", "extra"]
    bad = [(r["stage"], r["model"], r["status"]) for r in rows if r["status"] != "ok"]
    assert not bad, bad
    assert by["versions"][1]["tflops"] > 0  # the measured bf16 matmul peak
    for stage in ("resnet50", "gpt2", "vit_b16", "lstm"):
        for r in by[stage]:
            assert r["throughput"] > 0 and r["compile_s"] > 0, stage
            if importlib.util.find_spec("torch") is None:
                assert r["torch_status"] == "skipped: torch is not installed"
    assert [r["dtype"] for r in by["lstm"]] == ["fp32", "bf16"]
    gpt = by["gpt2"][0]
    assert gpt["unit"] == "tokens/s" and 0 < gpt["palm_gflops_step"]
    (fit,) = by["fit"]
    assert fit["fit_throughput"] > 0
    assert fit["fit_vs_step"] == pytest.approx(fit["fit_throughput"] / fit["throughput"])
    assert [r["variant"] for r in by["extra"]] == ["loop 1", "scan 1", "cnn zoo"]


def test_gpu_headline_budget_guard_skips_stages(tmp_path):
    data = _headline(tmp_path, "--budget-s", "1", "--stages", "resnet50", "fit")
    rows = data["rows"]
    assert [r["model"] for r in rows] == ["versions", "bf16 matmul peak", "resnet50", "fit"]
    assert [r["status"] for r in rows[:2]] == ["ok", "ok"]
    for r in rows[2:]:
        assert r["status"].startswith("skipped: call budget spent"), r["status"]


def test_torch_worker_answers_jobs_times_out_and_restarts(tmp_path):
    """The one child process the headline's PyTorch parts run in (here without torch: any
    'module:function' job goes the same way)."""
    from jaxdl.bench.isolate import TorchWorker

    (tmp_path / "jobs.py").write_text(
        "import os, time\n"
        "def pid():\n    return os.getpid()\n"
        "def nap(s):\n    time.sleep(s)\n    return s\n"
        "def fail():\n    raise ValueError('bad input')\n"
    )
    job = lambda fn, **args: {"kind": "call", "path": str(tmp_path), "function": fn, "args": args}
    with TorchWorker() as w:
        first = w.call(job("jobs:pid"), timeout_s=120)
        assert w.call(job("jobs:pid"), timeout_s=120) == first  # one process for many jobs
        assert w.call(job("jobs:nap", s=0.1), timeout_s=120) == 0.1
        with pytest.raises(RuntimeError, match="ValueError: bad input"):
            w.call(job("jobs:fail"), timeout_s=120)
        with pytest.raises(TimeoutError, match="took over 1 s"):
            w.call(job("jobs:nap", s=60), timeout_s=1)
        assert w.proc is None
        assert w.call(job("jobs:pid"), timeout_s=120) != first  # a fresh child after the kill
