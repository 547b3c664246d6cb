"""MRC writers (``mrcfile``): maps and one file per subtomogram, as RELION and Warp expect them.

Every file is float32 (mode 2) with the voxel size in Angstrom, the header origin at 0 (RELION
puts a box's centre at voxel ``n // 2`` and ignores the origin; Warp reads it as 0 too) and the
header statistics (min, max, mean, rms) updated from the data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError


def _refuse_existing(p: Path, overwrite: bool) -> None:
    if p.exists() and not overwrite:
        raise DataError(p, "already exists; choose another name or pass overwrite=True")


def write_volume(
    path: str | Path, volume: np.ndarray, voxel_size_angst: float, overwrite: bool = False
) -> Path:
    """One volume ``(n, n, n)`` (z, y, x) as a float32 MRC map with ``voxel_size_angst`` per voxel."""
    import mrcfile

    p = Path(path)
    _refuse_existing(p, overwrite)
    v = np.asarray(volume, dtype=np.float32)
    if v.ndim != 3:
        raise DataError(p, f"expected one 3D volume, got shape {v.shape}")
    if not voxel_size_angst > 0:
        raise DataError(p, f"voxel size must be positive, got {voxel_size_angst} A")
    with mrcfile.new(p, overwrite=True) as mrc:
        mrc.set_data(v)
        mrc.voxel_size = float(voxel_size_angst)
        mrc.header.origin = (0.0, 0.0, 0.0)
        mrc.update_header_stats()
    return p


def write_volume_files(
    paths: Sequence[str | Path],
    volumes,
    rows: np.ndarray,
    voxel_size_angst: float,
    *,
    batch_size: int = 256,
    overwrite: bool = False,
) -> list[Path]:
    """Volumes ``rows`` of ``volumes`` as one MRC file each: an ``(N, [1,] n, n, n)`` array (in memory
    or lazy) or a :class:`~dualcontrast.data.base.Dataset` (read with its normalisation).

    RELION reads ``.mrcs`` as stacks of 2D images, so subtomograms go one per ``.mrc`` file;
    they are read batch by batch, never all at once.
    """
    out = [Path(p) for p in paths]
    rows = np.asarray(rows, dtype=np.int64)
    if len(out) != len(rows):
        raise DataError(out[0] if out else "<none>", f"{len(out)} file names for {len(rows)} volumes")
    for p in out:
        _refuse_existing(p, overwrite)
    box = int((volumes.x if hasattr(volumes, "batch") else volumes).shape[-1])
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        block = np.asarray(_read(volumes, chunk), dtype=np.float32).reshape(len(chunk), box, box, box)
        for p, v in zip(out[start : start + len(chunk)], block, strict=True):
            write_volume(p, v, voxel_size_angst, overwrite=True)
    return out


@contextlib.contextmanager
def new_volume_stack(
    path: str | Path, count: int, box: int, voxel_size_angst: float, *, overwrite: bool = False
) -> Iterator[np.ndarray]:
    """A float32 MRC volume stack (``ispg`` 401) of ``count`` volumes ``(box, box, box)``, memory-mapped:
    yields the ``(count, box, box, box)`` array to fill; voxel size and header statistics are set
    when the block ends."""
    import mrcfile

    p = Path(path)
    _refuse_existing(p, overwrite)
    with mrcfile.new_mmap(p, shape=(count, box, box, box), mrc_mode=2, overwrite=overwrite) as mrc:
        yield mrc.data
        mrc.voxel_size = float(voxel_size_angst)
        mrc.update_header_stats()


def _read(volumes, rows: np.ndarray) -> np.ndarray:
    return volumes.batch(rows) if hasattr(volumes, "batch") else volumes[rows]


def read_voxel_size(path: str | Path) -> float:
    """The voxel size (Angstrom, x) in an MRC header; 0 when the header leaves it unset."""
    import mrcfile

    p = Path(path)
    try:
        with mrcfile.open(p, header_only=True, permissive=False) as mrc:
            return float(mrc.voxel_size.x)
    except (ValueError, OSError, EOFError, TypeError) as e:
        raise DataError(p, f"not a valid MRC file (corrupt or unsupported header: {e})") from None
