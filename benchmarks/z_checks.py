"""Can the decoder be made to read z without identity moving into it? Short MNIST checks, one table.

Each variant is one run of ``quality_2d.py`` on MNIST (10,000 training images, 20 epochs, the
library defaults otherwise, settings differing as listed in ``VARIANTS``); this script runs the
ones missing (or all with ``--rerun``) and writes ``<results>/z_checks.md`` with, per variant, the
test scores at the checkpoint kept by validation D(c|c): D(c|c), D(c|z), SAP(c), R^2(pose|z)
(does z know the rotation) and z_use (does the decoder read z). The aim: z_use and R^2(pose|z)
up, D(c|z) down. Short and small on purpose (about 2.5 min a run on one thread): a screen for
what to run at full length, not a result about the full schedule.

    python benchmarks/z_checks.py --threads 1 --seeds 0 1
    python benchmarks/z_checks.py --variants default paper-pairing --seeds 0
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import cell, kept_validation_row, quality_2d_result, write_report

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist.npz"

MNIST_CPU = ["views.pairing=paper", "loss.cosine_scale=per_dim", "loss.gamma_z=2"]
# The screen's winner (now configs/mnist_cpu.yaml), the base of the rows that add to it.
MNIST_CPU_SWAP = [*MNIST_CPU, "loss.w_swap=1", "loss.gamma_z=0.5"]
# per_dim divides the z cosine terms by z's size: weight 0.4 over 4 dims is 1 over 10, as above.
# This is configs/mnist_cpu.yaml now.
MNIST_CPU_Z4 = [*MNIST_CPU_SWAP, "model.transform_dim=4", "loss.w_z_neg=0.4", "loss.w_z_pos=0.4"]
# name -> (what it tests, overrides)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "default": ("the library defaults (symmetric views, every loss weight 1)", []),
    "paper-pairing": ("the paper's pairing (x against T(x))", ["views.pairing=paper"]),
    "no-z-neg": ("without the z-negative term", ["loss.w_z_neg=0"]),
    "z-neg-0.1": ("z-negative weight 0.1", ["loss.w_z_neg=0.1"]),
    "z-neg-0.3": ("z-negative weight 0.3", ["loss.w_z_neg=0.3"]),
    "z-neg-0.1-gamma-z-1": ("z-negative weight 0.1, gamma_z 1", ["loss.w_z_neg=0.1", "loss.gamma_z=1"]),
    "z-neg-margin-0.5": ("z-negative margin 0.5 (pairs under it not pushed)", ["loss.z_neg_margin=0.5"]),
    "swap": ("the swapped reconstruction, weight 1", ["loss.w_swap=1"]),
    "swap-3": ("the swapped reconstruction, weight 3", ["loss.w_swap=3"]),
    "swap-z-neg-0.3": ("swapped reconstruction, z-negative weight 0.3", ["loss.w_swap=1", "loss.w_z_neg=0.3"]),
    "swap-gamma-z-0.1": ("swapped reconstruction, gamma_z 0.1", ["loss.w_swap=1", "loss.gamma_z=0.1"]),
    "swap-gamma-z-0.5": ("swapped reconstruction, gamma_z 0.5", ["loss.w_swap=1", "loss.gamma_z=0.5"]),
    "z-pos-codes-z-neg-0.3": ("z* of the z-positive pairs from the batch's z codes, z-negative weight 0.3",
                              ["loss.z_pos_source=codes", "loss.w_z_neg=0.3"]),
    "z-pos-codes-no-z-neg": ("z* from the batch's z codes, no z-negative term",
                             ["loss.z_pos_source=codes", "loss.w_z_neg=0"]),
    "paper-pairing-swap": ("the paper's pairing with the swapped reconstruction",
                           ["views.pairing=paper", "loss.w_swap=1"]),
    # The loss of the best full-length runs without the swap (mnist_quality.md: the paper's pairing,
    # per_dim, gamma_z 2), with and without it; mnist-cpu-swap-gamma-z-0.5 became configs/mnist_cpu.yaml.
    "mnist-cpu": ("the paper's pairing, per_dim cosine scale, gamma_z 2 (mnist_quality.md's gamma_z 2 runs)",
                  MNIST_CPU),
    "mnist-cpu-swap": ("mnist-cpu with the swapped reconstruction", [*MNIST_CPU, "loss.w_swap=1"]),
    "mnist-cpu-swap-gamma-z-0.5": ("mnist-cpu with the swapped reconstruction, gamma_z 0.5",
                                   MNIST_CPU_SWAP),
    "mnist-cpu-swap-gamma-z-0.1": ("mnist-cpu with the swapped reconstruction, gamma_z 0.1",
                                   [*MNIST_CPU, "loss.w_swap=1", "loss.gamma_z=0.1"]),
    "mnist-cpu-swap-gamma-z-0.5-anchored": ("mnist-cpu-swap-gamma-z-0.5 with the anchored pairing (x prepared "
                                            "vs T(x) finished: the loaded pose, no shortcut)",
                                            [*MNIST_CPU_SWAP, "views.pairing=anchored"]),
    "mnist-cpu-swap-gamma-z-0.5-symmetric": ("mnist-cpu-swap-gamma-z-0.5 with the symmetric views",
                                             [*MNIST_CPU_SWAP, "views.pairing=symmetric"]),
    "mnist-cpu-swap-gamma-z-0.5-z-dim-2": ("mnist-cpu-swap-gamma-z-0.5 with a 2-dimensional z (a rotation's circle)",
                                           [*MNIST_CPU_SWAP, "model.transform_dim=2"]),
    "mnist-cpu-swap-gamma-z-0.5-z-dim-4": ("mnist-cpu-swap-gamma-z-0.5 with a 4-dimensional z",
                                           [*MNIST_CPU_SWAP, "model.transform_dim=4"]),
    "mnist-cpu-swap-gamma-z-0.5-z-dim-4-matched": ("z-dim-4 with the z cosine terms at the weight they have over "
                                                   "10 dims (0.4)", MNIST_CPU_Z4),
    # c-side changes on top of configs/mnist_cpu.yaml (its D(c|c) stopped 0.006 short of 0.89).
    "z4-c-neg-0.5": ("z-dim-4-matched with the content negative weight 0.5", [*MNIST_CPU_Z4, "loss.w_c_neg=0.5"]),
    "z4-c-neg-2": ("z-dim-4-matched with the content negative weight 2", [*MNIST_CPU_Z4, "loss.w_c_neg=2"]),
    "z4-c-pos-3": ("z-dim-4-matched with the content positive weight 3", [*MNIST_CPU_Z4, "loss.w_c_pos=3"]),
    "z4-gamma-c-0.001": ("z-dim-4-matched with the content KL weight 0.001",
                         [*MNIST_CPU_Z4, "loss.gamma_c=0.001"]),
    "z4-anchored": ("z-dim-4-matched with the anchored pairing", [*MNIST_CPU_Z4, "views.pairing=anchored"]),
    # The paper's latent budget (10 + 10) split 16 + 4; per_dim divides the content cosine terms by
    # c's size, so -matched keeps them at the weight they have over 10 dims (1.6 / 16 = 1 / 10).
    "z4-c16": ("z-dim-4-matched with a 16-dimensional c", [*MNIST_CPU_Z4, "model.content_dim=16"]),
    "z4-c16-matched": ("z4-c16 with the content cosine terms at the weight they have over 10 dims (1.6)",
                       [*MNIST_CPU_Z4, "model.content_dim=16", "loss.w_c_neg=1.6", "loss.w_c_pos=1.6"]),
    "z4-c32-matched": ("z-dim-4-matched with a 32-dimensional c, content cosine weights 3.2",
                       [*MNIST_CPU_Z4, "model.content_dim=32", "loss.w_c_neg=3.2", "loss.w_c_pos=3.2"]),
    # The content neighbour term (not in the paper): c pulled towards the nearest other sample's
    # code, so that the codes gather by class. Weights are before per_dim's 1/10.
    "z4-c-nn-1": ("z-dim-4-matched with the content neighbour term, weight 1", [*MNIST_CPU_Z4, "loss.w_c_nn=1"]),
    "z4-c-nn-3": ("z-dim-4-matched with the content neighbour term, weight 3", [*MNIST_CPU_Z4, "loss.w_c_nn=3"]),
    "z4-c-nn-0.3": ("z-dim-4-matched with the content neighbour term, weight 0.3",
                    [*MNIST_CPU_Z4, "loss.w_c_nn=0.3"]),
    "mnist-cpu-swap-gamma-z-0.5-mean": ("mnist-cpu-swap-gamma-z-0.5 with the cosine terms at full weight (mean)",
                                        [*MNIST_CPU_SWAP, "loss.cosine_scale=mean"]),
    "mnist-cpu-swap-gamma-z-0.5-z-neg-3": ("mnist-cpu-swap-gamma-z-0.5 with the z-negative weight 3",
                                          [*MNIST_CPU_SWAP, "loss.w_z_neg=3"]),
    "mnist-cpu-swap-gamma-z-0.5-decorr-1": ("mnist-cpu-swap-gamma-z-0.5 with the c-z decorrelation, weight 1",
                                            [*MNIST_CPU_SWAP, "loss.w_decorr=1"]),
    "mnist-cpu-swap-gamma-z-0.5-decorr-10": ("mnist-cpu-swap-gamma-z-0.5 with the c-z decorrelation, weight 10",
                                             [*MNIST_CPU_SWAP, "loss.w_decorr=10"]),
}  # fmt: skip
COLUMNS = ("d_c_c", "d_c_z", "sap_c", "r2_pose_z", "z_use")
LABELS = {"d_c_c": "D(c\\|c)", "d_c_z": "D(c\\|z)", "sap_c": "SAP(c)", "r2_pose_z": "R^2(pose\\|z)",
          "z_use": "z_use"}  # fmt: skip


def tag(variant: str, seed: int) -> str:
    return f"zcheck_{variant}" + (f"_seed{seed}" if seed else "")


def run_variant(variant: str, seed: int, args: argparse.Namespace) -> dict:
    settings = [f"data.max_samples={args.max_samples}", "eval.projection=pca", f"train.seed={seed}",
                *VARIANTS[variant][1]]  # fmt: skip
    doc = quality_2d_result(
        str(args.data), tag(variant, seed), settings, epochs=args.epochs, eval_every=args.eval_every,
        workdir=args.workdir, runs_results=args.runs_results, threads=args.threads, rerun=args.rerun,
    )  # fmt: skip
    kept = kept_validation_row(doc)
    return {"test": doc["final"], "val_d_c_c": float(kept["d_c_c"]), "best_epoch": int(kept["epoch"]),
            "train_seconds": doc["train_seconds"]}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--seeded", nargs="*", choices=list(VARIANTS), default=None,
                   help="variants run with every seed; the others with the first (default: all variants)")  # fmt: skip
    p.add_argument("--data", type=Path, default=MNIST)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--max-samples", type=int, default=10000, help="MNIST training images used")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rerun", action="store_true", help="train again even where a variant's results exist")
    p.add_argument("--workdir", default=str(REPO / "runs" / "zc"))
    p.add_argument("--runs-results", default=str(REPO / "runs" / "bench_zchecks_results"),
                   help="where quality_2d.py writes each run's own result files")  # fmt: skip
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--name", default="z_checks",
                   help="stem of the result files in --results (e.g. z_checks_neighbour for a subset)")  # fmt: skip
    args = p.parse_args()
    if not args.data.exists():
        print(f"z_checks: MNIST not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    seeded = set(args.variants if args.seeded is None else args.seeded)
    rows = {v: [run_variant(v, s, args) for s in (args.seeds if v in seeded else args.seeds[:1])]
            for v in args.variants}  # fmt: skip

    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(
        json.dumps({"args": vars(args), "variants": rows}, indent=1, default=str)
    )
    lines = [
        "# Making the decoder read z: short MNIST checks",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/z_checks.py', *sys.argv[1:]])}`",
        "",
        f"- data: MNIST, the first {args.max_samples} training images (10% of them held out for validation), "
        "the full test set; 10 classes (chance 0.10)",
        f"- training: {args.epochs} epochs, library defaults otherwise (lr 1e-4, StepLR(50), d = 10 for each code unless a row sets model.content_dim or model.transform_dim), "
        f"seeds {args.seeds} for {'all variants' if args.seeded is None else ', '.join(args.seeded)}, the first "
        "for the others (mean ± std where several); checkpoint by validation D(c|c) every "
        f"{args.eval_every} epochs; each run's files in `{os.path.relpath(args.runs_results, REPO)}` (quality_2d.py)",
        "- val D(c|c): the validation score of the kept checkpoint (choices are made on it); the other "
        "scores on the test split at the kept checkpoint; R^2(pose|z) and z_use as in the README's metrics "
        "table (z_use 0: the decoder ignores z)",
        "",
        "| variant | what | kept epoch | val D(c\\|c) | " + " | ".join(LABELS[k] for k in COLUMNS) + " | train min |",
        "|---|---|---|---|" + "---|" * len(COLUMNS) + "---|",
    ]
    for v, runs in rows.items():
        cells = " | ".join(cell([float(r["test"][k]) for r in runs]) for k in COLUMNS)
        epochs = "/".join(str(r["best_epoch"]) for r in runs)
        minutes = statistics.fmean(r["train_seconds"] for r in runs) / 60
        val = cell([r["val_d_c_c"] for r in runs])
        lines.append(f"| {v} | {VARIANTS[v][0]} | {epochs} | {val} | {cells} | {minutes:.1f} |")
    write_report(out, args.name, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
