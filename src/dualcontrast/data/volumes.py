"""Loaders for subtomograms (and MRC image stacks): MRC / MRCS, folders of MRC files, RELION
STAR particle lists, HDF5 and pickled arrays.

Every loader returns a :class:`~dualcontrast.data.base.Dataset` with samples ``(N, 1, D, H, W)``
(or ``(N, 1, H, W)`` for 2D image stacks) as float32. Values are kept as stored (MRC integer
modes are densities, not pixel intensities, so they are not rescaled).

Laziness. MRC, STAR and HDF5 data are read on demand, one batch at a time, so a data set larger
than memory can be trained on and embedded. The lazy arrays hold only file names and offsets:
they pickle cheaply and every process (DataLoader workers, a second run) reopens the files
itself. Pickled arrays are loaded into memory (convert large ones to HDF5 or ``.npy``).

NaN / Inf. Data up to :data:`FINITE_CHECK_BYTES` is scanned when it is loaded; every batch read
from a lazy array is checked as well (cheap next to the read), so a bad sample in a file too
large to scan up front raises :class:`DataError` naming the file and the sample when it is
first read.

How an MRC file is read (``mrcfile`` header, MRC2014):

==========================================  ===============================================
4D data / ``ispg = 401`` (volume stack)     ``N`` volumes of ``mz`` sections
``.mrcs``, or ``ispg = 0``, with ``nz > 1``  ``nz`` 2D images (RELION / MRC2014 image stack)
``ispg`` 1-230, ``nz = k * nx``, ``ny = nx``  ``k`` cubic volumes stacked along z
``ispg`` 1-230, ``nz = ny = nx``             one volume: a map, not a data set (refused by
                                            :func:`load_mrc`; fine inside a folder or STAR)
==========================================  ===============================================
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .base import CONTENT, TRANSFORM, Dataset, LazyStack, check_finite
from .images import _as_labels, _layout, _samples_in_memory, _to_float

logger = logging.getLogger(__name__)

# Data sets up to this size (as stored) are scanned for NaN/Inf when loaded.
FINITE_CHECK_BYTES = 512 * 2**20

_MRC_SUFFIXES = (".mrc", ".mrcs", ".map", ".rec", ".st")


# --------------------------------------------------------------------------- lazy arrays


@dataclass(frozen=True)
class MrcLayout:
    """Where the samples of one MRC file lie: ``count`` samples of ``sample_shape`` from byte ``offset``."""

    path: str
    offset: int
    dtype: np.dtype
    count: int
    sample_shape: tuple[int, ...]
    voxel_size: float  # Angstrom, from the header (0 if unset)

    @property
    def sample_size(self) -> int:
        return int(np.prod(self.sample_shape))


def _open_header(path: Path):
    import mrcfile

    try:
        with mrcfile.open(path, header_only=True, permissive=False) as mrc:
            vs = mrc.voxel_size
            return mrc.header.copy(), (float(vs.x), float(vs.y), float(vs.z))
    except (ValueError, OSError, EOFError, TypeError) as e:
        raise DataError(path, f"not a valid MRC file (corrupt or unsupported header: {e})") from None


def mrc_layout(path: str | Path) -> MrcLayout:
    """Read and check an MRC header, and work out how its data splits into samples (table above)."""
    import mrcfile.utils as mu

    p = Path(path)
    header, voxels = _open_header(p)
    axes = (int(header.mapc), int(header.mapr), int(header.maps))
    # The samples are read straight from the file in (section, row, column) order: only the
    # standard axis order puts x in the columns. Other orders are rare (old CCP4 maps); reading them
    # as if standard would silently transpose every volume.
    if axes != (1, 2, 3):
        raise DataError(
            p, f"axis order mapc/mapr/maps = {axes}, only 1/2/3 (x in columns, z in sections) is read; "
            "rewrite the file in standard order (e.g. relion_image_handler --i IN --o OUT)"
        )  # fmt: skip
    try:
        dtype = mu.data_dtype_from_header(header)
        shape = tuple(int(s) for s in mu.data_shape_from_header(header))
    except (ValueError, TypeError) as e:
        raise DataError(p, f"not a valid MRC file ({e})") from None
    if dtype.kind not in "iuf":
        raise DataError(p, f"holds {dtype} data; expected real numbers (MRC modes 0, 1, 2, 6 or 12)")
    if any(s <= 0 for s in shape):
        raise DataError(p, f"header gives invalid dimensions {shape}")
    offset = 1024 + int(header.nsymbt)
    needed = offset + int(np.prod(shape)) * dtype.itemsize
    size = p.stat().st_size
    if size < needed:
        raise DataError(p, f"file is truncated: the header describes {needed} bytes but the file has {size}")
    count, sample = _split_samples(p, shape, int(header.ispg))
    # An image stack's z cell (or that of volumes stacked along z) spans the stack, not one sample.
    whole = len(sample) == 3 and (len(shape) == 4 or count == 1)
    in_sample = voxels if whole else voxels[:2]
    if min(in_sample) > 0 and max(in_sample) > min(in_sample) * 1.001:
        raise DataError(
            p, "anisotropic voxels (x, y, z = " + ", ".join(f"{v:g}" for v in in_sample) + " A): the "
            "models assume cubic voxels; resample the data to one voxel size first"
        )  # fmt: skip
    return MrcLayout(str(p), offset, dtype, count, sample, voxels[0])


def _split_samples(p: Path, shape: tuple[int, ...], ispg: int) -> tuple[int, tuple[int, ...]]:
    if len(shape) == 4:
        _check_cubic(p, shape[1:])
        return shape[0], shape[1:]
    if len(shape) == 2:
        return 1, shape
    nz, ny, nx = shape
    if p.suffix.lower() == ".mrcs" or ispg == 0:
        return nz, (ny, nx)
    if nz == ny == nx:
        return 1, shape
    if ny == nx and nz % nx == 0:
        return nz // nx, (nx, nx, nx)
    raise DataError(p, f"volumes must be cubic, got {nz} x {ny} x {nx} voxels (z, y, x)")


def _check_cubic(where: str | Path, shape: tuple[int, ...]) -> None:
    if len(set(shape)) != 1:
        raise DataError(where, f"volumes must be cubic, got {' x '.join(str(s) for s in shape)} voxels")


class MrcSamples(LazyStack):
    """Samples picked from MRC files: sample ``i`` is entry ``index[i]`` of file ``files[file_id[i]]``.

    Reads go through ``np.fromfile`` at computed offsets (no open handles, so it pickles and
    works in any process); consecutive entries of one file are read in one call.
    """

    def __init__(self, files: list[MrcLayout], file_id: np.ndarray, index: np.ndarray, where: str):
        shapes = {f.sample_shape for f in files}
        if len(shapes) != 1:
            raise DataError(where, f"samples of different shapes: {sorted(shapes)}")
        (sample,) = shapes
        self.files = files
        self.file_id = np.asarray(file_id, np.int64)
        self.index = np.asarray(index, np.int64)
        super().__init__((len(self.file_id), 1, *sample), where)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), np.float32)
        fid, idx = self.file_id[rows], self.index[rows]
        # Runs of rows that are consecutive entries of the same file.
        breaks = np.flatnonzero((np.diff(fid) != 0) | (np.diff(idx) != 1)) + 1
        for run in np.split(np.arange(len(rows)), breaks):
            layout = self.files[fid[run[0]]]
            first = int(idx[run[0]])
            count = len(run) * layout.sample_size
            try:
                raw = np.fromfile(
                    layout.path,
                    dtype=layout.dtype,
                    count=count,
                    offset=layout.offset + first * layout.sample_size * layout.dtype.itemsize,
                )
            except OSError as e:
                raise DataError(layout.path, f"cannot read: {e}") from None
            if raw.size != count:
                raise DataError(layout.path, "file is shorter than its header says (truncated?)")
            out[run] = raw.reshape(len(run), 1, *layout.sample_shape)
        return out


def _finite_if_small(x: LazyStack, nbytes: int) -> None:
    if nbytes <= FINITE_CHECK_BYTES:
        check_finite(x, x.where, chunk=256)
    else:
        logger.info("%s: %.1f GiB, checked for NaN/Inf batch by batch as it is read", x.where, nbytes / 2**30)


# --------------------------------------------------------------------------- MRC


def load_mrc(path: str | Path) -> Dataset:
    """A stack of volumes or images from one MRC file (read lazily; see the module table)."""
    p = Path(path)
    layout = mrc_layout(p)
    if layout.count == 1:
        what = "volume" if len(layout.sample_shape) == 3 else "image"
        raise DataError(
            p,
            f"holds a single {what} ({' x '.join(map(str, layout.sample_shape))}), not a data set; "
            "pass a stack (an .mrcs image stack or an MRC volume stack, ispg 401) or a folder of .mrc volumes",
        )
    x = MrcSamples([layout], np.zeros(layout.count, np.int64), np.arange(layout.count), str(p))
    _finite_if_small(x, layout.count * layout.sample_size * layout.dtype.itemsize)
    return Dataset(x=x, source=str(p))


def load_mrc_folder(path: str | Path) -> Dataset:
    """One cubic volume per ``.mrc`` / ``.map`` file in a folder (sorted by name), read lazily.

    Every header is checked up front: all files must hold one cubic volume of the same size.
    """
    folder = Path(path)
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in (".mrc", ".map"))
    if not files:
        raise DataError(folder, "holds no .mrc or .map files")
    layouts = []
    for f in files:
        layout = mrc_layout(f)
        if layout.count != 1 or len(layout.sample_shape) != 3:
            raise DataError(
                f,
                f"expected one volume per file, found {layout.count} samples of shape {layout.sample_shape}",
            )
        if layouts and layout.sample_shape != layouts[0].sample_shape:
            raise DataError(
                f,
                f"volume is {layout.sample_shape}, but {Path(layouts[0].path).name} in the same folder is {layouts[0].sample_shape}",
            )
        layouts.append(layout)
    x = MrcSamples(layouts, np.arange(len(layouts)), np.zeros(len(layouts), np.int64), str(folder))
    _finite_if_small(x, sum(lay.sample_size * lay.dtype.itemsize for lay in layouts))
    return Dataset(x=x, source=str(folder))


# --------------------------------------------------------------------------- STAR


# Ground-truth columns: STAR name -> factor name. Other numeric ``dc*`` columns become
# snake_case factors (``dcShiftX`` -> ``shift_x``).
_STAR_FACTORS = {"dcIdentity": CONTENT, "dcState": TRANSFORM}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def load_star(path: str | Path) -> Dataset:
    """Particles of a RELION / Warp STAR file (``rlnImageName``: a ``.mrc`` per subtomogram, or ``k@stack``).

    Flavours, voxel sizes, ``optimisation_set.star`` and the image path rule: see
    :mod:`dualcontrast.io.star` (relative names resolve from the STAR file's folder, its
    parents, then the working directory). An image whose MRC header voxel size disagrees with
    the STAR file's is refused. Ground truth, when present, becomes factors: ``_dcIdentity`` ->
    ``content`` (else ``_rlnClassNumber``), ``_dcState`` -> ``transform``, other numeric
    ``_dc*`` columns by their snake_case name; ``rlnDefocusU/V/Angle`` and the optics become the
    ``ctf_*`` factors of :mod:`dualcontrast.data.ctf`.
    """
    from ..io.star import ImageResolver, check_voxel_size, read_particle_set
    from .ctf import star_ctf_factors

    particle_set = read_particle_set(path)
    p = particle_set.path
    block = particle_set.particles
    resolve = ImageResolver(p)
    layouts: dict[Path, MrcLayout] = {}
    file_order: dict[Path, int] = {}
    file_id = np.empty(len(block), np.int64)
    index = np.empty(len(block), np.int64)
    for row, name in enumerate(block["rlnImageName"].astype(str)):
        k, _, file_name = name.rpartition("@")
        image = resolve(file_name)
        if image is None:
            raise DataError(p, f"row {row + 1}: image file {file_name!r} not found ({resolve.where()})")
        if image not in layouts:
            layouts[image] = mrc_layout(image)
            file_order[image] = len(file_order)
        layout = layouts[image]
        check_voxel_size(p, row, image, float(particle_set.voxel_size[row]), layout.voxel_size)
        index[row] = _entry_index(p, row, k, image, layout)
        file_id[row] = file_order[image]
        if layout.sample_shape != next(iter(layouts.values())).sample_shape:
            raise DataError(
                p, f"row {row + 1}: {image} holds samples of shape {layout.sample_shape}, unlike earlier rows"
            )
    x = MrcSamples(list(layouts.values()), file_id, index, str(p))
    first = next(iter(layouts.values()))
    _finite_if_small(x, len(block) * first.sample_size * first.dtype.itemsize)
    factors = _star_factors(p, block)
    # 2D particle stacks carry their CTF for single-particle methods (Hydra); see data.ctf.
    factors.update(star_ctf_factors(block, particle_set.acquisition(), particle_set.voxel_size))
    return Dataset(x=x, factors=factors, source=str(p))


def _entry_index(star: Path, row: int, k: str, image: Path, layout: MrcLayout) -> int:
    if not k:
        if layout.count != 1:
            raise DataError(
                star, f"row {row + 1}: {image} is a stack of {layout.count}; name one entry as k@file"
            )
        return 0
    try:
        i = int(k) - 1
    except ValueError:
        raise DataError(star, f"row {row + 1}: {k!r} before '@' is not an image number") from None
    if not 0 <= i < layout.count:
        raise DataError(
            star, f"row {row + 1}: entry {k} asked of {image}, which holds {layout.count} (numbered from 1)"
        )
    return i


def _star_factors(path: Path, block) -> dict[str, np.ndarray]:
    factors: dict[str, np.ndarray] = {}
    n = len(block)
    for column in block.columns:
        if not column.startswith("dc") or column in ("dcIdentity", "dcState"):
            continue
        values = np.asarray(block[column])
        if values.dtype.kind in "biuf":
            factors[_snake(column[2:])] = values
    for column, factor in _STAR_FACTORS.items():
        if column in block.columns:
            factors[factor] = _as_labels(np.asarray(block[column]), n, str(path), column)
    if CONTENT not in factors and "rlnClassNumber" in block.columns:
        factors[CONTENT] = _as_labels(np.asarray(block["rlnClassNumber"]), n, str(path), "rlnClassNumber")
    return factors


# --------------------------------------------------------------------------- HDF5


_H5_DATA_NAMES = ("volumes", "images", "x", "data")
_H5_LABELS = {
    "content": CONTENT,
    "identity": CONTENT,
    "labels": CONTENT,
    "transform": TRANSFORM,
    "state": TRANSFORM,
}


class H5Samples(LazyStack):
    """Rows of an HDF5 dataset, read on demand. The file is opened on first use in each process
    (an h5py handle must not cross a fork) and closed when the object is pickled."""

    def __init__(self, path: str, name: str, raw_shape: tuple[int, ...], where: str):
        self.path, self.name = path, name
        self._layout = _layout(raw_shape, where)
        self._file = None
        self._pid = None
        super().__init__(self._layout.shape, where)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"] = state["_pid"] = None
        return state

    def _dataset(self):
        import h5py

        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file[self.name]

    def _read(self, rows: np.ndarray) -> np.ndarray:
        ds = self._dataset()
        contiguous = len(rows) and rows[-1] - rows[0] == len(rows) - 1
        raw = ds[int(rows[0]) : int(rows[-1]) + 1] if contiguous else ds[rows]
        return _to_float(self._layout.convert(np.asarray(raw)))


def _h5_data_name(f, where: Path) -> str:
    for name in _H5_DATA_NAMES:
        if name in f and hasattr(f[name], "shape"):
            return name
    arrays = [k for k, v in f.items() if hasattr(v, "shape") and len(v.shape) >= 3]
    if len(arrays) == 1:
        return arrays[0]
    listed = ", ".join(f"{k} {tuple(v.shape)}" for k, v in f.items() if hasattr(v, "shape")) or "none"
    raise DataError(
        where, f"cannot tell which dataset holds the samples (use 'volumes' or 'images'); datasets: {listed}"
    )


def load_h5(path: str | Path) -> Dataset:
    """Samples from an HDF5 file, read lazily.

    The samples are the dataset ``volumes``, ``images``, ``x`` or ``data`` (first found), or
    the only dataset with 3+ dimensions; shapes follow the ``.npy`` rules
    (:func:`dualcontrast.data.images.load_npy`). Root-level 1D numeric datasets of one value per
    sample become factors: ``content`` / ``identity`` / ``labels`` -> ``content``,
    ``transform`` / ``state`` -> ``transform``, others by their name.
    """
    import h5py

    p = Path(path)
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise DataError(p, f"not a readable HDF5 file ({e})") from None
    with f:
        name = _h5_data_name(f, p)
        ds = f[name]
        shape = tuple(ds.shape)
        if ds.dtype.kind not in "biuf":
            raise DataError(p, f"dataset {name!r} holds {ds.dtype} values; expected numbers")
        if name == "volumes" and len(shape) == 4:
            _check_cubic(p, shape[1:])
        n = shape[0] if shape else 0
        factors = _h5_factors(f, name, n, p)
        nbytes = int(np.prod(shape)) * ds.dtype.itemsize
    x = H5Samples(str(p), name, shape, f"{p}:{name}")
    _finite_if_small(x, nbytes)
    return Dataset(x=x, factors=factors, source=str(p))


def _h5_factors(f, data_name: str, n: int, where: Path) -> dict[str, np.ndarray]:
    factors: dict[str, np.ndarray] = {}
    for key, obj in f.items():
        if key == data_name or not hasattr(obj, "shape") or obj.shape != (n,) or obj.dtype.kind not in "biuf":
            continue
        target = _H5_LABELS.get(key, key)
        if target in factors and target != key:
            target = key  # e.g. both "content" and "identity": keep the second under its own name
        values = np.asarray(obj)
        factors[target] = _as_labels(values, n, str(where), key) if target in (CONTENT, TRANSFORM) else values
    return factors


# --------------------------------------------------------------------------- pickle


_PICKLE_DATA_KEYS = ("volumes", "images", "subtomograms", "x", "X", "data")
_PICKLE_CONTENT_KEYS = ("content", "identity", "labels", "label", "y", "class")
_PICKLE_TRANSFORM_KEYS = ("transform", "state", "conformation")


def load_pickle(path: str | Path) -> Dataset:
    """Samples from a pickled object, in memory (only open pickles you trust: unpickling runs code).

    Accepted (the paper's public subtomograms are an ``(N, 32, 32, 32)`` array):

    - an array (or tensor, or anything ``np.asarray`` takes) shaped like a ``.npy`` stack:
      ``(N, D, D, D)`` / ``(N, 1, D, D, D)`` volumes, ``(N, H, W)`` / ``(N, C, H, W)`` images;
    - a list of equally shaped samples (stacked);
    - a dict with the samples under ``volumes`` / ``images`` / ``subtomograms`` / ``x`` / ``X`` /
      ``data``, content labels under ``content`` / ``identity`` / ``labels`` / ``label`` / ``y`` /
      ``class`` and transformation labels under ``transform`` / ``state`` / ``conformation``;
    - a tuple ``(samples, content)`` or ``(samples, content, transform)``.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            obj = pickle.load(fh, encoding="latin1")  # latin1: Python 2 pickles of numpy arrays
    except Exception as e:  # unpickling can raise nearly anything on a bad file
        raise DataError(p, f"cannot unpickle: {type(e).__name__}: {e}") from None
    raw, labels = _unpack_pickle(obj, p)
    raw = _as_array(raw, p)
    if raw.ndim == 4 and min(raw.shape[1:]) > 4 and len(set(raw.shape[1:])) != 1:
        _check_cubic(p, raw.shape[1:])
    x = _samples_in_memory(raw, str(p))
    factors = {k: _as_labels(_as_array(v, p), len(x), str(p), k) for k, v in labels.items() if v is not None}
    return Dataset(x=x, factors=factors, source=str(p))


def _unpack_pickle(obj: Any, p: Path) -> tuple[Any, dict[str, Any]]:
    if isinstance(obj, dict):
        key = next((k for k in _PICKLE_DATA_KEYS if k in obj), None)
        if key is None:
            raise DataError(
                p,
                f"pickled dict has no samples under any of {', '.join(_PICKLE_DATA_KEYS)}; keys: {list(obj)[:10]}",
            )
        content = next((obj[k] for k in _PICKLE_CONTENT_KEYS if k in obj), None)
        transform = next((obj[k] for k in _PICKLE_TRANSFORM_KEYS if k in obj), None)
        return obj[key], {CONTENT: content, TRANSFORM: transform}
    if isinstance(obj, tuple) and 2 <= len(obj) <= 3:
        labels = {CONTENT: obj[1], TRANSFORM: obj[2] if len(obj) == 3 else None}
        return obj[0], labels
    return obj, {}


def _as_array(obj: Any, p: Path) -> np.ndarray:
    if hasattr(obj, "detach"):  # torch tensors
        obj = obj.detach().cpu().numpy()
    try:
        arr = np.asarray(obj)
    except (ValueError, TypeError) as e:
        raise DataError(p, f"pickled samples are not one array ({e})") from None
    if arr.dtype == object:
        raise DataError(p, "pickled samples have different shapes or are not numbers")
    return arr
