"""Multi-host data parallelism on localhost: 2 processes x 4 simulated CPU devices joined through
`jax.distributed` (JAX's own runtime; CPU collectives over Gloo) train to the same parameters on
both processes, equal to 1 process with 8 devices; with FSDP as well. The FSDP state, written by
both processes together with jaxdl.train.checkpoint, restores in this process on 1 device and on
a 2x4 mesh."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from jaxdl import create_model
from jaxdl.functional import named_leaves
from jaxdl.parallel import abstract_state, make_mesh
from jaxdl.train import Trainer
from jaxdl.train.checkpoint import Checkpoints

WORKER = ROOT / "tests" / "parallel" / "parallel_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "JAXDL_", "XLA_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _run(out, *args, procs=1, timeout=180):
    """Start `procs` workers (process ids 0..procs-1) and wait; their npz results by id."""
    port = _free_port()
    cmds = []
    for pid in range(procs):
        extra = (
            [
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                str(procs),
                "--process-id",
                str(pid),
            ]
            if procs > 1
            else []
        )
        cmds.append([sys.executable, str(WORKER), str(out / f"p{pid}.npz"), *args, *extra])
    ps = [
        subprocess.Popen(c, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in cmds
    ]
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in ps]
    finally:
        for p in ps:
            p.kill()
    for p, log in zip(ps, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    return [dict(np.load(out / f"p{pid}.npz")) for pid in range(procs)]


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    (tmp_path / "ref").mkdir()
    (ref,) = _run(tmp_path / "ref", "--devices", "8")
    assert ref["devices"] == 8 and ref["processes"] == 1
    for mode in ("dp", "fsdp"):  # it trained: the comparison below is not of initial weights
        assert ref[f"{mode}/metric/accuracy"] > 0.8
    a, b = _run(tmp_path, "--devices", "4", "--ckpt", str(tmp_path / "ckpt"), procs=2)
    assert a["devices"] == 8 and a["processes"] == 2
    assert set(a) == set(ref)
    assert ref["fsdp/predict"].shape == (359, 10)
    for k in (k for k in ref if "/" in k):  # {dp,fsdp}/{params,model_state,metric}/..., predict
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k}: the processes differ")
        np.testing.assert_allclose(a[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)

    # the checkpoint of the 2-process FSDP run, restored onto other meshes of this process
    model = create_model("mlp", input_shape=(8, 8, 1), hidden=(64, 32), batch_norm=True)
    like = Trainer(model, optimizer="sgd", learning_rate=0.1, seed=3, mesh=make_mesh(num_devices=1))
    ckpts = Checkpoints(tmp_path / "ckpt")
    for mesh, fsdp in [(make_mesh(num_devices=1), False), (make_mesh(axes="2x4"), True)]:
        step, tree, _ = ckpts.restore({"state": abstract_state(like.state, mesh, fsdp=fsdp)})
        state = tree["state"]
        assert step == 40 and int(state.step) == 40
        for part in ("params", "model_state"):
            for k, v in named_leaves(getattr(state, part)).items():
                assert v.sharding.mesh.shape == mesh.shape
                np.testing.assert_array_equal(np.asarray(v), a[f"fsdp/{part}/{k}"], err_msg=k)
