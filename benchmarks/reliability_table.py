"""Write docs/reliability.md: run every case of tests/reliability_cases.py (the lists the tests
run) and record what happened, then list the process-level faults that tests assert.

    python benchmarks/reliability_table.py            # writes docs/reliability.md

Runs on 8 simulated CPU devices, as the tests do (the mesh and batch-size cases assume 8).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("KERAS_BACKEND", "jax")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import reliability_cases as rc  # noqa: E402

# faults and inputs asserted by tests that run whole processes or trainings (not re-run here)
PROCESS_ROWS = [
    (
        "a second `jaxdl train --workdir W` while another process holds W",
        "exit 2 naming the holder's PID and host; nothing written",
        "test_reliability.py::test_second_train_on_a_locked_workdir_exits_2_naming_pid_and_host",
    ),
    (
        "the lock holder killed by SIGKILL (stale lock file)",
        "taken over at once by the next run (flock dies with its process)",
        "test_reliability.py::test_second_train_on_a_locked_workdir_exits_2_naming_pid_and_host",
    ),
    *[
        (
            f"W/{e} a symbolic link to a file outside W",
            "exit 2 before training ('is a symbolic link'); the outside file unchanged",
            "test_reliability.py::test_cli_refuses_a_workdir_file_that_is_a_link_and_leaves_the_target",
        )
        for e in ("metrics.json", "log.csv", "timing.json")
    ],
    *[
        (
            f"W/{e} a symbolic link to a directory outside W",
            "exit 2 before training; nothing written outside",
            "test_reliability.py::test_cli_refuses_a_linked_directory",
        )
        for e in ("checkpoints", "tensorboard")
    ],
    (
        "a dangling symbolic link where an output file goes",
        "refused (UnsafePathError); its target not created",
        "test_reliability.py::test_write_file_is_atomic_and_never_follows",
    ),
    (
        "resume with another --lr / --clip-norm",
        "exit 2 listing each difference and the --allow-changes that would allow it",
        "test_reliability.py::test_resume_with_other_settings_is_refused_unless_allowed",
    ),
    (
        "resume with --allow-changes lr",
        "resumes; metrics.json records allowed_changes (name, from, to, at_step)",
        "test_reliability.py::test_resume_with_other_settings_is_refused_unless_allowed",
    ),
    (
        "`--epochs 1` on a workdir whose run did 2",
        "exit 2: 'has already done 2 epoch(s); give epochs >= 2'; metrics.json unchanged",
        "test_reliability.py::test_resume_with_fewer_epochs_than_done_is_refused",
    ),
    (
        "resume after a CRLF log.csv was written",
        "log.csv byte-identical (cut at byte offsets, endings kept)",
        "test_reliability.py::test_csv_resume_keeps_bytes_and_line_endings",
    ),
    (
        "resume from a checkpoint older than the TensorBoard scalars written",
        "scalars equal an uninterrupted run's (purge step); metrics.json, log.csv byte-identical",
        "test_reliability.py::test_tensorboard_scalars_after_a_resume_equal_an_uninterrupted_run",
    ),
    (
        "disk full (RESOURCE_EXHAUSTED) during a checkpoint save",
        "CheckpointDiskFullError naming the directory and bytes needed; the previous one restores",
        "test_reliability.py::test_disk_full_names_path_and_bytes_and_the_previous_checkpoint_restores",
    ),
    (
        "every checkpoint corrupt",
        "each moved aside with a warning; a last warning says training starts from scratch",
        "test_reliability.py::test_every_checkpoint_corrupt_warns_that_training_starts_from_scratch",
    ),
    (
        "an image folder with a single class",
        "loads with a OneClassWarning (documented behaviour)",
        "test_reliability.py::test_one_class_folder_loads_with_a_warning",
    ),
    *[
        (
            f"`jaxdl train --workdir W` killed from outside by {sig} at a random moment "
            f"(trial {i + 1} of 10), then rerun",
            "every output file byte-identical to an uninterrupted run's",
            "test_fault_injection.py::test_external_kills_at_random_moments_then_rerun_is_byte_identical",
        )
        for i, sig in enumerate(["SIGKILL", "SIGTERM"] * 5)
    ],
    (
        "a checkpoint written asynchronously while the next epoch end appends to History's "
        "lists (under load the write ran late and recorded that epoch too)",
        "the JSON metadata is a snapshot taken at save; 50/50 external-kill trials "
        "byte-identical in benchmarks/fault_injection.py",
        "train/test_checkpoint.py::test_async_save_snapshots_the_json_meta",
    ),
    (
        "SIGKILL inside orbax's commit of a checkpoint (R2)",
        "the partial checkpoint is removed on restart; the run is bit-identical",
        "test_fault_injection.py::test_r2_sigkill_during_checkpoint_write",
    ),
    (
        "fuzzed --batch / --input / --depth of summary, --set overrides, train flags, augment, "
        "mesh and dataset specs, create_model overrides (hypothesis, 25 examples each)",
        "exit 0 or 2 / a JaxdlError; never a traceback or exit 1",
        "test_reliability.py::test_fuzz_*",
    ),
]


def _short(text: str, n: int = 110, tmp: str = "") -> str:
    if tmp:
        text = text.replace(tmp, "TMP")
    lines = [ln.strip(" │─╭╮╰╯") for ln in text.strip().splitlines()]
    lines = [ln for ln in lines if ln and set(ln) - set("-─━ ")]
    line = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")
    if "For full helptext" in text and len(lines) > 1:  # tyro's box: its title, then the body
        body = []
        for ln in lines[1:]:
            if ln.startswith("For full helptext"):
                break
            body.append(ln)
        line = f"{lines[0]}: {' '.join(body)}"
    line = line.replace("|", "\\|").replace("`", "'")
    return line if len(line) <= n else line[: n - 1] + "…"


def run_cases(tmp: Path) -> list[tuple[str, str, str]]:
    import warnings

    import numpy as np  # noqa: F401
    from test_reliability import fill, run_main

    from jaxdl import errors
    from jaxdl.train import checkpoint

    fixtures = rc.make_fixtures(tmp / "fixtures")
    rows = []
    for i, (_what, argv, contains) in enumerate(rc.CLI_CASES):
        code, text = run_main(fill(argv, fixtures, tmp / f"c{i}"))
        ok = (
            code == 2
            and "Traceback" not in text
            and all(c.lower() in text.lower() for c in contains)
        )
        rows.append(
            (
                f"`jaxdl {' '.join(argv)}`".replace("|", "\\|"),
                f"exit {code}" + ("" if ok else " (UNEXPECTED)"),
                _short(text, tmp=str(tmp)),
            )
        )
    for i, (what, fn, exc, contains) in enumerate(rc.API_CASES):
        cls = getattr(errors, exc, None) or getattr(checkpoint, exc)
        d = tmp / f"a{i}"
        d.mkdir()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                getattr(rc, fn)({**fixtures, "tmp": str(d)})
            result, msg = "accepted (UNEXPECTED)", ""
        except cls as e:
            ok = contains in str(e)
            result, msg = (
                f"{exc}" + ("" if ok else " (UNEXPECTED message)"),
                _short(str(e), tmp=str(tmp)),
            )
        except Exception as e:  # noqa: BLE001
            result, msg = f"{type(e).__name__} (UNEXPECTED)", _short(str(e), tmp=str(tmp))
        rows.append((what.replace("|", "\\|"), result, msg))
    return rows


def main() -> int:
    import tempfile

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_cases(Path(tmp))
    bad = [r for r in rows if "UNEXPECTED" in r[1]]
    n = len(rows) + len(PROCESS_ROWS)
    out = [
        "# Reliability: every bad input and fault tried",
        "",
        f"{n} cases. The first {len(rows)} rows are generated by `python "
        "benchmarks/reliability_table.py`, which runs the case lists of "
        "`tests/reliability_cases.py` (the lists `tests/test_reliability.py` asserts) and records "
        "what each did: `jaxdl ...` rows call the CLI's `main` in process (exit 2: a clear error "
        "on stderr naming the argument, the expected and the received value; never a traceback), "
        "the others call the Python API (a `jaxdl.errors.JaxdlError` subclass). The last "
        f"{len(PROCESS_ROWS)} rows are faults that tests assert with whole processes or trainings "
        "(named in the last column). Generated 2026-12-02 on a 2-core CPU, 8 simulated devices, "
        f"in {time.perf_counter() - t0:.0f} s; {len(bad)} unexpected.",
        "",
        "Rules these rows follow (documented behaviour, not errors):",
        "",
        "- **Workdir**: one writer (`W/.jaxdl.lock`, an `fcntl.flock` held for the run, released "
        "on any exit; emptied by a finished run). Files are written inside W, atomically, with "
        "`O_NOFOLLOW`; an entry that is a symbolic link is refused.",
        "- **metrics.json** holds only computed values, byte-identical between an uninterrupted "
        "and a resumed run; wall-clock figures (`train_time_s`) are in `timing.json`.",
        "- **Resume** continues the same run: settings that change what is computed must equal the "
        "checkpointed ones (`--allow-changes NAME[,NAME]` allows named ones, recorded as "
        "`allowed_changes` in metrics.json and the checkpoints); `--epochs` may grow when the "
        "schedule is constant; operational flags (workdir, devices, mesh, workers, logging, "
        "checkpoint frequency) may change.",
        "- **uint8 images** (`ndim >= 2` per example) are refused: jaxdl never rescales inputs; "
        "pass `x.astype('float32') / 255` (what the loaders give). Integer token sequences "
        "(1-D per example) are accepted.",
        "- **Float labels** are refused by classifiers (binary tasks take 0.0/1.0).",
        "- **One-class data** loads with a `OneClassWarning`.",
        "- **All checkpoints corrupt**: each is moved to `checkpoints.corrupt/` with a warning; "
        "the "
        "last warning says training starts from scratch.",
        "- **Seeds** are integers in [0, 2**32 - 1].",
        "",
        "| # | input or fault | result | message / evidence |",
        "| --- | --- | --- | --- |",
    ]
    for i, (what, result, msg) in enumerate(rows, 1):
        out.append(f"| {i} | {what} | {result} | {msg} |")
    for j, (what, result, test) in enumerate(PROCESS_ROWS, len(rows) + 1):
        out.append(f"| {j} | {what} | {result} | `tests/{test}` |")
    (ROOT / "docs" / "reliability.md").write_text("\n".join(out) + "\n")
    print(f"{n} rows, {len(bad)} unexpected")
    for r in bad:
        print(r)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
