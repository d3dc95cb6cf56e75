"""benchmarks/engine_overhead.py runs (smoke sizes) and writes one CSV row per workload and
implementation; the figures themselves come from running the script, never from a test."""

import csv
import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

from jaxdl.errors import JaxdlError

ROOT = Path(__file__).resolve().parents[2]


def load():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the script imports _common and rnn_layers
    spec = importlib.util.spec_from_file_location(
        "engine_overhead", ROOT / "benchmarks" / "engine_overhead.py"
    )
    mod = sys.modules["engine_overhead"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_engine_overhead_smoke_writes_rows(tmp_path):
    eo = load()
    has_keras = importlib.util.find_spec("keras") is not None
    if not has_keras:
        warnings.warn(
            "keras is not installed: engine_overhead runs without its Keras rows", stacklevel=1
        )
    cfg = eo.Config(smoke=True, out=tmp_path, keras=has_keras, workloads=("mlp_b32", "lstm_layer"))
    eo.main(cfg)
    with (tmp_path / "engine_overhead_cpu.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(eo.COLUMNS)
    want = {("mlp_b32", "fit"), ("mlp_b32", "bare"), ("lstm_layer", "jaxdl")}
    if has_keras:
        want |= {("mlp_b32", "keras"), ("lstm_layer", "keras")}
    assert {(r["workload"], r["impl"]) for r in rows} == want
    for r in rows:
        assert 0 < float(r["us_per_step_min"]) <= float(r["us_per_step_median"])
    bare = next(r for r in rows if r["impl"] == "bare")
    assert float(bare["ratio_vs_bare"]) == 1.0
    with pytest.raises(JaxdlError, match="engine_overhead workload"):
        eo.main(eo.Config(smoke=True, out=tmp_path, keras=False, workloads=("mlp_b33",)))
