"""Where does the conformation go? DualContrast variants on the built-in 2D data, one table.

Each variant is one run of ``quality_2d.py`` on ``shapes2d`` (same data, epochs and learning rate,
settings differing as listed in ``VARIANTS``); this script runs the ones missing (or all with
``--rerun``) and writes ``<results>/shapes2d_state.md`` with, per variant, the scores on the
validation split at the checkpoint kept (what a choice may be made on) and on the test split (what
is reported). The bar of issue 9 on this data: D(c|c) >= 0.95 and the arm-bend state measurably in
z (D(state|z) > D(state|c)).

    python benchmarks/shapes2d_state.py --threads 1
    python benchmarks/shapes2d_state.py --variants base hinge-pivot --seeds 0 1
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

# An off-centre hinge (a joint anywhere within half the box of the centre) composed with rotation.
HINGE_PIVOT = "transform={name: compose, parts: [{name: rotation}, {name: hinge, max_angle: 50, blend_angle: 120, pivot_radius: 0.5}]}"
HINGE_CENTRE = "transform={name: compose, parts: [{name: rotation}, {name: hinge, max_angle: 35}]}"

# name -> (what it tests, overrides)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "base": ("the default: T = rotation, symmetric views", []),
    "vae2": ("no contrastive terms (where a plain two-latent VAE puts the state)", ["model.name=vae2"]),
    "no-z-neg": ("without the z-negative term", ["loss.w_z_neg=0"]),
    "no-c-neg": ("without the c-negative term", ["loss.w_c_neg=0"]),
    "c-neg-0.3": ("c-negative weight 0.3", ["loss.w_c_neg=0.3"]),
    "gamma-c-10": ("a strong prior on c (gamma_c 10)", ["loss.gamma_c=10"]),
    "c-dim-3": ("a 3-dimensional c", ["model.content_dim=3"]),
    "c-dim-32": (
        "a 32-dimensional c (it raised the content score on MNIST: z_checks_notes.md)",
        ["model.content_dim=32"],
    ),
    "hinge-centre": ("T = rotation + hinge about the centre (<= 35 deg)", [HINGE_CENTRE]),
    "hinge-pivot": ("T = rotation + hinge about an off-centre pivot (<= 50 deg)", [HINGE_PIVOT]),
    "hinge-pivot-gamma-c-10": ("off-centre hinge + gamma_c 10", [HINGE_PIVOT, "loss.gamma_c=10"]),
    "hinge-pivot-no-z-neg": ("off-centre hinge, no z-negative term", [HINGE_PIVOT, "loss.w_z_neg=0"]),
    "hinge-pivot-z-neg-0.3": ("off-centre hinge, z-negative weight 0.3", [HINGE_PIVOT, "loss.w_z_neg=0.3"]),
    "swap": ("the swapped reconstruction (loss.w_swap 1)", ["loss.w_swap=1"]),
    # The pair terms ramp in over 5 epochs: the encoder first finds shapes by reconstruction,
    # since whether a seed separates the bodies is decided early (shapes2d_state_n1000*_notes.md).
    "contrastive-warmup-5": ("the cosine weights ramp from 0 over 5 epochs (loss.contrastive_warmup 5)",
                             ["loss.contrastive_warmup=5"]),
    # The per-batch cosine decay, to hold the early peak a constant lr loses in some seeds.
    "cosine": ("lr: 1 epoch linear warm-up, then cosine to ~0 by the last epoch",
               ["train.schedule=cosine", "train.warmup_epochs=1"]),
    # The same trajectories as base (validation never changes training), best.pt by a label-free score.
    "select-c-neg": ("best.pt by the validation content-negative term (train.select c_neg; no labels used)",
                     ["train.select=c_neg"]),
    # Two views of one particle share its state, so the swap never asks z for it; a neighbour in c
    # is mostly the same body and not always the same state.
    "nn-swap": ("the swapped reconstruction with the nearest other sample's c (loss.swap_content neighbour)",
                ["loss.w_swap=1", "loss.swap_content=neighbour"]),
    "nn-swap-3": ("nn-swap at weight 3", ["loss.w_swap=3", "loss.swap_content=neighbour"]),
    # Both views share the state, so the z-negative term pushes it out of z; without that term,
    # a prior on c or the swap might leave the state to z.
    "no-z-neg-gamma-c-10": ("no z-negative term, gamma_c 10", ["loss.w_z_neg=0", "loss.gamma_c=10"]),
    "no-z-neg-swap": ("no z-negative term, the swapped reconstruction", ["loss.w_z_neg=0", "loss.w_swap=1"]),
    "hinge-pivot-swap": ("off-centre hinge + the swapped reconstruction", [HINGE_PIVOT, "loss.w_swap=1"]),
    "paper-pairing": ("the paper's pairing (x against T(x))", ["views.pairing=paper"]),
    "paper-pairing-hinge-pivot": (
        "the paper's pairing, off-centre hinge",
        ["views.pairing=paper", HINGE_PIVOT],
    ),
    # configs/mnist_cpu.yaml's loss, with which z became the rotation code on MNIST
    "mnist-cpu-loss": (
        "configs/mnist_cpu.yaml's loss: the paper's pairing, per_dim, gamma_z 0.5, swapped reconstruction",
        ["views.pairing=paper", "loss.cosine_scale=per_dim", "loss.gamma_z=0.5", "loss.w_swap=1"],
    ),
}
COLUMNS = ("d_c_c", "d_c_z", "sap_c", "d_z_z", "d_z_c", "ari_c")
LABELS = {"d_c_c": "D(c\\|c)", "d_c_z": "D(c\\|z)", "sap_c": "SAP(c)", "d_z_z": "D(state\\|z)",
          "d_z_c": "D(state\\|c)", "ari_c": "ARI(c)"}  # fmt: skip


def tag(variant: str, seed: int) -> str:
    return f"state_{variant}" + (f"_seed{seed}" if seed else "")


def run_variant(variant: str, seed: int, args: argparse.Namespace) -> dict:
    settings = [f"data.params.n_train_per_cell={args.n_per_cell}", f"train.lr={args.lr}", f"train.seed={seed}",
                *VARIANTS[variant][1]]  # fmt: skip
    doc = quality_2d_result(
        "shapes2d", tag(variant, seed), settings, epochs=args.epochs, eval_every=args.eval_every,
        workdir=args.workdir, runs_results=args.runs_results, threads=args.threads, rerun=args.rerun,
    )  # fmt: skip
    val = kept_validation_row(doc)
    # c_neg: the label-free selection score, in the curve where train.select is c_neg.
    return {"val": {k: float(val[k]) for k in (*COLUMNS, "c_neg") if val.get(k)}, "test": doc["final"],
            "best_epoch": int(val["epoch"]), "train_seconds": doc["train_seconds"]}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--eval-every", type=int, default=4)
    p.add_argument("--n-per-cell", type=int, default=500)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rerun", action="store_true", help="train again even where a variant's results exist")
    p.add_argument("--workdir", default=str(REPO / "runs" / "bench_state"))
    p.add_argument("--runs-results", default=str(REPO / "runs" / "bench_state_results"),
                   help="where quality_2d.py writes each run's own result files")  # fmt: skip
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--name", default="shapes2d_state",
                   help="stem of the result files in --results (e.g. shapes2d_state_60ep for a longer schedule)")  # fmt: skip
    args = p.parse_args()
    rows = {v: [run_variant(v, s, args) for s in args.seeds] for v in args.variants}

    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps({"args": vars(args), "variants": rows}, indent=1))
    head = " | ".join(f"{LABELS[k]} val / test" for k in COLUMNS)
    lines = [
        "# Where does the conformation go? DualContrast variants on the built-in 2D data",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/shapes2d_state.py', *sys.argv[1:]])}`",
        "",
        f"- data: shapes2d, {args.n_per_cell} images per (body, bend) cell for training (10% of them held out "
        "for validation), the built-in test split (200 per cell); 5 bodies (chance 0.20), 4 arm-bend states (chance 0.25)",
        f"- training: {args.epochs} epochs, lr {args.lr}, seeds {args.seeds} (mean ± std where several); "
        "checkpoint by the validation score of train.select (D(c|c) unless a variant sets it) "
        f"every {args.eval_every} epochs; each run's files in "
        f"`{os.path.relpath(args.runs_results, REPO)}` (quality_2d.py)",
        "- val: the validation split at the kept checkpoint (choices are made on these); test: reported",
        "",
        f"| variant | what | best epoch | {head} | train min |",
        "|---|---|---|" + "---|" * len(COLUMNS) + "---|",
    ]
    for v, runs in rows.items():
        cells = " | ".join(
            f"{cell([r['val'][k] for r in runs])} / {cell([float(r['test'][k]) for r in runs])}"
            for k in COLUMNS
        )
        epochs = "/".join(str(r["best_epoch"]) for r in runs)
        minutes = statistics.fmean(r["train_seconds"] for r in runs) / 60
        lines.append(f"| {v} | {VARIANTS[v][0]} | {epochs} | {cells} | {minutes:.1f} |")
    write_report(out, args.name, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
