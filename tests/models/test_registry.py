import pytest
from flax import nnx

import jaxdl
from jaxdl.errors import JaxdlError
from jaxdl.models.registry import natural_key


def test_list_and_create():
    names = jaxdl.list_models()
    assert {"perceptron", "mlp"} <= set(names)
    assert names == sorted(names, key=natural_key)  # resnet18 before resnet101
    assert jaxdl.list_models("mlp*") == [n for n in names if n.startswith("mlp")]
    m = jaxdl.create_model("mlp", hidden=(7,), num_classes=3, rngs=nnx.Rngs(0))
    assert isinstance(m, nnx.Module) and m.config.hidden == (7,)


def test_unknown_name_lists_close_names():
    with pytest.raises(JaxdlError, match=r"unknown model 'mpl'.*Did you mean: mlp"):
        jaxdl.create_model("mpl")


def test_unknown_override_lists_fields():
    with pytest.raises(JaxdlError, match=r"unknown option\(s\) widths.*expected some of.*hidden"):
        jaxdl.create_model("mlp", widths=(3,))


def test_every_model_can_be_found_by_name():
    """`where(name)` gives every registered model's source module and builder class, its
    config class (the variants table), a docs page and test modules that exist and speak of it:
    the family's test module names one of the family's models (or its builder), and the docs
    page names the family's builder, config or one of its models."""
    import re

    from conftest import ROOT

    from jaxdl.models.registry import BATTERY, FAMILY_FILES, get_entry, list_models, where

    by_family: dict[str, list[str]] = {}
    for n in list_models():
        by_family.setdefault(get_entry(n).family, []).append(n)
    assert set(by_family) <= set(FAMILY_FILES), set(by_family) - set(FAMILY_FILES)
    for family, names in by_family.items():
        w = where(names[0])
        source = (ROOT / w["source"]).read_text()
        assert f"class {w['builder']}" in source and f"class {w['config']}" in source, w
        docs, tests = FAMILY_FILES[family]
        words = {*names, w["builder"], w["config"]}
        for path in (docs, tests):
            text = (ROOT / path).read_text()
            found = [x for x in words if re.search(rf"(?<![\w]){re.escape(x)}(?![\w])", text)]
            assert found, f"{path} names none of {family}'s models or classes"
        assert w["tests"] == f"{tests}, {BATTERY}"


def test_cli_models_where(capsys):
    from jaxdl.cli import main

    assert main(["models", "vit_b16", "--where", "--no-params"]) == 0
    out = capsys.readouterr().out
    for part in ("jaxdl/models/vit.py", "ViT", "docs/transformers.md", "test_transformer.py"):
        assert part in out, part
