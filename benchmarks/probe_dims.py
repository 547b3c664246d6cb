"""Is a higher D(c|c) from a larger c only a wider linear probe? D(c|c) on c's first k principal components.

A D-score is the test accuracy of a logistic regression on the code, so a code with more
dimensions gives the probe more features. This script scores trained runs' content codes as they
are (as ``metrics.json`` does: ``eval.max_fit_samples`` training rows, standardised) and again on
their first k principal axes (fit on the training codes), so a 32-dimensional c can be compared
with a 10-dimensional one at the same probe width, and with a 10-nearest-neighbour vote on all
dimensions, a reader whose capacity does not grow with the width. Two geometry columns go with
them: how often a code's nearest neighbour within a training-size batch shares its label, and
the codes' effective rank. It reads each run's ``embeddings.npz`` (the
checkpoint ``metrics.json`` names) and writes ``<results>/<name>.md`` (with ``<name>_notes.md``
appended where it exists).

    python benchmarks/probe_dims.py runs/bench_quality_mnist_paper_swap_gz0.5_zuse_z4_c32 --dims 4 10
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier

from dualcontrast.evaluation.metrics import d_score
from dualcontrast.losses import nearest_other

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import write_report

REPO = Path(__file__).resolve().parents[1]


def knn_score(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *,
              k: int = 10, **probe: Any) -> float:  # fmt: skip
    """Accuracy of a k-nearest-neighbour vote, read as the D-score is (``probe``: its options): a
    reader whose capacity does not grow with the width."""
    return d_score(train_x, train_y, test_x, test_y, classifier=KNeighborsClassifier(n_neighbors=k), **probe)


def batch_neighbours(c: np.ndarray, *, batch: int = 100, n_batches: int = 200,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(rows, neighbours)``: for each code of ``n_batches`` random batches, the index of the other
    code of its batch nearest to it by |cos|: the neighbour a batch-level positive
    (``loss.w_c_nn``) or the neighbour swap (``loss.swap_content neighbour``) uses."""
    rng = np.random.default_rng(seed)
    codes = torch.as_tensor(c)
    rows, neighbours = [], []
    for _ in range(n_batches):
        idx = rng.choice(len(c), size=min(batch, len(c)), replace=False)
        rows.append(idx)
        neighbours.append(idx[nearest_other(codes[idx], codes[idx]).numpy()])
    return np.concatenate(rows), np.concatenate(neighbours)


def batch_neighbour_agreement(c: np.ndarray, y: np.ndarray, **batches: Any) -> float:
    """How often a code's batch neighbour (:func:`batch_neighbours`) has its label."""
    rows, nb = batch_neighbours(c, **batches)
    return float((y[rows] == y[nb]).mean())


def batch_neighbour_state(c: np.ndarray, y: np.ndarray, state: np.ndarray, **batches: Any) -> float:
    """Among the batch neighbours that have a code's label, how often they have its state too."""
    rows, nb = batch_neighbours(c, **batches)
    same = y[rows] == y[nb]
    return float((state[rows] == state[nb])[same].mean())


def effective_rank(c: np.ndarray) -> float:
    """exp of the entropy of the centred code's normalised squared singular values: the number of
    directions the codes spread over (d for an isotropic cloud, 1 for a line)."""
    s = np.linalg.svd(c - c.mean(axis=0), compute_uv=False) ** 2
    p = s[s > 0] / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def content_scores(run: Path, dims: list[int], split: str = "test") -> dict:
    """``{"d": c's size, "checkpoint": ..., "full": D(c|c), "knn": the neighbour vote's accuracy,
    k: D(c|c) on k principal components}`` (k only where it is below c's size)."""
    metrics = json.loads((run / "metrics.json").read_text())
    codes = np.load(run / "embeddings.npz")
    protocol = metrics["protocol"]
    probe = {"max_fit_samples": protocol["max_fit_samples"], "seed": protocol["seed"],
             "standardize": protocol["standardize"]}  # fmt: skip
    train, test = codes["train_c_mu"], codes[f"{split}_c_mu"]
    y_train, y_test = codes["train_content"], codes[f"{split}_content"]
    row: dict = {"d": train.shape[1], "checkpoint": metrics["checkpoint"],
                 "full": d_score(train, y_train, test, y_test, **probe),
                 "knn": knn_score(train, y_train, test, y_test, **probe),
                 "batch_nn": batch_neighbour_agreement(test, y_test), "rank": effective_rank(test)}  # fmt: skip
    if f"{split}_transform" in codes:  # a state label (the built-in data's arm bend)
        row["batch_nn_state"] = batch_neighbour_state(test, y_test, codes[f"{split}_transform"])
    for k in dims:
        if k < train.shape[1]:
            pca = PCA(n_components=k, random_state=0).fit(train)
            row[k] = d_score(pca.transform(train), y_train, pca.transform(test), y_test, **probe)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories with embeddings.npz and metrics.json")
    p.add_argument("--dims", type=int, nargs="+", default=[10], help="probe widths (principal components)")
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--split", choices=["val", "test"], default="test",
                   help="codes scored: val (what a choice may be made on) or test (what is reported)")  # fmt: skip
    p.add_argument("--name", default="probe_dims", help="stem of the result file in --results")
    args = p.parse_args()
    for run in args.runs:
        for needed in ("embeddings.npz", "metrics.json"):
            if not (run / needed).exists():
                print(f"probe_dims: {run} has no {needed}; pass trained run directories", file=sys.stderr)
                return 2
    rows = {run.name: content_scores(run, args.dims, args.split) for run in args.runs}
    lines = [
        "# D(c|c) at a fixed probe width: trained runs' content codes on their first principal components",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/probe_dims.py', *sys.argv[1:]])}`",
        "",
        f"- D(c|c) as in each run's metrics.json (logistic regression scored on the {args.split} codes, fit on at most "
        "eval.max_fit_samples training codes, standardised); `first k PCs`: the same on the codes projected "
        "onto their first k principal axes, fit on the training codes; `10-NN`: a 10-nearest-neighbour vote on all "
        "dimensions (standardised, the same training codes); `batch NN`: how often the nearest other code by |cos| "
        f"in a random batch of 100 {args.split} codes has the same label (200 batches); `batch NN state`: of "
        "those with the same label, how often it has the same state (transformation label) too, where the data "
        "have one; `eff. rank`: exp of the entropy of the centred codes' normalised squared singular values",
        "",
        "| run | c dims | checkpoint | D(c\\|c), all dims | "
        + " | ".join(f"first {k} PCs" for k in args.dims)
        + " | 10-NN, all dims | batch NN | batch NN state | eff. rank |",
        "|---|---|---|---|" + "---|" * (len(args.dims) + 4),
    ]
    for name, row in rows.items():
        cells = " | ".join(f"{row[k]:.3f}" if k in row else "(all)" for k in args.dims)
        state = f"{row['batch_nn_state']:.3f}" if "batch_nn_state" in row else "-"
        lines.append(
            f"| {name} | {row['d']} | {row['checkpoint']} | {row['full']:.3f} | {cells} | {row['knn']:.3f} "
            f"| {row['batch_nn']:.3f} | {state} | {row['rank']:.2f} |"
        )
    args.results.mkdir(parents=True, exist_ok=True)
    write_report(args.results, args.name, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
