"""Nothing lost and nothing silent: bad inputs are clear errors (exit 2 on the CLI, a JaxdlError
in Python), one writer per workdir, no writes through links, byte-exact resume, clear messages
for disk-full and all-corrupt checkpoints. The case lists live in tests/reliability_cases.py
(docs/reliability.md is generated from them)."""

import csv
import io
import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
import reliability_cases as rc  # noqa: E402

from jaxdl import errors  # noqa: E402
from jaxdl.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return rc.make_fixtures(tmp_path_factory.mktemp("fixtures"))


def run_main(argv):
    """(exit code, stdout + stderr) of jaxdl.cli.main in process; SystemExit counts as a code."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 2
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue() + err.getvalue()


def fill(argv, fixtures, tmp_path):
    subs = {**fixtures, "tmp": str(tmp_path / "w")}
    out = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace("{" + k + "}", v)
        out.append(a)
    return out


@pytest.mark.parametrize("what,argv,contains", rc.CLI_CASES, ids=[c[0] for c in rc.CLI_CASES])
def test_cli_bad_input_is_exit_2_with_a_clear_message(what, argv, contains, fixtures, tmp_path):
    code, text = run_main(fill(argv, fixtures, tmp_path))
    assert code == 2, (code, text[-1500:])
    assert "Traceback" not in text, text[-3000:]
    assert text.strip(), "a refusal must say why"
    for c in contains:
        assert c.lower() in text.lower(), (c, text[-1500:])


@pytest.mark.parametrize("what,fn,exc,contains", rc.API_CASES, ids=[c[0] for c in rc.API_CASES])
def test_api_bad_input_is_a_jaxdl_error(what, fn, exc, contains, fixtures, tmp_path):
    from jaxdl.train import checkpoint

    cls = getattr(errors, exc, None) or getattr(checkpoint, exc)
    assert issubclass(cls, errors.JaxdlError)
    with pytest.raises(cls) as e:
        getattr(rc, fn)({**fixtures, "tmp": str(tmp_path)})
    assert contains in str(e.value), str(e.value)


# ---- one writer per workdir ----------------------------------------------------------------

HOLD = """
import sys, time
from jaxdl.train.checkpoint import WorkdirLock
WorkdirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_second_train_on_a_locked_workdir_exits_2_naming_pid_and_host(tmp_path):
    """Two real processes: one holds the workdir; `jaxdl train --workdir W` in another exits 2
    naming the holder's PID and host. After the holder dies (SIGKILL: no clean-up ran), its
    stale lock is taken over at once."""
    from jaxdl.train.checkpoint import LOCK_NAME, WorkdirLock

    w = tmp_path / "w"
    w.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(w)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = subprocess.run(
            [sys.executable, "-m", "jaxdl.cli", "train", "mlp", "--epochs", "1", "--quiet"]
            + ["--workdir", str(w)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 2, r.stderr[-2000:]
        assert f"process {holder.pid} on host {socket.gethostname()}" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert not (w / "log.csv").exists() and not (w / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    assert json.loads((w / LOCK_NAME).read_text())["pid"] == holder.pid  # stale, left by a kill
    with WorkdirLock(w) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert (w / LOCK_NAME).read_bytes() == b""  # released: emptied


# ---- no writes through links ---------------------------------------------------------------


@pytest.mark.parametrize("entry", ["metrics.json", "log.csv", "timing.json"])
def test_cli_refuses_a_workdir_file_that_is_a_link_and_leaves_the_target(tmp_path, entry):
    outside = tmp_path / "precious.txt"
    outside.write_bytes(b"keep me\r\n")
    w = tmp_path / "w"
    w.mkdir()
    (w / entry).symlink_to(outside)
    code, text = run_main(["train", "mlp", "--epochs", "1", "--quiet", "--workdir", str(w)])
    assert code == 2 and "symbolic link" in text and entry in text, text[-1500:]
    assert outside.read_bytes() == b"keep me\r\n"


@pytest.mark.parametrize("entry", ["checkpoints", "tensorboard"])
def test_cli_refuses_a_linked_directory(tmp_path, entry):
    outside = tmp_path / "outside"
    outside.mkdir()
    w = tmp_path / "w"
    w.mkdir()
    (w / entry).symlink_to(outside, target_is_directory=True)
    code, text = run_main(
        ["train", "mlp", "--epochs", "1", "--quiet", "--workdir", str(w), "--tensorboard"]
    )
    assert code == 2 and "symbolic link" in text, text[-1500:]
    assert list(outside.iterdir()) == []


def test_write_file_is_atomic_and_never_follows(tmp_path):
    from jaxdl.train.checkpoint import UnsafePathError, open_nofollow, write_file

    p = write_file(tmp_path / "a.json", "one")
    assert p.read_bytes() == b"one"
    write_file(p, b"two")
    assert p.read_bytes() == b"two" and sorted(os.listdir(tmp_path)) == ["a.json"]
    target = tmp_path / "target"
    target.write_text("x")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UnsafePathError):
        open_nofollow(tmp_path / "link", os.O_WRONLY)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UnsafePathError):
        write_file(tmp_path / "dangling", "y")
    assert not (tmp_path / "nowhere").exists() and target.read_text() == "x"


# ---- log.csv bytes ------------------------------------------------------------------------


def test_csv_resume_keeps_bytes_and_line_endings(tmp_path):
    """The rows cut on a resume are cut at byte offsets: CRLF endings (csv's default) stay."""
    from jaxdl.train import CSVLogger

    f = tmp_path / "log.csv"
    log = CSVLogger(f)
    log.on_train_begin()
    for e in range(4):
        log.on_epoch_end(e, {"loss": 1.0 / (e + 1), "acc": 0.25 * e})
    full = f.read_bytes()
    assert full.count(b"\r\n") == 5 and b"\n" not in full.replace(b"\r\n", b"")
    resumed = CSVLogger(f)
    resumed.on_train_begin()
    resumed.set_state({"rows": 2, "keys": ["acc", "loss"]})
    assert f.read_bytes() == b"".join(full.splitlines(keepends=True)[:3])
    for e in range(2, 4):
        resumed.on_epoch_end(e, {"loss": 1.0 / (e + 1), "acc": 0.25 * e})
    assert f.read_bytes() == full
    assert list(csv.reader(io.StringIO(f.read_bytes().decode(), newline="")))[0] == [
        "epoch",
        "acc",
        "loss",
    ]


# ---- checkpoints: disk full, all corrupt --------------------------------------------------


def test_disk_full_names_path_and_bytes_and_the_previous_checkpoint_restores(tmp_path, monkeypatch):
    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    from jaxdl.train.checkpoint import CheckpointDiskFullError, Checkpoints

    tree = {"w": jnp.arange(1000, dtype=jnp.float32)}
    ck = Checkpoints(tmp_path / "ck", async_save=False)
    ck.save(1, tree)

    def full(self, step, *a, **k):
        raise ValueError("RESOURCE_EXHAUSTED: Failed to write: No space left on device [errno 28]")

    monkeypatch.setattr(ocp.CheckpointManager, "save", full)
    with pytest.raises(CheckpointDiskFullError) as e:
        ck.save(2, {"w": tree["w"] + 1})
    msg = str(e.value)
    assert str(tmp_path / "ck") in msg and "4,000 bytes" in msg and "[1]" in msg, msg
    monkeypatch.undo()
    step, restored, _ = Checkpoints(tmp_path / "ck").restore(jax.eval_shape(lambda: tree))
    assert step == 1 and np.array_equal(restored["w"], tree["w"])


def test_every_checkpoint_corrupt_warns_that_training_starts_from_scratch(tmp_path):
    import jax
    import jax.numpy as jnp

    from jaxdl.train.checkpoint import Checkpoints, CorruptCheckpointWarning

    tree = {"w": jnp.ones(16)}
    ck = Checkpoints(tmp_path / "ck", async_save=False, keep=3)
    for s in (1, 2):
        ck.save(s, tree)
    for s in (1, 2):  # damage every array file of both
        for p in (tmp_path / "ck" / str(s) / "tree").rglob("*"):
            if p.is_file() and "zarr" not in p.name and p.stat().st_size > 0:
                p.write_bytes(b"\0" * p.stat().st_size)
        for p in (tmp_path / "ck" / str(s) / "meta").rglob("*"):
            if p.is_file():
                p.write_bytes(b"{broken")
    with pytest.warns(CorruptCheckpointWarning) as rec:
        assert Checkpoints(tmp_path / "ck").restore(jax.eval_shape(lambda: tree)) is None
    msgs = [str(w.message) for w in rec]
    assert "trying the previous one" in msgs[0]
    assert "trying the previous one" not in msgs[1]
    assert "starts from scratch" in msgs[-1]


def test_one_class_folder_loads_with_a_warning(fixtures):
    from jaxdl.data import load_dataset
    from jaxdl.data.core import OneClassWarning

    with pytest.warns(OneClassWarning, match="single class"):
        s = load_dataset(f"folder:{fixtures['one_class']},size=8x8", test_fraction=0.3)
    assert s.num_classes == 1


def test_create_model_overrides_coerce_lists_and_ints():
    from jaxdl.models.registry import get_config

    c = get_config("mlp", hidden=[16, 8], dropout=0, input_shape=(np.int64(8), 8, 1))
    assert c.hidden == (16, 8) and c.dropout == 0.0 and isinstance(c.dropout, float)
    assert c.input_shape == (8, 8, 1) and type(c.input_shape[0]) is int


# ---- resume: settings, epochs, bytes --------------------------------------------------------

SMALL = ["train", "mlp", "--quiet", "--devices", "1", "--set", "hidden=(16,)", "--batch-size"]


def _train(w, *extra, epochs=2):
    return run_main([*SMALL, "64", "--epochs", str(epochs), "--workdir", str(w), *extra])


@pytest.mark.slow
def test_resume_with_other_settings_is_refused_unless_allowed(tmp_path):
    w = tmp_path / "w"
    assert _train(w, epochs=1)[0] == 0
    log = (w / "log.csv").read_bytes()
    code, text = _train(w, "--lr", "0.01", "--clip-norm", "1", epochs=2)
    assert code == 2 and "lr: checkpoint 0.001, now 0.01" in text, text[-2000:]
    assert "clip-norm: checkpoint None, now 1.0" in text and "--allow-changes clip-norm,lr" in text
    assert (w / "log.csv").read_bytes() == log  # nothing written by the refused run
    code, text = _train(w, "--lr", "0.01", "--allow-changes", "lr", epochs=2)
    assert code == 0, text[-2000:]
    m = json.loads((w / "metrics.json").read_text())
    assert m["epochs"] == 2
    assert m["allowed_changes"] == [
        {"name": "lr", "from": 0.001, "to": 0.01, "at_step": 20}
    ]  # 1259 // 64 + 1 steps


@pytest.mark.slow
def test_resume_with_fewer_epochs_than_done_is_refused(tmp_path):
    w = tmp_path / "w"
    assert _train(w, epochs=2)[0] == 0
    before = (w / "metrics.json").read_bytes()
    code, text = _train(w, epochs=1)
    assert code == 2 and "already done 2 epoch(s)" in text and "epochs >= 2" in text, text
    assert (w / "metrics.json").read_bytes() == before


@pytest.mark.slow
def test_tensorboard_scalars_after_a_resume_equal_an_uninterrupted_run(tmp_path):
    """A run resumed from a checkpoint older than the scalars it had written: the new writer's
    purge step drops them, so the curves equal an uninterrupted run's (read as TensorBoard
    does: events in file order; a SessionLog START at step s drops the events at s and later)."""

    def scalars(w):
        return {
            (sub, tag): v
            for sub in ("train", "validation")
            for tag, v in read_scalars(w / "tensorboard" / sub).items()
            if "samples_per_second" not in tag  # wall clock
        }

    ref, w = tmp_path / "ref", tmp_path / "w"
    assert _train(ref, "--tensorboard", epochs=3)[0] == 0
    assert _train(w, "--tensorboard", "--keep-checkpoints", "3", epochs=3)[0] == 0
    # as if killed after epoch 3's logs were written but before its checkpoint: drop it
    import shutil

    last = max(int(p.name) for p in (w / "checkpoints").iterdir() if p.name.isdigit())
    shutil.rmtree(w / "checkpoints" / str(last))
    (w / "metrics.json").unlink()
    assert _train(w, "--tensorboard", "--keep-checkpoints", "3", epochs=3)[0] == 0
    assert scalars(w) == scalars(ref)
    assert (w / "metrics.json").read_bytes() == (ref / "metrics.json").read_bytes()
    assert (w / "log.csv").read_bytes() == (ref / "log.csv").read_bytes()


def read_scalars(log_dir) -> dict:
    """{tag: [(step, value)]} of the tensorboardX event files in log_dir, with purges applied."""
    import struct

    from tensorboardX.proto import event_pb2

    out: dict = {}
    for f in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        data, i = f.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            ev = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            if ev.HasField("session_log") and ev.session_log.status == 1:  # START: a purge
                out = {t: [(s, v) for s, v in sv if s < ev.step] for t, sv in out.items()}
            for val in ev.summary.value:
                if val.HasField("simple_value"):
                    out.setdefault(val.tag, []).append((ev.step, val.simple_value))
    return out


# ---- property-based: no input gives a traceback or exit 1 -----------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_num = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    _text,
)
FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _no_traceback(argv):
    code, text = run_main(argv)
    assert code in (0, 2), (argv, code, text[-2000:])
    assert "Traceback" not in text, (argv, text[-3000:])
    return code


@FAST
@given(flag=st.sampled_from(["--batch", "--input", "--depth"]), value=_num)
def test_fuzz_summary_numbers(flag, value):
    _no_traceback(["summary", "mlp", flag, value])


@FAST
@given(
    kv=st.tuples(st.sampled_from(["hidden", "num_classes", "dropout", "input_shape", "x"]), _text)
)
def test_fuzz_set_overrides_in_summary(kv):
    _no_traceback(["summary", "mlp", "--set", f"{kv[0]}={kv[1]}"])


_BAD_FAST = {  # train flags whose bad values fail before any data is loaded
    "--epochs": _num,
    "--batch-size": _num,
    "--lr": _num,
    "--seed": _num,
    "--warmup-steps": _num,
    "--clip-norm": _num,
    "--val-fraction": _num,
    "--freeze": _text,
    "--allow-changes": _text,
}


@FAST
@given(data=st.data())
def test_fuzz_train_flags(data):
    """Any value of a train flag: exit 2, never a traceback. The unknown dataset at the end
    stops the values that pass validation before any work is done."""
    flag = data.draw(st.sampled_from(sorted(_BAD_FAST)))
    value = data.draw(_BAD_FAST[flag])
    argv = ["train", "mlp", "--quiet", "--epochs", "1", f"{flag}={value}", "--dataset", "nope"]
    assert _no_traceback(argv) == 2


@FAST
@given(spec=st.one_of(_text, st.lists(_text, max_size=4).map(",".join)))
def test_fuzz_augment_specs(spec):
    from jaxdl.data import parse_augment

    try:
        parse_augment(spec)
    except errors.JaxdlError:
        pass


@FAST
@given(
    spec=st.one_of(
        _text,
        st.lists(st.tuples(_text, st.integers(-9, 9)), max_size=3).map(
            lambda kv: ",".join(f"{k}={v}" for k, v in kv)
        ),
    )
)
def test_fuzz_mesh_specs(spec):
    from jaxdl.parallel import make_mesh

    try:
        make_mesh(axes=spec)
    except errors.JaxdlError:
        pass


@FAST
@given(
    kind=st.sampled_from(["folder", "csv", "text", "mnist_idx", "tfds", "nope", "digits"]),
    opts=st.lists(
        st.tuples(st.sampled_from(["seq_len", "level", "size", "label", "x"]), _text), max_size=3
    ),
)
def test_fuzz_dataset_specs(kind, opts, tmp_path_factory):
    from jaxdl.data import load_dataset

    if kind == "digits" and not opts:
        return
    path = "/nonexistent/jaxdl-fuzz"
    spec = f"{kind}:{path}" + "".join(f",{k}={v}" for k, v in opts)
    try:
        load_dataset(spec)
    except errors.JaxdlError:
        pass


@FAST
@given(
    key=st.sampled_from(
        [
            "hidden",
            "num_classes",
            "dropout",
            "input_shape",
            "activation",
            "batch_norm",
            "use_bias",
            "maxout_pieces",
        ]
    ),
    value=st.one_of(
        st.integers(-5, 5),
        st.floats(allow_nan=True),
        _text,
        st.none(),
        st.booleans(),
        st.tuples(st.integers(-3, 3), st.text(max_size=2)),
    ),
)
def test_fuzz_create_model_overrides(key, value):
    from jaxdl.models import abstract_model

    try:
        abstract_model("mlp", **{key: value})
    except errors.JaxdlError:
        pass


def test_the_reliability_table_lists_every_case_and_names_real_tests():
    """docs/reliability.md (written by benchmarks/reliability_table.py) has a row for every case
    of tests/reliability_cases.py and every process-level fault, at least 150 in all, none
    unexpected, and each test it names as evidence exists."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "reliability_table", ROOT / "benchmarks" / "reliability_table.py"
    )
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    text = (ROOT / "docs" / "reliability.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    n = len(rc.CLI_CASES) + len(rc.API_CASES) + len(table.PROCESS_ROWS)
    assert len(rows) == n >= 150
    assert f"{n} cases." in text and "UNEXPECTED" not in text
    for _what, _result, test in table.PROCESS_ROWS:
        path, _, name = test.partition("::")
        source = (ROOT / "tests" / path).read_text()
        assert f"def {name.rstrip('*')}" in source, test
