"""RELION 3.1+ particle STAR files built from arrays (simulations, data sets without a STAR file).

The formats, angle convention and pose conversion live in :mod:`dualcontrast.io.star`
(:func:`relion_pose` / :func:`poses_from_star` are re-exported here); STAR input exported per
cluster keeps its own rows (:func:`dualcontrast.io.star.subset_blocks`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io.mrc import write_volume_files
from ..io.star import optics_block, poses_from_star, relion_pose, write_blocks

__all__ = ["export_particles", "poses_from_star", "relion_pose", "write_particles_star"]


def write_particles_star(
    path: str | Path,
    image_names: Sequence[str],
    *,
    rotations: np.ndarray | None = None,
    shifts: np.ndarray | None = None,
    voxel_size: float = 1.0,
    box: int,
    class_numbers: np.ndarray | None = None,
    dimensionality: int = 3,
    voltage_kv: float | None = None,
    cs_mm: float | None = None,
    amplitude_contrast: float | None = None,
    extra_columns: Mapping[str, np.ndarray] | None = None,
    optics_group_name: str = "opticsGroup1",
    overwrite: bool = False,
) -> Path:
    """Write a RELION 3.1+ particle STAR file.

    Args:
        image_names: ``rlnImageName`` per particle (``"k@stack.mrcs"`` or a file name), relative to
            the RELION project directory or absolute.
        rotations: ``(N, 3, 3)`` our ``R`` (reference -> particle); omitted: no angle columns.
        shifts: ``(N, 3)`` our ``t`` in voxels along (x, y, z); omitted: zero origins.
        voxel_size: nm (written as Angstrom in ``rlnImagePixelSize`` and the origins).
        box: particle box size (voxels); also sets ``rlnImageSize``.
        class_numbers: ``(N,)`` integers written as ``rlnClassNumber`` (RELION counts from 1).
        voltage_kv, cs_mm, amplitude_contrast: optics; columns are left out when not known
            (RELION asks for them before CTF-aware refinement).
        extra_columns: more particle columns, e.g. ground truth ``{"dcIdentity": ...}``
            (names without the leading underscore).
        overwrite: replace an existing file (refused otherwise).
    """
    import pandas as pd

    p = Path(path)
    if p.exists() and not overwrite:
        raise DataError(p, "already exists; choose another name or pass overwrite=True")
    n = len(image_names)
    if n == 0:
        raise DataError(p, "no particles to write")
    angstrom = voxel_size * 10.0
    acquisition = {"voltage_kv": voltage_kv, "cs_mm": cs_mm, "amplitude_contrast": amplitude_contrast}
    optics = optics_block(
        angstrom, box, dimensionality=dimensionality, acquisition=acquisition, group_name=optics_group_name
    )
    columns: dict[str, np.ndarray | list] = {"rlnImageName": [str(s) for s in image_names]}
    if rotations is not None or shifts is not None:
        r = np.broadcast_to(np.eye(3), (n, 3, 3)) if rotations is None else np.asarray(rotations)
        t = np.zeros((n, 3)) if shifts is None else np.asarray(shifts)
        _check_rows(p, n, rotations=r, shifts=t)
        angles, origin = relion_pose(r, t, box)
        if rotations is not None:
            columns.update(rlnAngleRot=angles[:, 0], rlnAngleTilt=angles[:, 1], rlnAnglePsi=angles[:, 2])
        axes = "XYZ"[:dimensionality]
        columns.update({f"rlnOrigin{a}Angst": origin[:, i] * angstrom for i, a in enumerate(axes)})
    if class_numbers is not None:
        _check_rows(p, n, class_numbers=np.asarray(class_numbers))
        columns["rlnClassNumber"] = np.asarray(class_numbers, dtype=np.int64)
    columns["rlnOpticsGroup"] = np.ones(n, dtype=np.int64)
    for name, values in (extra_columns or {}).items():
        _check_rows(p, n, **{name: np.asarray(values)})
        columns[name.lstrip("_")] = np.asarray(values)
    return write_blocks(p, {"optics": optics, "particles": pd.DataFrame(columns)}, overwrite=True)


def _check_rows(path: Path, n: int, **arrays: np.ndarray) -> None:
    for name, values in arrays.items():
        if len(values) != n:
            raise DataError(path, f"{name} has {len(values)} rows but there are {n} particles")


def export_particles(
    star_path: str | Path,
    volumes,
    *,
    indices: np.ndarray | None = None,
    rotations: np.ndarray | None = None,
    shifts: np.ndarray | None = None,
    voxel_size: float = 1.0,
    class_number: int | None = None,
    extra_columns: Mapping[str, np.ndarray] | None = None,
    batch_size: int = 256,
    overwrite: bool = False,
    **optics,
) -> Path:
    """Write particles ``indices`` of ``volumes`` as one ``.mrc`` each plus a STAR file.

    For data without per-particle files (HDF5, pickles, the built-in sets) this makes a cluster
    readable by RELION: the volumes go to ``<stem>_particles/000001.mrc`` ... beside the STAR
    file, named relative to the STAR file's folder (run RELION from there). ``volumes`` is
    ``(N, 1, n, n, n)`` / ``(N, n, n, n)``, in memory or lazy, copied batch by batch.
    ``rotations`` / ``shifts`` are per exported particle (our convention); ``optics`` go to
    :func:`write_particles_star` (voltage_kv, cs_mm, amplitude_contrast).
    """
    star = Path(star_path)
    if star.exists() and not overwrite:
        raise DataError(star, "already exists; choose another name or pass overwrite=True")
    rows = np.arange(volumes.shape[0]) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(rows) == 0:
        raise DataError(star, "no particles to write")
    folder = star.with_name(star.stem + "_particles")
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"{i + 1:06d}.mrc" for i in range(len(rows))]
    order = np.argsort(rows, kind="stable")  # lazy readers like sorted rows
    write_volume_files(
        [files[i] for i in order],
        volumes,
        rows[order],
        voxel_size * 10.0,
        batch_size=batch_size,
        overwrite=overwrite,
    )
    names = [f"{folder.name}/{f.name}" for f in files]
    classes = None if class_number is None else np.full(len(rows), int(class_number))
    return write_particles_star(
        star, names, rotations=rotations, shifts=shifts, voxel_size=voxel_size, box=int(volumes.shape[-1]),
        class_numbers=classes, extra_columns=extra_columns, overwrite=overwrite, **optics,
    )  # fmt: skip
