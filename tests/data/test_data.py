import gzip

import numpy as np
import pytest

from jaxdl.data import load_dataset, load_digits, read_idx
from jaxdl.errors import JaxdlError


def test_digits_real_and_split():
    s = load_digits(seed=0)
    assert s.input_shape == (8, 8, 1) and s.num_classes == 10
    n = len(s.train) + len(s.val) + len(s.test)
    assert n == 1797
    assert 0.0 <= s.train.x.min() and s.train.x.max() <= 1.0
    # stratified: each class is in every split
    for part in (s.train, s.val, s.test):
        assert set(np.unique(part.y)) == set(range(10))
    # deterministic by seed, different across seeds
    s2, s3 = load_digits(seed=0), load_digits(seed=1)
    np.testing.assert_array_equal(s.test.x, s2.test.x)
    assert not np.array_equal(s.test.x, s3.test.x)


def test_mnist_idx_from_shared(mnist_dir):
    s = load_dataset(f"mnist_idx:{mnist_dir}", val_fraction=0.0, test_fraction=0.2)
    assert len(s.train) == 8000 and len(s.test) == 2000 and s.val is None
    assert s.input_shape == (28, 28, 1) and s.train.x.dtype == np.float32
    assert s.train.x.max() == 1.0 and set(np.unique(s.test.y)) == set(range(10))


def test_idx_errors(tmp_path):
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 12)
    with pytest.raises(JaxdlError, match="is not an IDX file"):
        read_idx(bad)
    trunc = tmp_path / "x.gz"
    with gzip.open(trunc, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (100).to_bytes(4, "big") + b"\x00" * 10)
    with pytest.raises(
        JaxdlError, match=r"header says shape \(100,\) \(100 bytes of data\), file holds 10"
    ):
        read_idx(trunc)
    with pytest.raises(JaxdlError, match="must hold t10k-images"):
        load_dataset(
            f"mnist_idx:{tmp_path / 'empty'}" if (tmp_path / "empty").mkdir() is None else ""
        )
    with pytest.raises(JaxdlError, match="is not a folder"):
        load_dataset(f"mnist_idx:{tmp_path / 'nope'}")


def test_unknown_dataset():
    with pytest.raises(JaxdlError, match="unknown dataset 'digit'.*Did you mean: digits"):
        load_dataset("digit")
