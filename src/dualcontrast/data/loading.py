"""One entry point from a data setting (a path or a built-in name) to train/test splits.

File formats are recognised by suffix (or, for folders, by what they hold):

====================  =====================================================
``.npz``              MNIST-style ``x_train/y_train/x_test/y_test``, or one array (+ labels)
``.npy`` / ``.pkl``   an image or volume stack (the paper's pickled subtomograms included)
IDX (``.gz`` too)     the original MNIST files, or a folder holding the four of them
folder of PNG/JPG     grey or RGB images; class sub-folders become content labels
``.mrc`` / ``.mrcs``  a stack of images or volumes (memory-mapped)
folder of ``.mrc``    one volume per file
``.star``             a RELION particle list (``rlnImageName``)
``.h5`` / ``.hdf5``   a dataset of samples (read lazily) + optional label datasets
====================  =====================================================
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, DualContrastError
from ..registry import Registry
from .base import CONTENT, Dataset, DataSplits, carve_validation, split_dataset

# Built-in data sets: name -> factory(**params) -> DataSplits. Modules register themselves.
BUILTIN_DATASETS: Registry[Callable[..., DataSplits]] = Registry("built-in dataset")

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def _is_idx(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return "idx" in name and "ubyte" in name


# suffix -> (module, function); modules are imported on use, so 2D work never loads 3D readers.
_LOADERS: dict[str, tuple[str, str]] = {
    ".npz": ("images", "load_npz"),
    ".npy": ("images", "load_npy"),
    ".pkl": ("volumes", "load_pickle"),
    ".pickle": ("volumes", "load_pickle"),
    ".mrc": ("volumes", "load_mrc"),
    ".mrcs": ("volumes", "load_mrc"),
    ".map": ("volumes", "load_mrc"),
    ".star": ("volumes", "load_star"),
    ".h5": ("volumes", "load_h5"),
    ".hdf5": ("volumes", "load_h5"),
}


def _loader(module: str, function: str) -> Callable[[Path], Dataset | DataSplits]:
    return getattr(importlib.import_module(f"dualcontrast.data.{module}"), function)


def _read(path: Path, module: str, function: str) -> Dataset | DataSplits:
    """Run a loader and check what it returns, so a damaged file ends in a DataError naming it."""
    try:
        loaded = _loader(module, function)(path)
        for data in (loaded.train, loaded.test) if isinstance(loaded, DataSplits) else (loaded,):
            _check_factors(path, data)
        return loaded
    except DualContrastError:
        raise
    except MemoryError:
        raise DataError(path, "header declares more data than fits in memory (damaged file?)") from None
    # A corrupted file can make a parser (numpy's header tokenizer, zip, HDF5, pickle) raise almost
    # anything; every such failure means the file cannot be read, not a bug to show as a traceback.
    except Exception as e:
        raise DataError(path, f"cannot be read ({type(e).__name__}: {e})") from None


def _check_factors(path: Path, data: Dataset) -> None:
    """Content labels must be class numbers or names; float labels would only fail at scoring time."""
    labels = data.factors.get(CONTENT)
    if labels is None:
        return
    labels = np.asarray(labels)
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise DataError(path, "content labels must be integers (class numbers), found non-integer values")
        data.factors[CONTENT] = labels.astype(np.int64)
    elif not (np.issubdtype(labels.dtype, np.integer) or labels.dtype.kind in "USO" or labels.dtype == bool):
        raise DataError(path, f"content labels must be integers or names, got dtype {labels.dtype}")


def load_path(path: str | Path) -> Dataset | DataSplits:
    """Read a data file or folder into a :class:`Dataset` (or ready-made splits)."""
    p = Path(path)
    if not p.exists():
        raise DataError(p, "no such file or folder")
    suffix = p.suffix.lower()
    if p.is_dir():
        files = [f for f in p.iterdir() if f.is_file()]
        if any(_is_idx(f) for f in files):
            return _read(p, "images", "load_idx")
        if any(f.suffix.lower() in (".mrc", ".map") for f in files):
            return _read(p, "volumes", "load_mrc_folder")
        return _read(p, "images", "load_image_folder")
    if p.stat().st_size == 0:
        raise DataError(p, "file is empty")
    if _is_idx(p):
        return _read(p, "images", "load_idx")
    if suffix in _LOADERS:
        return _read(p, *_LOADERS[suffix])
    if suffix in _IMAGE_SUFFIXES:
        raise DataError(p, "a single image is not a data set; pass the folder that holds the images")
    known = ", ".join(sorted(_LOADERS))
    raise DataError(p, f"unrecognised data format {suffix or '(no suffix)'!r}; known: {known}, IDX, folders")


def load_labels(path: str | Path, n: int) -> np.ndarray:
    """Content labels from ``.npy`` / ``.txt`` / ``.csv`` (one per sample)."""
    p = Path(path)
    if not p.exists():
        raise DataError(p, "no such labels file")
    try:
        if p.suffix.lower() == ".npy":
            labels = np.load(p, allow_pickle=False)
        else:
            labels = np.loadtxt(p, delimiter="," if p.suffix.lower() == ".csv" else None)
    except Exception as e:  # a damaged file can make the parsers raise almost anything
        raise DataError(p, f"cannot read labels ({type(e).__name__}: {e})") from None
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != n:
        raise DataError(p, f"has {labels.shape[0]} labels but the data has {n} samples")
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise DataError(p, "labels must be integers (class numbers), found non-integer values")
        labels = labels.astype(np.int64)
    return labels


def load_data(
    path: str | Path | None = None,
    *,
    name: str = "shapes2d",
    labels: str | Path | None = None,
    test_fraction: float = 0.1,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    normalize: str = "none",
    max_samples: int | None = None,
    params: dict[str, Any] | None = None,
    project: bool = False,
) -> DataSplits:
    """Train/(validation/)test splits from a path, or from the built-in data set ``name``.

    Data without its own split is split at random (``test_fraction``, ``split_seed``).
    ``max_samples`` keeps a random subset of the training set (quick runs); ``val_fraction`` of
    what remains becomes the validation set (:func:`~dualcontrast.data.base.carve_validation`).
    ``project`` sums volumes along z into 2D projections with their simulation's CTF
    (:func:`~dualcontrast.data.ctf.project_splits`).
    """
    if path is None:
        splits = BUILTIN_DATASETS.get(name)(**(params or {}))
    else:
        loaded = load_path(path)
        if isinstance(loaded, DataSplits):
            if labels is not None:
                raise DataError(
                    path, "already holds its own labels and split; --labels is not accepted for it"
                )
            splits = loaded
        else:
            if labels is not None:
                loaded.factors[CONTENT] = load_labels(labels, len(loaded))
            splits = split_dataset(loaded, test_fraction, split_seed, name=Path(path).stem)
    if project:
        from .ctf import project_splits

        splits = project_splits(splits, path, params if path is None else None)
    if normalize != "none":
        splits.train.normalize = splits.test.normalize = normalize
        # Re-validate the setting on both splits.
        splits.train.__post_init__()
        splits.test.__post_init__()
    if max_samples is not None and max_samples < len(splits.train):
        keep = np.sort(
            np.random.default_rng(split_seed).choice(len(splits.train), max_samples, replace=False)
        )
        splits.train = splits.train.subset(keep)
    return carve_validation(splits, val_fraction, split_seed)
