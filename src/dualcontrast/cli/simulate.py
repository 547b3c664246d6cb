"""Simulate cryo-ET subtomograms: maps -> random SO(3) rotation and shift -> CTF (+ wedge) -> noise.

With no --maps, the built-in phantoms are used (3 identities x 4 conformational states).
Writes the volumes (.h5, or an .mrcs stack + RELION .star), a ground-truth table
(<stem>_groundtruth.csv: identity, state, rotation, shift, source map) and the clean maps
(<stem>_maps.npz, used by `dualcontrast analyze` for FSC against the truth).

Maps are MRC density maps or atomic models (PDB / mmCIF, turned into density with gemmi). Each
file is its own identity, or group conformations with IDENTITY:STATE=PATH.

examples:
  dualcontrast simulate -o phantoms.h5 --n-per-map 500 --snr 0.1
  dualcontrast simulate -o mix.mrcs --maps nuc:open=nuc_a.pdb nuc:closed=nuc_b.pdb fas.mrc --tilt-range -60 60
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .argtypes import non_negative_float, non_negative_int, positive_float, positive_int

log = logging.getLogger(__name__)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="FILE", help=".h5 / .hdf5, or .mrcs (+ .star); required")
    p.add_argument("--maps", nargs="+", metavar="[ID:STATE=]PATH", help="MRC maps / PDB / mmCIF models (default: the built-in phantoms)")
    p.add_argument("--states", type=positive_int, default=4, help="conformational states per built-in phantom")
    p.add_argument("--n-per-map", type=positive_int, default=500, help="copies of each map")
    p.add_argument("--box", type=positive_int, default=32, help="box size in voxels")
    p.add_argument("--voxel-size", type=positive_float, default=1.0, help="nm per voxel")
    p.add_argument("--snr", type=non_negative_float, default=0.1, help="signal variance / noise variance (0: no noise)")
    p.add_argument("--snr-mode", choices=["global", "per_particle"], default="global", help="one noise level for all copies, or per copy")
    p.add_argument("--max-shift", type=non_negative_float, default=2.0, help="random shift range, voxels per axis")
    p.add_argument("--defocus", type=float, default=-5.0, help="defocus in um (negative: underfocus)")
    p.add_argument("--defocus-spread", type=non_negative_float, default=0.0, help="per-copy defocus spread (um)")
    p.add_argument("--cs", type=non_negative_float, default=1.7, help="spherical aberration in mm")
    p.add_argument("--voltage", type=positive_float, default=300.0, help="kV")
    p.add_argument("--amplitude-contrast", type=non_negative_float, default=0.1, help="amplitude contrast fraction")
    p.add_argument("--no-ctf", action="store_true", help="skip the CTF")
    p.add_argument("--tilt-range", type=float, nargs=2, metavar=("MIN", "MAX"), help="missing wedge, degrees (default: no wedge)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def parse_map_args(specs: list[str]) -> dict[tuple[str, str], Path] | list[Path]:
    """``ID:STATE=PATH`` entries become a grouping dict; plain paths stay a list."""
    if not any("=" in s for s in specs):
        return [Path(s) for s in specs]
    from ..errors import ConfigError

    grouped: dict[tuple[str, str], Path] = {}
    for s in specs:
        key, sep, path = s.partition("=")
        identity, colon, state = key.partition(":")
        if not sep or not colon or not identity or not state:
            raise ConfigError(f"--maps entry {s!r}: use IDENTITY:STATE=PATH for every entry, or plain paths")
        grouped[(identity, state)] = Path(path)
    return grouped


def main(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    import numpy as np

    from ..data.simulated import ground_truth_maps_path, simulate_to_file
    from ..errors import DataError
    from ..simulation.maps import as_source_maps, load_maps
    from ..simulation.phantoms import phantom_maps

    out = Path(args.output)
    maps_out = ground_truth_maps_path(out)
    if maps_out.exists() and not args.overwrite:
        raise DataError(maps_out, "already exists; choose another output name or pass --overwrite")
    if args.maps:
        maps = load_maps(parse_map_args(args.maps), box=args.box, voxel_size=args.voxel_size)
    else:
        maps = as_source_maps(phantom_maps(box=args.box, voxel_size=args.voxel_size, n_states=args.states))
    out.parent.mkdir(parents=True, exist_ok=True)
    stack = out.suffix.lower() in (".mrcs", ".mrc")
    for existing in (out, out.with_name(out.stem + "_groundtruth.csv"), *([out.with_suffix(".star")] * stack)):
        if existing.exists() and not args.overwrite:
            raise DataError(existing, "already exists; choose another output name or pass --overwrite")
    # Written under the final names in a hidden sibling folder, moved into place at the end: an
    # interrupted or failed simulation leaves no partial file (and keeps an older one intact).
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        table = simulate_to_file(
            staging / out.name, maps, args.n_per_map,
            snr=args.snr or None, snr_mode=args.snr_mode, voxel_size=args.voxel_size, max_shift=args.max_shift,
            defocus_um=args.defocus, defocus_spread_um=args.defocus_spread, cs_mm=args.cs,
            voltage_kv=args.voltage, amplitude_contrast=args.amplitude_contrast, ctf=not args.no_ctf,
            tilt_range=tuple(args.tilt_range) if args.tilt_range else None, seed=args.seed,
        )  # fmt: skip
        np.savez(
            staging / maps_out.name,
            maps=np.stack([m.density for m in maps]).astype(np.float32),
            identity=np.array([m.identity for m in maps]),
            state=np.array([m.state for m in maps]),
            source=np.array([m.source for m in maps]),
            voxel_size_nm=np.float64(args.voxel_size),
        )
        for written in sorted(staging.iterdir()):
            written.replace(out.parent / written.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.warning(
        "wrote %d subtomograms of %d maps to %s (+ ground truth, %s)",
        len(table["identity"]),
        len(maps),
        out,
        maps_out.name,
    )
    return 0
