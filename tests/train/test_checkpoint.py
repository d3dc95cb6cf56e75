"""Checkpoints (jaxdl.train.checkpoint): round trip, restore onto other meshes, and the faults
R3 (corruption -> fallback), R4 (mismatch -> clear error), R5 (never save non-finite values) and
R6 (symlinks outside / '..' names refused)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl import create_model
from jaxdl.errors import JaxdlError
from jaxdl.parallel import make_mesh
from jaxdl.train import BackupAndRestore, Trainer
from jaxdl.train.checkpoint import (
    CheckpointMismatchError,
    Checkpoints,
    CorruptCheckpointWarning,
    NonFiniteError,
    UnsafeCheckpointError,
    abstract_like,
    check_writable_dir,
    digests,
    keys_as_data,
)


def _tree(k=0.0):
    return {
        "w": jnp.arange(32.0).reshape(4, 8) + k,
        "b": jnp.ones(8, jnp.bfloat16) * (1 + k),
        "step": jnp.int32(7),
        "key": jax.random.key_data(jax.random.key(3)),
    }


def test_round_trip_exact_and_newest_kept(tmp_path):
    c = Checkpoints(tmp_path / "ck", keep=2, async_save=True)
    for s in (1, 2, 3):
        c.save(s, _tree(s), {"epoch": s})
    c.wait()
    assert c.steps() == [2, 3]
    step, tree, meta = c.restore(abstract_like(_tree()))
    assert step == 3 and meta["epoch"] == 3
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), tree, _tree(3)
    )
    assert tree["b"].dtype == jnp.bfloat16


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_typed_keys_are_stored_as_their_key_data_and_restore_as_keys(tmp_path, impl):
    """A typed key is written as its raw uint32 key data (the files and the recorded spec hold
    plain arrays, as a raw key of the same bits would) and comes back a key of the same dtype
    and bits, sharded as the target says."""
    mesh = make_mesh()
    tree = {
        "rng": jax.random.key(5, impl=impl),
        "keys": jax.random.split(jax.random.key(11, impl=impl), 8),
        "w": jnp.ones(3),
    }
    rep, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    tree = jax.device_put(tree, {"rng": rep, "keys": split, "w": rep})
    c = Checkpoints(tmp_path / "ck", async_save=False)
    c.save(1, tree)
    data = jax.random.key_data(tree["rng"])
    assert c.read_meta(1)["spec"]["['rng']"] == [list(data.shape), "uint32"]
    _, got, _ = c.restore(abstract_like(tree))
    for k in ("rng", "keys"):
        assert got[k].dtype == tree[k].dtype
        np.testing.assert_array_equal(jax.random.key_data(got[k]), jax.random.key_data(tree[k]))
    assert got["keys"].sharding.spec == P("data")
    # a checkpoint holding the raw key data restores into a typed-key target
    c.save(2, keys_as_data(tree))
    _, got, _ = c.restore(abstract_like(tree), step=2)
    assert got["rng"].dtype == tree["rng"].dtype
    np.testing.assert_array_equal(jax.random.key_data(got["rng"]), data)


def test_restore_onto_other_meshes(tmp_path):
    """Saved from 8 devices (sharded on 'data'), restored onto 1 device and onto a 2x4 mesh."""
    assert jax.device_count() == 8
    mesh8 = make_mesh()
    t = {"w": jax.device_put(jnp.arange(64.0).reshape(8, 8), NamedSharding(mesh8, P("data")))}
    c = Checkpoints(tmp_path / "ck")
    c.save(1, t)
    one = Mesh(np.asarray(jax.devices()[:1]), ("data",))
    _, r1, _ = c.restore(abstract_like(t, NamedSharding(one, P())))
    assert r1["w"].sharding.mesh.size == 1
    grid = Mesh(np.asarray(jax.devices()).reshape(2, 4), ("x", "y"))
    _, r2, _ = c.restore(abstract_like(t, NamedSharding(grid, P("x", "y"))))
    assert r2["w"].sharding.spec == P("x", "y") and r2["w"].addressable_shards[0].data.shape == (
        4,
        2,
    )
    for r in (r1, r2):
        np.testing.assert_array_equal(np.asarray(r["w"]), np.arange(64.0).reshape(8, 8))


def test_trainer_checkpoint_from_8_devices_resumes_on_1(tmp_path, digits):
    kw = dict(epochs=2, batch_size=32, verbose=0)
    mk = lambda n: Trainer(
        create_model("mlp", input_shape=(8, 8, 1), hidden=(16,)),
        seed=0,
        optimizer="sgd",
        learning_rate=0.05,
        mesh=make_mesh(num_devices=n),
    )
    t8 = mk(8)
    t8.fit(digits.train, callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False)], **kw)
    t1 = mk(1)
    t1.fit(digits.train, callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False)], **kw)
    assert (
        t1.step_count == t8.step_count
        and len(t1.state.params["head"]["kernel"][...].sharding.device_set) == 1
    )
    jax.tree.map(
        np.testing.assert_array_equal,
        jax.device_get(t1.state.params),
        jax.device_get(t8.state.params),
    )


def test_digests_do_not_depend_on_sharding_and_see_every_bit():
    """The checksum pass runs on the devices: the same values give the same digest on 1 device
    and sharded over 8 (so every process of a multi-host run can verify its shards), and one
    flipped bit anywhere changes it."""
    x = np.random.default_rng(0).normal(size=(16, 12)).astype(np.float32)
    one = jax.device_put(x, jax.devices()[0])
    sharded = jax.device_put(x, NamedSharding(make_mesh(), P("data")))
    grid = jax.device_put(
        x, NamedSharding(Mesh(np.asarray(jax.devices()).reshape(2, 4), ("a", "b")), P("a", "b"))
    )
    d = {
        name: digests({"x": a})[0]["['x']"]
        for name, a in [("one", one), ("8", sharded), ("2x4", grid)]
    }
    assert len(set(d.values())) == 1, d
    for index in [(0, 0), (7, 5), (15, 11)]:
        for bit in (0, 17, 31):
            y = x.copy()
            y.view(np.uint32)[index] ^= np.uint32(1 << bit)
            assert digests({"x": jnp.asarray(y)})[0]["['x']"] != d["one"], (index, bit)
    # swapping two different elements changes it too (the digest is position-dependent)
    y = x.copy()
    y[0, 0], y[0, 1] = x[0, 1], x[0, 0]
    assert digests({"x": jnp.asarray(y)})[0]["['x']"] != d["one"]
    _, bad = digests({"ok": jnp.ones(3), "nan": jnp.array([1.0, np.nan]), "i": jnp.arange(3)})
    assert bad == ["['nan']"]


def test_checkpoints_with_crc32_checksums_still_restore(tmp_path):
    """Checkpoints written before on-device digests carry whole-array CRC-32s: still verified."""
    import json

    from jaxdl.train.checkpoint import checksums

    c = Checkpoints(tmp_path / "ck", async_save=False)
    c.save(1, _tree(1))
    meta_file = tmp_path / "ck" / "1" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta.pop("digests")
    meta["checksums"] = checksums(jax.device_get(_tree(1)))
    meta_file.write_text(json.dumps(meta))
    step, tree, _ = Checkpoints(tmp_path / "ck").restore(abstract_like(_tree()))
    assert step == 1
    np.testing.assert_array_equal(np.asarray(tree["w"]), np.asarray(_tree(1)["w"]))
    meta["checksums"]["['w']"] ^= 1  # and a wrong CRC is still caught
    meta_file.write_text(json.dumps(meta))
    with pytest.warns(CorruptCheckpointWarning, match="differ from the recorded checksums"):
        assert Checkpoints(tmp_path / "ck").restore(abstract_like(_tree())) is None


def _files(path):
    return sorted(p for p in path.rglob("*") if p.is_file())


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_r3_corrupt_newest_falls_back_with_warning(tmp_path, damage):
    c = Checkpoints(tmp_path / "ck", keep=3, async_save=False)
    c.save(1, _tree(1))
    c.save(2, _tree(2))
    if damage == "meta":
        target = tmp_path / "ck" / "2" / "meta" / "metadata"
        target.write_text(target.read_text()[:20])
    else:  # the largest data file of the newest checkpoint's arrays
        target = max(
            (p for p in _files(tmp_path / "ck" / "2" / "tree") if "/d/" in str(p)),
            key=lambda p: p.stat().st_size,
        )
        data = bytearray(target.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        else:
            data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    with pytest.warns(CorruptCheckpointWarning, match="checkpoint 2 .* is unusable"):
        step, tree, _ = c.restore(abstract_like(_tree()))
    assert step == 1
    np.testing.assert_array_equal(np.asarray(tree["w"]), np.asarray(_tree(1)["w"]))
    assert c.steps() == [1] and (tmp_path / "ck.corrupt" / "2").is_dir()


def test_r4_mismatch_is_a_clear_error(tmp_path):
    c = Checkpoints(tmp_path / "ck")
    c.save(1, _tree(), {"fingerprint": {"model": "a.MLP", "config": "x"}})
    wrong_shape = {**_tree(), "w": jnp.zeros((4, 9))}
    with pytest.raises(
        CheckpointMismatchError, match=r"\['w'\]: checkpoint float32\[4, 8\], model float32\[4, 9\]"
    ):
        c.restore(abstract_like(wrong_shape))
    wrong_dtype = {**_tree(), "b": jnp.ones(8, jnp.float32)}
    with pytest.raises(
        CheckpointMismatchError,
        match=r"no value is cast.*\[.b.\]: checkpoint bfloat16\[8\], model float32\[8\]",
    ):
        c.restore(abstract_like(wrong_dtype))
    with pytest.raises(
        CheckpointMismatchError, match=r"different model: model: checkpoint 'a.MLP', now 'b.CNN'"
    ):
        c.restore(abstract_like(_tree()), fingerprint={"model": "b.CNN", "config": "x"})
    extra = {**_tree(), "extra": jnp.zeros(2)}
    with pytest.raises(
        CheckpointMismatchError, match=r"\['extra'\]: in the model, not in the checkpoint"
    ):
        c.restore(abstract_like(extra))


def test_r4_trainer_with_another_model_refuses_the_workdir(tmp_path, digits):
    Trainer(create_model("mlp", input_shape=(8, 8, 1), hidden=(16,))).fit(
        digits.train,
        epochs=1,
        verbose=0,
        callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False)],
    )
    other = Trainer(create_model("mlp", input_shape=(8, 8, 1), hidden=(24,)))
    with pytest.raises(CheckpointMismatchError, match="different model: config"):
        other.fit(digits.train, epochs=2, verbose=0, callbacks=[BackupAndRestore(tmp_path)])


def test_r5_non_finite_values_are_never_saved(tmp_path):
    c = Checkpoints(tmp_path / "ck")
    c.save(1, _tree())
    with pytest.raises(NonFiniteError, match=r"non-finite values in \['w'\]"):
        c.save(2, {**_tree(), "w": _tree()["w"].at[0, 0].set(jnp.nan)})
    c.wait()
    assert c.steps() == [1]


def test_r6_links_outside_and_dotdot_names_refused(tmp_path):
    c = Checkpoints(tmp_path / "ck")
    c.save(1, _tree())
    c.wait()
    outside = tmp_path / "secret"
    outside.mkdir()
    link = tmp_path / "ck" / "1" / "evil"
    link.symlink_to(outside)
    with pytest.raises(UnsafeCheckpointError, match="symbolic link pointing outside it"):
        c.restore(abstract_like(_tree()))
    with pytest.raises(UnsafeCheckpointError, match="symbolic link pointing outside it"):
        Checkpoints(tmp_path / "ck")
    link.unlink()
    (tmp_path / "ck" / "1" / "inside").symlink_to(
        tmp_path / "ck" / "1" / "meta"
    )  # stays inside: fine
    assert c.restore(abstract_like(_tree()))[0] == 1
    (tmp_path / "ck" / "..hidden").mkdir()
    with pytest.raises(UnsafeCheckpointError, match=r"name with '\.\.'"):
        Checkpoints(tmp_path / "ck")


def test_workdir_that_is_a_file_or_not_writable(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(JaxdlError, match="exists and is not a directory"):
        check_writable_dir(f)
    with pytest.raises(JaxdlError, match="cannot be created"):
        check_writable_dir(f / "sub")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(JaxdlError, match="is not writable"):
            check_writable_dir(ro)
    finally:
        ro.chmod(0o700)


def test_async_save_snapshots_the_json_meta(tmp_path, monkeypatch):
    """The asynchronous write serialises the JSON part later, in its own thread: what it writes
    is a snapshot taken at `save`, sharing nothing with the caller's dicts and lists (History's
    lists grow at the next epoch end, and a slow write used to record the later epochs)."""
    import orbax.checkpoint as ocp

    written = []
    real = ocp.args.JsonSave

    def recording(item):
        written.append(item)
        return real(item)

    monkeypatch.setattr(ocp.args, "JsonSave", recording)
    history = {"loss": [2.0, 1.5]}
    c = Checkpoints(tmp_path / "ck", async_save=True)
    c.save(5, _tree(), {"callbacks": {"History": {"history": history}}})
    history["loss"].append(1.0)  # the next epoch end, while the write may still run
    c.wait()
    (item,) = written
    assert item["callbacks"]["History"]["history"]["loss"] == [2.0, 1.5]
    assert item["callbacks"]["History"]["history"] is not history
    assert c.read_meta(5)["callbacks"]["History"]["history"]["loss"] == [2.0, 1.5]
    c.close()
