"""Loaders for 2D image data: NumPy ``.npz`` / ``.npy`` stacks, MNIST IDX files, image folders.

Every loader returns samples as float32 ``(N, C, H, W)`` (or ``(N, 1, D, H, W)`` for volume
stacks in ``.npy``), with pixel values converted the same way everywhere:

- ``uint8`` is divided by 255 and ``uint16`` by 65535, so both land in ``[0, 1]``,
- ``bool`` becomes 0 / 1, other integers and floats are kept as float32 values,
- NaN or Inf anywhere raises :class:`~dualcontrast.errors.DataError` naming the file and sample.

Integer labels become the ``"content"`` factor (``"transform"`` where a file provides it).
For image folders with class sub-folders, :func:`image_folder_classes` gives the class name of
each content label.
"""

from __future__ import annotations

import gzip
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import DataError
from .base import (
    CONTENT,
    TRANSFORM,
    Dataset,
    DataSplits,
    LazyStack,
    _check_numeric,
    _Layout,
    _layout,
    _samples_in_memory,
    _to_float,
)
from .loading import _IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

# Stacks whose float32 form exceeds this stay on disk (memory-mapped) and are read per batch.
MMAP_THRESHOLD_BYTES = 512 * 2**20

# Keys tried, in this order, for a single-array .npz; labels likewise.
_NPZ_DATA_KEYS = ("x", "images", "data", "X", "arr_0")
_NPZ_LABEL_KEYS = ("y", "labels", "content", "arr_1")
_NPZ_TRANSFORM_KEY = "transform"

# PIL modes holding one intensity channel (alpha in "LA" is dropped).
_GREY_MODES = {"1", "L", "LA", "I", "F"}


class _MappedStack(LazyStack):
    """A memory-mapped stack seen through a :class:`_Layout`, converted per read."""

    def __init__(self, base: np.ndarray, layout: _Layout, where: str):
        super().__init__(layout.shape, where)
        self.base = base
        self.layout = layout

    def _read(self, rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(_to_float(self.layout.convert(np.asarray(self.base[rows]))))


# --------------------------------------------------------------------------- labels


def _as_labels(values: np.ndarray, n: int, where: str, what: str) -> np.ndarray:
    """Integer labels ``(n,)`` from ``values``; ``what`` names them in messages."""
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise DataError(where, f"{what} must be one label per sample, got an array of shape {values.shape}")
    if values.shape[0] != n:
        raise DataError(where, f"{what} has {values.shape[0]} labels but the data has {n} samples")
    if values.dtype.kind in "biu":
        return values.astype(np.int64)
    if values.dtype.kind == "f" and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        return values.astype(np.int64)
    raise DataError(where, f"{what} must be whole numbers, got {values.dtype} values")


# --------------------------------------------------------------------------- .npz


def _open_npz(path: Path) -> dict[str, np.ndarray]:
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(path, f"cannot read as a NumPy .npz archive: {e}") from None


def load_npz(path: Path) -> Dataset | DataSplits:
    """Images from a NumPy ``.npz`` archive.

    Two layouts are recognised:

    - MNIST style: ``x_train``, ``x_test`` (+ ``y_train``, ``y_test`` content labels, both
      or neither) -> :class:`DataSplits` named after the file stem.
    - One stack under the first of ``x``, ``images``, ``data``, ``X``, ``arr_0``, with
      optional content labels under ``y``, ``labels``, ``content`` or ``arr_1`` and optional
      ``transform`` labels; any other 1-D array with one entry per sample is kept as a factor
      of that name -> :class:`Dataset`.

    The stack follows the shape rules of :func:`load_npy` (read whole: archives cannot be
    memory-mapped).
    """
    path = Path(path)
    arrays = _open_npz(path)
    if "x_train" in arrays and "x_test" in arrays:
        return _npz_splits(path, arrays)
    data_key = next((k for k in _NPZ_DATA_KEYS if k in arrays), None)
    if data_key is None:
        raise DataError(
            path,
            f"unrecognised .npz layout: found keys {sorted(arrays)}; expected x_train/y_train/x_test/y_test "
            f"or one image array under one of {list(_NPZ_DATA_KEYS)}",
        )
    x = _samples_in_memory(arrays[data_key], f"{path} [{data_key}]")
    n = x.shape[0]
    factors: dict[str, np.ndarray] = {}
    label_key = next((k for k in _NPZ_LABEL_KEYS if k in arrays), None)
    if label_key is not None:
        factors[CONTENT] = _as_labels(arrays[label_key], n, str(path), f"labels {label_key!r}")
    if _NPZ_TRANSFORM_KEY in arrays:
        factors[TRANSFORM] = _as_labels(arrays[_NPZ_TRANSFORM_KEY], n, str(path), "labels 'transform'")
    used = {data_key, label_key, _NPZ_TRANSFORM_KEY}
    for key, values in arrays.items():
        if key in used:
            continue
        if values.ndim == 1 and values.shape[0] == n and values.dtype.kind in "biuf":
            factors[key] = values
        else:
            logger.info("%s: ignoring array %r of shape %s", path, key, values.shape)
    return Dataset(x=x, factors=factors, source=str(path))


def _npz_splits(path: Path, arrays: dict[str, np.ndarray]) -> DataSplits:
    has_labels = ["y_train" in arrays, "y_test" in arrays]
    if any(has_labels) and not all(has_labels):
        missing = "y_test" if has_labels[0] else "y_train"
        raise DataError(path, f"has labels for one split only ({missing!r} is missing)")
    splits = []
    for part in ("train", "test"):
        x = _samples_in_memory(arrays[f"x_{part}"], f"{path} [x_{part}]")
        factors = {}
        if all(has_labels):
            factors[CONTENT] = _as_labels(arrays[f"y_{part}"], x.shape[0], str(path), f"'y_{part}'")
        splits.append(Dataset(x=x, factors=factors, source=str(path)))
    return DataSplits(train=splits[0], test=splits[1], name=path.stem)


# --------------------------------------------------------------------------- .npy


def load_npy(path: Path, *, mmap_threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> Dataset:
    """One image or volume stack from a ``.npy`` file (no labels: pass them separately).

    Shape rules, tried in this order (``N`` samples):

    ==========================  ==============================================================
    ``(N, H, W)``               grey images -> ``(N, 1, H, W)``
    ``(N, H, W, C)``, C 1/3/4   channels-last -> ``(N, C, H, W)``; RGBA loses its alpha (C=3)
    ``(N, C, H, W)``, C 1/3     channels-first images, kept
    ``(N, D, H, W)``            3D volumes when ``D == H == W > 4`` -> ``(N, 1, D, H, W)``
    ``(N, 1, D, H, W)``         3D volumes (cubic), kept
    ==========================  ==============================================================

    A 4-D shape matching both image rules (e.g. ``(N, 3, 4, 3)``) is refused as ambiguous;
    any other shape raises :class:`DataError` naming the file and the shape.

    The file is memory-mapped. Stacks whose float32 form is at most ``mmap_threshold_bytes``
    are read whole (channels-last ones copied into channels-first order) and checked for
    NaN/Inf at once. Larger ones stay on disk behind a lazy view that converts (transposes,
    rescales) and checks each batch as it is read, so they are never read whole.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty")
    try:
        raw = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(path, f"cannot read as a NumPy .npy array: {e}") from None
    if not isinstance(raw, np.ndarray):
        raise DataError(path, "holds an archive, not a single array; use a .npz suffix")
    _check_numeric(raw.dtype, str(path))
    layout = _layout(tuple(raw.shape), str(path))
    float_bytes = 4 * int(np.prod(layout.shape))
    if float_bytes > mmap_threshold_bytes:
        logger.info("%s: %s, %.1f GiB as float32: read per batch", path, layout.name, float_bytes / 2**30)
        x = _MappedStack(raw, layout, str(path))
    else:
        x = _samples_in_memory(np.asarray(raw), str(path))
    return Dataset(x=x, source=str(path))


# --------------------------------------------------------------------------- IDX (MNIST)

_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(path, f"cannot read: {e}") from None


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """The array in an IDX file whose magic number must be ``magic`` (type and rank)."""
    blob = _read_bytes(path)
    if len(blob) == 0:
        raise DataError(path, "file is empty")
    if len(blob) < 4:
        raise DataError(path, f"truncated: {len(blob)} bytes, too short for an IDX header")
    found = int.from_bytes(blob[:4], "big")
    if found != magic:
        raise DataError(
            path, f"wrong magic number 0x{found:08X}; expected 0x{magic:08X} ({_idx_kind(magic)} IDX file)"
        )
    ndim = blob[3]
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataError(path, f"truncated: header of {header} bytes, file holds {len(blob)}")
    dims = tuple(int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    # Both accepted magic numbers declare unsigned bytes (type code 0x08), so no byte order applies.
    expected = header + int(np.prod(dims))
    if len(blob) < expected:
        raise DataError(
            path, f"truncated: header promises {dims} values ({expected} bytes), file holds {len(blob)} bytes"
        )
    if len(blob) > expected:
        raise DataError(path, f"{len(blob) - expected} unexpected bytes after the {dims} values")
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(dims)


def _idx_kind(magic: int) -> str:
    return "images" if magic == _IDX_IMAGES_MAGIC else "labels"


def _idx_key(name: str) -> str:
    """A file name with compression and '.'/'_' vs '-' differences removed, for matching."""
    stem = name.lower().removesuffix(".gz")
    return re.sub(r"[._]", "-", stem)


def _idx_files(folder: Path) -> list[Path]:
    return sorted(
        f for f in folder.iterdir() if f.is_file() and "idx" in _idx_key(f.name) and "ubyte" in f.name.lower()
    )


def _labels_file_for(images: Path) -> Path | None:
    """The MNIST-named labels file next to ``images`` (``train-images-idx3`` -> ``train-labels-idx1``)."""
    own = _idx_key(images.name)
    target = own.replace("images", "labels").replace("idx3", "idx1")
    if target == own:
        return None
    matches = [f for f in _idx_files(images.parent) if _idx_key(f.name) == target]
    # Prefer the file compressed like the images one when both variants lie side by side.
    same = [f for f in matches if f.name.lower().endswith(".gz") == images.name.lower().endswith(".gz")]
    return (same or matches or [None])[0]


def _idx_dataset(images: Path) -> Dataset:
    raw = _read_idx(images, _IDX_IMAGES_MAGIC)
    x = _samples_in_memory(raw, str(images))
    factors = {}
    labels_path = _labels_file_for(images)
    if labels_path is None:
        logger.info("%s: no matching labels file found; loading without labels", images)
    else:
        labels = _read_idx(labels_path, _IDX_LABELS_MAGIC)
        if labels.shape[0] != x.shape[0]:
            raise DataError(
                labels_path, f"has {labels.shape[0]} labels but {images.name} has {x.shape[0]} images"
            )
        factors[CONTENT] = labels.astype(np.int64)
    return Dataset(x=x, factors=factors, source=str(images))


def load_idx(path: Path) -> Dataset | DataSplits:
    """The original MNIST IDX files (plain or ``.gz``; Fashion-MNIST/EMNIST use the same format).

    ``path`` is either an images file (magic ``0x00000803``: uint8 ``(N, H, W)``, big-endian
    sizes), whose labels file (magic ``0x00000801``) is found by MNIST naming
    (``train-images-idx3-ubyte`` -> ``train-labels-idx1-ubyte``, ``'.'`` or ``'-'`` before
    ``idx``, compressed or not) and loaded as content labels when present -> :class:`Dataset`;
    or a folder holding a train and a test images file (``train`` / ``t10k`` or ``test`` in
    their names) with their labels -> :class:`DataSplits` (one images file -> :class:`Dataset`).
    """
    path = Path(path)
    if not path.is_dir():
        if "labels" in _idx_key(path.name):
            raise DataError(path, "is a labels file; pass the images file or the folder holding both")
        return _idx_dataset(path)
    # Plain and gzipped copies of one file count once (the plain one is read).
    images = list(
        {_idx_key(f.name): f for f in reversed(_idx_files(path)) if "images" in _idx_key(f.name)}.values()
    )
    if not images:
        raise DataError(path, "holds no IDX images file (name with 'images' and 'idx')")
    if len(images) == 1:
        return _idx_dataset(images[0])
    train = _one_images_file(path, images, ("train",))
    test = _one_images_file(path, images, ("t10k", "test"))
    train_set, test_set = _idx_dataset(train), _idx_dataset(test)
    if (CONTENT in train_set.factors) != (CONTENT in test_set.factors):
        raise DataError(path, "has a labels file for only one of the train and test images")
    return DataSplits(train=train_set, test=test_set, name=path.name)


def _one_images_file(folder: Path, images: list[Path], words: tuple[str, ...]) -> Path:
    found = [f for f in images if any(w in _idx_key(f.name) for w in words)]
    if len(found) != 1:
        raise DataError(
            folder,
            f"expected one {'/'.join(words)} images IDX file, found {[f.name for f in found] or 'none'} "
            f"(IDX images files here: {sorted(f.name for f in images)})",
        )
    return found[0]


# --------------------------------------------------------------------------- image folders


@dataclass(frozen=True)
class _FolderScan:
    files: list[Path]
    labels: np.ndarray | None
    classes: list[str]


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        f
        for f in folder.iterdir()
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in _IMAGE_SUFFIXES
    )


def _scan_folder(path: Path) -> _FolderScan:
    """The images of a folder: at its top level, or in class sub-folders (one level deep)."""
    if not path.is_dir():
        raise DataError(path, "is not a folder")
    top = _image_files(path)
    subfolders = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = [(d.name, files) for d in subfolders if (files := _image_files(d))]
    if top and classes:
        raise DataError(
            path,
            f"holds images both at its top level ({top[0].name}, ...) and in sub-folders "
            f"({classes[0][0]}/, ...); put every image in a class sub-folder, or none",
        )
    if top:
        return _FolderScan(files=top, labels=None, classes=[])
    if not classes:
        raise DataError(path, f"no images found (looked for {', '.join(sorted(_IMAGE_SUFFIXES))})")
    files = [f for _, group in classes for f in group]
    labels = np.concatenate([np.full(len(group), k, dtype=np.int64) for k, (_, group) in enumerate(classes)])
    return _FolderScan(files=files, labels=labels, classes=[name for name, _ in classes])


def image_folder_classes(path: Path) -> list[str]:
    """Class names of an image folder: ``result[k]`` is the sub-folder of content label ``k``.

    Empty for a folder without class sub-folders. Names are sorted; sub-folders without images
    are skipped, exactly as :func:`load_image_folder` numbers them.
    """
    return _scan_folder(Path(path)).classes


def _is_grey(mode: str) -> bool:
    return mode in _GREY_MODES or mode.startswith("I;")


def _probe(file: Path) -> tuple[str, tuple[int, int]]:
    """Mode and ``(H, W)`` of an image, from its header."""
    try:
        with Image.open(file) as im:
            frames, mode, size = getattr(im, "n_frames", 1), im.mode, (im.height, im.width)
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(file, f"cannot read image: {e}") from None
    if frames > 1:
        raise DataError(file, f"holds {frames} frames; only single-image files are supported")
    return mode, size


def _pixels(file: Path, colour: bool) -> np.ndarray:
    """One image as float32 ``(C, H, W)``, C = 3 if ``colour`` else 1."""
    try:
        with Image.open(file) as im:
            im.load()
            if _is_grey(im.mode):
                # Alpha says how to composite a picture, not what it shows.
                grey = im.getchannel("L") if im.mode == "LA" else im
                values = _to_float(np.asarray(grey))[None]
                values = np.repeat(values, 3, axis=0) if colour else values
            else:
                values = _to_float(np.asarray(im.convert("RGB"))).transpose(2, 0, 1)
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(file, f"cannot read image: {e}") from None
    if not np.isfinite(values).all():
        raise DataError(file, "contains NaN or Inf values")
    return values


def load_image_folder(path: Path) -> Dataset:
    """A folder of PNG/JPG/TIFF/BMP images, ``(N, 1, H, W)`` if every image is grey, else RGB.

    Grey means a one-channel PIL mode (``L``, ``1``, ``I;16``, ``I``, ``F``, ``LA`` with its
    alpha dropped); palette and colour images are converted to RGB, and in a mixed folder grey
    images are repeated over the three channels. Images either all lie at the top level, or in
    class sub-folders ``path/<class>/*.png`` whose sorted names become content labels
    ``0..K-1`` (see :func:`image_folder_classes`). Files are read in sorted order; hidden files
    and non-image files are skipped. Every image must have the same size.
    """
    path = Path(path)
    scan = _scan_folder(path)
    probes = [_probe(f) for f in scan.files]
    first_size = probes[0][1]
    for file, (_, size) in zip(scan.files, probes, strict=True):
        if size != first_size:
            raise DataError(
                file,
                f"is {size[0]}x{size[1]} (HxW) but {scan.files[0].name} is {first_size[0]}x{first_size[1]}; "
                "all images must have the same size",
            )
    colour = not all(_is_grey(mode) for mode, _ in probes)
    x = np.empty((len(scan.files), 3 if colour else 1, *first_size), dtype=np.float32)
    for i, file in enumerate(tqdm(scan.files, desc=f"reading {path.name}", unit="img", disable=None)):
        # Checked per image (in _pixels) so a NaN names its file rather than a sample number.
        x[i] = _pixels(file, colour)
    factors = {} if scan.labels is None else {CONTENT: scan.labels}
    if scan.classes:
        logger.info("%s: %d classes: %s", path, len(scan.classes), ", ".join(scan.classes))
    return Dataset(x=x, factors=factors, source=str(path))
