"""The bad inputs and faults of docs/reliability.md, as data: tests/test_reliability.py runs every
case, and benchmarks/reliability_table.py runs them again to write the table (so the table says
what the code does).

CLI cases: (what, argv, substrings the error must contain). Each is `jaxdl.cli.main(argv)` in
process; it must return (or exit with) 2, name the problem and never print a traceback. argv
may contain
{tmp} (a fresh directory) and {text} / {idx_empty} / {idx_float} / {one_class} / {file}: fixtures
made by `make_fixtures`.

API cases: (what, function name in this module, exception class name, substring). Each function
takes the fixtures dict and must raise that jaxdl exception (a JaxdlError subclass).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

T = ["train", "mlp", "--quiet", "--epochs", "1"]

CLI_CASES: list[tuple[str, list[str], tuple[str, ...]]] = []


def _cli(what, argv, *contains):
    CLI_CASES.append((what, argv, contains))


# ---- numeric flags of `train`: each bad value of each flag
_INT_FLAGS = {
    "--epochs": ["0", "-1", "1.5", "abc", "1e3"],
    "--batch-size": ["0", "-32", "2.5", "x"],
    "--grad-accum": ["0", "-2", "1.5"],
    "--keep-checkpoints": ["0", "-1"],
    "--init-timeout": ["0", "-5"],
    "--early-stopping": ["0", "-3"],
    "--devices": ["0", "-1", "two"],
    "--warmup-steps": ["-5", "1.5", "ten"],
    "--seed": ["-5", str(2**64), str(2**33), "1.5", "s"],
    "--workers": ["-1", "many"],
    "--checkpoint-every": ["0", "-7"],
}
for flag, values in _INT_FLAGS.items():
    for v in values:
        extra = ["--workdir", "{tmp}"] if flag == "--checkpoint-every" else []
        _cli(f"train {flag} {v}", [*T, *extra, flag, v], flag.lstrip("-").split("-")[0])

_FLOAT_FLAGS = {
    "--lr": ["0", "-1e-3", "nan", "inf", "abc"],
    "--clip-norm": ["-1", "0", "nan", "-inf"],
    "--val-fraction": ["-0.1", "1", "1.5", "nan"],
    "--test-fraction": ["-0.2", "1.0", "2"],
}
for flag, values in _FLOAT_FLAGS.items():
    for v in values:
        _cli(f"train {flag} {v}", [*T, flag, v], flag.lstrip("-").split("-")[0])

_cli(
    "train --val-fraction 0.5 --test-fraction 0.5",
    [*T, "--val-fraction", "0.5", "--test-fraction", "0.5"],
    "fraction",
)
for pat in ["(", "[a-", "*", "a{2,1}"]:
    _cli(f"train --freeze {pat!r}", [*T, "--freeze", pat], "--freeze", pat)
for name, v in [("optimizer", "adamm"), ("schedule", "cosin"), ("mixed-precision", "fp8")]:
    _cli(f"train --{name} {v}", [*T, f"--{name}", v], v)

# ---- --set overrides (type-checked against the model's config)
for kv, want in [
    ("hidden=banana", "hidden"),
    ("hidden=abc", "hidden"),
    ("hidden=(1,'a')", "hidden"),
    ("num_classes='10'", "num_classes"),
    ("num_classes=2.5", "num_classes"),
    ("input_shape=64", "input_shape"),
    ("input_shape=(8,8,3)", "input_shape"),
    ("dropout=lots", "dropout"),
    ("batch_norm=3", "batch_norm"),
    ("use_bias='yes'", "use_bias"),
    ("nonexistent=1", "nonexistent"),
    ("=5", "--set"),
    ("hidden", "--set"),
    ("activation=relux", "relux"),
]:
    _cli(f"train --set {kv}", [*T, "--set", kv], want)

# ---- dataset specs
for spec, want in [
    ("nope", "nope"),
    ("digitz", "digitz"),
    ("folder:/nonexistent/jaxdl", "nonexistent"),
    ("mnist_idx:/nonexistent/jaxdl", "nonexistent"),
    ("csv:/nonexistent/jaxdl.csv", "nonexistent"),
    ("text:/nonexistent/jaxdl.txt", "nonexistent"),
    ("text:{text},seq_len=0", "seq_len"),
    ("text:{text},seq_len=-4", "seq_len"),
    ("text:{text},seq_len=abc", "seq_len"),
    ("text:{text},level=syllable", "syllable"),
    ("text:{text},max_size=0", "max_size"),
    ("text:{text},bogus=1", "bogus"),
    ("text:{text},seq_len=100000", "seq_len"),
    ("mnist_idx:{idx_empty}", "0 images"),
    ("mnist_idx:{idx_float}", "labels must be integers"),
    ("folder:{file}", "folder"),
    ("csv:{text}", "csv"),
    ("folder:{one_class},size=abc", "size"),
    ("folder:{one_class},color=sepia", "sepia"),
    ("folder:{one_class},on_error=ignore", "ignore"),
]:
    _cli(f"train --dataset {spec}", [*T, "--dataset", spec], want)

# ---- augmentation specs
for spec, want in [
    ("", "empty"),
    ("nope", "nope"),
    ("flip=2", "flip"),
    ("rotate=abc", "rotate"),
    ("shift=5", "shift"),
    (",,,", "augment"),
    ("rotate", "rotate"),
    ("value_range=1", "value_range"),
    ("crop=abc", "crop"),
    ("resize=0x", "resize"),
]:
    _cli(f"train --augment {spec!r}", [*T, "--augment", spec], want)

# ---- mesh specs (the tests run on 8 CPU devices)
for spec, want in [
    ("data=3", "3"),
    ("foo=8", "foo"),
    ("2x", "2x"),
    ("data=0", "0"),
    ("data=-8", "-8"),
    ("abc", "abc"),
    ("data=2,model=2", "2"),
    ("data=-1,model=-1", "-1"),
    ("data=8,data=1", "data"),
]:
    _cli(f"train --mesh {spec}", [*T, "--mesh", spec], want)

# ---- batch size and devices, workdir and flag combinations
_cli("train --batch-size 31 (8 devices)", [*T, "--batch-size", "31"], "31", "divisible")
_cli("train --devices 3 --batch-size 32", [*T, "--devices", "3", "--batch-size", "32"], "32")
_cli("train --devices 99", [*T, "--devices", "99"], "99")
_cli("train --workdir FILE", [*T, "--workdir", "{file}"], "not a directory")
_cli("train --checkpoint-every without --workdir", [*T, "--checkpoint-every", "5"], "--workdir")
_cli("train --tensorboard without --workdir", [*T, "--tensorboard"], "--workdir")
_cli("train --allow-changes without --workdir", [*T, "--allow-changes", "lr"], "--workdir")
_cli(
    "train --allow-changes of an unknown setting",
    [*T, "--workdir", "{tmp}", "--allow-changes", "colour"],
    "colour",
)
_cli(
    "train --profile-steps without --tensorboard",
    [*T, "--workdir", "{tmp}", "--profile-steps", "1", "2"],
    "--tensorboard",
)
_cli(
    "train --profile-steps 5 2",
    [*T, "--workdir", "{tmp}", "--tensorboard", "--profile-steps", "5", "2"],
    "profile",
)
_cli(
    "train --log-every -1",
    [*T, "--workdir", "{tmp}", "--tensorboard", "--log-every", "-1"],
    "--log-every must be >= 0",
)
_cli("plot of a directory that is no run", ["plot", "{one_class}"], "log.csv")
_cli("plot of a file", ["plot", "{file}"], "is not a directory")
_cli("plot of a missing directory", ["plot", "{tmp}/nowhere"], "is not a directory")
_cli(
    "train --early-stopping with --val-fraction 0",
    [*T, "--early-stopping", "2", "--val-fraction", "0"],
    "val",
)
_cli("train an unknown model", ["train", "mlpp", "--quiet"], "mlpp")
_cli("train with no model", ["train"], "name")
_cli("train --nonsense-flag", [*T, "--nonsense-flag"], "nonsense")
_cli("an unknown subcommand", ["trian", "mlp"], "trian")
_cli("train a language model on images", ["train", "gru_lm", "--quiet", "--epochs", "1"], "")

# ---- summary
for flag, v in [
    ("--batch", "0"),
    ("--batch", "-3"),
    ("--batch", "x"),
    ("--input", "0"),
    ("--input", "-5"),
    ("--depth", "-1"),
]:
    _cli(f"summary mlp {flag} {v}", ["summary", "mlp", flag, v], flag.lstrip("-"))
_cli("summary of an unknown model", ["summary", "resnet51"], "resnet51")
_cli("summary --set hidden=banana", ["summary", "mlp", "--set", "hidden=banana"], "hidden")
_cli("summary --set num_classes=2.5", ["summary", "mlp", "--set", "num_classes=2.5"], "num_classes")
_cli("models matching nothing", ["models", "zzz*"], "zzz")

# bench: validated before anything is built
for flag, v in [("--batch", "0"), ("--steps", "0"), ("--warmup", "-1")]:
    _cli(f"bench mlp {flag} {v}", ["bench", "mlp", flag, v], flag.lstrip("-"))
_cli("bench an unknown model", ["bench", "mlpp"], "mlpp")
_cli("bench --dtype fp8", ["bench", "mlp", "--dtype", "fp8"], "fp8")


# ---- fixtures ------------------------------------------------------------------------------


def _idx(path: Path, arr: np.ndarray, code: int) -> None:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    dtype = {0x08: np.uint8, 0x0D: ">f4"}[code]
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(dtype).tobytes())


def make_fixtures(root: Path) -> dict[str, str]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    text = root / "tiny.txt"
    text.write_text("hello world, " * 40)
    f = root / "a_file"
    f.write_text("not a directory")
    empty = root / "idx_empty"
    empty.mkdir(exist_ok=True)
    _idx(empty / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28)), 0x08)
    _idx(empty / "t10k-labels-idx1-ubyte.gz", np.zeros((0,)), 0x08)
    flt = root / "idx_float"
    flt.mkdir(exist_ok=True)
    _idx(flt / "t10k-images-idx3-ubyte.gz", np.zeros((20, 28, 28)), 0x08)
    _idx(flt / "t10k-labels-idx1-ubyte.gz", np.full((20,), 3.7), 0x0D)
    one = root / "one_class" / "cats"
    one.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for i in range(6):
        Image.fromarray(np.full((8, 8, 3), i * 30, np.uint8)).save(one / f"{i}.png")
    return {
        "text": str(text),
        "file": str(f),
        "idx_empty": str(empty),
        "idx_float": str(flt),
        "one_class": str(root / "one_class"),
    }


# ---- API cases -------------------------------------------------------------------------------

API_CASES: list[tuple[str, str, str, str]] = []


def _api(what, exc, contains):
    def deco(fn):
        API_CASES.append((what, fn.__name__, exc, contains))
        return fn

    return deco


def _digits_trainer(**kw):
    from jaxdl import create_model
    from jaxdl.train import Trainer

    return Trainer(create_model("mlp", input_shape=(8, 8, 1), hidden=(8,)), **kw)


for _i, (_kw, _want) in enumerate(
    [
        ({"hidden": "abc"}, "hidden"),
        ({"num_classes": "10"}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"input_shape": 64}, "input_shape"),
        ({"input_shape": (8, "8")}, "input_shape"),
        ({"hidden": [1.5]}, "hidden"),
        ({"dropout": "0.5"}, "dropout"),
        ({"activation": 3}, "activation"),
        ({"batch_norm": 1}, "batch_norm"),
        ({"output_activation": 0}, "output_activation"),
        ({"colour": "red"}, "colour"),
    ]
):

    def _f(fx, kw=_kw):
        from jaxdl import create_model

        create_model("mlp", **kw)

    _f.__name__ = f"create_model_{_i}"
    globals()[_f.__name__] = _f
    API_CASES.append((f"create_model('mlp', **{_kw!r})", _f.__name__, "JaxdlError", _want))

for _i, (_model, _kw, _want) in enumerate(
    [
        ("lenet5", {"num_classes": "10"}, "num_classes"),
        ("resnet18", {"num_classes": 2.5}, "num_classes"),
        ("resnet18", {"input_shape": 32}, "input_shape"),
        ("vgg11", {"dropout": "high"}, "dropout"),
    ]
):

    def _g(fx, model=_model, kw=_kw):
        from jaxdl.models import abstract_model

        abstract_model(model, **kw)

    _g.__name__ = f"abstract_model_{_i}"
    globals()[_g.__name__] = _g
    API_CASES.append((f"abstract_model({_model!r}, **{_kw!r})", _g.__name__, "JaxdlError", _want))


@_api("make_optimizer(clip_norm=-1): gradient ascent", "JaxdlError", "clip_norm")
def optimizer_clip_negative(fx):
    from jaxdl.train import make_optimizer

    make_optimizer("adam", 1e-3, clip_norm=-1.0)


@_api("make_optimizer(clip_value=0)", "JaxdlError", "clip_value")
def optimizer_clip_value_zero(fx):
    from jaxdl.train import make_optimizer

    make_optimizer("sgd", 1e-2, clip_value=0.0)


@_api("make_optimizer(learning_rate=inf)", "JaxdlError", "learning_rate")
def optimizer_lr_inf(fx):
    from jaxdl.train import make_optimizer

    make_optimizer("adam", float("inf"))


@_api("make_schedule(warmup_steps=-5)", "JaxdlError", "warmup_steps")
def schedule_warmup_negative(fx):
    from jaxdl.train import make_schedule

    make_schedule("warmup_cosine", 1e-3, total_steps=100, warmup_steps=-5)


@_api("make_schedule(warmup_steps=2.5)", "JaxdlError", "warmup_steps")
def schedule_warmup_float(fx):
    from jaxdl.train import make_schedule

    make_schedule("warmup_cosine", 1e-3, total_steps=100, warmup_steps=2.5)


@_api("Trainer(freeze=['('])", "JaxdlError", "(")
def trainer_freeze_bad_regex(fx):
    _digits_trainer(freeze=["("])


def _fit(x, y, **kw):
    t = _digits_trainer()
    t.fit((x, y), **{"epochs": 1, "batch_size": 8, "verbose": 0, **kw})


@_api("fit with float labels 3.7", "JaxdlError", "3.7")
def fit_float_labels(fx):
    _fit(np.zeros((16, 8, 8, 1), np.float32), np.full((16,), 3.7, np.float32))


@_api("fit with whole-number float labels", "JaxdlError", "astype(int)")
def fit_float_whole_labels(fx):
    _fit(np.zeros((16, 8, 8, 1), np.float32), np.full((16,), 3.0, np.float32))


@_api("fit with string labels", "JaxdlError", "integer class indices")
def fit_string_labels(fx):
    _fit(np.zeros((16, 8, 8, 1), np.float32), np.array(["a"] * 16))


@_api("fit with labels out of range", "JaxdlError", "out of range")
def fit_labels_out_of_range(fx):
    _fit(np.zeros((16, 8, 8, 1), np.float32), np.full((16,), 12, np.int32))


@_api("fit with negative labels", "JaxdlError", "out of range")
def fit_labels_negative(fx):
    _fit(np.zeros((16, 8, 8, 1), np.float32), np.full((16,), -1, np.int32))


@_api("fit with object-dtype inputs", "JaxdlError", "numeric")
def fit_object_inputs(fx):
    x = np.empty((16, 8, 8, 1), object)
    x[...] = 0.5
    _fit(x, np.zeros((16,), np.int32))


@_api("fit with raw uint8 images", "JaxdlError", "255")
def fit_uint8_images(fx):
    _fit(np.full((16, 8, 8, 1), 200, np.uint8), np.zeros((16,), np.int32))


@_api("fit with inputs of another shape (32x32 into 8x8)", "JaxdlError", "")
def fit_wrong_shape(fx):
    _fit(np.zeros((16, 32, 32, 1), np.float32), np.zeros((16,), np.int32))


@_api("fit with x and y of different lengths", "JaxdlError", "same length")
def fit_length_mismatch(fx):
    _fit(np.zeros((16, 8, 8, 1), np.float32), np.zeros((15,), np.int32))


@_api("fit with empty data", "JaxdlError", "empty")
def fit_empty(fx):
    _fit(np.zeros((0, 8, 8, 1), np.float32), np.zeros((0,), np.int32))


@_api("fit epochs=0", "JaxdlError", "epochs")
def fit_epochs_zero(fx):
    _fit(np.zeros((16, 8, 8, 1), np.float32), np.zeros((16,), np.int32), epochs=0)


@_api("Bidirectional(merge_mode=3): a non-string option value", "JaxdlError", "3")
def bidirectional_merge_number(fx):
    from flax import nnx

    from jaxdl.nn.recurrent import RNN, Bidirectional, LSTMCell

    r = nnx.Rngs(0)
    Bidirectional(RNN(LSTMCell(2, 3, rngs=r)), RNN(LSTMCell(2, 3, rngs=r)), merge_mode=3)


@_api("unknown_name with an int value", "JaxdlError", "12")
def unknown_name_int(fx):
    from jaxdl.errors import unknown_name

    raise unknown_name("activation", 12, ["relu", "tanh"])


@_api("parse_augment(None)", "JaxdlError", "")
def augment_none(fx):
    from jaxdl.data import parse_augment

    parse_augment(None)


@_api("make_mesh(axes='data=5') on 8 devices", "JaxdlError", "5")
def mesh_bad(fx):
    from jaxdl.parallel import make_mesh

    make_mesh(axes="data=5")


@_api("read_idx of a file that is not IDX", "JaxdlError", "not an IDX file")
def idx_garbage(fx):
    from jaxdl.data.loaders.idx import read_idx

    p = Path(fx["file"])
    read_idx(p)


@_api("load_dataset('text:...,seq_len=0')", "JaxdlError", "seq_len")
def text_seq_len_zero(fx):
    from jaxdl.data import load_dataset

    load_dataset(f"text:{fx['text']},seq_len=0")


@_api("check_int('--seed', 2**64, high=2**32-1)", "JaxdlError", "--seed")
def seed_too_big(fx):
    from jaxdl.errors import check_int

    check_int("--seed", 2**64, low=0, high=2**32 - 1)


# ---- filesystem and faults


@_api("W/metrics.json a symlink to a file outside W", "UnsafePathError", "symbolic link")
def write_through_link(fx):
    from jaxdl.train.checkpoint import write_file

    w = Path(fx["tmp"]) / "w_link"
    w.mkdir()
    (w / "metrics.json").symlink_to(fx["file"])
    write_file(w / "metrics.json", "{}")


@_api("W/checkpoints a symlink to a directory outside W", "UnsafePathError", "symbolic link")
def checkpoints_link(fx):
    from jaxdl.train.checkpoint import Checkpoints

    outside = Path(fx["tmp"]) / "outside_ck"
    outside.mkdir()
    w = Path(fx["tmp"]) / "w_cklink"
    w.mkdir()
    (w / "checkpoints").symlink_to(outside, target_is_directory=True)
    Checkpoints(w / "checkpoints")


@_api("CSVLogger file a symlink to a file outside", "UnsafePathError", "symbolic link")
def csv_link(fx):
    from jaxdl.train import CSVLogger

    w = Path(fx["tmp"]) / "w_csv"
    w.mkdir()
    (w / "log.csv").symlink_to(fx["file"])
    CSVLogger(w / "log.csv").on_train_begin()


@_api("TensorBoard log_dir a symlink", "UnsafePathError", "symbolic link")
def tb_link(fx):
    from jaxdl.train import TensorBoard

    outside = Path(fx["tmp"]) / "outside_tb"
    outside.mkdir()
    w = Path(fx["tmp"]) / "w_tb"
    w.mkdir()
    (w / "tensorboard").symlink_to(outside, target_is_directory=True)
    TensorBoard(w / "tensorboard")._writer("train")


@_api("a second writer of a locked workdir", "WorkdirLockedError", "in use by process")
def second_lock(fx):
    from jaxdl.train.checkpoint import WorkdirLock

    w = Path(fx["tmp"]) / "w_lock"
    w.mkdir()
    with WorkdirLock(w):
        WorkdirLock(w).acquire()


@_api(
    "disk full (RESOURCE_EXHAUSTED) while saving a checkpoint", "CheckpointDiskFullError", "bytes"
)
def disk_full(fx):
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    from jaxdl.train.checkpoint import Checkpoints

    ck = Checkpoints(Path(fx["tmp"]) / "w_full" / "checkpoints", async_save=False)
    ck.save(1, {"w": jnp.ones(4)})
    original = ocp.CheckpointManager.save

    def full(self, *a, **k):
        raise OSError(28, "RESOURCE_EXHAUSTED: No space left on device")

    ocp.CheckpointManager.save = full
    try:
        ck.save(2, {"w": jnp.ones(4)})
    finally:
        ocp.CheckpointManager.save = original
