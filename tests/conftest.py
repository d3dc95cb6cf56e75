"""Test setup: 8 simulated CPU devices (so data parallelism is exercised everywhere) and Keras on
the JAX backend. Both must be set before jax / keras are first imported."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from jaxdl.data import shared_data_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data():
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is absent (set JAXDL_SHARED_DATA to its path)")
    return d


@pytest.fixture(scope="session")
def mnist_dir(shared_data):
    d = shared_data / "mnist"
    if not (d / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST IDX files not found in {d}")
    return d


@pytest.fixture(scope="session")
def digits():
    from jaxdl.data import load_digits

    return load_digits(seed=0)


def pytest_report_header(config):
    return f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}"


def assert_pictures(folder, names):
    """Each of `names` in `folder` is a PNG of a readable size and aspect (no 2400x320 strips:
    between 1:2 and 4:1)."""
    from PIL import Image

    for name in names:
        path = Path(folder) / name
        assert path.is_file(), f"{name} not written; {folder} holds {sorted(os.listdir(folder))}"
        with Image.open(path) as im:
            assert im.format == "PNG", name
            w, h = im.size
        assert w >= 300 and h >= 250, (name, w, h)
        assert 0.5 <= w / h <= 4.0, (name, w, h)
