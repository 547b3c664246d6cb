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

CTF (weak-phase approximation, applied in 3D as a function of ``|k|``, as in the TOM / AITom
simulators the paper's authors use)::

    lambda(V) = h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2)))     (relativistic electron wavelength)
    chi(k)    = pi lambda dz k^2 - (pi / 2) Cs lambda^3 k^4 + arcsin(A)
    CTF(k)    = sin(chi(k))

with ``k`` in 1/Angstrom, ``dz = -defocus`` the underfocus (the paper's "defocus -5 um" is 5 um
of underfocus, TOM toolbox sign) and ``A`` the amplitude contrast. With this overall sign the
CTF is +A at k = 0 and positive at low frequency, so a positive density keeps positive
contrast (TOM convention); RELION / CTFFIND write the CTF with the opposite overall sign.
Frequencies beyond Nyquist (``|k| >= 0.5`` cycles/voxel) are zeroed, which keeps every copy
band-limited isotropically.

Missing wedge: tilt axis along ``y`` (H), beam along ``z`` (D). A tilt of theta turns the beam
from +z towards +x; the Fourier point ``k`` is measured when some tilt in ``tilt_range`` has its
central plane through ``k``, i.e. ``atan(-k_z / k_x)`` (folded to [-90, 90] degrees) lies in the
range. The wedge is fixed in the tomogram frame and applied after the rotation.

SNR: ``var(signal) / var(noise)`` where signal is the copy after CTF and wedge and variances are
taken over the whole box. ``snr_mode="global"`` (default) uses one noise level for the data set,
``sigma^2 = mean_i var(signal_i) / snr``, as in a real tomogram where bigger particles stand out
more; ``"per_particle"`` scales the noise of each copy to its own signal variance. The noise is
white (added after CTF and wedge, as in the paper's recipe). ``snr=None`` gives clean copies.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..errors import ConfigError, DataError
from ..geometry import canonical_quaternions, matrix_to_euler_zyz, quaternion_to_matrix
from ..io.star import write_particles_star
from ..transforms.geometry import warp
from .base import CONTENT, TRANSFORM, Dataset, DataSplits, split_dataset
from .loading import BUILTIN_DATASETS

logger = logging.getLogger(__name__)

IDENTITY_STATE = "identity_state"

_MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdb.gz", ".ent.gz", ".cif.gz", ".mmcif.gz")
_MAP_SUFFIXES = (".mrc", ".map", ".mrc.gz", ".map.gz")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class SourceMap:
    """One density map to copy: ``density (box, box, box)`` at the simulation's voxel size."""

    identity: str
    state: str
    density: np.ndarray
    source: str


def as_source_maps(maps: Mapping[tuple[str, str], np.ndarray] | Sequence[SourceMap]) -> list[SourceMap]:
    """Accept ``{(identity, state): array}`` (e.g. :func:`phantom_maps`) or a list of :class:`SourceMap`."""
    if isinstance(maps, Mapping):
        out = []
        for key, density in maps.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ConfigError(f"map keys must be (identity, state) pairs, got {key!r}")
            out.append(
                SourceMap(str(key[0]), str(key[1]), np.asarray(density, np.float32), f"{key[0]}/{key[1]}")
            )
        maps = out
    maps = list(maps)
    if not maps:
        raise ConfigError("no density maps to simulate from")
    shapes = {m.density.shape for m in maps}
    if len(shapes) != 1:
        raise ConfigError(f"all maps must share one box, got shapes {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) != 3 or len(set(shape)) != 1:
        raise ConfigError(f"maps must be cubic 3D arrays, got shape {shape}")
    return maps


def _index_maps(maps: list[SourceMap]) -> tuple[np.ndarray, np.ndarray]:
    """Identity index (order of first appearance) and state index within the identity, per map."""
    identities: dict[str, int] = {}
    states: dict[str, dict[str, int]] = {}
    ident = np.empty(len(maps), np.int64)
    state = np.empty(len(maps), np.int64)
    for i, m in enumerate(maps):
        ident[i] = identities.setdefault(m.identity, len(identities))
        per = states.setdefault(m.identity, {})
        state[i] = per.setdefault(m.state, len(per))
    return ident, state


def resample_map(
    density: np.ndarray, map_voxel_size: float, box: int, voxel_size: float, where: str
) -> np.ndarray:
    """Bring a cubic map to ``voxel_size`` nm (cubic spline zoom) and pad / crop it to ``box^3`` centrally."""
    from scipy import ndimage

    density = np.asarray(density, np.float32)
    if density.ndim != 3 or len(set(density.shape)) != 1:
        raise DataError(where, f"density maps must be cubic 3D volumes, got shape {density.shape}")
    if not np.isfinite(density).all():
        raise DataError(where, "map contains NaN or Inf values")
    if abs(map_voxel_size - voxel_size) > 1e-6 * voxel_size:
        density = ndimage.zoom(density, map_voxel_size / voxel_size, order=3, mode="grid-constant", grid_mode=True)
    n = density.shape[0]
    out = np.zeros((box, box, box), np.float32)
    if n >= box:
        lo = (n - box) // 2
        out[:] = density[lo : lo + box, lo : lo + box, lo : lo + box]
        dropped = float(np.abs(density).sum() - np.abs(out).sum())
        if dropped > 0.01 * float(np.abs(density).sum()):
            logger.warning(
                "%s: cropping to %d^3 voxels cuts off %.0f%% of the density",
                where,
                box,
                100 * dropped / np.abs(density).sum(),
            )
    else:
        lo = (box - n) // 2
        out[lo : lo + n, lo : lo + n, lo : lo + n] = density
    return out


def read_map(path: str | Path, box: int = 32, voxel_size: float = 1.0) -> np.ndarray:
    """A density map from an MRC file, resampled to ``voxel_size`` nm and padded / cropped to ``box``.

    The header's voxel size (Angstrom) is used; a header without one (0) is taken as already at
    ``voxel_size``.
    """
    import mrcfile

    p = Path(path)
    try:
        with mrcfile.open(p, permissive=False) as mrc:
            data = np.array(mrc.data, dtype=np.float32)
            header_voxel = float(mrc.voxel_size.x) / 10.0
    except (ValueError, OSError, EOFError) as e:
        raise DataError(p, f"not a readable MRC density map ({e})") from None
    if data.ndim != 3:
        raise DataError(p, f"a density map must be one 3D volume, got data of shape {data.shape}")
    map_voxel = header_voxel if header_voxel > 0 else voxel_size
    return resample_map(data, map_voxel, box, voxel_size, str(p))


def map_from_model(
    path: str | Path, box: int = 32, voxel_size: float = 1.0, resolution: float | None = None
) -> np.ndarray:
    """Electron-scattering density of an atomic model (PDB or mmCIF) on a ``box^3`` grid of ``voxel_size`` nm.

    Uses gemmi's ``DensityCalculatorE`` (electron form factors). The model's mass centre is
    placed at voxel ``(box - 1) / 2`` (the rotation centre). The density is blurred to
    ``resolution`` nm (default: twice the voxel size, i.e. Nyquist) with a Gaussian of
    sigma = 0.187 * resolution (ChimeraX ``molmap`` convention), which also prevents aliasing on
    coarse grids. Returns ``(box, box, box)`` float32 in (z, y, x) order.
    """
    import gemmi

    p = Path(path)
    if not p.is_file():
        raise DataError(p, "no such atomic model file")
    try:
        st = gemmi.read_structure(str(p))
    except (RuntimeError, ValueError, OSError) as e:
        raise DataError(p, f"not a readable PDB / mmCIF model ({e})") from None
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise DataError(p, "the model holds no atoms")
    st.remove_hydrogens()
    model = st[0]
    length = box * voxel_size * 10.0  # Angstrom
    center = model.calculate_center_of_mass()
    target = (box - 1) / 2.0 * voxel_size * 10.0
    move = gemmi.Vec3(target - center.x, target - center.y, target - center.z)
    model.transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), move))
    extent = 2.0 * _model_radius(model, target)
    if extent > length:
        raise DataError(
            p,
            f"the model spans {extent / 10:.1f} nm, more than the box ({box} x {voxel_size} nm = {length / 10:.1f} nm)",
        )
    st.cell = gemmi.UnitCell(length, length, length, 90, 90, 90)
    st.spacegroup_hm = "P 1"
    res_a = (2.0 * voxel_size if resolution is None else resolution) * 10.0
    calc = gemmi.DensityCalculatorE()
    calc.d_min = res_a
    calc.blur = 8.0 * math.pi**2 * (0.187 * res_a) ** 2
    calc.set_grid_cell_and_spacegroup(st)
    calc.grid.set_size(box, box, box)
    calc.add_model_density_to_grid(model)
    calc.grid.symmetrize_sum()
    # grid.array is a view indexed (x, y, z); copy it before the calculator goes away.
    return np.array(calc.grid.array, dtype=np.float32, copy=True).transpose(2, 1, 0).copy()


def _model_radius(model, center: float) -> float:
    pos = np.array([[a.pos.x, a.pos.y, a.pos.z] for ch in model for res in ch for a in res])
    return float(np.linalg.norm(pos - center, axis=1).max())


def load_maps(
    sources: Sequence[str | Path] | Mapping[tuple[str, str], str | Path],
    box: int = 32,
    voxel_size: float = 1.0,
) -> list[SourceMap]:
    """Density maps from MRC maps and / or atomic models (PDB / mmCIF).

    ``sources`` is a list of paths (each file its own identity, named by its stem, state
    ``"0"``) or ``{(identity, state): path}`` to group conformations of one identity.
    """
    if isinstance(sources, Mapping):
        items = [(str(k[0]), str(k[1]), Path(v)) for k, v in sources.items()]
    else:
        items = [(_stem(Path(s)), "0", Path(s)) for s in sources]
    maps = []
    for identity, state, path in items:
        name = path.name.lower()
        if name.endswith(_MODEL_SUFFIXES):
            density = map_from_model(path, box, voxel_size)
        elif name.endswith(_MAP_SUFFIXES):
            density = read_map(path, box, voxel_size)
        else:
            raise DataError(path, "unknown map format; use .mrc / .map density maps or .pdb / .cif models")
        maps.append(SourceMap(identity, state, density, str(path)))
    return maps


def _stem(p: Path) -> str:
    name = p.name
    for suffix in sorted(_MODEL_SUFFIXES + _MAP_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return p.stem


# --------------------------------------------------------------------------- physics


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Angstrom (300 kV -> 0.019687 A)."""
    h, m0, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    v = voltage_kv * 1e3
    return h / math.sqrt(2.0 * m0 * e * v * (1.0 + e * v / (2.0 * m0 * c * c))) * 1e10


def ctf_1d(
    k: np.ndarray | torch.Tensor,
    defocus_um: float | np.ndarray | torch.Tensor = -5.0,
    cs_mm: float = 1.7,
    voltage_kv: float = 300.0,
    amplitude_contrast: float = 0.1,
):
    """CTF at spatial frequencies ``k`` (1/Angstrom); see the module docstring for the formula and sign.

    Works on numpy arrays and torch tensors (broadcasting ``defocus_um`` against ``k``).
    """
    lam = electron_wavelength(voltage_kv)
    dz = -defocus_um * 1e4  # underfocus in Angstrom
    cs = cs_mm * 1e7
    k2 = k * k
    chi = math.pi * lam * dz * k2 - 0.5 * math.pi * cs * lam**3 * k2 * k2 + math.asin(amplitude_contrast)
    return np.sin(chi) if isinstance(chi, np.ndarray) else torch.sin(chi)


def rfft_frequencies(box: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cycles/voxel on the ``rfftn`` grid of a ``box^3`` volume, broadcastable to ``(D, H, W//2+1)``."""
    kz = torch.fft.fftfreq(box, dtype=torch.float64).reshape(-1, 1, 1)
    ky = torch.fft.fftfreq(box, dtype=torch.float64).reshape(1, -1, 1)
    kx = torch.fft.rfftfreq(box, dtype=torch.float64).reshape(1, 1, -1)
    return kz, ky, kx


@functools.lru_cache(maxsize=8)
def _radial_index(box: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct radii (cycles/voxel) of the ``rfftn`` grid and, per grid point, the index of its radius.

    A radial function then costs one evaluation per distinct radius (a few hundred for 32^3)
    plus a gather, instead of one per Fourier voxel.
    """
    kz, ky, kx = rfft_frequencies(box)
    squared = torch.round((kz**2 + ky**2 + kx**2) * box * box).to(torch.int64)  # integer |k|^2 in grid units
    unique, inverse = torch.unique(squared, return_inverse=True)
    return torch.sqrt(unique.to(torch.float64)) / box, inverse


def ctf_3d(
    box: int,
    voxel_size: float = 1.0,
    defocus_um: float | np.ndarray = -5.0,
    cs_mm: float = 1.7,
    voltage_kv: float = 300.0,
    amplitude_contrast: float = 0.1,
) -> torch.Tensor:
    """Radial 3D CTF on the ``rfftn`` grid, zero beyond Nyquist.

    ``defocus_um`` scalar -> ``(D, H, W//2+1)``; array ``(B,)`` -> ``(B, D, H, W//2+1)``. float32.
    """
    radius, inverse = _radial_index(box)
    defocus = torch.as_tensor(np.asarray(defocus_um, dtype=np.float64))
    profile = ctf_1d(
        radius / (voxel_size * 10.0), defocus.reshape(-1, 1), cs_mm, voltage_kv, amplitude_contrast
    )
    profile = torch.where(radius < 0.5, profile, torch.zeros(())).to(torch.float32)
    out = profile[:, inverse]
    return out[0] if defocus.ndim == 0 else out


def missing_wedge_mask(box: int, tilt_range: tuple[float, float]) -> torch.Tensor:
    """Measured Fourier points ``(D, H, W//2+1)`` bool for a single-axis tilt series about ``y``."""
    lo, hi = float(tilt_range[0]), float(tilt_range[1])
    if not -90.0 <= lo < hi <= 90.0:
        raise ConfigError(f"tilt range must satisfy -90 <= min < max <= 90 degrees, got {tilt_range}")
    kz, _, kx = rfft_frequencies(box)
    kz, kx = torch.broadcast_tensors(kz, kx)
    theta = torch.rad2deg(torch.atan(-kz / kx))  # kx == 0 gives +-90 (or nan at kz == 0)
    on_axis = (kx == 0) & (kz == 0)
    mask = ((theta >= lo) & (theta <= hi)) | on_axis
    return mask.expand(box, box, box // 2 + 1)


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
        radius, inverse = _radial_index(box)
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
        maps: ``{(identity, state): (n, n, n) array}`` (e.g. :func:`~dualcontrast.data.phantoms.phantom_maps`)
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


# --------------------------------------------------------------------------- writers


def ground_truth_maps_path(data_path: str | Path) -> Path:
    """Where ``dualcontrast simulate`` puts the clean maps of a simulated file: ``<stem>_maps.npz``."""
    p = Path(data_path)
    return p.with_name(p.stem + "_maps.npz")


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise DataError(path, "already exists; choose another name or pass overwrite=True")


def write_table_csv(path: str | Path, table: Mapping[str, np.ndarray], overwrite: bool = False) -> Path:
    """The ground-truth table as CSV (one row per copy)."""
    import pandas as pd

    p = Path(path)
    _refuse_existing(p, overwrite)
    pd.DataFrame({k: np.asarray(v) for k, v in table.items()}).to_csv(p, index=False)
    return p


def write_h5(
    path: str | Path, volumes: np.ndarray | None, table: Mapping[str, np.ndarray], params: SimulationParams | dict,
    overwrite: bool = False,
) -> Path:  # fmt: skip
    """HDF5 with ``volumes (N, 1, n, n, n)``, label datasets ``content`` (identity), ``transform``
    (state), ``identity_state`` at the root (read back as factors by
    :func:`dualcontrast.data.volumes.load_h5`), every table column under ``table/``, and the
    simulation settings as JSON in the ``simulation`` attribute. ``volumes=None`` writes the
    labels into an existing file made by :func:`simulate_to_file`."""
    import h5py

    p = Path(path)
    if volumes is not None:
        _refuse_existing(p, overwrite)
    settings = params.to_dict() if isinstance(params, SimulationParams) else dict(params)
    with h5py.File(p, "w" if volumes is not None else "a") as f:
        if volumes is not None:
            f.create_dataset("volumes", data=volumes, chunks=(1, *volumes.shape[1:]))
        f.create_dataset(CONTENT, data=np.asarray(table["identity"], np.int64))
        f.create_dataset(TRANSFORM, data=np.asarray(table["state"], np.int64))
        f.create_dataset(IDENTITY_STATE, data=np.asarray(table[IDENTITY_STATE], np.int64))
        group = f.create_group("table")
        for key, values in table.items():
            values = np.asarray(values)
            if values.dtype == object:
                values = values.astype(str).astype(h5py.string_dtype())
            group.create_dataset(key, data=values)
        f.attrs["simulation"] = json.dumps(settings)
        f.attrs["voxel_size_nm"] = float(settings["voxel_size"])
    return p


def ground_truth_star_columns(table: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Custom ``_dc*`` STAR columns holding the ground truth (read back by ``load_star``)."""
    return {
        "dcIdentity": np.asarray(table["identity"], np.int64),
        "dcState": np.asarray(table["state"], np.int64),
        "dcIdentityState": np.asarray(table[IDENTITY_STATE], np.int64),
        "dcIdentityName": np.asarray(table["identity_name"]).astype(str),
        "dcStateName": np.asarray(table["state_name"]).astype(str),
        "dcSourceMap": np.asarray(table["source"]).astype(str),
        "dcDefocusUm": np.asarray(table["defocus_um"], float),
    }


def simulate_to_file(
    path: str | Path,
    maps: Mapping[tuple[str, str], np.ndarray] | Sequence[SourceMap],
    n_per_map: int,
    *,
    overwrite: bool = False,
    progress: bool = True,
    **params: Any,
) -> dict[str, np.ndarray]:
    """Simulate straight into a file, so the data set never has to fit in memory.

    ``.h5`` / ``.hdf5``: see :func:`write_h5`. ``.mrcs`` / ``.mrc``: an MRC volume stack
    (``ispg = 401``, voxel size in the header) plus ``<stem>.star``, a RELION particle list whose
    ``rlnImageName`` entries are ``k@<stack>`` with ground-truth pose (RELION convention) and
    ``_dc*`` columns. Both formats also get ``<stem>_groundtruth.csv``. Returns the table.
    ``params`` are those of :func:`simulate_subtomograms`.
    """
    import h5py
    import mrcfile

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".h5", ".hdf5", ".mrcs", ".mrc"):
        raise ConfigError(f"unknown output format {suffix!r}; use .h5 / .hdf5 or .mrcs")
    csv_path = p.with_name(p.stem + "_groundtruth.csv")
    star_path = p.with_suffix(".star")
    for target in (p, csv_path, *((star_path,) if suffix in (".mrcs", ".mrc") else ())):
        _refuse_existing(target, overwrite)
    source_maps = as_source_maps(maps)
    n_box = source_maps[0].density.shape[0]
    shape = (len(source_maps) * n_per_map, 1, n_box, n_box, n_box)
    if suffix in (".h5", ".hdf5"):
        with h5py.File(p, "w") as f:
            ds = f.create_dataset("volumes", shape=shape, dtype=np.float32, chunks=(1, *shape[1:]))
            _, table = simulate_subtomograms(source_maps, n_per_map, out=ds, progress=progress, **params)
        write_h5(p, None, table, _params_of(table, n_box, params))
    else:
        with mrcfile.new_mmap(
            p, shape=(shape[0], n_box, n_box, n_box), mrc_mode=2, overwrite=overwrite
        ) as mrc:
            stack = _ChannelView(mrc.data)
            _, table = simulate_subtomograms(source_maps, n_per_map, out=stack, progress=progress, **params)
            mrc.voxel_size = params.get("voxel_size", 1.0) * 10.0
            mrc.update_header_stats()
        _write_ground_truth_star(star_path, p, table, _params_of(table, n_box, params), overwrite)
    write_table_csv(csv_path, table, overwrite=overwrite)
    return table


def _params_of(table: Mapping[str, np.ndarray], box: int, params: dict[str, Any]) -> SimulationParams:
    fields = {k: v for k, v in params.items() if k in SimulationParams.__dataclass_fields__}
    if "tilt_range" in fields and fields["tilt_range"] is not None:
        fields["tilt_range"] = tuple(fields["tilt_range"])
    return SimulationParams(box=box, **{k: v for k, v in fields.items() if k != "box"})


class _ChannelView:
    """A ``(N, n, n, n)`` array seen as ``(N, 1, n, n, n)`` for writing (MRC volume stacks have no channel axis)."""

    def __init__(self, base: np.ndarray):
        self.base = base
        self.shape = (base.shape[0], 1, *base.shape[1:])

    def __getitem__(self, index: slice) -> np.ndarray:
        return self.base[index][:, None]

    def __setitem__(self, index: slice, value: np.ndarray) -> None:
        self.base[index] = np.asarray(value)[:, 0]


def _write_ground_truth_star(
    star_path: Path,
    stack_path: Path,
    table: Mapping[str, np.ndarray],
    params: SimulationParams,
    overwrite: bool,
) -> None:
    n = len(table[IDENTITY_STATE])
    names = [f"{i + 1}@{stack_path.name}" for i in range(n)]
    write_particles_star(
        star_path,
        names,
        rotations=rotations_from_table(table),
        shifts=np.stack([table[f"shift_{c}"] for c in "xyz"], -1),
        voxel_size=params.voxel_size,
        box=params.box,
        voltage_kv=params.voltage_kv,
        cs_mm=params.cs_mm,
        amplitude_contrast=params.amplitude_contrast,
        extra_columns=ground_truth_star_columns(table),
        overwrite=overwrite,
    )


# --------------------------------------------------------------------------- built-in data set


@BUILTIN_DATASETS.register("phantoms3d")
def make_phantoms3d(
    n_per_state: int = 100,
    snr: float | None = 0.1,
    box: int = 32,
    voxel_size: float = 1.0,
    n_states: int = 4,
    max_shift: float = 2.0,
    defocus_um: float = -5.0,
    cs_mm: float = 1.7,
    tilt_range: tuple[float, float] | None = None,
    snr_mode: str = "global",
    test_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
) -> DataSplits:
    """Simulated subtomograms of the built-in phantoms (3 identities x ``n_states`` states).

    Factors: ``content`` = identity index (nucleosome 0, spike 1, fas 2), ``transform`` = state
    index WITHIN the identity (0 .. n_states-1; the same index means a different conformation
    for each identity), ``identity_state`` = the combined index ``identity * n_states + state``
    (the map index). Split at random into train / test by ``seed``.
    """
    from .phantoms import phantom_maps

    maps = phantom_maps(box=box, voxel_size=voxel_size, n_states=n_states)
    volumes, table = simulate_subtomograms(
        maps, n_per_state, snr=snr, snr_mode=snr_mode, voxel_size=voxel_size, max_shift=max_shift,
        defocus_um=defocus_um, cs_mm=cs_mm, tilt_range=tilt_range, seed=seed, progress=progress,
    )  # fmt: skip
    data = Dataset(
        x=volumes,
        factors={
            CONTENT: table["identity"],
            TRANSFORM: table["state"],
            IDENTITY_STATE: table[IDENTITY_STATE],
        },
        source="builtin:phantoms3d",
    )
    return split_dataset(data, test_fraction, seed, name="phantoms3d")
