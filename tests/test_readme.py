"""README.md stays true: every ```python block and every `jaxdl ...` command of its ```bash
blocks is run, shrunk to 1 epoch (`epochs=N` / `--epochs N` become 1), in a temporary
directory. Commands that cannot run here are skipped with the reason: the install and test
lines (they are what runs this), the GPU / Slurm / TPU section (marked 'not run' in
README), multi-process commands (tests/parallel/test_parallel_multiprocess.py runs those),
`--compare torch` without torch, and MNIST without ../shared/data."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT

README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[tuple[str, str]]:
    """(heading it is under, code) of every ```lang block."""
    out, heading = [], ""
    for m in re.finditer(r"^(#+ [^\n]*)$|^```(\w*)\n(.*?)^```", README, re.M | re.S):
        if m.group(1):
            heading = m.group(1)
        elif m.group(2) == lang:
            out.append((heading, m.group(3)))
    return out


def _shrink(code: str) -> str:
    code = re.sub(r"\bepochs=\d+", "epochs=1", code)
    return re.sub(r"--epochs \d+", "--epochs 1", code)


def _commands() -> list:
    cmds = []
    for heading, code in _blocks("bash"):
        code = code.replace("\\\n", " ")
        for line in code.splitlines():
            line = line.split(" #")[0].strip().rstrip("&").strip()
            # `jaxdl A && jaxdl B` on one line is one test: B runs after A, in A's directory
            parts = [p.strip().removeprefix("srun ") for p in line.split("&&")]
            parts = [p for p in parts if p.startswith("jaxdl ")]
            if not parts:
                continue
            part = " && ".join(parts)
            reason = None
            if re.search(r"\bnot run\b", heading):
                reason = "README: written for GPU hosts, Slurm and TPU pods, not run here"
            elif "--coordinator" in part:
                reason = "multi-process: run by tests/parallel/test_parallel_multiprocess.py"
            elif "--compare torch" in part and importlib.util.find_spec("torch") is None:
                reason = "--compare torch needs torch (not installed)"
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            cmds.append(pytest.param(_shrink(part), marks=marks, id=part[:60]))
    return cmds


def test_readme_has_no_link_outside_the_repository():
    for target in re.findall(r"\]\(([^)]+)\)", README):
        if not target.startswith("http"):
            assert not target.startswith(".."), target
            assert (ROOT / target.split("#")[0]).exists(), target


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_block(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, code = _blocks("python")[index]
    lines = _shrink(code).splitlines()
    namespace: dict = {"__name__": "__readme__"}
    exec(compile("\n".join(lines), f"README.md python block {index}", "exec"), namespace)


def _run_jaxdl(argv, cwd):
    flags = "--xla_force_host_platform_device_count=8" if "--devices" in argv else ""
    env = {**os.environ, "XLA_FLAGS": flags, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "jaxdl.cli", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", _commands())
def test_readme_command(command, tmp_path, request):
    """Run as a user would: a fresh process, the machine's own devices (8 simulated CPU devices
    only for the command that asks for 8)."""
    if "mnist_idx:../shared/data/mnist" in command:
        mnist = request.getfixturevalue("mnist_dir")  # skips without ../shared/data
        command = command.replace("../shared/data/mnist", str(mnist))
    for step in command.split(" && "):
        argv = shlex.split(step)[1:]
        r = _run_jaxdl(argv, tmp_path)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    if argv[:2] == ["summary", "resnet50"]:
        assert "Trainable params: 25,557,032" in r.stdout
    if "--json" in argv:
        assert '"test_accuracy"' in r.stdout.splitlines()[-1]


def test_readme_counts_the_reliability_cases():
    """README's count of bad inputs and faults is the number of rows of docs/reliability.md."""
    stated = re.findall(r"(\d+) cases(?:,)? (?:of|is in)\s+\[docs/reliability\.md\]", README)
    table = (ROOT / "docs" / "reliability.md").read_text()
    rows = len(re.findall(r"^\| \d+ \|", table, flags=re.M))
    assert len(stated) == 2 and {int(n) for n in stated} == {rows}, (stated, rows)
    assert table.splitlines()[2].startswith(f"{rows} cases.")
