"""Per-particle CTF parameters of 2D particle images, and the 2D CTF on an image's Fourier grid.

Single-particle methods (Hydra) multiply each rendered projection by its particle's CTF, so
the parameters travel with the data as per-sample factors (carried through splits and
subsets like any factor, saved in ``embeddings.npz``, never scored):

=========================  ==============================================================
``ctf_defocus_u``          defocus along the astigmatism angle, um (TOM sign: -5 = 5 um
                           underfocus, as :mod:`dualcontrast.simulation` writes it)
``ctf_defocus_v``          defocus perpendicular to it, um
``ctf_defocus_angle``      astigmatism angle, degrees from the x axis
``ctf_voltage``            kV
``ctf_cs``                 spherical aberration, mm
``ctf_amplitude_contrast`` fraction in [0, 1)
``ctf_pixel_size``         Angstrom per pixel
``ctf_sign``               +1: the simulator's sign (positive density, positive contrast);
                           -1: RELION's (``CTF = -sin(chi)``, protein dark in the images)
=========================  ==============================================================

The formula is the simulator's :func:`~dualcontrast.simulation.ctf.ctf_1d`, with the defocus
taken along each frequency's direction, ``dz(phi) = (dU + dV) / 2 + (dU - dV) / 2 cos(2 (phi -
angle))``. Two sources fill the table: :func:`project_splits` (a subtomogram set summed along
z: the projection of a volume convolved with a radial 3D CTF is the projection convolved with
the same CTF in 2D, by the central-slice theorem) and :func:`star_ctf_factors` (a RELION
particle STAR file's ``rlnDefocusU/V/Angle`` columns and optics).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import Dataset, DataSplits, LazyStack

CTF_FACTORS = (
    "ctf_defocus_u",
    "ctf_defocus_v",
    "ctf_defocus_angle",
    "ctf_voltage",
    "ctf_cs",
    "ctf_amplitude_contrast",
    "ctf_pixel_size",
    "ctf_sign",
)

#: the paper's simulation (appendix "Hydra Training"): defocus -5 um, 300 kV, Cs 1.7 mm, A 0.1
PAPER_CTF: dict[str, float] = {
    "defocus_um": -5.0,
    "voltage_kv": 300.0,
    "cs_mm": 1.7,
    "amplitude_contrast": 0.1,
}


def ctf_factors(
    n: int,
    *,
    defocus_u_um: float | np.ndarray,
    defocus_v_um: float | np.ndarray | None = None,
    angle_deg: float | np.ndarray = 0.0,
    voltage_kv: float | np.ndarray = 300.0,
    cs_mm: float | np.ndarray = 1.7,
    amplitude_contrast: float | np.ndarray = 0.1,
    pixel_size_a: float | np.ndarray = 10.0,
    sign: float = 1.0,
) -> dict[str, np.ndarray]:
    """The :data:`CTF_FACTORS` columns ``(n,)`` float64 (scalars are broadcast)."""
    values = (
        defocus_u_um,
        defocus_u_um if defocus_v_um is None else defocus_v_um,
        angle_deg,
        voltage_kv,
        cs_mm,
        amplitude_contrast,
        pixel_size_a,
        sign,
    )
    return {k: np.broadcast_to(np.asarray(v, np.float64), (n,)).copy() for k, v in zip(CTF_FACTORS, values, strict=True)}


def has_ctf(data: Dataset) -> bool:
    return all(k in data.factors for k in CTF_FACTORS)


def ctf_table(data: Dataset, rows: np.ndarray | None = None) -> np.ndarray | None:
    """``(n, 8)`` parameters of ``rows`` (all rows if None) in :data:`CTF_FACTORS` order; None without CTF."""
    if not has_ctf(data):
        return None
    cols = [np.asarray(data.factors[k], np.float64) for k in CTF_FACTORS]
    table = np.stack(cols, -1)
    return table if rows is None else table[np.asarray(rows)]


def ctf_2d(params: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
    """CTF of each particle at frequencies ``(kx, ky)`` in cycles/pixel. ``(B, 8), (P,), (P,) -> (B, P)``.

    Rows sharing voltage, Cs and amplitude contrast are evaluated together (usually all of
    them: one optics group).
    """
    from ..simulation.ctf import ctf_1d

    p = params.to(torch.float64).cpu()
    k = torch.sqrt(kx.double().cpu() ** 2 + ky.double().cpu() ** 2)
    phi = torch.atan2(ky.double().cpu(), kx.double().cpu())
    out = torch.empty(p.shape[0], k.shape[0], dtype=torch.float64)
    optics = p[:, 3:6]
    groups, inverse = torch.unique(optics, dim=0, return_inverse=True)
    for g in range(groups.shape[0]):
        rows = torch.nonzero(inverse == g).squeeze(1)
        q = p[rows]
        du, dv, angle = q[:, 0:1], q[:, 1:2], torch.deg2rad(q[:, 2:3])
        dz = 0.5 * (du + dv) + 0.5 * (du - dv) * torch.cos(2.0 * (phi.unsqueeze(0) - angle))
        kv, cs, amp = (float(v) for v in groups[g])
        values = ctf_1d(k.unsqueeze(0) / q[:, 6:7], dz, cs, kv, amp)
        out[rows] = values * q[:, 7:8]
    return out.to(device=params.device, dtype=torch.float32)


# --------------------------------------------------------------------------- projections


class ProjectedStack(LazyStack):
    """Volumes ``(N, 1, D, H, W)`` of any stack read as their sums along z ``(N, 1, H, W)``, lazily."""

    def __init__(self, base: Any):
        n, c, _, h, w = base.shape
        super().__init__((n, c, h, w), getattr(base, "where", "projected volumes"))
        self.base = base

    def _read(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.base[rows], dtype=np.float32).sum(axis=-3)


def _simulation_ctf(path: str | Path | None, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """CTF settings of a simulated set: a ``dualcontrast simulate`` HDF5's ``simulation`` attribute,
    else the built-in set's parameters, else the paper's values at 1 nm voxels."""
    settings: dict[str, Any] = {"voxel_size": 1.0, "ctf": True, **PAPER_CTF}
    if params:
        settings.update({k: v for k, v in params.items() if k in ("voxel_size", "defocus_um", "cs_mm")})
    if path is not None and Path(path).suffix.lower() in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            if "simulation" in f.attrs:
                settings.update(json.loads(f.attrs["simulation"]))
    return settings


def _project(data: Dataset, settings: Mapping[str, Any]) -> Dataset:
    x = data.x
    projected = (
        np.asarray(x, np.float32).sum(axis=-3)
        if isinstance(x, np.ndarray) and not isinstance(x, np.memmap)
        else ProjectedStack(x)
    )
    factors = dict(data.factors)
    if settings.get("ctf", True):
        factors.update(
            ctf_factors(
                len(data),
                defocus_u_um=float(settings["defocus_um"]),
                voltage_kv=float(settings["voltage_kv"]),
                cs_mm=float(settings["cs_mm"]),
                amplitude_contrast=float(settings["amplitude_contrast"]),
                pixel_size_a=10.0 * float(settings["voxel_size"]),
            )
        )
    return Dataset(x=projected, factors=factors, source=f"{data.source} (projected along z)",
                   normalize=data.normalize, ids=data.ids)  # fmt: skip


def project_splits(
    splits: DataSplits, path: str | Path | None = None, params: Mapping[str, Any] | None = None
) -> DataSplits:
    """Each volume summed along z (the paper's input to Hydra), with the simulation's CTF as factors.

    The CTF settings come from the HDF5 file ``dualcontrast simulate`` wrote (its ``simulation``
    attribute), from the built-in set's ``params``, else the paper's (defocus -5 um, 300 kV,
    Cs 1.7 mm, amplitude contrast 0.1) at 1 nm voxels. A simulation without CTF (``ctf: false``)
    gives projections without CTF factors.
    """
    from ..errors import DataError

    if splits.train.spatial_dims != 3:
        raise DataError(splits.train.source, "data.project needs 3D volumes; these are already 2D images")
    settings = _simulation_ctf(path, params)
    return DataSplits(train=_project(splits.train, settings), test=_project(splits.test, settings),
                      name=splits.name)  # fmt: skip


def star_ctf_factors(particles: Any, acquisition: Mapping[str, float], voxel_size: np.ndarray) -> dict[str, np.ndarray]:
    """CTF factors of a RELION particle table (``rlnDefocusU/V`` in Angstrom, underfocus positive).

    Empty when the table has no ``rlnDefocusU``. RELION's sign (``ctf_sign = -1``) and the
    optics' voltage / Cs / amplitude contrast (RELION's defaults 300 kV, 2.7 mm, 0.1 where absent).
    """
    if "rlnDefocusU" not in particles.columns:
        return {}
    n = len(particles)
    du = np.asarray(particles["rlnDefocusU"], np.float64)
    dv = np.asarray(particles["rlnDefocusV"], np.float64) if "rlnDefocusV" in particles.columns else du
    angle = (
        np.asarray(particles["rlnDefocusAngle"], np.float64) if "rlnDefocusAngle" in particles.columns else 0.0
    )
    pixel = np.where(np.isnan(voxel_size), 1.0, voxel_size)
    return ctf_factors(
        n,
        defocus_u_um=-du / 1e4,
        defocus_v_um=-dv / 1e4,
        angle_deg=angle,
        voltage_kv=acquisition.get("voltage_kv", 300.0),
        cs_mm=acquisition.get("cs_mm", 2.7),
        amplitude_contrast=acquisition.get("amplitude_contrast", 0.1),
        pixel_size_a=pixel,
        sign=-1.0,
    )
