"""Data: offline sources, deterministic batching (and, later, Grain pipelines and augmentation)."""

from jaxdl.data.pipeline import batches, epoch_order, num_batches
from jaxdl.data.sources import (
    DATASETS, ArrayDataset, Splits, load_arrays, load_dataset, load_digits, load_mnist_idx, read_idx,
    register_dataset, shared_data_dir,
)

__all__ = ["batches", "epoch_order", "num_batches", "DATASETS", "ArrayDataset", "Splits", "load_arrays",
           "load_dataset", "load_digits", "load_mnist_idx", "read_idx", "register_dataset", "shared_data_dir"]
