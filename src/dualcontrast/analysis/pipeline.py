"""``dualcontrast analyze``: clusters of identities and conformations, structures, exports.

Steps, all written under ``RUN/analysis/``:

1. codes of every sample (train + validation + test) from the run's checkpoint (best.pt when there is one);
2. clusters of c (``eval.cluster_method``: spectral with k by eigengap, or GMM with k by BIC;
   k unless given) -> content clusters; ARI against the true identity when known;
3. GMM on z inside each content cluster -> conformation clusters; ARI against the true
   (identity, state) when known, overall and inside each content cluster;
4. projections of c and z coloured by clusters and by ground truth;
5. volumes only: for every content cluster and every conformation cluster, an aligned average
   (``analysis.averaging``), written as MRC with a central-slice figure, compared with the
   ground-truth maps by FSC / AUC-FSC when they are known, and a RELION STAR file of the
   cluster's particles (see :class:`_Exporter`), and ``chimerax.cxc`` to view the averages in ChimeraX;
6. ``RUN/report.html`` rewritten with all of it.

Averages and STAR files carry the input's voxel size (STAR optics block, MRC header, or the
simulation's settings) and, where the input tells them, voltage / Cs / amplitude contrast.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..config import Config
from ..data.base import CONTENT, TRANSFORM, DataSplits, all_samples
from ..evaluation.clustering import cluster_label
from ..evaluation.embed import embed
from ..evaluation.figures import projection_figure
from ..evaluation.run import clustering_options
from ..models.base import DisentanglementModel
from ..report import write_report
from ..rundir import RunDir, atomic_write_json
from .chimerax import write_chimerax_script
from .clustering import ari, cluster_codes, cluster_within
from .structures import TruthMaps, compare_to_truth, fsc_figure

log = logging.getLogger(__name__)


@dataclass
class AnalyzeOptions:
    k: int | None = None  # content clusters (None: chosen by the method's criterion)
    k_max: int = 10
    k_z: int | None = None  # conformation clusters per content cluster (None: BIC)
    k_z_max: int = 8
    # The content clustering; None: the run's eval.cluster_method / _space / _dims / _neighbors.
    cluster_method: str | None = None
    cluster_space: str | None = None
    cluster_dims: int | None = None
    cluster_neighbors: int | None = None
    projection: str = "auto"
    plot_samples: int = 5000
    average: bool = True
    max_particles: int = 1000  # per cluster, for alignment
    n_iter: int = 3
    n_rotations: int = 1000
    export: bool = True
    relion_project: str | None = None  # folder RELION runs from; exported image paths are relative to it
    seed: int = 0
    device: str = "cpu"


def conformation_truth(factors: dict[str, np.ndarray]) -> np.ndarray | None:
    """(identity, state) as one label: ``identity_state`` if stored, else content x transform."""
    if "identity_state" in factors:
        return factors["identity_state"]
    if CONTENT in factors and TRANSFORM in factors:
        return factors[CONTENT] * (int(factors[TRANSFORM].max()) + 1) + factors[TRANSFORM]
    return None


def analyze_run(
    run: RunDir,
    cfg: Config,
    model: DisentanglementModel,
    splits: DataSplits,
    opts: AnalyzeOptions,
    *,
    truth: TruthMaps | None = None,
    ctf: Any = None,
    voxel_size: float | None = None,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """``checkpoint``: which checkpoint ``model`` is (e.g. ``"best (epoch 7, ...)"``), for analysis.json."""
    out = run.root / "analysis"
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    data = all_samples(splits)
    codes = embed(model, data, batch_size=cfg.eval.batch_size, device=opts.device, desc="embed all")
    np.savez(out / "codes.npz", **codes)
    doc: dict[str, Any] = {"n_samples": len(data), "source": data.source}
    if checkpoint is not None:
        doc["checkpoint"] = checkpoint

    given = {"method": opts.cluster_method, "space": opts.cluster_space, "dims": opts.cluster_dims,
             "neighbors": opts.cluster_neighbors}  # fmt: skip
    how = {key: given[key] or value for key, value in clustering_options(cfg).items()}
    content = cluster_codes(codes["c_mu"], opts.k, k_max=opts.k_max, seed=opts.seed, **how)
    doc["content_clusters"] = {
        "method": cluster_label(how["method"], how["space"], how["dims"]),
        "k": content.k,
        content.criterion: content.scores,
        "k_at_bound": content.at_bound,
        "sizes": np.bincount(content.labels).tolist(),
    }
    if CONTENT in data.factors:
        doc["content_clusters"]["ari"] = ari(content.labels, data.factors[CONTENT])
    labels = {"content_cluster": content.labels}

    if "z_mu" in codes:
        conf, per_cluster = cluster_within(
            codes["z_mu"], content.labels, opts.k_z, k_max=opts.k_z_max, seed=opts.seed
        )
        labels["conformation_cluster"] = conf
        doc["conformation_clusters"] = {
            "k_per_content_cluster": {str(c): r.k for c, r in per_cluster.items()},
            "k_at_bound": sorted(str(c) for c, r in per_cluster.items() if r.at_bound),
            "sizes": np.bincount(conf).tolist(),
        }
        truth_conf = conformation_truth(data.factors)
        if truth_conf is not None:
            doc["conformation_clusters"]["ari"] = ari(conf, truth_conf)
            doc["conformation_clusters"]["ari_within_content_cluster"] = {
                str(c): ari(conf[content.labels == c], truth_conf[content.labels == c])
                for c in per_cluster
                if (content.labels == c).sum() > 1
            }
    np.savez(out / "clusters.npz", ids=data.ids, **labels)

    if opts.projection != "none":
        keep = np.sort(np.random.default_rng(opts.seed).permutation(len(data))[: opts.plot_samples])
        colours = {k: v[keep] for k, v in labels.items()}
        colours.update({f"true {k}": v[keep] for k, v in data.factors.items() if k in (CONTENT, TRANSFORM)})
        for code in ("c", "z"):
            if f"{code}_mu" in codes:
                projection_figure(
                    codes[f"{code}_mu"][keep],
                    colours,
                    figs / f"projection_{code}.png",
                    title=f"{code} codes",
                    method=opts.projection,
                    seed=opts.seed,
                )

    if data.spatial_dims == 3 and opts.average:
        if voxel_size is None:
            log.warning(
                "%s: the voxel size is not stored with the data; averages and STAR files say 10 A (1 nm)",
                data.source,
            )
        doc["structures"] = _structures(out, data, labels, opts, truth, ctf, voxel_size or 1.0)
        write_chimerax_script(out, labels)
        if truth is not None:
            fsc_figure(doc["structures"], figs / "fsc.png", voxel_size=voxel_size)
            aucs = [s["truth"]["auc_fsc"] for s in doc["structures"].values() if "truth" in s]
            doc["auc_fsc_summary"] = {"mean": float(np.mean(aucs)), "min": float(np.min(aucs))}
    elif data.spatial_dims != 3:
        doc["structures"] = "averaging is done for 3D volumes only"
    atomic_write_json(out / "analysis.json", doc)
    write_report(run.root, projection=opts.projection)
    return doc


def _structures(
    out: Path,
    data,
    labels: dict[str, np.ndarray],
    opts: AnalyzeOptions,
    truth: TruthMaps | None,
    ctf: Any,
    voxel_size: float,
) -> dict[str, dict[str, Any]]:
    from ..io.mrc import write_volume
    from .averaging import average_subtomograms, save_central_slices

    for sub in ("averages", "star"):
        (out / sub).mkdir(exist_ok=True)
    export = _Exporter(out, data, labels, opts, ctf, voxel_size) if opts.export else None
    rng = np.random.default_rng(opts.seed)
    results: dict[str, dict[str, Any]] = {}
    groups = [(level, int(c)) for level in labels for c in np.unique(labels[level])]
    for level, c in tqdm(groups, desc="cluster structures", unit="cluster", disable=None):
        name = f"{level}_{c}"
        rows = np.flatnonzero(labels[level] == c)
        aligned_rows = (
            rows
            if len(rows) <= opts.max_particles
            else np.sort(rng.choice(rows, opts.max_particles, replace=False))
        )
        res = average_subtomograms(
            data,
            indices=aligned_rows,
            n_iter=opts.n_iter,
            n_rotations=opts.n_rotations,
            ctf=ctf,
            device=opts.device,
            seed=opts.seed,
            progress=False,
        )
        write_volume(out / "averages" / f"{name}.mrc", res.average, voxel_size * 10.0, overwrite=True)
        save_central_slices(
            res.average,
            out / "averages" / f"{name}.png",
            title=f"{name}: {len(aligned_rows)} of {len(rows)} particles",
            overwrite=True,
            voxel_size=voxel_size,
        )
        entry: dict[str, Any] = {
            "n_particles": len(rows),
            "n_averaged": len(aligned_rows),
            "mean_alignment_score": float(res.scores.mean()),
        }
        if truth is not None:
            entry["truth"] = compare_to_truth(res.average, truth, device=opts.device)
        if export is not None:
            full = len(aligned_rows) == len(rows)
            export.write(out / "star" / f"{name}.star", rows, c, res if full else None)
        results[name] = entry
    return results


class _Exporter:
    """Per-cluster RELION STAR files.

    STAR input: each file keeps every block of the input (optics, general) and every column of
    the cluster's rows, referencing the input images; added are ``rlnClassNumber`` (cluster + 1;
    an input ``rlnClassNumber`` is kept as ``dcInputClassNumber``), ``dcContentCluster``,
    ``dcConformationCluster``, ``dcSampleId`` and, when every particle was aligned, the
    alignment to the cluster average: as ``rlnAngle*`` / ``rlnOrigin*Angst`` when the input has
    no angles (``rlnAngle*`` or RELION 5's ``rlnTomoSubtomogram*``), else as ``dcAngle*`` /
    ``dcOrigin*Angst`` (the input's poses stay).
    RELION keeps columns it does not know (it warns "will ignore (but maintain) values"),
    Warp/M ignore them. Other input: every particle is written once as
    ``analysis/particles/<id>.mrc`` and the STAR files name those.

    Image paths (every column naming files, e.g. ``rlnCtfImage`` too) are relative to
    ``opts.relion_project`` when given; otherwise STAR input keeps
    its names (relative to its own project directory) and other input is named relative to the
    run directory (``RUN/``, where RELION should then be started).
    """

    def __init__(
        self, out: Path, data, labels: dict[str, np.ndarray], opts: AnalyzeOptions, ctf, voxel_size: float
    ):
        from ..io.star import read_particle_set

        self.data, self.labels, self.voxel_size = data, labels, voxel_size
        self.box = int(data.sample_shape[-1])
        self.project = Path(opts.relion_project).resolve() if opts.relion_project else None
        self.acquisition = (
            {"voltage_kv": ctf.voltage_kv, "cs_mm": ctf.cs_mm, "amplitude_contrast": ctf.amplitude_contrast}
            if ctf is not None
            else {}
        )
        source = Path(str(data.source))
        self.particle_set = read_particle_set(source) if source.suffix.lower() == ".star" else None
        if self.particle_set is not None:
            self.path_columns = self._path_columns() if self.project is not None else {}
        else:
            self.image_names = self._write_particles(out / "particles", run_root=out.parent)
            if not self.acquisition:
                log.warning(
                    "%s: voltage, Cs and amplitude contrast are not known for this data; the exported STAR "
                    "optics blocks leave them out (add them before CTF-aware refinement in RELION)",
                    data.source,
                )

    def _path_columns(self) -> dict[str, np.ndarray]:
        """Every particle column naming files (``rlnImageName``, ``rlnCtfImage``, ...), relative to the project."""
        import os

        from ..io.star import ImageResolver

        resolve = ImageResolver(self.particle_set.path)
        columns = {}
        for column in self.particle_set.particles.columns:
            values = self.particle_set.particles[column]
            if values.dtype.kind in "biufc" or resolve(str(values.iloc[0]).rpartition("@")[2]) is None:
                continue
            names = []
            for name in values.astype(str):
                k, at, file_name = name.rpartition("@")
                found = resolve(file_name)
                names.append(
                    name if found is None else f"{k}{at}{os.path.relpath(found.resolve(), self.project)}"
                )
            columns[column] = np.array(names)
        return columns

    def _write_particles(self, folder: Path, run_root: Path) -> np.ndarray:
        import os

        from ..io.mrc import write_volume_files

        folder.mkdir(exist_ok=True)
        files = [folder / f"{int(i):06d}.mrc" for i in self.data.ids]
        write_volume_files(files, self.data, np.arange(len(files)), self.voxel_size * 10.0, overwrite=True)
        base = self.project or run_root.resolve()
        return np.array([os.path.relpath(f.resolve(), base) for f in files])

    def _cluster_columns(self, rows: np.ndarray, c: int) -> dict[str, np.ndarray]:
        columns = {"rlnClassNumber": np.full(len(rows), c + 1, np.int64)}
        names = {"content_cluster": "dcContentCluster", "conformation_cluster": "dcConformationCluster"}
        for level, column in names.items():
            if level in self.labels:
                columns[column] = self.labels[level][rows].astype(np.int64)
        columns["dcSampleId"] = self.data.ids[rows].astype(np.int64)
        return columns

    def write(self, path: Path, rows: np.ndarray, c: int, alignment) -> None:
        from ..io.star import (
            ANGLE_COLUMNS,
            ORIGIN_COLUMNS,
            relion_pose,
            subset_blocks,
            write_blocks,
            write_particles_star,
        )

        columns = self._cluster_columns(rows, c)
        if self.particle_set is None:
            write_particles_star(
                path, list(self.image_names[rows]),
                rotations=alignment.rotations if alignment else None, shifts=alignment.shifts if alignment else None,
                voxel_size=self.voxel_size, box=self.box, class_numbers=columns.pop("rlnClassNumber"),
                extra_columns=columns, overwrite=True, **self.acquisition,
            )  # fmt: skip
            return
        ps = self.particle_set
        source_rows = self.data.ids[rows]
        table = ps.particles
        if "rlnClassNumber" in table.columns:
            columns["dcInputClassNumber"] = table["rlnClassNumber"].to_numpy()[source_rows]
        if alignment is not None:
            angles, origin = relion_pose(alignment.rotations, alignment.shifts, self.box)
            voxel = np.where(
                np.isnan(ps.voxel_size[source_rows]), self.voxel_size * 10.0, ps.voxel_size[source_rows]
            )
            # RELION 5 composes rlnAngle* with the extraction's rlnTomoSubtomogram* frame; when either
            # is present the input's poses stay and ours go in dc* columns.
            frames = (
                *ANGLE_COLUMNS,
                "rlnTomoSubtomogramRot",
                "rlnTomoSubtomogramTilt",
                "rlnTomoSubtomogramPsi",
            )
            has_poses = any(a in table.columns for a in frames)
            names = [("dc" + a[3:]) if has_poses else a for a in (*ANGLE_COLUMNS, *ORIGIN_COLUMNS)]
            for i, name in enumerate(names[:3]):
                columns[name] = angles[:, i]
            for i, name in enumerate(names[3:]):
                columns[name] = origin[:, i] * voxel
        columns.update({name: values[source_rows] for name, values in self.path_columns.items()})
        write_blocks(path, subset_blocks(ps, source_rows, columns), overwrite=True)


def run_truth_and_ctf(cfg: Config) -> tuple[TruthMaps | None, Any, float | None]:
    """Ground-truth maps, CTF and voxel size (nm) where the data set tells them: the built-in
    phantoms, a file written by ``dualcontrast simulate`` (``<stem>_maps.npz`` beside it), or the
    voxel size of any file that states one (:func:`input_voxel_size`); None where unknown."""
    from .averaging import CTFParams

    if cfg.data.path is None and cfg.data.name == "phantoms3d":
        import inspect

        from ..data.simulated import make_phantoms3d
        from ..simulation.phantoms import phantom_maps

        defaults = {k: v.default for k, v in inspect.signature(make_phantoms3d).parameters.items()}
        p = {**defaults, **cfg.data.params}
        maps = phantom_maps(box=p["box"], voxel_size=p["voxel_size"], n_states=p["n_states"])
        truth = TruthMaps(
            np.stack(list(maps.values())), [f"{i}/{s}" for i, s in maps], float(p["voxel_size"])
        )
        ctf = CTFParams(defocus_um=p["defocus_um"], voxel_size=p["voxel_size"], cs_mm=p["cs_mm"])
        return truth, ctf, float(p["voxel_size"])
    if cfg.data.path is not None:
        from ..data.simulated import ground_truth_maps_path
        from .structures import load_truth_maps

        maps_path = ground_truth_maps_path(cfg.data.path)
        if maps_path.exists():
            truth = load_truth_maps(maps_path)
            return truth, _ctf_from_h5(Path(cfg.data.path)), truth.voxel_size
        return None, _ctf_from_h5(Path(cfg.data.path)), input_voxel_size(cfg.data.path)
    return None, None, None


def input_voxel_size(path: str | Path) -> float | None:
    """Voxel size (nm) the data file states: STAR optics / particle columns, else the MRC header of
    its first image; MRC header; HDF5 ``voxel_size_nm`` attribute. None when it states none."""
    from ..io.mrc import read_voxel_size
    from ..io.star import ImageResolver, read_particle_set

    angst = 0.0
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".star":
        ps = read_particle_set(p)
        known = ps.voxel_size[~np.isnan(ps.voxel_size)]
        if len(known):
            angst = float(known[0])
        else:
            image = ImageResolver(ps.path)(str(ps.particles["rlnImageName"].iloc[0]).rpartition("@")[2])
            angst = read_voxel_size(image) if image is not None else 0.0
    elif suffix in (".mrc", ".mrcs", ".map"):
        angst = read_voxel_size(p)
    elif p.is_dir():
        first = next(iter(sorted(f for f in p.iterdir() if f.suffix.lower() in (".mrc", ".map"))), None)
        angst = read_voxel_size(first) if first is not None else 0.0
    elif suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(p, "r") as f:
            angst = float(f.attrs.get("voxel_size_nm", 0.0)) * 10.0
    return angst / 10.0 if angst > 0 else None


def _ctf_from_h5(path: Path):
    """The CTF of a simulated HDF5 file (its ``simulation`` attribute), if any."""
    import json

    from .averaging import CTFParams

    if path.suffix.lower() not in (".h5", ".hdf5"):
        return None
    import h5py

    with h5py.File(path, "r") as f:
        if "simulation" not in f.attrs:
            return None
        s = json.loads(f.attrs["simulation"])
        defocus = f["table/defocus_um"][()] if "table/defocus_um" in f else s["defocus_um"]
    if not s.get("ctf", True):
        return None
    return CTFParams(
        defocus_um=defocus,
        voxel_size=s["voxel_size"],
        cs_mm=s["cs_mm"],
        voltage_kv=s["voltage_kv"],
        amplitude_contrast=s["amplitude_contrast"],
    )
