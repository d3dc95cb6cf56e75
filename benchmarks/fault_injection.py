"""Fault injection for resumable training, from outside the process.

External trials (the default): the parent starts `jaxdl train mlp --dataset digits --workdir W`
and kills it at a random wall-clock moment (uniform over an uninterrupted run's duration, so it
lands in start-up, in steps, in checkpoint writes and at epoch ends), alternately by SIGKILL and
SIGTERM, then starts the same command again in the same workdir (which may be killed in turn:
the kills of one workdir form a chain that ends with a run that completes). Every output file of
the completed workdir is then compared byte for byte with an uninterrupted run's: metrics.json,
log.csv, the lock file, and for each retained checkpoint its JSON metadata (data position, step
count, every callback's state, the digest of every array). timing.json (wall-clock seconds) and
orbax's own bookkeeping files (timestamps) are the only files not compared.

    python benchmarks/fault_injection.py                        # 50 trials; prints the figures
    python benchmarks/fault_injection.py --trials 3 --kill-in-save

`--kill-in-save` (R2) instead runs this script's `--child` (an MLP on a subset of digits with a
BackupAndRestore checkpoint every `--checkpoint-every` steps), which SIGKILLs itself inside
orbax's commit of a checkpoint (the data is written, the rename that completes it has not
happened): the one moment a random kill rarely hits.
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
    trials: int = 50
    seed: int = 0
    """Seed of the random kill moments."""
    epochs: int = 3
    train_size: int = 320
    """R2 child: examples of digits trained on."""
    batch_size: int = 64
    checkpoint_every: int = 5
    hidden: int = 16
    """External trials: width of the MLP's one hidden layer."""
    kill_in_save: bool = False
    """R2: kill inside a checkpoint write (the child kills itself) instead of external kills."""
    child: bool = False
    workdir: str = ""
    kill_save_step: int = 0
    """Child: SIGKILL itself while committing the checkpoint of this step (0: never)."""
    out: str | None = None
    """Write the summary and every trial as JSON here."""


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


def trial(cfg: Config, ref: dict, kill_save_step: int = 0) -> dict:
    """One kill + resume; returns {'identical', 'steps_redone', 'problems', ...}."""
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp)
        killed = run_child(cfg, w, kill_save_step=kill_save_step)
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
            "kill_at": kill_save_step,
            "killed_rc": killed.returncode,
            "identical": not problems,
            "problems": problems,
            "steps_redone": len(got["lines"]) - len(ref["lines"]),
            "partial_before_restart": partial,
            "partial_after_restart": left,
            "complete_before_restart": steps_before,
        }


# ---- external kills of `jaxdl train` ------------------------------------------------------------


def cli_args(cfg: Config, workdir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jaxdl.cli",
        "train",
        "mlp",
        "--dataset",
        "digits",
        "--epochs",
        str(cfg.epochs),
        "--batch-size",
        str(cfg.batch_size),
        "--set",
        f"hidden=({cfg.hidden},)",
        "--checkpoint-every",
        str(cfg.checkpoint_every),
        "--workdir",
        str(workdir),
        "--quiet",
        "--devices",
        "1",
    ]


CLI_ENV = {"XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
NOT_COMPARED = ("timing.json",)  # wall-clock seconds, documented as such


def outputs(workdir: Path) -> dict[str, bytes]:
    """Every output file of a workdir to compare: its files (not timing.json) as bytes, and for
    each checkpoint step the JSON metadata jaxdl wrote (orbax's own files carry timestamps)."""
    out = {}
    for p in sorted(workdir.iterdir()):
        if p.is_file() and p.name not in NOT_COMPARED:
            out[p.name] = p.read_bytes()
        elif p.is_dir() and p.name != "checkpoints":
            out[p.name + "/"] = b"unexpected directory"
    ck = workdir / "checkpoints"
    if ck.is_dir():
        for step in sorted(ck.iterdir()):
            meta = step / "meta" / "metadata"
            out[f"checkpoints/{step.name}/meta"] = meta.read_bytes() if meta.exists() else b""
    return out


def phase_of(workdir: Path) -> str:
    """The workdir's state when a kill landed (a rerun's start-up finds earlier outputs, so
    'outputs present' includes start-ups of reruns; a SIGTERM answered by exit 75 landed in
    fit, one answered by -15 before fit installed its handler or after fit)."""
    ck = workdir / "checkpoints"
    if ck.is_dir() and any(".orbax-checkpoint-tmp" in p.name for p in ck.iterdir()):
        return "checkpoint write in progress"
    if not (workdir / "log.csv").exists() and not (
        ck.is_dir() and any(p.name.isdigit() for p in ck.iterdir())
    ):
        return "nothing written yet"
    if (workdir / "metrics.json").exists():
        return "metrics written"
    return "outputs present"


def start(cfg: Config, workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cli_args(cfg, workdir),
        env={**os.environ, **CLI_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def reference(cfg: Config, workdir: Path) -> tuple[dict[str, bytes], float]:
    t0 = time.perf_counter()
    r = subprocess.run(
        cli_args(cfg, workdir), env={**os.environ, **CLI_ENV}, capture_output=True, text=True
    )
    if r.returncode != 0:
        raise RuntimeError(f"reference run failed:\n{r.stderr[-3000:]}")
    return outputs(workdir), time.perf_counter() - t0


def external_trials(
    cfg: Config, ref: dict[str, bytes], duration: float, root: Path, progress=None
) -> list:
    """`cfg.trials` kills at uniform random moments in [0, duration] of the running process,
    SIGKILL and SIGTERM alternately; each chain of kills of one workdir ends with a completed run
    whose outputs are compared with `ref`."""
    rng = random.Random(cfg.seed)
    results: list[dict] = []
    chain: list[dict] = []
    n_dirs = 0
    workdir = root / "w0"

    def finish(p):
        nonlocal workdir, n_dirs, chain
        got = outputs(workdir)
        diff = sorted(k for k in set(ref) | set(got) if ref.get(k) != got.get(k))
        for t in chain:
            t.update(identical=not diff, differing=diff, final_rc=p.returncode)
        results.extend(chain)
        if progress is not None:
            progress(chain)
        chain, n_dirs = [], n_dirs + 1
        workdir = root / f"w{n_dirs}"

    while len(results) + len(chain) < cfg.trials:
        sig = signal.SIGKILL if (len(results) + len(chain)) % 2 == 0 else signal.SIGTERM
        p = start(cfg, workdir)
        delay = rng.uniform(0.0, duration)
        t0 = time.perf_counter()
        try:
            p.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            phase = phase_of(workdir)
            p.send_signal(sig)
            _, err = p.communicate(timeout=600)
            chain.append(
                {
                    "signal": sig.name,
                    "at_s": round(time.perf_counter() - t0, 2),
                    "phase": phase,
                    "rc": p.returncode,
                    "traceback": "Traceback" in err,
                }
            )
            continue
        p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"a run of {workdir} failed with {p.returncode}")
        if chain:
            finish(p)
    while chain:  # complete the last chain
        p = start(cfg, workdir)
        p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"the last run of {workdir} failed with {p.returncode}")
        finish(p)
    return results


def summarize(results: list[dict]) -> dict:
    """Counts over the trials. Expected exit codes: SIGKILL -9; SIGTERM 75 (fit saved and
    stopped) or -15 (before fit installed its handler or after fit restored the default); and
    for either, 0 where the run completed first (the process exited between the timeout and
    the signal, or a SIGTERM came after the last step, while fit finished its epoch end)."""
    expected_rc = {"SIGKILL": {-signal.SIGKILL, 0}, "SIGTERM": {75, -signal.SIGTERM, 0}}
    return {
        "trials": len(results),
        "identical": sum(r["identical"] for r in results),
        "sigkill": sum(r["signal"] == "SIGKILL" for r in results),
        "sigterm": sum(r["signal"] == "SIGTERM" for r in results),
        "sigterm_saved_exit_75": sum(r["rc"] == 75 for r in results),
        "phases": {
            ph: sum(r["phase"] == ph for r in results)
            for ph in sorted({r["phase"] for r in results})
        },
        "unexpected_exit_codes": [r for r in results if r["rc"] not in expected_rc[r["signal"]]],
        "tracebacks": sum(r["traceback"] for r in results),
    }


def main(cfg: Config) -> dict:
    if cfg.child:
        return {"rc": child(cfg)}
    t0 = time.perf_counter()
    if cfg.kill_in_save:
        rng = random.Random(cfg.seed)
        with tempfile.TemporaryDirectory() as tmp:
            r = run_child(cfg, Path(tmp))
            if r.returncode != 0:
                raise RuntimeError(f"reference run failed:\n{r.stderr[-3000:]}")
            ref = read_run(Path(tmp))
        n = total_steps(cfg)
        saves = list(range(cfg.checkpoint_every, n + 1, cfg.checkpoint_every))
        results = [trial(cfg, ref, kill_save_step=rng.choice(saves[1:])) for _ in range(cfg.trials)]
        return {
            "trials": len(results),
            "identical": sum(r["identical"] for r in results),
            "seconds": round(time.perf_counter() - t0, 1),
            "results": results,
        }
    with tempfile.TemporaryDirectory() as tmp:
        ref, duration = reference(cfg, Path(tmp) / "ref")
        log = Path(cfg.out + ".partial") if cfg.out else None

        def progress(chain):  # each finished chain as JSON lines, for long runs
            if log is not None:
                with log.open("a") as f:
                    f.writelines(json.dumps(t) + "\n" for t in chain)

        results = external_trials(cfg, ref, duration, Path(tmp), progress)
    return {
        **summarize(results),
        "uninterrupted_run_s": round(duration, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }


if __name__ == "__main__":
    cfg = tyro.cli(Config)
    out = main(cfg)
    if cfg.child:
        sys.exit(out["rc"])
    print(json.dumps({k: v for k, v in out.items() if k != "results"}, indent=2))
    for r in out["results"]:
        print(r)
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(out, indent=2))
