"""Density maps to simulate from: MRC maps resampled to the simulation grid, atomic models (PDB /
mmCIF, read with gemmi) rendered as densities, and the :class:`SourceMap` list the simulator copies."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError

logger = logging.getLogger(__name__)

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


