"""Train every method on every data set of a suite with one budget, and write the comparison table.

Each run goes through `dualcontrast train` into WORKDIR/<dataset>/<method>/seed<k> (a normal
run directory). A run that already has metrics.json is kept (--force retrains it); an interrupted
one continues from its checkpoint, so a long suite can be stopped and started again. The table
(OUT, default benchmarks/results/<suite>.md) also lands as OUT.csv (mean/std/n per metric),
OUT_runs.csv (every run's scores) and OUT_transfer_grids.png (each method's transfer grid, seed 0).
It reports every cell of the suite found in WORKDIR, whatever the filters trained this time.

suite table1: dualcontrast, vae2, the four DualContrast ablations, simclr, simclr-gen, harmony,
spatial-vae, vitae, disco on mnist (configs/mnist.yaml), shapes2d (built-in 2D) and phantoms3d
(built-in subtomograms, configs/subtomo.yaml, d = 50); seeds 0, 1, 2; VITAE on 3D is "-" as in
the paper. Run it from the repository root (config files and the MNIST path are relative).

budgets (--budget; default: full on a CUDA device, else cpu-hour):
  cpu-hour  reduced table in about an hour on an idle 2-core CPU: MNIST 10000 training images
            (test: all 10000), 4 epochs; shapes2d 5000 / 1000 images, 5 epochs; phantoms3d 80
            subtomograms per state (768 train / 192 test), 6 epochs, lighter 3D networks (encoder
            channels halved, encoder head and decoder at a quarter); SpatialVAE with 64 (2D) /
            32 (3D) hidden units; PCA projections.
            Measured per-run CPU time on one core: ~7-40 s (2D), ~20-160 s (3D; SpatialVAE
            the most), ~55 min for all 105 runs (MNIST ~13, shapes2d ~9, phantoms3d ~35 min)
  full      the paper's schedule, for a GPU: MNIST (all 60000) and shapes2d (20000) 200 epochs
            of batch 100; phantoms3d 1000 per state, 150 epochs of batch 50 with the networks of
            configs/subtomo.yaml; SpatialVAE 3D with 128 hidden units (the paper's 500 cost hours)
  tiny      a smoke test of the harness (tests only)
--epochs-scale multiplies every epoch count of the budget (e.g. 2 for a two-hour CPU table).

examples:
  dualcontrast benchmark --suite table1 --budget cpu-hour            # the reduced CPU table
  dualcontrast benchmark --suite table1 --budget full --device cuda  # the full table on a GPU
  dualcontrast benchmark --budget cpu-hour --datasets shapes2d --methods dualcontrast,vae2 --seeds 0
  dualcontrast benchmark --budget cpu-hour --dry-run                 # list the runs and commands
  dualcontrast benchmark --budget cpu-hour --report-only             # rebuild the table only
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from .common import add_device_arg, add_set_arg

log = logging.getLogger(__name__)


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers, got {text!r}") from None


def add_args(p: argparse.ArgumentParser) -> None:
    from ..benchmark.suites import BUDGETS, SUITES

    p.add_argument("--suite", default="table1", choices=sorted(SUITES), help="which suite (default table1)")
    p.add_argument(
        "--budget",
        default="auto",
        choices=["auto", *BUDGETS],
        help="budget preset (default auto: full where a CUDA device is used, else cpu-hour)",
    )
    p.add_argument("--epochs-scale", type=float, default=1.0, metavar="F", help="multiply every epoch count")
    p.add_argument("--methods", metavar="A,B", help="train only these methods (default: all)")
    p.add_argument("--datasets", metavar="A,B", help="train only these data sets (default: all)")
    p.add_argument("--seeds", type=_seeds, metavar="0,1", help="train only these seeds (default: all)")
    add_device_arg(p)
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--mnist", metavar="NPZ", help="MNIST file (default: the path in configs/mnist.yaml)")
    add_set_arg(p, "extra config setting for every run, e.g. --set train.amp=true")
    p.add_argument(
        "--workdir", metavar="DIR", help="run directories (default runs/benchmark-<suite>-<budget>)"
    )
    p.add_argument("-o", "--out", metavar="MD", help="table path (default benchmarks/results/<suite>.md)")
    p.add_argument("--force", action="store_true", help="retrain runs that already have metrics.json")
    p.add_argument("--dry-run", action="store_true", help="list the planned runs and exit")
    p.add_argument(
        "--report-only", action="store_true", help="write the table from existing runs; train nothing"
    )
    p.add_argument("--no-figure", action="store_true", help="skip the transfer-grid figure")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..benchmark.report import write_report
    from ..benchmark.runner import check_existing, plan_suite, preflight, run_suite
    from ..benchmark.suites import BUDGETS, SUITES, scale_epochs
    from ..errors import ConfigError
    from ..training import resolve_device

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    suite = SUITES[args.suite]
    if args.budget == "auto":
        args.budget = "full" if resolve_device(args.device or "auto").type == "cuda" else "cpu-hour"
    budget = scale_epochs(BUDGETS[args.budget], args.epochs_scale)
    suffix = args.budget if args.epochs_scale == 1 else f"{args.budget}-x{args.epochs_scale:g}"
    workdir = Path(args.workdir or f"runs/benchmark-{suite.name}-{suffix}")
    out = Path(args.out or f"benchmarks/results/{suite.name}.md")
    common = dict(device=args.device, mnist=args.mnist, overrides=args.overrides)
    selected = plan_suite(
        suite, budget, workdir, methods=args.methods, datasets=args.datasets, seeds=args.seeds, **common
    )
    if args.dry_run:
        for run in selected:
            state = "done" if run.done else "-" if run.argv is None else "to train"
            command = (
                shlex.join(["dualcontrast", *run.argv]) if run.argv else f"unsupported: {run.unsupported}"
            )
            print(f"{run.key} [{state}]\n  {command}")
        return 0
    if not args.report_only:
        preflight(selected)
        counts = run_suite(selected, force=args.force, budget=budget.name, progress=sys.stderr.isatty())
        log.warning(
            "benchmark: %d trained, %d failed, %d kept, %d unsupported",
            counts["trained"],
            counts["failed"],
            counts["skipped"],
            counts["unsupported"],
        )
    # The table covers the whole suite in the work directory, not only this call's selection.
    everything = plan_suite(suite, budget, workdir, **common)
    if args.report_only:
        for run in everything:
            if diffs := check_existing(run):
                log.warning("%s was made with other settings than the plan: %s", run.key, "; ".join(diffs))
    command = shlex.join(["dualcontrast", *(getattr(args, "argv", None) or ["benchmark"])])
    paths = write_report(everything, suite, budget, out, command=command, figure=not args.no_figure)
    for kind, path in paths.items():
        log.warning("%s: %s", kind, path)
    return 0
