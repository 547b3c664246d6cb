"""RELION 3.1+ particle STAR files: an optics block and a particles block, written with ``starfile``.

Pose convention. This package writes a particle as ``x(R p + t) = ref(p)``: the reference rotated
by ``R`` about the box centre ``c = (n - 1) / 2``, then shifted by ``t`` voxels (see
:mod:`dualcontrast.transforms.geometry`). RELION's Euler matrix
``A(rot, tilt, psi) = (Rz(rot) Ry(tilt) Rz(psi))^T`` (Heymann et al. 2005, as in RELION's
``Euler_angles2matrix``) "rotates the reference into the particle", about RELION's centre
``n // 2``, and ``rlnOrigin*Angst`` is the shift that moves the particle back onto the rotated
reference. Hence:

- ``A = R``, i.e. ``(rot, tilt, psi)`` are the ZYZ angles of ``R^T``;
- ``origin = -t + (R - I) d`` (in voxels, written in Angstrom), with ``d = c - n // 2``
  (``-0.5`` per axis for even boxes, ``0`` for odd), which accounts for the two rotation centres.

Both conversions are inverted by :func:`poses_from_star`, which the tests use to round-trip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..data.simulate import matrix_to_euler_zyz
from ..errors import DataError
from ..transforms.geometry import euler_zyz_to_matrix


def _centre_offset(box: int) -> np.ndarray:
    """``c_ours - c_relion`` per axis (voxels)."""
    return np.full(3, (box - 1) / 2.0 - box // 2)


def relion_pose(rotations: np.ndarray, shifts: np.ndarray, box: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rot, tilt, psi)`` degrees ``(N, 3)`` and ``rlnOrigin(X, Y, Z)`` in VOXELS ``(N, 3)`` from our ``R, t``."""
    r = np.asarray(rotations, dtype=np.float64)
    t = np.asarray(shifts, dtype=np.float64)
    angles = np.degrees(matrix_to_euler_zyz(np.swapaxes(r, -1, -2)))
    d = _centre_offset(box)
    origin = -t + (r - np.eye(3)) @ d
    return angles, origin


def poses_from_star(angles_deg: np.ndarray, origins: np.ndarray, box: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`relion_pose`: our ``R (N, 3, 3)`` and ``t (N, 3)`` voxels from RELION angles and origins (voxels)."""
    import torch

    rt = euler_zyz_to_matrix(torch.as_tensor(np.radians(np.asarray(angles_deg, np.float64)))).numpy()
    r = np.swapaxes(rt, -1, -2)
    d = _centre_offset(box)
    t = -np.asarray(origins, np.float64) + (r - np.eye(3)) @ d
    return r, t


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
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    extra_columns: Mapping[str, np.ndarray] | None = None,
    optics_group_name: str = "opticsGroup1",
    overwrite: bool = False,
) -> Path:
    """Write a RELION 3.1+ particle STAR file.

    Args:
        image_names: ``rlnImageName`` per particle (``"k@stack.mrcs"`` or a file name), relative to
            the STAR file's folder or absolute.
        rotations: ``(N, 3, 3)`` our ``R`` (reference -> particle); omitted: no angle columns.
        shifts: ``(N, 3)`` our ``t`` in voxels along (x, y, z); omitted: zero origins.
        voxel_size: nm (written as Angstrom in ``rlnImagePixelSize`` and the origins).
        box: particle box size (voxels); also sets ``rlnImageSize``.
        class_numbers: ``(N,)`` integers written as ``rlnClassNumber`` (RELION counts from 1).
        extra_columns: more particle columns, e.g. ground truth ``{"dcIdentity": ...}``
            (names without the leading underscore).
        overwrite: replace an existing file (refused otherwise).
    """
    import pandas as pd
    import starfile

    p = Path(path)
    if p.exists() and not overwrite:
        raise DataError(p, "already exists; choose another name or pass overwrite=True")
    n = len(image_names)
    if n == 0:
        raise DataError(p, "no particles to write")
    angstrom = voxel_size * 10.0
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": [optics_group_name],
            "rlnImagePixelSize": [angstrom],
            "rlnImageSize": [int(box)],
            "rlnImageDimensionality": [int(dimensionality)],
            "rlnVoltage": [float(voltage_kv)],
            "rlnSphericalAberration": [float(cs_mm)],
            "rlnAmplitudeContrast": [float(amplitude_contrast)],
        }
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
    starfile.write({"optics": optics, "particles": pd.DataFrame(columns)}, p)
    return p


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
    """Write particles ``indices`` of ``volumes`` as an MRC volume stack ``<stem>.mrcs`` plus a STAR file.

    For data without per-particle files (HDF5, pickles, the built-in sets) this makes a cluster
    readable by RELION. ``volumes`` is ``(N, 1, n, n, n)`` / ``(N, n, n, n)``, in memory or lazy,
    copied batch by batch. ``rotations`` / ``shifts`` are per exported particle (our convention);
    ``optics`` go to :func:`write_particles_star` (voltage_kv, cs_mm, amplitude_contrast).
    """
    import mrcfile

    star = Path(star_path)
    stack = star.with_suffix(".mrcs")
    for p in (star, stack):
        if p.exists() and not overwrite:
            raise DataError(p, "already exists; choose another name or pass overwrite=True")
    rows = np.arange(volumes.shape[0]) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(rows) == 0:
        raise DataError(star, "no particles to write")
    box = int(volumes.shape[-1])
    with mrcfile.new_mmap(stack, shape=(len(rows), box, box, box), mrc_mode=2, overwrite=True) as mrc:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            order = np.argsort(chunk, kind="stable")  # lazy readers like sorted rows
            block = np.asarray(volumes[chunk[order]], dtype=np.float32).reshape(len(chunk), box, box, box)
            mrc.data[start + order] = block
        mrc.voxel_size = voxel_size * 10.0
        mrc.update_header_stats()
    names = [f"{i + 1}@{stack.name}" for i in range(len(rows))]
    classes = None if class_number is None else np.full(len(rows), int(class_number))
    return write_particles_star(
        star, names, rotations=rotations, shifts=shifts, voxel_size=voxel_size, box=box,
        class_numbers=classes, extra_columns=extra_columns, overwrite=overwrite, **optics,
    )  # fmt: skip
