"""Data: the dataset interface, loaders for every supported format, and built-in data sets."""

from . import simulated, synthetic  # noqa: F401  (register the built-in data sets)
from .base import (
    CONTENT,
    TRANSFORM,
    Dataset,
    DataSplits,
    LazyArray,
    carve_validation,
    check_finite,
    split_dataset,
)
from .loading import BUILTIN_DATASETS, load_data, load_labels, load_path

__all__ = [
    "BUILTIN_DATASETS",
    "CONTENT",
    "TRANSFORM",
    "DataSplits",
    "Dataset",
    "LazyArray",
    "carve_validation",
    "check_finite",
    "load_data",
    "load_labels",
    "load_path",
    "split_dataset",
]
