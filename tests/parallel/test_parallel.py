"""Meshes, FSDP / data-parallel shardings, synchronised BatchNorm, per-host batch rows, restoring
onto another mesh, and the multi-host start's checks, on the 8 simulated CPU devices."""

import importlib.util
import json
import socket
import sys

import jax
import numpy as np
import pytest
from conftest import ROOT
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxdl import create_model
from jaxdl.data import ArrayDataset, batches
from jaxdl.errors import JaxdlError
from jaxdl.functional import make_apply, named_leaves, split
from jaxdl.parallel import (
    abstract_state,
    array_spec,
    bytes_per_device,
    initialize_distributed,
    local_rows,
    make_mesh,
    parse_mesh_spec,
    place_state,
    shard_batch,
    state_shardings,
)
from jaxdl.parallel.distributed import resolve
from jaxdl.train import Trainer


# ---- meshes ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, shape",
    [
        ("data=8", {"data": 8}),
        ("8", {"data": 8}),
        ("2x4", {"data": 2, "model": 4}),
        ("data=2,model=4", {"data": 2, "model": 4}),
        ("data=-1,model=2", {"data": 4, "model": 2}),
        (" data = 4 , model = 2 ", {"data": 4, "model": 2}),
    ],
)
def test_mesh_specs(spec, shape):
    mesh = make_mesh(axes=spec)
    assert dict(mesh.shape) == shape and mesh.devices.size == 8
    assert sorted(d.id for d in mesh.devices.flat) == list(range(8))


def test_default_mesh_and_num_devices():
    assert dict(make_mesh().shape) == {"data": 8}
    assert dict(make_mesh(num_devices=4, axes="2x2").shape) == {"data": 2, "model": 2}
    assert parse_mesh_spec("data=2,model=4") == {"data": 2, "model": 4}


@pytest.mark.parametrize(
    "spec, kw, match",
    [
        ("data=4", {}, r"mesh data=4 has 4 devices but 8 are used \(all devices\)"),
        ("data=2,model=2", {"num_devices": 2}, r"has 4 devices but 2 are used \(num_devices=2\)"),
        ("data=-1,model=3", {}, "cannot infer the -1 axis, 8 devices are not divisible by 3"),
        ("model=8", {}, "has no 'data' axis"),
        ("data=0", {}, "must be >= 1"),
        ("data=two", {}, "must be an integer"),
        ("data=2,data=4", {}, "appears twice"),
        ("2x2x2", {}, "unnamed sizes name at most 2 axes"),
        ("data=-1,model=-1", {}, "at most one size may be -1"),
        ("data=8,", {}, "expected NAME=SIZE"),
        ("", {}, "mesh spec is empty"),
    ],
)
def test_mesh_errors(spec, kw, match):
    with pytest.raises(JaxdlError, match=match):
        make_mesh(axes=spec, **kw)


def test_global_batch_not_divisible_by_data_axis(digits):
    t = Trainer(create_model("mlp", input_shape=(8, 8, 1)), mesh=make_mesh(axes="data=4,model=2"))
    with pytest.raises(JaxdlError, match="batch_size 6 is not divisible by the 4 devices"):
        t.fit(digits.train, epochs=1, batch_size=6, verbose=0)


# ---- shardings ------------------------------------------------------------------------------
def test_array_spec_rule():
    m8, m24 = make_mesh(), make_mesh(axes="2x4")
    assert array_spec((64, 10), m8, fsdp=True) == P("data", None)  # 10 does not divide by 8
    assert array_spec((64, 32), m8, fsdp=True) == P("data", None)  # the largest dimension
    assert array_spec((3, 3, 64, 64), m8, fsdp=True) == P(None, None, None, "data")  # tie: later
    assert array_spec((10,), m8, fsdp=True) == P(None)  # none divides: replicated
    assert array_spec((), m8, fsdp=True) == P()
    assert array_spec((64, 32), m8, fsdp=False) == P(None, None)  # data parallel: replicated
    # the model axis takes the largest dimension, the data axis (FSDP) the next that divides
    assert array_spec((64, 32), m24, fsdp=True) == P("model", "data")
    assert array_spec((64, 32), m24, fsdp=False) == P("model", None)


def _mlp_trainer(mesh, fsdp, *, optimizer="adam", lr=1e-2, batch_norm=True):
    model = create_model(
        "mlp", input_shape=(8, 8, 1), hidden=(64, 32), batch_norm=batch_norm, rngs=nnx.Rngs(0)
    )
    return Trainer(model, optimizer=optimizer, learning_rate=lr, seed=1, mesh=mesh, fsdp=fsdp)


def test_fsdp_shards_params_and_optimizer_state():
    t = _mlp_trainer(make_mesh(), fsdp=True)
    kernel = t.state.params["layers"][0]["kernel"]  # [64, 64]
    assert kernel.sharding.spec == P(None, "data")
    assert kernel.addressable_shards[0].data.shape == (64, 8)
    moments = [x for x in jax.tree.leaves(t.state.opt_state) if x.shape == kernel.shape]
    assert len(moments) == 2  # Adam's mu and nu follow their parameter
    assert all(m.sharding.spec == kernel.sharding.spec for m in moments)
    assert t.state.params["head"]["bias"].sharding.is_fully_replicated  # 10 % 8 != 0
    assert t.state.step.sharding.is_fully_replicated and t.state.rng.sharding.is_fully_replicated
    dp = _mlp_trainer(make_mesh(), fsdp=False)
    assert dp.state.params["layers"][0]["kernel"].sharding.is_fully_replicated
    per_dev_fsdp = bytes_per_device(t.state, t.mesh, fsdp=True)
    per_dev_dp = bytes_per_device(dp.state, dp.mesh, fsdp=False)
    assert per_dev_fsdp < 0.25 * per_dev_dp


def test_fsdp_equals_data_parallel_equals_one_device(digits):
    """Several Adam steps with BatchNorm: FSDP on 8 devices, data parallel on 8, one device, and
    FSDP with a model axis (2x4) all end at the same weights and statistics (float tolerance)."""
    runs = {}
    for name, mesh, fsdp in [
        ("fsdp", make_mesh(), True),
        ("dp", make_mesh(), False),
        ("one", make_mesh(num_devices=1), False),
        ("fsdp2x4", make_mesh(axes="2x4"), True),
    ]:
        t = _mlp_trainer(mesh, fsdp, optimizer="sgd", lr=0.1)
        t.fit(digits.train, epochs=1, batch_size=64, verbose=0)
        assert int(t.state.step) == t.steps_per_epoch == 20
        runs[name] = (
            jax.device_get((t.state.params, t.state.model_state)),
            t.evaluate(digits.test)["loss"],
        )
    init = jax.device_get(
        split(
            create_model(
                "mlp", input_shape=(8, 8, 1), hidden=(64, 32), batch_norm=True, rngs=nnx.Rngs(0)
            )
        )[1]
    )
    ref, ref_loss = runs.pop("dp")
    assert not np.allclose(ref[0]["head"]["kernel"], init["head"]["kernel"], atol=1e-3)
    for name, (tree, loss) in runs.items():
        for (k, a), b in zip(named_leaves(tree).items(), named_leaves(ref).values(), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=f"{name} {k}")
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-4, err_msg=name)


def test_batchnorm_statistics_are_over_the_global_batch():
    """Synchronised BN for free: a train-mode forward on a batch sharded over 8 devices updates
    the running statistics with the mean and variance of the whole batch, as one device does;
    the statistics of one device's shard would differ."""
    model = create_model(
        "mlp", input_shape=(8, 8, 1), hidden=(16,), batch_norm=True, rngs=nnx.Rngs(0)
    )
    graphdef, params, state = split(model)
    apply = jax.jit(make_apply(graphdef), static_argnames="train")
    x = np.random.default_rng(0).normal(2.0, 3.0, (64, 8, 8, 1)).astype(np.float32)
    x[:8] += 5.0  # the first device's shard is unlike the rest
    mesh = make_mesh()
    sharded = shard_batch(x, mesh)
    assert len(sharded.sharding.device_set) == 8
    _, s8 = apply(place_state(params, mesh), place_state(state, mesh), sharded, train=True)
    _, s1 = apply(params, state, jax.device_put(x, jax.devices()[0]), train=True)
    _, s_shard = apply(params, state, x[:8], train=True)
    mean8, mean1 = s8["norms"][0]["mean"], s1["norms"][0]["mean"]
    np.testing.assert_allclose(mean8, mean1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s8["norms"][0]["var"], s1["norms"][0]["var"], rtol=1e-5)
    # the statistic itself: momentum 0.99 from mean 0 -> 0.01 x the batch mean of the features
    h = np.asarray(x.reshape(64, -1) @ params["layers"][0]["kernel"] + params["layers"][0]["bias"])
    np.testing.assert_allclose(mean8, 0.01 * h.mean(0), rtol=1e-4, atol=1e-6)
    assert not np.allclose(mean8, s_shard["norms"][0]["mean"], atol=1e-3)


def test_state_restores_onto_other_meshes(tmp_path):
    """A state written through jaxdl.train.checkpoint from an FSDP 8-device mesh restores, with
    `abstract_state` as the target, on one device and on a 2x4 mesh with the target's shardings."""
    from jaxdl.train.checkpoint import Checkpoints, keys_as_data

    t = _mlp_trainer(make_mesh(), fsdp=True)
    ckpts = Checkpoints(tmp_path / "ckpt", async_save=False)
    ckpts.save(0, t.state)
    for mesh, fsdp in [(make_mesh(num_devices=1), False), (make_mesh(axes="2x4"), True)]:
        target = abstract_state(t.state, mesh, fsdp=fsdp)
        _, restored, _ = ckpts.restore(target)
        want = state_shardings(t.state, mesh, fsdp=fsdp)
        for a, s in zip(jax.tree.leaves(restored), jax.tree.leaves(want), strict=True):
            assert a.sharding.is_equivalent_to(s, a.ndim)
        assert restored.rng.dtype == t.state.rng.dtype  # the typed key comes back a key
        for a, b in zip(
            jax.tree.leaves(keys_as_data(restored)),
            jax.tree.leaves(keys_as_data(t.state)),
            strict=True,
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    kernel = restored.params["layers"][0]["kernel"]  # on 2x4: [64, 64] over data and model
    assert kernel.sharding.spec == P("data", "model")


# ---- per-host rows --------------------------------------------------------------------------
def test_local_rows_and_batch_rows():
    assert local_rows(64, make_mesh()) == slice(0, 64)  # one process holds every row
    ds = ArrayDataset(np.arange(10, dtype=np.float32)[:, None], np.arange(10))
    full = list(batches(ds, 4, seed=0))
    part = list(batches(ds, 4, seed=0, rows=slice(2, 4)))
    for f, p in zip(full, part, strict=True):
        for k in f:
            np.testing.assert_array_equal(p[k], f[k][2:4])
    assert part[-1]["weight"].tolist() == [0.0, 0.0]  # the padding stays weighted 0


# ---- multi-host start -----------------------------------------------------------------------
@pytest.fixture
def no_cluster(monkeypatch):
    """Hermetic: no cluster environment, and jax.distributed.initialize only records its call."""
    import jaxdl.parallel.distributed as dist

    calls = []
    monkeypatch.setattr(dist, "cluster_detected", lambda: None)
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
    return calls


def test_distributed_settings_from_arguments_and_environment(no_cluster, monkeypatch):
    import jaxdl.parallel.distributed as dist

    env = {
        "JAXDL_COORDINATOR": "10.0.0.1:1234",
        "JAX_NUM_PROCESSES": "4",
        "JAX_PROCESS_ID": "3",
        "JAXDL_PROCESS_ID": "2",
    }
    spec = resolve(environ=env)
    assert (spec.coordinator, spec.num_processes, spec.process_id) == ("10.0.0.1:1234", 4, 2)
    spec = resolve("h:99", None, 1, environ=env)  # arguments first
    assert (spec.coordinator, spec.num_processes, spec.process_id) == ("h:99", 4, 1)
    assert resolve(environ={}).empty
    assert initialize_distributed(environ={}) is False and no_cluster == []  # one process
    # process 0 hosts the coordinator: no probe, JAX gets the settings as given
    assert initialize_distributed(environ={**env, "JAXDL_PROCESS_ID": "0"}, timeout=7) is True
    assert no_cluster[-1] == (("10.0.0.1:1234", 4, 0), {"initialization_timeout": 7})
    # on a cluster, whatever is unset is left to JAX's detection
    monkeypatch.setattr(dist, "cluster_detected", lambda: "SlurmCluster")
    assert initialize_distributed(environ={}) is True
    assert no_cluster[-1] == ((), {"initialization_timeout": 300})
    assert initialize_distributed(None, None, 0, environ={}) is True
    assert no_cluster[-1] == ((None, None, 0), {"initialization_timeout": 300})


@pytest.mark.parametrize(
    "args, env, match",
    [
        ((None, 2, 2), {}, r"process_id 2 \(from argument\) is out of range: expected 0..1"),
        (
            (None, None, None),
            {"JAXDL_NUM_PROCESSES": "2", "JAXDL_PROCESS_ID": "-1"},
            r"process_id -1 \(from JAXDL_PROCESS_ID\) is out of range",
        ),
        ((None, 0, None), {}, "num_processes must be >= 1"),
        (
            (None, None, None),
            {"JAX_PROCESS_ID": "one"},
            "process_id from JAX_PROCESS_ID must be an integer",
        ),
        (("localhost", 2, 1), {}, "coordinator address must be HOST:PORT"),
    ],
)
def test_distributed_bad_settings(args, env, match, no_cluster):
    with pytest.raises(JaxdlError, match=match):
        initialize_distributed(*args, environ=env)


def test_unreachable_coordinator_fails_within_the_timeout(no_cluster):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        JaxdlError,
        match=rf"coordinator 127.0.0.1:{port} could not be reached "
        r"within 1 s",
    ):
        initialize_distributed(f"127.0.0.1:{port}", 2, 1, timeout=1, environ={})
    with pytest.raises(JaxdlError, match="no cluster detected"):
        initialize_distributed(f"127.0.0.1:{port}", None, 1, environ={})
    assert no_cluster == []  # JAX was never asked


# ---- CLI and benchmark ----------------------------------------------------------------------
def test_cli_train_fsdp_on_a_2x4_mesh_and_errors(capsys):
    from jaxdl.cli import main

    assert (
        main(
            [
                "train",
                "mlp",
                "--epochs",
                "1",
                "--batch-size",
                "64",
                "--fsdp",
                "--mesh",
                "2x4",
                "--quiet",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_accuracy"] > 0.3
    assert main(["train", "mlp", "--epochs", "1", "--devices", "4", "--mesh", "data=8"]) == 2
    assert "mesh data=8 has 8 devices but 4 are used (num_devices=4)" in capsys.readouterr().err
    assert main(["train", "mlp", "--num-processes", "2", "--process-id", "2"]) == 2
    assert "process_id 2 (from argument) is out of range" in capsys.readouterr().err


def test_scaling_benchmark_smoke_and_allreduce_cost():
    spec = importlib.util.spec_from_file_location("scaling", ROOT / "benchmarks" / "scaling.py")
    scaling = sys.modules["scaling"] = importlib.util.module_from_spec(spec)  # for dataclasses
    spec.loader.exec_module(scaling)
    allreduce_cost = scaling.allreduce_cost

    out = scaling.main(scaling.Config(smoke=True, devices=(1, 8), tp=False))
    assert [(r["devices"], r["mode"]) for r in out["rows"]] == [
        (1, "dp"),
        (8, "dp"),
        (1, "fsdp"),
        (8, "fsdp"),
    ]
    assert all(r["max_diff_vs_1"] < 1e-5 for r in out["rows"])
    # ring all-reduce: 2 (N-1)/N x 4 bytes x 25,557,032 params on 8 GPUs at 450 GB/s
    c = allreduce_cost(25_557_032)
    assert c["moved_MB"] == pytest.approx(2 * 7 / 8 * 4 * 25_557_032 / 1e6)
    assert c["ms"] == pytest.approx(178.899224 / 450e3 * 1e3)
