"""STAR files of RELION 3.0-5 and Warp/M: particle sets read for training, written back per cluster.

Flavours read (told apart by their columns; every block and column is kept for export):

=============  =================================================================================
``relion5``    ``data_optics`` + ``data_particles`` with ``rlnTomoName`` and
               ``rlnCenteredCoordinate{X,Y,Z}Angst`` (Angstrom from the tomogram centre);
               ``rlnImageName`` one 3D ``.mrc`` per subtomogram (``data_general``
               ``rlnTomoSubTomosAre2DStacks 1``, i.e. 2D tilt stacks, is refused)
``relion4``    optics + particles with ``rlnTomoName`` and ``rlnCoordinate{X,Y,Z}`` (pixels)
``relion3.1``  optics + particles with ``rlnMicrographName`` / pixel coordinates
``warp``       one block, no optics (RELION 3.0 style, as Warp/M write subtomograms):
               ``rlnMicrographName`` (the tomogram), ``rlnCoordinate{X,Y,Z}`` (pixels),
               ``rlnImageName``, pixel size from ``rlnDetectorPixelSize`` (um) and
               ``rlnMagnification`` (``1e4 * DetectorPixelSize / Magnification`` A) or ``rlnPixelSize``
=============  =================================================================================

A RELION 5 ``optimisation_set.star`` is followed to its ``rlnTomoParticlesFile``; a
``tomograms.star`` lists tilt series, not particles, and is refused with a pointer to
``particles.star``.

Voxel size (Angstrom per particle): the optics group's ``rlnImagePixelSize``, else
``rlnTomoTiltSeriesPixelSize * rlnTomoSubtomogramBinning`` (RELION 4), else the RELION 3.0 /
Warp particle columns above, else the MRC headers. When the STAR file and an image's MRC header
both give one and they differ by more than 0.1 %, loading stops with a :class:`DataError`.

Image paths. RELION runs from its project directory and writes ``rlnImageName`` relative to
it; the STAR file usually sits a few folders below (``Extract/job010/particles.star``). A
relative name is looked up in the STAR file's folder, then each parent folder, then the working
directory; the first folder where the first image exists is the *project directory* of the set,
and exports keep the names as they are when written for that project.

Angles. ``rlnAngleRot, rlnAngleTilt, rlnAnglePsi`` (degrees) are RELION's intrinsic ZYZ Euler
angles; RELION's matrix (``Euler_angles2matrix``, Heymann et al. 2005) is

    A(rot, tilt, psi) = Rz(psi) Ry(tilt) Rz(rot)

with the *passive* elementary rotations ``Rz(a) = [[cos a, sin a, 0], [-sin a, cos a, 0], [0, 0, 1]]``,
``Ry(a) = [[cos a, 0, -sin a], [0, 1, 0], [sin a, 0, cos a]]``; equivalently
``A = (Rz'(rot) Ry'(tilt) Rz'(psi))^T`` with active rotations ``'``. ``A`` rotates the reference
into the particle (:func:`relion_matrix`). This package writes a particle as
``x(R p + t) = ref(p)`` (reference rotated by ``R`` about the box centre ``c = (n - 1) / 2``,
shifted by ``t`` voxels, see :mod:`dualcontrast.transforms.geometry`); RELION rotates about
``n // 2`` and ``rlnOrigin*Angst`` moves the particle back onto the rotated reference. Hence
``A = R`` and ``origin = -t + (R - I) d`` with ``d = c - n // 2`` (``-0.5`` per axis for even
boxes), inverted by :func:`poses_from_star`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..geometry import relion_angles, relion_matrix
from .mrc import write_volume_files

# Relative difference of voxel sizes (STAR vs MRC header) taken as the same value.
VOXEL_SIZE_RTOL = 1e-3

ANGLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
ORIGIN_COLUMNS = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")


# --------------------------------------------------------------------------- angles


def _centre_offset(box: int) -> np.ndarray:
    """``c_ours - c_relion`` per axis (voxels)."""
    return np.full(3, (box - 1) / 2.0 - box // 2)


def relion_pose(rotations: np.ndarray, shifts: np.ndarray, box: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rot, tilt, psi)`` degrees ``(N, 3)`` and ``rlnOrigin(X, Y, Z)`` in VOXELS ``(N, 3)`` from our ``R, t``."""
    r = np.asarray(rotations, dtype=np.float64)
    t = np.asarray(shifts, dtype=np.float64)
    origin = -t + (r - np.eye(3)) @ _centre_offset(box)
    return relion_angles(r), origin


def poses_from_star(angles_deg: np.ndarray, origins: np.ndarray, box: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`relion_pose`: our ``R (N, 3, 3)`` and ``t (N, 3)`` voxels from RELION angles and origins (voxels)."""
    r = relion_matrix(angles_deg)
    t = -np.asarray(origins, np.float64) + (r - np.eye(3)) @ _centre_offset(box)
    return r, t


# --------------------------------------------------------------------------- reading


@dataclass
class ParticleSet:
    """A particle STAR file as read: every block (order kept), the particles block named ``key``.

    ``voxel_size`` is per particle in Angstrom (NaN where the STAR file does not say).
    """

    path: Path
    blocks: dict[str, Any]
    key: str
    flavour: str
    voxel_size: np.ndarray

    @property
    def particles(self):
        return self.blocks[self.key]

    @property
    def optics(self):
        optics = self.blocks.get("optics")
        return optics if hasattr(optics, "columns") else None

    def acquisition(self) -> dict[str, float]:
        """Voltage (kV), Cs (mm), amplitude contrast of the first optics group (or particle row), where given."""
        names = {
            "voltage_kv": "rlnVoltage",
            "cs_mm": "rlnSphericalAberration",
            "amplitude_contrast": "rlnAmplitudeContrast",
        }
        out: dict[str, float] = {}
        for table in (self.optics, self.particles):
            if table is None:
                continue
            for key, column in names.items():
                if key not in out and column in table.columns:
                    out[key] = float(table[column].iloc[0])
        return out


def read_blocks(path: str | Path) -> dict[str, Any]:
    """Every data block of a STAR file (loops as DataFrames, simple blocks as dicts)."""
    import starfile

    p = Path(path)
    try:
        blocks = starfile.read(p, always_dict=True)
    except Exception as e:  # starfile raises assorted parser errors on malformed files
        raise DataError(p, f"cannot read as a STAR file: {e}") from None
    if not blocks:
        raise DataError(p, "holds no STAR data blocks")
    return dict(blocks)


def _table_with(blocks: dict[str, Any], column: str) -> str | None:
    for name in ("particles", *blocks):
        block = blocks.get(name)
        if hasattr(block, "columns") and column in block.columns:
            return name
        if isinstance(block, dict) and column in block:
            return name
    return None


def _value(blocks: dict[str, Any], column: str) -> Any:
    name = _table_with(blocks, column)
    if name is None:
        return None
    block = blocks[name]
    return block[column] if isinstance(block, dict) else block[column].iloc[0]


class ImageResolver:
    """Relative image names resolved from the STAR file's folder, its parents, then the cwd."""

    def __init__(self, star: Path):
        self.bases = [star.parent.resolve(), *star.parent.resolve().parents, Path.cwd()]
        self.project_dir: Path | None = None
        self._cache: dict[str, Path | None] = {}

    def __call__(self, name: str) -> Path | None:
        if name not in self._cache:
            p = Path(name)
            if p.is_absolute():
                found = p if p.is_file() else None
            else:
                bases = [self.project_dir] if self.project_dir is not None else []
                found = None
                for base in [*bases, *self.bases]:
                    if (base / p).is_file():
                        found = base / p
                        if self.project_dir is None:
                            self.project_dir = base
                        break
            self._cache[name] = found
        return self._cache[name]

    def where(self) -> str:
        return f"looked relative to {self.bases[0]}, its parent folders and the working directory"


def read_particle_set(path: str | Path) -> ParticleSet:
    """A particle set from ``particles.star`` (any flavour above) or an ``optimisation_set.star``."""
    p = Path(path)
    blocks = read_blocks(p)
    target = _value(blocks, "rlnTomoParticlesFile")
    if target is not None and _table_with(blocks, "rlnImageName") is None:
        resolved = ImageResolver(p)(str(target))
        if resolved is None:
            raise DataError(p, f"optimisation set names particles file {target!r}, which is not found")
        if resolved.resolve() == p.resolve():
            raise DataError(p, "optimisation set names itself as its particles file (rlnTomoParticlesFile)")
        return read_particle_set(resolved)
    key = _table_with(blocks, "rlnImageName")
    if key is None or not hasattr(blocks[key], "columns"):
        if _table_with(blocks, "rlnTomoTiltSeriesStarFile") or _table_with(blocks, "rlnTomoTiltSeriesName"):
            raise DataError(
                p,
                "lists tomograms (tilt series), not particles; pass particles.star or optimisation_set.star",
            )
        if _table_with(blocks, "rlnCenteredCoordinateXAngst") or _table_with(blocks, "rlnCoordinateX"):
            raise DataError(
                p,
                "lists particle positions but no rlnImageName; extract 3D subtomograms first (RELION 'Extract subtomos' or Warp)",
            )
        raise DataError(
            p, "has no data block with an rlnImageName column (a RELION particle list is expected)"
        )
    if int(_value(blocks, "rlnTomoSubTomosAre2DStacks") or 0) == 1:
        raise DataError(
            p,
            "holds 2D tilt-image stacks (rlnTomoSubTomosAre2DStacks 1); re-extract 3D subtomograms (RELION 5: Extract subtomos without 2D stacks)",
        )
    particles = blocks[key]
    columns = set(particles.columns)
    optics = blocks.get("optics") if hasattr(blocks.get("optics"), "columns") else None
    if "rlnCenteredCoordinateXAngst" in columns:
        flavour = "relion5"
    elif "rlnTomoName" in columns:
        flavour = "relion4"
    elif optics is not None:
        flavour = "relion3.1"
    else:
        flavour = "warp"
    return ParticleSet(p, blocks, key, flavour, _star_voxel_sizes(p, particles, optics))


def _star_voxel_sizes(path: Path, particles, optics) -> np.ndarray:
    n = len(particles)
    voxel = np.full(n, np.nan)
    if optics is not None and "rlnOpticsGroup" in optics.columns:
        if "rlnImagePixelSize" in optics.columns:
            per_group = optics["rlnImagePixelSize"].astype(float)
        elif {"rlnTomoTiltSeriesPixelSize", "rlnTomoSubtomogramBinning"} <= set(optics.columns):
            per_group = optics["rlnTomoTiltSeriesPixelSize"].astype(float) * optics[
                "rlnTomoSubtomogramBinning"
            ].astype(float)
        else:
            per_group = None
        if per_group is not None:
            table = dict(zip(optics["rlnOpticsGroup"].astype(int), per_group, strict=True))
            groups = (
                particles["rlnOpticsGroup"].astype(int)
                if "rlnOpticsGroup" in particles.columns
                else np.ones(n, int)
            )
            missing = sorted(set(groups) - set(table))
            if missing:
                raise DataError(
                    path, f"particles name optics group(s) {missing} that data_optics does not define"
                )
            voxel = np.array([table[g] for g in groups], float)
    if np.isnan(voxel).all():
        cols = particles.columns
        if "rlnImagePixelSize" in cols:
            voxel = particles["rlnImagePixelSize"].to_numpy(float)
        elif "rlnPixelSize" in cols:
            voxel = particles["rlnPixelSize"].to_numpy(float)
        elif {"rlnDetectorPixelSize", "rlnMagnification"} <= set(cols):
            voxel = (
                1e4
                * particles["rlnDetectorPixelSize"].to_numpy(float)
                / particles["rlnMagnification"].to_numpy(float)
            )
    if np.any(voxel <= 0):
        raise DataError(path, f"gives a voxel size of {float(voxel[voxel <= 0][0])} A; it must be positive")
    return voxel


def check_voxel_size(star: Path, row: int, image: Path, star_voxel: float, header_voxel: float) -> None:
    """Refuse an image whose MRC header voxel size disagrees with the STAR file's."""
    if np.isnan(star_voxel) or header_voxel <= 0:
        return
    if abs(header_voxel - star_voxel) > VOXEL_SIZE_RTOL * star_voxel:
        raise DataError(
            star,
            f"row {row + 1}: voxel size {star_voxel:g} A in the STAR file but {header_voxel:g} A in the header of {image}; "
            "fix the optics block (rlnImagePixelSize) or the MRC header",
        )


# --------------------------------------------------------------------------- writing


def write_blocks(path: str | Path, blocks: Mapping[str, Any], overwrite: bool = False) -> Path:
    """Write STAR data blocks (DataFrames as loops, dicts as simple blocks) with ``starfile``."""
    import starfile

    p = Path(path)
    if p.exists() and not overwrite:
        raise DataError(p, "already exists; choose another name or pass overwrite=True")
    starfile.write(dict(blocks), p, overwrite=True)
    return p


def subset_blocks(
    particle_set: ParticleSet,
    rows: np.ndarray,
    added: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The set's blocks with only particle ``rows`` (every original column kept) plus ``added`` columns.

    ``added`` columns replace original columns of the same name in place (e.g. image paths for
    another project directory).
    """
    rows = np.asarray(rows, np.int64)
    table = particle_set.particles.iloc[rows].reset_index(drop=True).copy()
    for name, values in (added or {}).items():
        values = np.asarray(values)
        if len(values) != len(rows):
            raise DataError(
                particle_set.path, f"column {name} has {len(values)} values for {len(rows)} particles"
            )
        table[name] = values
    return {k: (table if k == particle_set.key else v) for k, v in particle_set.blocks.items()}


def optics_block(
    voxel_size_angst: float,
    box: int,
    *,
    dimensionality: int = 3,
    acquisition: Mapping[str, float] | None = None,
    group_name: str = "opticsGroup1",
):
    """A one-group RELION 3.1+ ``data_optics`` block; voltage / Cs / amplitude contrast only when known."""
    import pandas as pd

    columns: dict[str, list] = {
        "rlnOpticsGroup": [1],
        "rlnOpticsGroupName": [group_name],
        "rlnImagePixelSize": [float(voxel_size_angst)],
        "rlnImageSize": [int(box)],
        "rlnImageDimensionality": [int(dimensionality)],
    }
    acq = acquisition or {}
    for key, column in (
        ("voltage_kv", "rlnVoltage"),
        ("cs_mm", "rlnSphericalAberration"),
        ("amplitude_contrast", "rlnAmplitudeContrast"),
    ):
        if key in acq and acq[key] is not None:
            columns[column] = [float(acq[key])]
    return pd.DataFrame(columns)


# ----------------------------------------------------------------- particle sets built from arrays
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
