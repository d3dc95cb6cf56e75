"""Tensor parallelism by logical axis names on the 8 simulated CPU devices: the layouts the rules
give, training on 8x1 / 2x4 / 1x8 meshes equal to one device for the four transformer families,
the collectives in the compiled programs (two all-reduces per layer forward, none in between),
per-device memory falling with the model axis, checkpoints moving between meshes, bad input, and
the CLI."""

import importlib.util
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxdl import create_model
from jaxdl.data import ArrayDataset
from jaxdl.errors import JaxdlError
from jaxdl.functional import make_apply, named_leaves, split
from jaxdl.parallel import (
    abstract_state,
    bytes_per_device,
    data_sharding,
    logical_shardings,
    logical_specs,
    make_mesh,
    shard_batch,
    state_shardings,
    tp_rules,
    with_rules,
)
from jaxdl.train import LanguageModelTask, Trainer

# tiny configurations whose heads, MLP widths and vocabularies divide by 8
TINY = {
    "gpt_mini": dict(
        vocab_size=64, num_heads=8, d_model=64, num_layers=2, context=16, input_shape=(16,)
    ),
    "bert_mini": dict(
        vocab_size=64,
        num_heads=8,
        d_model=64,
        num_layers=2,
        d_ff=128,
        max_len=16,
        input_shape=(16,),
    ),  # fmt: skip
    "vit_ti16": dict(
        input_shape=(16, 16, 3),
        patch_size=8,
        num_classes=8,
        d_model=64,
        num_heads=8,
        num_layers=2,
        d_ff=128,
        head_zero_init=False,
    ),  # fmt: skip
    "transformer_small": dict(
        input_shape=(24,),
        src_len=12,
        src_vocab=64,
        tgt_vocab=64,
        d_model=64,
        num_heads=8,
        enc_layers=1,
        dec_layers=1,
        d_ff=128,
        max_len=16,
    ),  # fmt: skip
}


def _data(name, n=16, seed=0):
    """Inputs and targets for `name`: next tokens (GPT), masked tokens (BERT), classes (ViT),
    the target sequence (enc-dec)."""
    rng = np.random.default_rng(seed)
    if name == "vit_ti16":
        x = rng.normal(size=(n, 16, 16, 3)).astype(np.float32)
        return ArrayDataset(x, rng.integers(0, 8, n).astype(np.int32)), None
    t = TINY[name]["input_shape"][0]
    x = rng.integers(1, 64, (n, t)).astype(np.int32)
    y = x[:, 12:] if name == "transformer_small" else np.roll(x, -1, 1)
    return ArrayDataset(x, y.astype(np.int32)), LanguageModelTask(64)


def _trainer(name, mesh, sharding="tp", rules=None, **over):
    model = create_model(name, **{**TINY[name], **over}, rngs=nnx.Rngs(0))
    _, task = _data(name)
    return Trainer(
        model,
        task=task,
        optimizer="sgd",
        learning_rate=0.5,
        seed=3,
        mesh=mesh,
        sharding=sharding,
        rules=rules,
    )


def _step(t):
    """The jitted train step the Trainer runs and fresh metric sums."""
    step = getattr(t, "train_step", None) or t._train_step
    acc = (getattr(t, "init_metrics", None) or t._init_metrics)()
    return step, acc


# ---- layouts --------------------------------------------------------------------------------
def test_megatron_layouts_of_a_gpt():
    model = create_model("gpt_mini", **TINY["gpt_mini"], rngs=nnx.Rngs(0))
    specs, dropped = logical_specs(split(model)[1], make_mesh(axes="2x4"))
    s = {k: v for k, v in named_leaves(specs).items()}
    layer = "blocks/layers/0/"
    assert not dropped
    # column-parallel QKV and MLP-up, row-parallel attention-out and MLP-down
    for w in ("query", "key", "value"):
        assert s[layer + f"attn/{w}/kernel"] == P(None, "model", None)
        assert s[layer + f"attn/{w}/bias"] == P("model", None)
    assert s[layer + "attn/out/kernel"] == P("model", None, None)
    assert s[layer + "attn/out/bias"] == P(None)
    assert s[layer + "mlp/fc1/kernel"] == P(None, "model")
    assert s[layer + "mlp/fc1/bias"] == P("model")
    assert s[layer + "mlp/fc2/kernel"] == P("model", None)
    assert s[layer + "ln1/scale"] == P(None) and s["blocks/ln_f/bias"] == P(None)
    assert s["wte/embedding"] == P("model", None)  # vocab-parallel (tied logits too)
    assert s["wpe/embedding"] == P(None, None)
    # FSDP + TP: embed over data as well
    fsdp, _ = logical_specs(split(model)[1], make_mesh(axes="2x4"), tp_rules(fsdp=True))
    f = named_leaves(fsdp)
    assert f[layer + "attn/query/kernel"] == P("data", "model", None)
    assert f[layer + "mlp/fc2/kernel"] == P("model", "data")
    assert f["wte/embedding"] == P("model", "data")


def test_scanned_stack_names_its_layer_axis_and_moments_follow_params():
    model = create_model("gpt_mini", **TINY["gpt_mini"], scan_layers=True, rngs=nnx.Rngs(0))
    mesh = make_mesh(axes="2x4")
    sh = named_leaves(logical_shardings(split(model)[1], mesh))
    assert sh["blocks/layers/attn/query/kernel"].spec == P(None, None, "model", None)
    assert sh["blocks/layers/mlp/fc2/kernel"].spec == P(None, "model", None)
    t = Trainer(model, task=LanguageModelTask(64), optimizer="adam", mesh=mesh, sharding="tp")
    kernel = t.state.params["blocks"]["layers"]["mlp"]["fc1"]["kernel"]
    assert kernel.sharding.spec == P(None, None, "model")
    assert kernel.addressable_shards[0].data.shape == (2, 64, 256 // 4)
    moments = [x for x in jax.tree.leaves(t.state.opt_state) if x.shape == kernel.shape]
    assert len(moments) == 2 and all(m.sharding.spec == kernel.sharding.spec for m in moments)
    assert t.state.step.sharding.is_fully_replicated


def test_indivisible_dimension_is_an_error_or_replicated_with_auto():
    model = create_model("gpt_mini", **{**TINY["gpt_mini"], "num_heads": 4}, rngs=nnx.Rngs(0))
    params = split(model)[1]
    mesh = make_mesh(axes="1x8")
    with pytest.raises(
        JaxdlError,
        match=r"blocks/layers/0/attn/key/bias: dimension 0 \(logical axis 'heads'\) has "
        r"size 4, not divisible by mesh axis 'model' of size 8",
    ):
        logical_shardings(params, mesh)
    with pytest.raises(JaxdlError, match="logical axis 'heads'"):
        Trainer(model, task=LanguageModelTask(64), mesh=mesh, sharding="tp")
    with pytest.warns(UserWarning, match=r"replicated instead of sharded.*attn/query/kernel dim 1"):
        sh = named_leaves(logical_shardings(params, mesh, auto=True))
    assert sh["blocks/layers/0/attn/query/kernel"].spec == P(None, None, None)
    assert sh["blocks/layers/0/mlp/fc1/kernel"].spec == P(None, "model")  # 256 divides
    with pytest.warns(UserWarning, match="replicated instead of sharded"):
        t = Trainer(model, task=LanguageModelTask(64), mesh=mesh, sharding="auto")
    assert t.state.params["blocks"]["layers"][0]["attn"]["query"]["kernel"].sharding.spec == P(
        None, None, None
    )
    with pytest.raises(JaxdlError, match="unknown sharding mode 'megatron'"):
        Trainer(model, task=LanguageModelTask(64), mesh=mesh, sharding="megatron")


# ---- training equals one device ------------------------------------------------------------
def _train(name, mesh, sharding, **kw):
    ds, _ = _data(name)
    t = _trainer(name, mesh, sharding, **kw)
    t.fit(ds, epochs=1, batch_size=8, verbose=0, shuffle=False)
    assert int(t.state.step) == 2
    return t


@pytest.mark.parametrize(
    "name",
    [
        "gpt_mini",
        pytest.param("bert_mini", marks=pytest.mark.slow),
        pytest.param("vit_ti16", marks=pytest.mark.slow),
        pytest.param("transformer_small", marks=pytest.mark.slow),
    ],
)
def test_tensor_parallel_training_equals_one_device(name):
    """Two SGD steps (dropout on for BERT and the enc-dec) on 8x1, 2x4 and 1x8 meshes with the
    Megatron rules end at the one-device weights (1e-5)."""
    ref = named_leaves(jax.device_get(_train(name, make_mesh(num_devices=1), None).state.params))
    init = named_leaves(split(create_model(name, **TINY[name], rngs=nnx.Rngs(0)))[1])
    moved = max(float(np.abs(ref[k] - np.asarray(init[k])).max()) for k in ref)
    assert moved > 1e-3  # the steps changed the weights
    for spec in ("8x1", "2x4", "1x8"):
        t = _train(name, make_mesh(axes=spec), "tp")
        if spec != "8x1":  # the heads really are split
            assert any("model" in str(x.sharding.spec) for x in jax.tree.leaves(t.state.params)), (
                spec
            )
        got = named_leaves(jax.device_get(t.state.params))
        for k, v in ref.items():
            np.testing.assert_allclose(got[k], v, atol=1e-5, rtol=0, err_msg=f"{spec} {k}")


@pytest.mark.slow
def test_sequence_parallel_and_fsdp_tp_equal_one_device():
    ref = named_leaves(
        jax.device_get(_train("gpt_mini", make_mesh(num_devices=1), None).state.params)
    )
    for rules in (tp_rules(sequence_parallel=True), tp_rules(fsdp=True, sequence_parallel=True)):
        t = _train("gpt_mini", make_mesh(axes="2x4"), "tp", rules=rules)
        got = named_leaves(jax.device_get(t.state.params))
        for k, v in ref.items():
            np.testing.assert_allclose(got[k], v, atol=1e-5, rtol=0, err_msg=k)


@pytest.mark.slow
def test_cnn_tensor_parallel_equals_one_device(digits):
    """A BatchNorm MLP (dense outputs and their BN on model) and a small ResNet (conv output
    channels and BN on model) on a 2x4 mesh end at the one-device weights and statistics."""
    rng = np.random.default_rng(0)
    images = ArrayDataset(
        rng.normal(size=(32, 32, 32, 3)).astype(np.float32), rng.integers(0, 8, 32).astype(np.int32)
    )
    small = dict(layers=(1, 1, 1, 1), widths=(8, 8, 16, 16), stem_width=8, num_classes=8)
    for name, kw, data in (
        ("mlp", dict(input_shape=(8, 8, 1), hidden=(64, 32), batch_norm=True), digits.train),
        ("resnet18", dict(input_shape=(32, 32, 3), **small), images),
    ):
        runs = []
        for mesh, sharding in ((make_mesh(num_devices=1), None), (make_mesh(axes="2x4"), "tp")):
            model = create_model(name, **kw, rngs=nnx.Rngs(0))
            t = Trainer(model, optimizer="sgd", learning_rate=0.1, mesh=mesh, sharding=sharding)
            sub = data.subset(slice(0, 32))
            t.fit(sub, epochs=1, batch_size=16, verbose=0, shuffle=False)
            runs.append(named_leaves(jax.device_get((t.state.params, t.state.model_state))))
        split_on_model = [
            k for k, v in named_leaves(t.state.params).items() if "model" in str(v.sharding.spec)
        ]
        assert split_on_model, name
        for k, v in runs[0].items():
            np.testing.assert_allclose(runs[1][k], v, atol=1e-5, rtol=1e-5, err_msg=f"{name} {k}")


# ---- collectives in the compiled programs ---------------------------------------------------
OPS = ("all-reduce", "reduce-scatter", "all-gather", "all-to-all", "collective-permute")


def _collectives(text: str) -> list[tuple[str, list[tuple[int, ...]]]]:
    """(op, shapes of the arrays it moves) for every collective of a compiled HLO module (XLA
    combines independent all-reduces into one op over a tuple)."""
    out = []
    for line in text.splitlines():
        m = re.search(rf"= (.*?) ({'|'.join(OPS)})(?:-start)?\(", line)
        if m:
            shapes = re.findall(r"\w+\[([\d,]*)\]", m.group(1))
            out.append((m.group(2), [tuple(int(d) for d in s.split(",") if d) for s in shapes]))
    return out


def _count(text: str, shape=None) -> dict[str, int]:
    """Arrays moved per kind of collective (only those of `shape`, if given)."""
    c = dict.fromkeys(OPS, 0)
    for op, shapes in _collectives(text):
        c[op] += sum(1 for s in shapes if shape is None or s == shape)
    return c


def _forward_hlo(layers: int, mesh, rules) -> str:
    model = create_model("gpt_mini", **{**TINY["gpt_mini"], "num_layers": layers})
    graphdef, params, state = split(model)
    apply = make_apply(graphdef)
    fwd = with_rules(lambda p, s, x: apply(p, s, x)[0], mesh, rules)
    shardings = state_shardings(params, mesh, rules=rules)
    p = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), params, shardings
    )
    x = jax.ShapeDtypeStruct((8, 16), jnp.int32, sharding=data_sharding(mesh))
    return jax.jit(fwd).lower(p, state, x).compile().as_text()


def test_forward_has_two_all_reduces_per_layer():
    """Megatron's count: one all-reduce after the row-parallel attention-out and one after
    MLP-down per layer, nothing else inside a layer (the layer difference of 3 vs 2 layers);
    with sequence parallelism two all-gathers are added per layer (and the all-reduce becomes
    a reduce-scatter on GPU; XLA:CPU keeps all-reduce + slice)."""
    mesh = make_mesh(axes="1x8")
    for rules, want in (
        (tp_rules(), {"all-reduce": 2}),
        (tp_rules(sequence_parallel=True), {"all-reduce": 2, "all-gather": 2}),
    ):
        two, three = (_count(_forward_hlo(n, mesh, rules)) for n in (2, 3))
        per_layer = {k: three[k] - two[k] for k in two if three[k] - two[k]}
        assert per_layer == want, (two, three)


@pytest.mark.slow
def test_train_step_collectives_per_layer():
    """The compiled train step on 1x8, per layer: two all-reduced activations [B, T, d] forward
    and four backward (the input gradients of Q, K and V, which XLA reduces one by one where
    Megatron's fused QKV reduces once, and of MLP-up); no weight is ever gathered (the only
    all-gathers move the per-shard [B, T, 8] maxima of the vocab-parallel accuracy)."""
    act = (8, 16, 64)
    counts, texts = {}, {}
    for layers in (2, 3):
        t = _trainer("gpt_mini", make_mesh(axes="1x8"), num_layers=layers)
        step, acc = _step(t)
        ds, _ = _data("gpt_mini", 8)
        batch = shard_batch({"x": ds.x, "y": ds.y, "weight": np.ones(8, np.float32)}, t.mesh)
        texts[layers] = step.lower(t.state, acc, batch).compile().as_text()
        counts[layers] = _count(texts[layers], act)
    per_layer = {k: counts[3][k] - counts[2][k] for k in OPS}
    assert per_layer == {**dict.fromkeys(OPS, 0), "all-reduce": 6}, counts
    gathered = [s for op, shapes in _collectives(texts[3]) if op == "all-gather" for s in shapes]
    assert gathered and all(np.prod(s) <= 8 * 16 * 8 for s in gathered), gathered


# ---- memory ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_per_device_memory_falls_by_the_model_axis():
    """Parameters and Adam moments per device: 1/8 on a 1x8 mesh up to the replicated norms and
    biases. Compiled forward: arguments and the vocab-parallel logits fall by 8; temporaries
    fall less (the residual stream is replicated over model) and further with sequence
    parallelism (its length is split too)."""
    mesh1, mesh8 = make_mesh(num_devices=1), make_mesh(axes="1x8")
    cfg = {**TINY["gpt_mini"], "d_model": 128, "vocab_size": 512, "context": 64}
    cfg["input_shape"] = (64,)
    model = create_model("gpt_mini", **cfg, rngs=nnx.Rngs(0))
    t8 = Trainer(model, task=LanguageModelTask(512), mesh=mesh8, sharding="tp")
    one = bytes_per_device(t8.state, mesh1)
    eight = bytes_per_device(t8.state, mesh8, sharding="tp")
    assert 1 / 8 < eight / one < 0.15, (one, eight)
    # what stays whole on every device: norms, positions, the row-parallel layers' biases
    whole = {
        k.split("/", 3)[-1] if k.startswith("blocks/layers/") else k
        for k, v in named_leaves(t8.state.params).items()
        if v.sharding.is_fully_replicated
    }
    assert whole == {
        "ln1/scale", "ln1/bias", "ln3/scale", "ln3/bias", "attn/out/bias", "mlp/fc2/bias",
        "blocks/ln_f/scale", "blocks/ln_f/bias", "wpe/embedding",
    }  # fmt: skip

    def analysis(mesh, rules):
        graphdef, params, state = split(create_model("gpt_mini", **cfg))
        apply = make_apply(graphdef)
        fwd = with_rules(lambda p, s, x: apply(p, s, x)[0], mesh, rules)
        sh = state_shardings(params, mesh, rules=rules)
        p = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), params, sh
        )
        x = jax.ShapeDtypeStruct((8, 64), jnp.int32, sharding=data_sharding(mesh))
        return jax.jit(fwd).lower(p, state, x).compile().memory_analysis()

    m1, tp = analysis(mesh1, None), analysis(mesh8, tp_rules())
    sp = analysis(mesh8, tp_rules(sequence_parallel=True))
    assert tp.argument_size_in_bytes < 0.15 * m1.argument_size_in_bytes
    assert tp.output_size_in_bytes == m1.output_size_in_bytes // 8  # vocab-parallel logits
    assert tp.temp_size_in_bytes < 0.55 * m1.temp_size_in_bytes
    assert sp.temp_size_in_bytes < 0.85 * tp.temp_size_in_bytes


# ---- checkpoints across meshes --------------------------------------------------------------
@pytest.mark.slow
def test_checkpoint_written_on_2x4_restores_on_8x1_and_one_device(tmp_path):
    from jaxdl.train.checkpoint import Checkpoints, keys_as_data

    t = _train("gpt_mini", make_mesh(axes="2x4"), "tp")
    ckpts = Checkpoints(tmp_path / "ckpt", async_save=False)
    ckpts.save(2, t.state)
    want = jax.device_get(keys_as_data(t.state))
    for mesh, sharding in ((make_mesh(axes="8x1"), "tp"), (make_mesh(num_devices=1), None)):
        target = abstract_state(t.state, mesh, sharding=sharding)
        _, restored, _ = ckpts.restore(target)
        shardings = state_shardings(t.state, mesh, sharding=sharding)
        for a, s in zip(jax.tree.leaves(restored), jax.tree.leaves(shardings), strict=True):
            assert a.sharding.is_equivalent_to(s, a.ndim)
        for a, b in zip(
            jax.tree.leaves(keys_as_data(restored)), jax.tree.leaves(want), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert len(restored.params["wte"]["embedding"].sharding.device_set) == mesh.devices.size


# ---- CLI ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_train_gpt_on_a_2x4_mesh_with_tp(tmp_path, capsys):
    import json

    from jaxdl.cli import main

    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    common = [
        "train",
        "gpt_mini",
        "--dataset",
        f"{'text:'}{text},level=byte,seq_len=16",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--mesh",
        "data=2,model=4",
        "--quiet",
        "--json",
        "--set",
        "num_layers=1",
        "context=16",
    ]
    assert main([*common, "--sharding", "tp"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.isfinite(out["test_loss"])
    assert main([*common, "num_heads=2", "--sharding", "tp"]) == 2
    assert "logical axis 'heads') has size 2, not divisible" in capsys.readouterr().err
    assert main([*common, "--sequence-parallel"]) == 2
    assert "--sequence-parallel needs --sharding tp" in capsys.readouterr().err


# ---- benchmark ------------------------------------------------------------------------------
@pytest.mark.slow
def test_scaling_benchmark_tp_memory_and_communication_on_paper():
    spec = importlib.util.spec_from_file_location("scaling", ROOT / "benchmarks" / "scaling.py")
    scaling = sys.modules["scaling"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scaling)
    one, tp = scaling.measure_tp(scaling.Config(smoke=True, dp=False))
    assert (one["mesh"], tp["mesh"]) == ("1", "2x4")
    assert 1 / 4 < tp["params_MB_per_device"] / one["params_MB_per_device"] < 0.3
    assert tp["argument_MB"] < 0.3 * one["argument_MB"]
    # the HLO's all-reduced bytes against the count on paper (6 activation all-reduces per
    # layer, the embedding's, the data-parallel gradients); the rest are [B, T] loss reductions
    assert one["allreduce_arrays"] == 0
    assert 1.0 <= tp["allreduce_MB_hlo"] / tp["allreduce_MB_paper"] < 1.15, tp
    # on paper, GPT-2 on 1 x 8: 16 x 1024 tokens x 768 x bf16 per activation all-reduce, 4 per
    # layer + the embedding's, ring 2 x 7/8
    c = scaling.tp_comm(*scaling.GPT_SHAPES["gpt2"], batch=16, data=1, model=8)
    act = 16 * 1024 * 768 * 2
    assert c["activation_allreduces"] == 49 and c["dp_moved_MB"] == 0
    assert c["moved_MB"] == pytest.approx(49 * 2 * 7 / 8 * act / 1e6)
    assert c["ms"] == pytest.approx(49 * 2 * 7 / 8 * act / 450e9 * 1e3)
    assert scaling.gpt_params(*scaling.GPT_SHAPES["gpt2"]) == 124_439_808  # GPT-2's count
