"""`jaxdl --help`: every option explained, finite choices listed, examples, --version; and
`jaxdl models` (natural order, substring match, parameter counts, --pretrained)."""

import dataclasses
import io
import re
import subprocess
import sys
from contextlib import redirect_stdout

import pytest

from jaxdl import cli


def _help(cmd: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "jaxdl.cli", cmd, "--help"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_option_has_help_text_and_a_clean_metavar(name):
    out = _help(name)
    assert "Usage examples" in out and f"jaxdl {name}" in out
    assert "{None}" not in out and "|STR" not in out and "STR|" not in out
    fields = [f.name for f in dataclasses.fields(cli.COMMANDS[name])]
    lines = out.splitlines()
    starts = [i for i, ln in enumerate(lines) if re.match(r"│ --", ln)] + [len(lines)]
    for f in fields:
        flag = "--" + f.replace("_", "-")
        at = [i for i in starts[:-1] if re.match(rf"│ {flag}\b", lines[i])]
        if not at:  # a positional argument
            continue
        block = " ".join(lines[at[0] : starts[starts.index(at[0]) + 1]])
        # the option's entry holds more than flags, metavar and '(default: ...)'
        text = re.sub(r"\(default: [^)]*\)|\(required\)|--[\w-]+", "", block)
        words = [w for w in re.sub(r"[│╰─╯{}\[\],|]", " ", text).split() if not w.isupper()]
        assert len(words) >= 2, (name, flag, block)


def test_choices_match_the_engine_tables():
    from typing import get_args

    from jaxdl.data.registry import DATASETS
    from jaxdl.train.optim import OPTIMIZERS, SCHEDULES

    assert get_args(cli.Optimizer) == OPTIMIZERS
    assert get_args(cli.Schedule) == SCHEDULES
    assert cli.DATASET_KINDS == tuple(DATASETS)
    out = _help("train")
    assert "{sgd,momentum,nesterov,adagrad,adadelta,rmsprop,adam,adamw}" in out
    assert "{constant,cosine,warmup_cosine,exponential,step,linear}" in out
    assert "{fp32,bf16,fp16}" in out
    for kind in DATASETS:
        assert kind in out


def test_version(capsys):
    from jaxdl import __version__

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"jaxdl {__version__}"


def test_models_natural_sort_substring_counts_and_pretrained(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path))
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli.main(["models", "resnet"]) == 0
    rows = [ln for ln in buf.getvalue().splitlines() if ln.startswith("│ resnet")]
    names = [ln.split("│")[1].strip() for ln in rows]
    assert names == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert "25,557,032" in rows[2]  # ResNet-50's published parameter count
    assert (tmp_path / "param_counts.json").exists()  # the second listing reads it
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli.main(["models", "--pretrained", "timm", "--no-params"]) == 0
    out = buf.getvalue()
    assert {"vit_b16", "resnet50", "efficientnet_b0"} <= set(re.findall(r"│ (\w+)\s", out))
    assert "mlp " not in out and "params" not in out
    from jaxdl.models import list_models

    assert "vit_b16" in list_models("vit") and list_models("vit*") == list_models("vit")
    assert cli.main(["models", "nosuchthing"]) == 2
