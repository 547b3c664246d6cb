"""Subtomogram simulator: density map -> random rotation and shift -> CTF (+ missing wedge) -> noise.

Follows the paper's recipe (METHOD.md, "Subtomogram data set"): each copy of a map is rotated
uniformly on SO(3) and shifted at random, convolved with the CTF, and Gaussian noise is added
to a target SNR. Everything is deterministic given ``seed``, whatever the batch size or device.

Conventions (shared with :mod:`dualcontrast.transforms.geometry`):

- Volumes are ``(D, H, W)`` = ``(z, y, x)``; rotations act on ``(x, y, z)`` column vectors about
  the box centre ``(n - 1) / 2``; copy ``i`` is ``v_i(R_i p + t_i) = map(p)``: the map rotated by
  ``R_i``, then shifted by ``t_i`` voxels.
- The table stores ``R_i`` as a unit quaternion ``(quat_w, quat_x, quat_y, quat_z)`` with
  ``w >= 0`` and as intrinsic ZYZ Euler angles in degrees, ``R = Rz(euler_a) Ry(euler_b)
  Rz(euler_g)`` (:func:`~dualcontrast.geometry.euler_zyz_to_matrix`), and ``t_i`` as
  ``shift_x, shift_y, shift_z`` in voxels. RELION angles are written by
  :func:`dualcontrast.io.star.write_particles_star` (see there for the conversion).
- Lengths: ``voxel_size`` in nm (the MRC / STAR writers convert to Angstrom); defocus in um,
  Cs in mm, voltage in kV.

The CTF and missing wedge are :mod:`dualcontrast.simulation.ctf`; maps are read or made by
:mod:`dualcontrast.simulation.maps` (PDB/mmCIF/MRC) and :mod:`dualcontrast.simulation.phantoms`.

SNR: ``var(signal) / var(noise)`` where signal is the copy after CTF and wedge and variances are
taken over the whole box. ``snr_mode="global"`` (default) uses one noise level for the data set,
``sigma^2 = mean_i var(signal_i) / snr``, as in a real tomogram where bigger particles stand out
more; ``"per_particle"`` scales the noise of each copy to its own signal variance. The noise is
white (added after CTF and wedge, as in the paper's recipe). ``snr=None`` gives clean copies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..errors import ConfigError
from ..geometry import canonical_quaternions, matrix_to_euler_zyz, quaternion_to_matrix
from ..transforms.geometry import warp
from .ctf import ctf_3d, missing_wedge_mask, radial_index, rfft_frequencies
from .maps import SourceMap, _index_maps, as_source_maps

IDENTITY_STATE = "identity_state"



# --------------------------------------------------------------------------- rotations


def rotations_from_table(table: Mapping[str, np.ndarray]) -> np.ndarray:
    """Rotation matrices ``(N, 3, 3)`` float64 from a simulation table's quaternion columns."""
    q = np.stack([table[f"quat_{c}"] for c in "wxyz"], -1)
    return quaternion_to_matrix(torch.as_tensor(q, dtype=torch.float64)).numpy()


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class SimulationParams:
    """Settings of one simulation (stored with the output)."""

    box: int = 32
    voxel_size: float = 1.0
    snr: float | None = 0.1
    snr_mode: str = "global"
    max_shift: float = 2.0
    defocus_um: float = -5.0
    defocus_spread_um: float = 0.0
    cs_mm: float = 1.7
    voltage_kv: float = 300.0
    amplitude_contrast: float = 0.1
    ctf: bool = True
    tilt_range: tuple[float, float] | None = None
    seed: int = 0

    def validate(self) -> None:
        if self.box < 4:
            raise ConfigError(f"box must be at least 4 voxels, got {self.box}")
        if self.voxel_size <= 0:
            raise ConfigError(f"voxel size must be positive (nm), got {self.voxel_size}")
        if self.snr is not None and not self.snr > 0:
            raise ConfigError(f"SNR must be positive (or None for no noise), got {self.snr}")
        if self.snr_mode not in ("global", "per_particle"):
            raise ConfigError(f"snr_mode must be 'global' or 'per_particle', got {self.snr_mode!r}")
        if not 0 <= self.max_shift < self.box / 2:
            raise ConfigError(f"max_shift must be in [0, box/2), got {self.max_shift}")
        if not 0 <= self.amplitude_contrast < 1:
            raise ConfigError(f"amplitude contrast must be in [0, 1), got {self.amplitude_contrast}")
        if self.voltage_kv <= 0 or self.cs_mm < 0 or self.defocus_spread_um < 0:
            raise ConfigError("voltage must be positive; Cs and defocus spread must be >= 0")
        if self.tilt_range is not None:
            missing_wedge_mask(4, self.tilt_range)  # validates the range

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tilt_range"] = None if self.tilt_range is None else list(self.tilt_range)
        return d


def draw_poses(n: int, max_shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform SO(3) quaternions ``(n, 4)`` (normalised 4D Gaussians, ``w >= 0``) and shifts ``(n, 3)`` in
    ``U(-max_shift, max_shift)`` voxels per axis, deterministic by seed."""
    rng = np.random.default_rng([seed, 0])
    q = canonical_quaternions(rng.standard_normal((n, 4)))
    shifts = rng.uniform(-max_shift, max_shift, size=(n, 3))
    return q, shifts


def _plan(maps: list[SourceMap], n_per_map: int, p: SimulationParams) -> dict[str, np.ndarray]:
    """The ground-truth table, before rendering: which map, pose and defocus each copy gets."""
    ident, state = _index_maps(maps)
    map_index = np.repeat(np.arange(len(maps)), n_per_map)
    n = len(map_index)
    q, shifts = draw_poses(n, p.max_shift, p.seed)
    euler = np.degrees(matrix_to_euler_zyz(quaternion_to_matrix(torch.as_tensor(q)).numpy()))
    defocus = p.defocus_um + np.random.default_rng([p.seed, 2]).uniform(-1, 1, n) * p.defocus_spread_um
    table = {
        "identity": ident[map_index],
        "state": state[map_index],
        IDENTITY_STATE: map_index.astype(np.int64),
        "identity_name": np.array([maps[i].identity for i in map_index], dtype=object),
        "state_name": np.array([maps[i].state for i in map_index], dtype=object),
        "source": np.array([maps[i].source for i in map_index], dtype=object),
        "quat_w": q[:, 0], "quat_x": q[:, 1], "quat_y": q[:, 2], "quat_z": q[:, 3],
        "euler_a": euler[:, 0], "euler_b": euler[:, 1], "euler_g": euler[:, 2],
        "shift_x": shifts[:, 0], "shift_y": shifts[:, 1], "shift_z": shifts[:, 2],
        "defocus_um": defocus,
    }  # fmt: skip
    return table


def _phase_ramp(shifts: torch.Tensor, box: int) -> torch.Tensor:
    """Fourier factors ``(B, D, H, W//2+1)`` that move a volume by ``shifts (B, 3)`` voxels along (x, y, z).

    ``exp(-2 pi i k.t)`` factorises over the axes, so three small 1D ramps are multiplied out.
    """
    kz, ky, kx = rfft_frequencies(box)
    s = shifts.to(torch.float64).cpu()

    def ramp(k: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        arg = -2.0 * math.pi * k.unsqueeze(0) * t.reshape(-1, 1, 1, 1)
        return torch.polar(torch.ones_like(arg), arg).to(torch.complex64)

    return ramp(kz, s[:, 2]) * ramp(ky, s[:, 1]) * ramp(kx, s[:, 0])


def fourier_shift(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move each volume of ``x (B, D, H, W)`` by ``shifts (B, 3)`` voxels along (x, y, z), periodically.

    Exact for band-limited data (no interpolation blur), unlike a trilinear warp.
    """
    box = x.shape[-1]
    f = torch.fft.rfftn(x, dim=(-3, -2, -1)) * _phase_ramp(shifts, box).to(x.device)
    return torch.fft.irfftn(f, s=(box, box, box), dim=(-3, -2, -1))


def render_copies(
    densities: torch.Tensor, table: Mapping[str, np.ndarray], rows: np.ndarray, p: SimulationParams
) -> torch.Tensor:
    """Noise-free copies ``(B, 1, D, H, W)`` for table rows ``rows``.

    Rotation by trilinear :func:`warp` about the box centre; the shift is a Fourier phase ramp
    (exact, so sub-voxel shifts do not blur), applied together with the CTF and wedge.
    """
    box = p.box
    device = densities.device
    r = torch.as_tensor(
        rotations_from_table({k: table[k][rows] for k in ("quat_w", "quat_x", "quat_y", "quat_z")})
    )
    x = densities[torch.as_tensor(table[IDENTITY_STATE][rows], device=device)]
    x = warp(x, r.to(device=device, dtype=x.dtype))
    f = torch.fft.rfftn(x[:, 0], dim=(-3, -2, -1))
    shifts = torch.as_tensor(np.stack([table[f"shift_{c}"][rows] for c in "xyz"], -1))
    f = f * _phase_ramp(shifts, box).to(device)
    if p.ctf:
        f = f * ctf_3d(
            box, p.voxel_size, table["defocus_um"][rows], p.cs_mm, p.voltage_kv, p.amplitude_contrast
        ).to(device)
    else:
        radius, inverse = radial_index(box)
        f = f * (radius < 0.5)[inverse].to(device)
    if p.tilt_range is not None:
        f = f * missing_wedge_mask(box, p.tilt_range).to(device)
    return torch.fft.irfftn(f, s=(box, box, box), dim=(-3, -2, -1)).unsqueeze(1)


def particle_noise(seed: int, index: int, box: int) -> np.ndarray:
    """Unit white noise ``(1, box, box, box)`` of copy ``index``: its own stream, so any copy can be
    regenerated alone and results do not depend on batching."""
    return np.random.default_rng([seed, 1, index]).standard_normal((1, box, box, box), dtype=np.float32)


def simulate_subtomograms(
    maps: Mapping[tuple[str, str], np.ndarray] | Sequence[SourceMap],
    n_per_map: int,
    *,
    snr: float | None = 0.1,
    snr_mode: str = "global",
    box: int | None = None,
    voxel_size: float = 1.0,
    max_shift: float = 2.0,
    defocus_um: float = -5.0,
    defocus_spread_um: float = 0.0,
    cs_mm: float = 1.7,
    voltage_kv: float = 300.0,
    amplitude_contrast: float = 0.1,
    ctf: bool = True,
    tilt_range: tuple[float, float] | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    out: Any = None,
    progress: bool = True,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Simulate ``n_per_map`` noisy copies of every map (see the module docstring for conventions).

    Args:
        maps: ``{(identity, state): (n, n, n) array}`` (e.g. :func:`~dualcontrast.simulation.phantoms.phantom_maps`)
            or a list of :class:`SourceMap`; all at ``voxel_size`` nm.
        box: must equal the maps' size if given (maps are resampled by :func:`load_maps`, not here).
        cs_mm: the paper used 1.7 mm; 2.7 mm is common on Krios microscopes.
        out: optional array-like ``(N, 1, n, n, n)`` to fill in place (an HDF5 dataset or an MRC
            memory map for data sets larger than memory); a new float32 array otherwise.

    Returns:
        ``(volumes (N, 1, n, n, n) float32, table)``; rows are map-major (all copies of map 0,
        then map 1, ...). ``table`` maps column names to ``(N,)`` arrays: ``identity``, ``state``
        (index within the identity), ``identity_state`` (the map index), ``identity_name``,
        ``state_name``, ``source``, ``quat_w/x/y/z``, ``euler_a/b/g`` (deg), ``shift_x/y/z``
        (voxels), ``defocus_um``, ``signal_var`` and ``noise_sigma``.
    """
    source_maps = as_source_maps(maps)
    n_box = source_maps[0].density.shape[0]
    if box is not None and box != n_box:
        raise ConfigError(f"box {box} does not match the maps' size {n_box}; resample them with load_maps")
    params = SimulationParams(
        box=n_box, voxel_size=voxel_size, snr=snr, snr_mode=snr_mode, max_shift=max_shift,
        defocus_um=defocus_um, defocus_spread_um=defocus_spread_um, cs_mm=cs_mm, voltage_kv=voltage_kv,
        amplitude_contrast=amplitude_contrast, ctf=ctf,
        tilt_range=None if tilt_range is None else (float(tilt_range[0]), float(tilt_range[1])), seed=seed,
    )  # fmt: skip
    params.validate()
    if n_per_map < 1:
        raise ConfigError(f"n_per_map must be at least 1, got {n_per_map}")
    table = _plan(source_maps, n_per_map, params)
    n = len(table[IDENTITY_STATE])
    volumes = np.empty((n, 1, n_box, n_box, n_box), np.float32) if out is None else out
    if tuple(volumes.shape) != (n, 1, n_box, n_box, n_box):
        raise ConfigError(
            f"output array has shape {tuple(volumes.shape)}, expected {(n, 1, n_box, n_box, n_box)}"
        )
    densities = torch.as_tensor(np.stack([m.density for m in source_maps])[:, None], device=device)
    signal_var = np.empty(n)
    steps = range(0, n, batch_size)
    bar = tqdm(total=n, desc="simulate", unit="vol", disable=not progress)
    with torch.no_grad():
        for start in steps:
            rows = np.arange(start, min(start + batch_size, n))
            clean = render_copies(densities, table, rows, params).cpu().numpy()
            signal_var[rows] = clean.reshape(len(rows), -1).var(axis=1)
            if params.snr is not None and params.snr_mode == "per_particle":
                clean += _noise(rows, np.sqrt(signal_var[rows] / params.snr), params)
            volumes[start : start + len(rows)] = clean
            bar.update(len(rows))
    bar.close()
    noise_sigma = _noise_sigma(signal_var, params)
    if params.snr is not None and params.snr_mode == "global":
        # The global noise level needs every copy's signal variance, so noise is a second sweep.
        for start in tqdm(steps, desc="add noise", unit="batch", disable=not progress):
            rows = np.arange(start, min(start + batch_size, n))
            volumes[start : start + len(rows)] = volumes[start : start + len(rows)] + _noise(
                rows, noise_sigma[rows], params
            )
    table["signal_var"] = signal_var
    table["noise_sigma"] = noise_sigma
    return volumes, table


def _noise_sigma(signal_var: np.ndarray, p: SimulationParams) -> np.ndarray:
    if p.snr is None:
        return np.zeros_like(signal_var)
    if p.snr_mode == "per_particle":
        return np.sqrt(signal_var / p.snr)
    return np.full_like(signal_var, math.sqrt(float(signal_var.mean()) / p.snr))


def _noise(rows: np.ndarray, sigma: np.ndarray, p: SimulationParams) -> np.ndarray:
    noise = np.stack([particle_noise(p.seed, int(i), p.box) for i in rows])
    return noise * sigma.astype(np.float32)[:, None, None, None, None]
