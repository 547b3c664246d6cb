"""``dualcontrast analyze``: clusters of identities and conformations, structures, exports.

Steps, all written under ``RUN/analysis/``:

1. codes of every sample (train + test) from the run's last checkpoint;
2. GMM on c (k by BIC unless given) -> content clusters; ARI against the true identity when known;
3. GMM on z inside each content cluster -> conformation clusters; ARI against the true
   (identity, state) when known, overall and inside each content cluster;
4. projections of c and z coloured by clusters and by ground truth;
5. volumes only: for every content cluster and every conformation cluster, an aligned average
   (``analysis.averaging``), written as MRC with a central-slice figure, compared with the
   ground-truth maps by FSC / AUC-FSC when they are known, and the cluster's particles written as
   an MRC stack + RELION STAR file (poses from the alignment when every particle was aligned).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import Config
from ..data.base import CONTENT, TRANSFORM, DataSplits
from ..evaluation.embed import embed
from ..models.base import DisentanglementModel
from ..training.rundir import RunDir
from .clustering import ari, cluster_within, gmm_cluster
from .figures import projection_figure
from .structures import TruthMaps, all_samples, compare_to_truth, fsc_figure, save_json, write_cluster_stack

log = logging.getLogger(__name__)


@dataclass
class AnalyzeOptions:
    k: int | None = None  # content clusters (None: BIC)
    k_max: int = 10
    k_z: int | None = None  # conformation clusters per content cluster (None: BIC)
    k_z_max: int = 8
    projection: str = "auto"
    plot_samples: int = 5000
    average: bool = True
    max_particles: int = 1000  # per cluster, for alignment
    n_iter: int = 3
    n_rotations: int = 1000
    export: bool = True
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
    voxel_size: float = 1.0,
) -> dict[str, Any]:
    out = run.root / "analysis"
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    data = all_samples(splits)
    codes = embed(model, data, batch_size=cfg.eval.batch_size, device=opts.device, desc="embed all")
    np.savez(out / "codes.npz", **codes)
    doc: dict[str, Any] = {"n_samples": len(data), "source": data.source}

    content = gmm_cluster(codes["c_mu"], opts.k, k_max=opts.k_max, seed=opts.seed)
    doc["content_clusters"] = {
        "k": content.k,
        "bic": content.bic,
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
        doc["structures"] = _structures(out, data, labels, opts, truth, ctf, voxel_size)
        if truth is not None:
            fsc_figure(doc["structures"], figs / "fsc.png")
            aucs = [s["truth"]["auc_fsc"] for s in doc["structures"].values() if "truth" in s]
            doc["auc_fsc_summary"] = {"mean": float(np.mean(aucs)), "min": float(np.min(aucs))}
    elif data.spatial_dims != 3:
        doc["structures"] = "averaging is done for 3D volumes only"
    save_json(out / "analysis.json", doc)
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
    from .averaging import average_subtomograms, save_central_slices, write_mrc
    from .star import write_particles_star

    for sub in ("averages", "star", "particles"):
        (out / sub).mkdir(exist_ok=True)
    rng = np.random.default_rng(opts.seed)
    results: dict[str, dict[str, Any]] = {}
    groups = [(level, int(c)) for level in labels for c in np.unique(labels[level])]
    for level, c in tqdm(groups, desc="cluster structures", unit="cluster"):
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
        write_mrc(out / "averages" / f"{name}.mrc", res.average, voxel_size=voxel_size, overwrite=True)
        save_central_slices(
            res.average,
            out / "averages" / f"{name}.png",
            title=f"{name}: {len(aligned_rows)} of {len(rows)} particles",
            overwrite=True,
        )
        entry: dict[str, Any] = {
            "n_particles": len(rows),
            "n_averaged": len(aligned_rows),
            "mean_alignment_score": float(res.scores.mean()),
        }
        if truth is not None:
            entry["truth"] = compare_to_truth(res.average, truth, device=opts.device)
        if opts.export:
            stack = out / "particles" / f"{name}.mrcs"
            write_cluster_stack(stack, data, rows, voxel_size)
            full = len(aligned_rows) == len(rows)
            write_particles_star(
                out / "star" / f"{name}.star",
                [f"{i + 1}@../particles/{stack.name}" for i in range(len(rows))],
                rotations=res.rotations if full else None,
                shifts=res.shifts if full else None,
                voxel_size=voxel_size,
                box=data.sample_shape[-1],
                class_numbers=np.full(len(rows), c + 1),
                extra_columns={"dcSampleId": data.ids[rows]},
                overwrite=True,
            )
        results[name] = entry
    return results


def run_truth_and_ctf(cfg: Config) -> tuple[TruthMaps | None, Any, float]:
    """Ground-truth maps, CTF and voxel size where the data set tells them: the built-in phantoms,
    or a file written by ``dualcontrast simulate`` (``<stem>_maps.npz`` beside it)."""
    from .averaging import CTFParams

    if cfg.data.path is None and cfg.data.name == "phantoms3d":
        import inspect

        from ..data.phantoms import phantom_maps
        from ..data.simulate import make_phantoms3d

        defaults = {k: v.default for k, v in inspect.signature(make_phantoms3d).parameters.items()}
        p = {**defaults, **cfg.data.params}
        maps = phantom_maps(box=p["box"], voxel_size=p["voxel_size"], n_states=p["n_states"])
        truth = TruthMaps(
            np.stack(list(maps.values())), [f"{i}/{s}" for i, s in maps], float(p["voxel_size"])
        )
        ctf = CTFParams(defocus_um=p["defocus_um"], voxel_size=p["voxel_size"], cs_mm=p["cs_mm"])
        return truth, ctf, float(p["voxel_size"])
    if cfg.data.path is not None:
        from ..cli.simulate import ground_truth_maps_path
        from .structures import load_truth_maps

        maps_path = ground_truth_maps_path(cfg.data.path)
        if maps_path.exists():
            truth = load_truth_maps(maps_path)
            return truth, _ctf_from_h5(Path(cfg.data.path)), truth.voxel_size
    return None, None, 1.0


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


def device_for(cfg: Config, requested: str | None) -> torch.device:
    from ..training.runtime import resolve_device

    return resolve_device(requested or cfg.train.device)
