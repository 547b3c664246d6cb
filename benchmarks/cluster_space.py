"""How to cluster content codes: GMM (k by BIC, or the true k) and spectral clustering of the
k-nearest-neighbour graph (k by the eigengap, or the true k), each on raw, L2-normalised and
PCA-reduced codes, scored by ARI on the training + validation codes of finished runs (never test).

The content codes are trained with cosine terms, so their norm carries no meaning to the loss, and
a full-covariance GMM in 50 dimensions has ~1300 parameters per component: BIC then picks k by
the covariance of noise directions as much as by the groups; and one identity's codes need not be
a Gaussian blob at all, while a neighbour graph only asks that they hang together. This measures
what each choice does.

    python benchmarks/cluster_space.py RUN [RUN ...] --results benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dualcontrast.config import CLUSTER_METHODS, CLUSTER_SPACES
from dualcontrast.evaluation.clustering import cluster_codes, cluster_label
from dualcontrast.evaluation.metrics import CONTENT


def selection_codes(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """Content means and identities of the training and validation rows of ``run``."""
    emb = np.load(run / "embeddings.npz")
    parts = [p for p in ("train", "val") if f"{p}_c_mu" in emb]
    return (np.concatenate([emb[f"{p}_c_mu"] for p in parts]),
            np.concatenate([emb[f"{p}_{CONTENT}"] for p in parts]))  # fmt: skip


def score(codes: np.ndarray, truth: np.ndarray, k_max: int, **how) -> dict:
    from sklearn.metrics import adjusted_rand_score

    k_true = len(np.unique(truth))
    chosen = cluster_codes(codes, None, k_max=k_max, **how)
    fixed = cluster_codes(codes, k_true, **how)
    return {"k": chosen.k, "ari_k": adjusted_rand_score(truth, chosen.labels),
            "ari_k_true": adjusted_rand_score(truth, fixed.labels)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories with embeddings.npz")
    p.add_argument("--dims", type=int, nargs="+", default=[2, 3, 5, 10, 20], help="PCA dimensions tried")
    p.add_argument("--k-max", type=int, default=10)
    p.add_argument("--methods", nargs="+", choices=CLUSTER_METHODS, default=list(CLUSTER_METHODS))
    p.add_argument("--neighbors", type=int, nargs="+", default=[15], help="graph neighbours tried (spectral)")
    p.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--name", default="cluster_space")
    args = p.parse_args()
    start = time.perf_counter()
    spaces = [(s, None) for s in CLUSTER_SPACES if s != "auto" and not s.endswith("pca")]
    spaces += [(s, d) for s in CLUSTER_SPACES if s.endswith("pca") for d in args.dims]
    variants = [(m, s, d, None) for m in args.methods if m == "gmm" for s, d in spaces]
    variants += [(m, s, d, nn) for m in args.methods if m == "spectral" for s, d in spaces for nn in args.neighbors]
    table: dict[str, dict[str, dict]] = {}
    for run in args.runs:
        codes, truth = selection_codes(run)
        for method, space, dims, nn in variants:
            label = cluster_label(method, space, dims) + (f", {nn} neighbours" if nn else "")
            how = {"method": method, "space": space, "dims": dims, "neighbors": nn or 15}
            table.setdefault(label, {})[str(run)] = score(codes, truth, args.k_max, **how)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_text(json.dumps(table, indent=1))
    lines = [
        "# Clustering of the content codes",
        "",
        f"Command: `python benchmarks/cluster_space.py {' '.join(map(str, args.runs))} --dims "
        f"{' '.join(map(str, args.dims))} --k-max {args.k_max} --methods {' '.join(args.methods)} "
        f"--neighbors {' '.join(map(str, args.neighbors))}`",
        "",
        "GMM (full covariance, seed 0, k by BIC in 1..k_max, or the true k) and spectral clustering "
        "(symmetrised k-nearest-neighbour graph, k by the largest eigengap of its normalised Laplacian "
        "in 1..k_max, or the true k) on the training + validation content means of each run (never "
        f"test); ARI against the true identities. {len(args.runs)} run(s), {time.perf_counter() - start:.0f} s.",
        "",
        "| clustering | " + " | ".join(f"run {i + 1}: ARI chosen k (k) / ARI true k" for i in range(len(args.runs)))
        + " | mean ARI chosen k | mean ARI true k |",
        "|---" * (len(args.runs) + 3) + "|",
    ]
    for label, per_run in table.items():
        cells = [f"{r['ari_k']:.3f} ({r['k']}) / {r['ari_k_true']:.3f}" for r in per_run.values()]
        chosen = np.mean([r["ari_k"] for r in per_run.values()])
        true = np.mean([r["ari_k_true"] for r in per_run.values()])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {chosen:.3f} | {true:.3f} |")
    lines += ["", "Runs:", *[f"{i + 1}. `{r}`" for i, r in enumerate(args.runs)], ""]
    (args.results / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
