"""Data: sources (offline, TFDS, image folders, CSV, text), Grain pipelines, JAX augmentation.

`core` holds the source types, `registry` the dataset kinds and `load_dataset`, `loaders/` one
module per kind, `text` vocabularies and next-token windows."""

from jaxdl.data.augment import Augment, parse_augment
from jaxdl.data.core import ArrayDataset, Splits, Subset, load_arrays
from jaxdl.data.loaders.csv import load_csv
from jaxdl.data.loaders.digits import load_digits
from jaxdl.data.loaders.folder import ImageFolder, load_image_folder
from jaxdl.data.loaders.idx import load_mnist_idx, read_idx
from jaxdl.data.loaders.text import load_text
from jaxdl.data.loaders.tfds import TfdsSource, load_tfds
from jaxdl.data.pipeline import Pipeline, PipelineIterator, batches, epoch_order, num_batches
from jaxdl.data.registry import (
    DATASETS,
    load_dataset,
    load_mnist,
    register_dataset,
    shared_data_dir,
)
from jaxdl.data.text import CharVocab

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
