"""Data: sources (offline, TFDS, image folders, CSV, text), Grain pipelines, JAX augmentation."""

from jaxdl.data.augment import Augment, parse_augment
from jaxdl.data.pipeline import Pipeline, PipelineIterator, batches, epoch_order, num_batches
from jaxdl.data.sources import (
    DATASETS,
    ArrayDataset,
    ImageFolder,
    Splits,
    Subset,
    TfdsSource,
    load_arrays,
    load_csv,
    load_dataset,
    load_digits,
    load_image_folder,
    load_mnist,
    load_mnist_idx,
    load_tfds,
    read_idx,
    register_dataset,
    shared_data_dir,
)
from jaxdl.data.text import CharVocab, load_text

__all__ = [
    "Augment",
    "parse_augment",
    "Pipeline",
    "PipelineIterator",
    "batches",
    "epoch_order",
    "num_batches",
    "DATASETS",
    "ArrayDataset",
    "ImageFolder",
    "Splits",
    "Subset",
    "TfdsSource",
    "load_arrays",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_mnist",
    "load_mnist_idx",
    "load_tfds",
    "read_idx",
    "register_dataset",
    "shared_data_dir",
    "CharVocab",
    "load_text",
]
