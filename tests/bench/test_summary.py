"""jaxdl.summary / jaxdl.bench.summary: the rows of every depth add up to the totals, for every
registered model (traced with eval_shape: nothing is allocated)."""

import io
import re
from contextlib import redirect_stdout

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import jaxdl
from jaxdl.bench.summary import summarize
from jaxdl.models import abstract_model, list_models
from jaxdl.models.inputs import example_input


@pytest.mark.parametrize("name", list_models())
def test_rows_add_up_to_the_totals_at_every_depth(name):
    model = abstract_model(name)
    s = summarize(model, example_input(model.config))
    assert s.rows[0].params == s.total and s.rows[0].bytes == s.bytes
    for depth in range(1, s.max_depth() + 1):
        rows = s.frontier(depth)
        assert sum(r.params for r in rows) == s.total, depth
        assert sum(r.trainable for r in rows) == s.trainable, depth
        assert sum(r.bytes for r in rows) == s.bytes, depth
        assert sum(r.macs for r in rows) <= s.macs, depth
    paths = [r.path for r in s.rows[1:]]
    assert len(paths) == len(set(paths))


def test_resnet50_top_level_view_and_depth_two():
    model = abstract_model("resnet50")
    s = summarize(model, example_input(model.config))
    top = {r.path: r for r in s.frontier(1)}
    assert list(top) == ["stem", "pool", "stages", "head"]
    assert top["stages"].params == 23_551_488 and top["stages"].output_shape == (1, 7, 7, 2048)
    assert top["stages"].trainable_flag == "part"  # BatchNorm statistics
    assert top["head"].trainable_flag == "yes"
    assert top["head"].bytes == 2_049_000 * 4
    assert s.trainable == 25_557_032 and s.total == 25_610_152
    assert [r.path for r in s.frontier(2) if r.path.startswith("stages/")] == [
        f"stages/{i}" for i in range(4)
    ]


def test_python_summary_freeze_and_direct_variables():
    m = (
        jaxdl.create_model("vit_tiny", num_classes=10, input_shape=(32, 32, 3))
        if ("vit_tiny" in list_models())
        else abstract_model("vit_b16", num_classes=10)
    )
    buf = io.StringIO()
    from rich.console import Console

    s = jaxdl.summary(m, freeze=[r"^encoder/"], console=Console(file=buf, width=300))
    rows = {r.path: r for r in s.frontier(1)}
    assert rows["cls_token"].type == "Param" and rows["encoder"].trainable_flag == "no"
    assert s.frozen == rows["encoder"].params
    assert s.trainable == s.total - s.frozen
    out = buf.getvalue()
    assert "cls_token" in out and f"(of which frozen: {s.frozen:,})" in out

    class Tiny(nnx.Module):
        def __init__(self):
            self.fc = nnx.Linear(3, 2, rngs=nnx.Rngs(0))

        def __call__(self, x, *, train=False, rngs=None):
            return self.fc(x)

    with pytest.raises(jaxdl.errors.JaxdlError, match="input_shape"):
        jaxdl.summary(Tiny())
    lin = jaxdl.summary(Tiny(), (3,), batch=4, print_table=False)
    assert lin.output_shape == (4, 2) and lin.macs == 4 * 3 * 2 and lin.total == 8


def test_token_model_gets_int_inputs():
    m = abstract_model("gpt_mini")
    s = jaxdl.summary(m, print_table=False)
    assert s.output_shape[-1] == m.config.vocab_size
    s2 = summarize(m, jax.ShapeDtypeStruct((1, m.config.context), jnp.int32))
    assert s2.macs == s.macs


def test_cli_summary_piped_does_not_wrap_and_depth_all():
    from jaxdl.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["summary", "resnet50"]) == 0
    lines = buf.getvalue().splitlines()
    assert any(
        "Total params: 25,610,152   Trainable params: 25,557,032   Non-trainable params: 53,120"
        in line
        for line in lines
    )  # one line: not wrapped
    assert any(re.search(r"│ stages\s+│ List\s+│ \(1, 7, 7, 2048\)", line) for line in lines)
    assert len(lines) < 20  # the top-level view, not every layer
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["summary", "mlp", "--depth", "all", "--width", "100"]) == 0
    assert max(len(line) for line in buf.getvalue().splitlines()) <= 100
    assert main(["summary", "mlp", "--depth", "deep"]) == 2
