"""Which space to cluster content codes in: GMM (BIC k and true k) on raw, L2-normalised and
PCA-reduced codes, scored by ARI on the training + validation codes of finished runs (never test).

The content codes are trained with cosine terms, so their norm carries no meaning to the loss, and
a full-covariance GMM in 50 dimensions has ~1300 parameters per component: BIC then picks k by
the covariance of noise directions as much as by the groups. This measures what each choice does.

    python benchmarks/cluster_space.py RUN [RUN ...] --results benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dualcontrast.analysis.clustering import gmm_cluster
from dualcontrast.config import CLUSTER_SPACES
from dualcontrast.evaluation.metrics import CONTENT, cluster_space_label


def selection_codes(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """Content means and identities of the training and validation rows of ``run``."""
    emb = np.load(run / "embeddings.npz")
    parts = [p for p in ("train", "val") if f"{p}_c_mu" in emb]
    return (np.concatenate([emb[f"{p}_c_mu"] for p in parts]),
            np.concatenate([emb[f"{p}_{CONTENT}"] for p in parts]))  # fmt: skip


def score(codes: np.ndarray, truth: np.ndarray, space: str, dims: int | None, k_max: int) -> dict:
    from sklearn.metrics import adjusted_rand_score

    k_true = len(np.unique(truth))
    bic = gmm_cluster(codes, None, k_max=k_max, space=space, dims=dims)
    fixed = gmm_cluster(codes, k_true, space=space, dims=dims)
    return {"bic_k": bic.k, "ari_bic": adjusted_rand_score(truth, bic.labels),
            "ari_k_true": adjusted_rand_score(truth, fixed.labels)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories with embeddings.npz")
    p.add_argument("--dims", type=int, nargs="+", default=[2, 3, 5, 10, 20], help="PCA dimensions tried")
    p.add_argument("--k-max", type=int, default=10)
    p.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--name", default="cluster_space")
    args = p.parse_args()
    start = time.perf_counter()
    variants = [(s, None) for s in CLUSTER_SPACES if not s.endswith("pca")]
    variants += [(s, d) for s in CLUSTER_SPACES if s.endswith("pca") for d in args.dims]
    table: dict[str, dict[str, dict]] = {}
    for run in args.runs:
        codes, truth = selection_codes(run)
        for space, dims in variants:
            table.setdefault(cluster_space_label(space, dims), {})[str(run)] = score(codes, truth, space, dims, args.k_max)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_text(json.dumps(table, indent=1))
    lines = [
        "# Clustering space of the content codes",
        "",
        f"Command: `python benchmarks/cluster_space.py {' '.join(map(str, args.runs))} --dims "
        f"{' '.join(map(str, args.dims))} --k-max {args.k_max}`",
        "",
        "GMM (full covariance, seed 0, k by BIC in 1..k_max, or the true k) on the training + "
        "validation content means of each run (never test); ARI against the true identities. "
        f"{len(args.runs)} run(s), {time.perf_counter() - start:.0f} s.",
        "",
        "| space | " + " | ".join(f"run {i + 1}: ARI BIC (k) / ARI true k" for i in range(len(args.runs)))
        + " | mean ARI BIC | mean ARI true k |",
        "|---" * (len(args.runs) + 3) + "|",
    ]
    for label, per_run in table.items():
        cells = [f"{r['ari_bic']:.3f} ({r['bic_k']}) / {r['ari_k_true']:.3f}" for r in per_run.values()]
        bic = np.mean([r["ari_bic"] for r in per_run.values()])
        true = np.mean([r["ari_k_true"] for r in per_run.values()])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {bic:.3f} | {true:.3f} |")
    lines += ["", "Runs:", *[f"{i + 1}. `{r}`" for i, r in enumerate(args.runs)], ""]
    (args.results / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
