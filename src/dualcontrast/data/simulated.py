"""Simulated data sets: the built-in ``phantoms3d`` (subtomograms of the built-in phantoms) and
simulations written to files in the formats the loaders read (HDF5, or an MRC stack + RELION STAR
file, each with a ground-truth table), so every simulated data set carries its ground truth."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io.mrc import new_volume_stack
from ..io.star import write_particles_star
from ..simulation.maps import SourceMap, as_source_maps
from ..simulation.phantoms import phantom_maps
from ..simulation.simulate import (
    IDENTITY_STATE,
    SimulationParams,
    rotations_from_table,
    simulate_subtomograms,
)
from .base import CONTENT, TRANSFORM, Dataset, DataSplits, split_dataset
from .loading import BUILTIN_DATASETS

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
        angstrom = params.get("voxel_size", 1.0) * 10.0
        with new_volume_stack(p, shape[0], n_box, angstrom, overwrite=overwrite) as data:
            stack = _ChannelView(data)
            _, table = simulate_subtomograms(source_maps, n_per_map, out=stack, progress=progress, **params)
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
