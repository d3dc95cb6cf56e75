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
