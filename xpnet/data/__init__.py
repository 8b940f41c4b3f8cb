"""The data layer: datasets as host NumPy arrays, their files, formats and verification.

formats.py (IDX, CIFAR's batches: bytes to arrays), catalogue.py (the datasets' files and checksums),
fetch.py (xpnet's cache, the mirrors, downloads), cache.py (verified uncompressed copies),
files.py (where files are looked for and loaded from), datasets.py (`load_dataset`, `Dataset`).
"""

from .catalogue import (
    CIFAR10_CLASSES,
    DATASETS,
    RESOURCES,
    BatchesDataset,
    BinaryBatches,
    IdxDataset,
    IdxFile,
)
from .datasets import Dataset, load_dataset, load_mnist
from .fetch import MIRRORS, DataUnavailable, cache_root
from .formats import read_idx

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "MIRRORS",
    "RESOURCES",
    "BatchesDataset",
    "BinaryBatches",
    "DataUnavailable",
    "Dataset",
    "IdxDataset",
    "IdxFile",
    "cache_root",
    "load_dataset",
    "load_mnist",
    "read_idx",
]
