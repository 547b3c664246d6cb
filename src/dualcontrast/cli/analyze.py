"""Cluster identities (spectral or GMM on c) and conformations (GMM on z per identity), average and
export them.

Writes RUN/analysis/: analysis.json (cluster counts, eigengaps or BIC, ARI vs ground truth, AUC-FSC),
codes.npz, clusters.npz, figures/ (projections of c and z by cluster and by truth, FSC curves),
and for subtomograms averages/ (MRC + central slices per cluster), star/ (RELION particle STAR
files per cluster, keeping every column of STAR input) and, for input without per-particle
files, particles/ (one .mrc per subtomogram).

examples:
  dualcontrast analyze runs/subtomo
  dualcontrast analyze runs/subtomo --k 3 --max-particles 500
"""

from __future__ import annotations

import argparse
import json
import logging

from ..config import CLUSTER_METHODS, CLUSTER_SPACES
from .argtypes import non_negative_int, positive_int
from .common import add_checkpoint_arg, add_device_arg

log = logging.getLogger(__name__)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--k", type=positive_int, help="number of content clusters (default: chosen by the eigengap or BIC)")
    p.add_argument("--k-max", type=positive_int, default=10, help="largest content k tried")
    p.add_argument("--k-z", type=positive_int, help="conformation clusters per content cluster (default: BIC)")
    p.add_argument("--k-z-max", type=positive_int, default=8, help="largest conformation k tried by BIC per content cluster")
    p.add_argument(
        "--cluster-method", choices=CLUSTER_METHODS,
        help="clustering of the content codes: spectral (neighbour graph, k by eigengap) or gmm (k by BIC, "
        "the paper's) (default: the run's eval.cluster_method)",
    )  # fmt: skip
    p.add_argument(
        "--cluster-neighbors", type=positive_int,
        help="neighbours per code in the spectral graph (default: the run's eval.cluster_neighbors)",
    )  # fmt: skip
    p.add_argument(
        "--cluster-space", choices=CLUSTER_SPACES,
        help="space the content codes are clustered in (default: the run's eval.cluster_space)",
    )  # fmt: skip
    p.add_argument(
        "--cluster-dims", type=positive_int,
        help="principal components kept by the pca spaces (default: the run's eval.cluster_dims)",
    )  # fmt: skip
    p.add_argument("--projection", choices=["auto", "umap", "tsne", "pca", "none"], default="auto", help="2D projection of the codes in the figures")
    p.add_argument("--max-particles", type=positive_int, default=1000, help="particles aligned per cluster average")
    p.add_argument("--iterations", type=positive_int, default=3, help="alignment iterations")
    p.add_argument("--rotations", type=positive_int, default=1000, help="global SO(3) search grid size")
    p.add_argument("--no-average", action="store_true", help="skip averages, FSC and STAR export")
    p.add_argument("--no-export", action="store_true", help="skip particle stacks and STAR files")
    p.add_argument(
        "--relion-project", metavar="DIR",
        help="RELION project folder: exported image paths are written relative to it (default: STAR input "
        "keeps its own names; other input is named relative to the run directory)",
    )  # fmt: skip
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the clustering and projections")
    add_checkpoint_arg(p)
    add_device_arg(p)


def main(args: argparse.Namespace) -> int:
    from ..workflow import analyze_run

    doc = analyze_run(
        args.run, device=args.device, checkpoint=args.checkpoint or "auto",
        k=args.k, k_max=args.k_max, k_z=args.k_z, k_z_max=args.k_z_max, projection=args.projection,
        cluster_method=args.cluster_method, cluster_space=args.cluster_space, cluster_dims=args.cluster_dims,
        cluster_neighbors=args.cluster_neighbors,
        average=not args.no_average, max_particles=args.max_particles, n_iter=args.iterations,
        n_rotations=args.rotations, export=not args.no_export, relion_project=args.relion_project,
        seed=args.seed,
    )  # fmt: skip
    summary = {k: v for k, v in doc.items() if k != "structures"}
    print(json.dumps(summary, indent=2, default=str))
    if isinstance(doc.get("structures"), dict):
        aucs = {k: v["truth"]["auc_fsc"] for k, v in doc["structures"].items() if "truth" in v}
        if aucs:
            log.warning("AUC-FSC per cluster: %s", ", ".join(f"{k}={v:.3f}" for k, v in aucs.items()))
    return 0
