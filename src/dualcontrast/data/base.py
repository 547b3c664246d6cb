"""The dataset interface every loader returns and every consumer reads.

A :class:`Dataset` is a stack of samples, 2D images ``(N, C, H, W)`` or 3D volumes
``(N, C, D, H, W)``, plus optional ground-truth factors. The stack may be an in-memory
array, a ``numpy.memmap`` or any :class:`LazyArray` (HDF5, MRC stacks, file lists), so data
sets larger than memory are read one batch at a time through :meth:`Dataset.batch`.

Ground-truth factor names used by metrics and analysis:

- ``"content"``: integer identity of the object (digit, shape class, protein identity),
- ``"transform"``: integer transformation state (conformation) where known,
- anything else (``"angle"``, ``"shift_x"``...) is carried along and saved but not scored.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import DataError

CONTENT = "content"
TRANSFORM = "transform"


@runtime_checkable
class LazyArray(Protocol):
    """An array-like read on demand: ``shape``, ``dtype`` and integer-array indexing."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def __getitem__(self, index) -> np.ndarray: ...

    def __len__(self) -> int: ...


def _rows(index: Any, n: int, where: str) -> np.ndarray:
    """Row numbers ``(k,)`` selected by an int, slice or integer array (negative ints count from the end)."""
    if isinstance(index, slice):
        return np.arange(*index.indices(n))
    rows = np.atleast_1d(np.asarray(index))
    if rows.dtype.kind not in "iu":
        raise TypeError(f"{where}: samples are selected by integers or slices, got {rows.dtype}")
    rows = np.where(rows < 0, rows + n, rows)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise IndexError(f"{where}: sample index out of range for {n} samples")
    return rows.astype(np.int64)


class LazyStack(abc.ABC):
    """The one base of the package's lazy arrays (MRC, HDF5, memory-mapped ``.npy``, concatenated
    data sets): float32 samples read per call, checked for NaN/Inf, so a bad sample in a file too
    large to scan at load time still fails with a message naming the file and the sample.

    Subclasses implement :meth:`_read` for sorted, distinct rows and keep no open handles
    between calls that would stop them from pickling.
    """

    def __init__(self, shape: tuple[int, ...], where: str):
        self._shape = tuple(int(s) for s in shape)
        self.where = where

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return self._shape[0]

    @abc.abstractmethod
    def _read(self, rows: np.ndarray) -> np.ndarray:
        """The samples at ``rows`` (sorted, distinct) as float32."""

    def __getitem__(self, index: Any) -> np.ndarray:
        single = np.ndim(index) == 0 and not isinstance(index, slice)
        rows = _rows(index, len(self), self.where)
        unique, inverse = np.unique(rows, return_inverse=True)
        block = (
            np.asarray(self._read(unique), dtype=np.float32)
            if len(unique)
            else np.empty((0, *self._shape[1:]), np.float32)
        )
        bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        if bad.any():
            raise DataError(self.where, f"sample {int(unique[np.argmax(bad)])} contains NaN or Inf values")
        out = block[inverse.reshape(-1)]
        return out[0] if single else out


@dataclass
class Dataset:
    """Samples plus ground-truth factors; the unit every loader returns.

    Attributes:
        x: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` array-like (float; may be lazy). An
            in-memory array in any other layout or dtype a data file may hold (``(N, H, W)``,
            channels-last, cubic ``(N, D, D, D)``, uint8 ...) is converted by the rules of
            the file loaders (:func:`~dualcontrast.data.images.load_npy`) and checked for
            NaN/Inf; a float32 array already in the layout is kept as it is (no copy).
        factors: name -> ``(N,)`` array of per-sample ground truth (may be empty).
        source: where the data came from (a path, or ``builtin:<name>``), used in messages.
        normalize: ``"none"`` or ``"per_sample"`` (zero mean, unit std per sample, applied
            when batches are read so lazy data stays lazy).
        ids: ``(N,)`` integer sample ids, stable across subsets (index into the source).
    """

    x: np.ndarray | LazyArray
    factors: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "<memory>"
    normalize: str = "none"
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.x, np.ndarray) and not isinstance(self.x, np.memmap) and not _is_samples(self.x):
            self.x = _samples_in_memory(self.x, self.source)
        shape = tuple(self.x.shape)
        if len(shape) not in (4, 5):
            raise DataError(
                self.source,
                f"expected samples shaped (N, C, H, W) or (N, C, D, H, W), got array of shape {shape}",
            )
        if shape[0] == 0:
            raise DataError(self.source, "contains no samples")
        if len(shape) == 5 and not (shape[2] == shape[3] == shape[4]):
            raise DataError(self.source, f"volumes must be cubic, got {shape[2]}x{shape[3]}x{shape[4]}")
        if self.normalize not in ("none", "per_sample"):
            raise DataError(
                self.source, f"unknown normalisation {self.normalize!r} (use 'none' or 'per_sample')"
            )
        for name, values in list(self.factors.items()):
            values = np.asarray(values)
            if values.shape[:1] != (shape[0],):
                raise DataError(
                    self.source,
                    f"factor {name!r} has {values.shape[0] if values.ndim else 0} labels "
                    f"but the data has {shape[0]} samples",
                )
            self.factors[name] = values
        if self.ids is None:
            self.ids = np.arange(shape[0])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` or ``(C, D, H, W)``."""
        return tuple(int(s) for s in self.x.shape[1:])

    @property
    def spatial_dims(self) -> int:
        return len(self.x.shape) - 2

    @property
    def in_memory(self) -> bool:
        return isinstance(self.x, np.ndarray) and not isinstance(self.x, np.memmap)

    def batch(self, index: np.ndarray) -> np.ndarray:
        """Samples ``index`` as a float32 array, normalised as configured.

        Lazy backends (HDF5, memmaps) read fastest with sorted indices, so reads are sorted
        and the original order restored.
        """
        index = np.asarray(index)
        if self.in_memory:
            out = np.asarray(self.x[index], dtype=np.float32)
        else:
            order = np.argsort(index, kind="stable")
            sorted_rows = np.asarray(self.x[index[order]], dtype=np.float32)
            out = np.empty_like(sorted_rows)
            out[order] = sorted_rows
        if self.normalize == "per_sample":
            axes = tuple(range(1, out.ndim))
            out = (out - out.mean(axes, keepdims=True)) / (out.std(axes, keepdims=True) + 1e-6)
        return out

    def subset(self, index: np.ndarray) -> Dataset:
        """A dataset of rows ``index`` (materialised for in-memory data, a view for lazy data)."""
        index = np.asarray(index)
        x = self.x[index] if self.in_memory else _IndexedView(self.x, index)
        return Dataset(
            x=x,
            factors={k: v[index] for k, v in self.factors.items()},
            source=self.source,
            normalize=self.normalize,
            ids=self.ids[index],
        )

    def labels(self, name: str) -> np.ndarray | None:
        return self.factors.get(name)


class _IndexedView:
    """Rows ``index`` of a lazy array, still lazy."""

    def __init__(self, base: np.ndarray | LazyArray, index: np.ndarray):
        self.base = base
        self.index = np.asarray(index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *tuple(self.base.shape[1:]))

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index) -> np.ndarray:
        rows = self.index[index]
        if np.ndim(rows) == 0:
            return np.asarray(self.base[int(rows)])
        order = np.argsort(rows, kind="stable")
        got = np.asarray(self.base[rows[order]])
        out = np.empty_like(got)
        out[order] = got
        return out


@dataclass
class DataSplits:
    """Train, validation and test sets of one data source.

    ``val`` (None when there is none) is carved from the training data by
    :func:`carve_validation`; it is what settings and checkpoints are chosen on, so the test set
    is only ever used for the final scores.
    """

    train: Dataset
    test: Dataset
    name: str = "data"
    val: Dataset | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.train.sample_shape

    def parts(self) -> list[tuple[str, Dataset]]:
        """``[("train", ...), ("val", ...), ("test", ...)]``, without a missing validation set."""
        named = [("train", self.train), ("val", self.val), ("test", self.test)]
        return [(k, d) for k, d in named if d is not None]


def split_dataset(data: Dataset, test_fraction: float, seed: int, name: str = "data") -> DataSplits:
    """Random train/test split, deterministic by seed."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(data.source, f"test fraction must be in (0, 1), got {test_fraction}")
    n = len(data)
    n_test = max(1, round(n * test_fraction))
    if n - n_test < 1:
        raise DataError(data.source, f"only {n} samples: too few to split into train and test")
    perm = np.random.default_rng(seed).permutation(n)
    return DataSplits(
        train=data.subset(np.sort(perm[n_test:])), test=data.subset(np.sort(perm[:n_test])), name=name
    )


def carve_validation(splits: DataSplits, fraction: float, seed: int) -> DataSplits:
    """``splits`` with a random ``fraction`` of its training set moved into ``val`` (0: none).

    Deterministic by ``seed``, drawn from a stream of its own (the train/test split and the
    ``max_samples`` subset use ``seed`` directly), so the test set never changes with it.
    """
    if fraction == 0:
        return splits
    train = splits.train
    if not 0.0 < fraction < 1.0:
        raise DataError(train.source, f"validation fraction must be in [0, 1), got {fraction}")
    n = len(train)
    n_val = max(1, round(n * fraction))
    if n - n_val < 2:
        raise DataError(
            train.source,
            f"only {n} training samples: too few to carve a validation set from (set data.val_fraction=0)",
        )
    perm = np.random.default_rng([seed, 1]).permutation(n)
    return DataSplits(
        train=train.subset(np.sort(perm[n_val:])),
        test=splits.test,
        name=splits.name,
        val=train.subset(np.sort(perm[:n_val])),
    )


def check_finite(x: np.ndarray, source: str, chunk: int = 4096) -> None:
    """Raise :class:`DataError` naming the first sample that holds NaN or Inf."""
    for start in range(0, x.shape[0], chunk):
        block = np.asarray(x[start : start + chunk])
        if np.issubdtype(block.dtype, np.floating):
            bad = ~np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1)
            if bad.any():
                i = start + int(np.argmax(bad))
                raise DataError(source, f"sample {i} contains NaN or Inf values")


# --------------------------------------------------------------------------- layouts


def _to_float(block: np.ndarray) -> np.ndarray:
    """Pixel values as float32: uint8 / 255, uint16 / 65535, bool -> 0/1, others cast."""
    if block.dtype.kind == "u" and block.dtype.itemsize <= 2:
        return block.astype(np.float32) / np.float32(np.iinfo(block.dtype).max)
    return block.astype(np.float32)


def _check_numeric(dtype: np.dtype, where: str) -> None:
    if dtype.kind not in "biuf":
        raise DataError(where, f"holds {dtype} values; expected numbers (integers or floats)")


@dataclass(frozen=True)
class _Layout:
    """How a raw stack maps onto ``(N, C, H, W)`` / ``(N, C, D, H, W)``.

    ``convert`` turns a block of raw rows (leading sample axis kept) into that layout.
    """

    name: str
    shape: tuple[int, ...]
    convert: Callable[[np.ndarray], np.ndarray]


def _add_channel(block: np.ndarray) -> np.ndarray:
    return block[:, None]


def _keep(block: np.ndarray) -> np.ndarray:
    return block


def _channels_last_to_first(block: np.ndarray) -> np.ndarray:
    # RGBA: the alpha channel says how a picture is composited, not what it shows.
    if block.shape[-1] == 4:
        block = block[..., :3]
    return np.moveaxis(block, -1, 1)


def _layout(shape: tuple[int, ...], where: str) -> _Layout:
    """The layout of a raw stack of ``shape``; the rules of :func:`load_npy`, in order."""
    n = shape[0] if shape else 0
    if len(shape) == 3:
        return _Layout("grey images (N, H, W)", (n, 1, *shape[1:]), _add_channel)
    if len(shape) == 4:
        _, a, b, c = shape
        last = c in (1, 3, 4)
        first = a in (1, 3)
        if last and first:
            raise DataError(
                where,
                f"cannot tell whether shape {shape} is channels-first (N, C, H, W) or channels-last "
                "(N, H, W, C); save it channels-first with a height and width other than 1, 3 or 4",
            )
        if last:
            return _Layout("channels-last images (N, H, W, C)", (n, min(c, 3), a, b), _channels_last_to_first)
        if first:
            return _Layout("channels-first images (N, C, H, W)", shape, _keep)
        if a == b == c and a > 4:
            return _Layout("volumes (N, D, H, W)", (n, 1, a, b, c), _add_channel)
    if len(shape) == 5 and shape[1] == 1 and shape[2] == shape[3] == shape[4]:
        return _Layout("volumes (N, 1, D, H, W)", shape, _keep)
    raise DataError(
        where,
        f"array of shape {shape} is not an image or volume stack; expected (N, H, W), "
        "(N, H, W, C) with C in 1/3/4, (N, C, H, W) with C in 1/3, cubic (N, D, D, D) "
        "or (N, 1, D, D, D)",
    )


def _is_samples(x: np.ndarray) -> bool:
    """Whether ``x`` already is a float32 ``(N, C, H, W)`` (C 1/3) or ``(N, 1, D, D, D)`` stack."""
    s = x.shape
    return x.dtype == np.float32 and (
        (len(s) == 4 and s[1] in (1, 3)) or (len(s) == 5 and s[1] == 1 and s[2] == s[3] == s[4])
    )


def _samples_in_memory(raw: np.ndarray, where: str) -> np.ndarray:
    """A raw image/volume array as a checked, C-contiguous float32 sample stack."""
    _check_numeric(raw.dtype, where)
    layout = _layout(tuple(raw.shape), where)
    x = np.ascontiguousarray(_to_float(layout.convert(raw)))
    check_finite(x, where)
    return x


class ConcatSamples(LazyStack):
    """The splits of one data set read as one lazy stack (rows: train, validation, test)."""

    def __init__(self, parts: list[Dataset]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        super().__init__((int(self.offsets[-1]), *parts[0].sample_shape), parts[0].source)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.float32)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        for k, data in enumerate(self.parts):
            sel = np.flatnonzero(part == k)
            if len(sel):
                out[sel] = data.batch(rows[sel] - self.offsets[k])  # normalised as configured
        return out


def all_samples(splits: DataSplits) -> Dataset:
    """Every sample of a data set (train, validation, test) as one lazy dataset."""
    parts = [data for _, data in splits.parts()]
    factors = {
        k: np.concatenate([p.factors[k] for p in parts])
        for k in splits.train.factors
        if all(k in p.factors for p in parts)
    }
    return Dataset(
        x=ConcatSamples(parts),
        factors=factors,
        source=splits.train.source,
        ids=np.concatenate([p.ids for p in parts]),
    )
