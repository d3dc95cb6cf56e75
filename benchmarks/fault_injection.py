"""Fault injection for resumable training (issue 6, R1 and R2): kill a training process with
SIGKILL at random steps (or in the middle of a checkpoint write), start it again with the same
command, and compare with an uninterrupted run bit for bit: final parameters, the per-epoch loss
log, and the batches seen (step -> (epoch, batch index)).

    python benchmarks/fault_injection.py --trials 30            # prints the figures
    python benchmarks/fault_injection.py --trials 3 --kill-in-save

A trial's child is this script with `--child`: an MLP on a subset of scikit-learn's digits on one
CPU device, a BackupAndRestore checkpoint every `--checkpoint-every` steps, a line per step in
WORKDIR/batches.log, and the final params in WORKDIR/final.npz. The child kills itself (SIGKILL)
after step `--kill-at`, or inside orbax's commit of checkpoint `--kill-in-save` (the data is
written, the rename that completes the checkpoint has not happened).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Config:
    trials: int = 10
    seed: int = 0
    """Seed of the random kill steps."""
    epochs: int = 3
    train_size: int = 320
    batch_size: int = 32
    checkpoint_every: int = 4
    kill_in_save: bool = False
    """Kill inside a checkpoint write instead of after a step (R2)."""
    child: bool = False
    workdir: str = ""
    kill_at: int = 0
    """Child: SIGKILL itself after this step (0: never)."""
    kill_save_step: int = 0
    """Child: SIGKILL itself while committing the checkpoint of this step (0: never)."""


def total_steps(cfg: Config) -> int:
    return cfg.epochs * -(-cfg.train_size // cfg.batch_size)


# ---- the child: one training run ----------------------------------------------------------


def child(cfg: Config) -> int:
    import jax

    from jaxdl import create_model
    from jaxdl.data import load_digits
    from jaxdl.functional import named_leaves
    from jaxdl.train import BackupAndRestore, CSVLogger, LambdaCallback, Trainer

    work = Path(cfg.workdir)
    if cfg.kill_save_step:
        arm_kill_in_commit(cfg.kill_save_step)
    d = load_digits(seed=0)
    train = d.train.subset(slice(0, cfg.train_size))
    trainer = Trainer(
        create_model("mlp", input_shape=(8, 8, 1), hidden=(32,), dropout=0.2),
        optimizer="adam",
        learning_rate=3e-3,
        seed=1,
    )
    log = (work / "batches.log").open("a")

    def after_step(batch, logs):
        log.write(f"{trainer.step_count} {trainer.epoch} {batch}\n")
        log.flush()
        if trainer.step_count == cfg.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    history = trainer.fit(
        train,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        validation_data=d.val,
        verbose=0,
        callbacks=[
            LambdaCallback(on_train_batch_end=after_step),
            CSVLogger(work / "log.csv"),
            BackupAndRestore(
                work / "checkpoints", save_freq=cfg.checkpoint_every, delete_checkpoint=False
            ),
        ],
    )
    params = {
        k: np.asarray(v) for k, v in named_leaves(jax.device_get(trainer.state.params)).items()
    }
    np.savez(work / "final.npz", **params)
    (work / "history.json").write_text(json.dumps(history.history))
    return 0


def arm_kill_in_commit(step: int) -> None:
    """SIGKILL this process when orbax is about to rename checkpoint `step`'s temporary directory
    into place: every byte is written, the checkpoint is not complete."""
    from orbax.checkpoint._src.path import atomicity

    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self, *args, **kwargs):
        if Path(str(self.get_final())).name == str(step):
            os.kill(os.getpid(), signal.SIGKILL)
        return await original(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize


# ---- the parent: trials -----------------------------------------------------------------------


def run_child(cfg: Config, workdir: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--workdir",
        str(workdir),
        "--epochs",
        str(cfg.epochs),
        "--train-size",
        str(cfg.train_size),
        "--batch-size",
        str(cfg.batch_size),
        "--checkpoint-every",
        str(cfg.checkpoint_every),
    ]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def read_run(workdir: Path) -> dict:
    with np.load(workdir / "final.npz") as f:
        params = {k: f[k] for k in f.files}
    lines = [
        tuple(map(int, ln.split()))
        for ln in (workdir / "batches.log").read_text().split("\n")
        if ln
    ]
    return {
        "params": params,
        "history": json.loads((workdir / "history.json").read_text()),
        "csv": (workdir / "log.csv").read_text(),
        "lines": lines,
    }


def compare(ref: dict, got: dict) -> list[str]:
    """Differences between an uninterrupted run and a killed-and-resumed one (empty: identical)."""
    problems = []
    if ref["params"].keys() != got["params"].keys():
        problems.append("parameter names differ")
    for k, v in ref["params"].items():
        if k in got["params"] and not np.array_equal(v, got["params"][k]):
            problems.append(f"param {k} differs")
    if ref["history"] != got["history"]:
        problems.append("loss/metric history differs")
    if ref["csv"] != got["csv"]:
        problems.append("CSV log differs")
    # the batches: every step the killed run did, including redone ones, used the batch the
    # uninterrupted run used at that step, and the final sequence is the same
    expected = {s: (e, b) for s, e, b in ref["lines"]}
    if any(expected.get(s) != (e, b) for s, e, b in got["lines"]):
        problems.append("a step saw another batch")
    if sorted({s for s, _, _ in got["lines"]}) != sorted(expected):
        problems.append("the steps run differ")
    return problems


def trial(cfg: Config, ref: dict, kill_at: int = 0, kill_save_step: int = 0) -> dict:
    """One kill + resume; returns {'identical', 'steps_redone', 'problems', ...}."""
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp)
        killed = run_child(cfg, w, kill_at=kill_at, kill_save_step=kill_save_step)
        partial = (
            [p.name for p in (w / "checkpoints").iterdir() if ".orbax-checkpoint-tmp" in p.name]
            if (w / "checkpoints").exists()
            else []
        )
        steps_before = (
            sorted(int(p.name) for p in (w / "checkpoints").iterdir() if p.name.isdigit())
            if (w / "checkpoints").exists()
            else []
        )
        resumed = run_child(cfg, w)
        if resumed.returncode != 0:
            raise RuntimeError(f"resumed run failed:\n{resumed.stderr[-3000:]}")
        got = read_run(w)
        left = [p.name for p in (w / "checkpoints").iterdir() if ".orbax-checkpoint-tmp" in p.name]
        problems = compare(ref, got)
        return {
            "kill_at": kill_at or kill_save_step,
            "killed_rc": killed.returncode,
            "identical": not problems,
            "problems": problems,
            "steps_redone": len(got["lines"]) - len(ref["lines"]),
            "partial_before_restart": partial,
            "partial_after_restart": left,
            "complete_before_restart": steps_before,
        }


def main(cfg: Config) -> dict:
    if cfg.child:
        return {"rc": child(cfg)}
    rng = random.Random(cfg.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        r = run_child(cfg, Path(tmp))
        if r.returncode != 0:
            raise RuntimeError(f"reference run failed:\n{r.stderr[-3000:]}")
        ref = read_run(Path(tmp))
    n = total_steps(cfg)
    results = []
    for _ in range(cfg.trials):
        if cfg.kill_in_save:
            saves = list(range(cfg.checkpoint_every, n + 1, cfg.checkpoint_every))
            results.append(trial(cfg, ref, kill_save_step=rng.choice(saves[1:])))
        else:
            results.append(trial(cfg, ref, kill_at=rng.randint(1, n - 1)))
    summary = {
        "trials": len(results),
        "identical": sum(r["identical"] for r in results),
        "killed_by_sigkill": sum(r["killed_rc"] == -signal.SIGKILL for r in results),
        "steps_per_run": n,
        "checkpoint_every": cfg.checkpoint_every,
        "steps_redone_mean": float(np.mean([r["steps_redone"] for r in results])),
        "steps_redone_max": max(r["steps_redone"] for r in results),
        "seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    return summary


if __name__ == "__main__":
    cfg = tyro.cli(Config)
    out = main(cfg)
    if cfg.child:
        sys.exit(out["rc"])
    print(json.dumps({k: v for k, v in out.items() if k != "results"}, indent=2))
    for r in out["results"]:
        print(r)
