"""MNIST quality benchmark: DualContrast's D(c|c), D(c|z), SAP(c) against epochs.

Trains through the same code path as ``dualcontrast train`` with ``train.eval_every`` so the
curve of D-scores against epochs is recorded, then writes
``benchmarks/results/mnist_quality.md`` (+ ``mnist_quality_curve.csv`` and the run's own
``metrics.json`` / figures under ``--workdir``).

Usage (from the repository root)::

    python benchmarks/mnist_quality.py --epochs 30 --eval-every 2
    python benchmarks/mnist_quality.py --epochs 200 --device cuda        # the paper's schedule

The quality bar of the foundation issue: D(c|c) >= 0.89 and SAP(c) >= 0.55
(paper, 200 epochs: 0.89 / 0.31 / 0.58).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from dualcontrast.cli.main import main as cli

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist.npz"
PAPER = {"d_c_c": 0.89, "d_c_z": 0.31, "sap_c": 0.58}
# The published per-step procedure re-run on this 2-core CPU with per-sample angles (issue text).
REFERENCE_CPU = {1: (0.769, 0.372), 4: (0.834, 0.430), 8: (0.868, 0.460), 20: (0.879, 0.427)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def device_name(device: str) -> str:
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(MNIST))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--workdir", default=str(REPO / "runs" / "bench_mnist_quality"))
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--tag", default="", help="suffix for result file names (e.g. a variant)")
    p.add_argument("--set", action="append", default=[], dest="overrides", help="config overrides")
    args = p.parse_args()

    if not Path(args.data).exists():
        print(f"MNIST not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    run = Path(args.workdir + (f"_{args.tag}" if args.tag else ""))
    argv = ["train", "--config", str(REPO / "configs" / "mnist.yaml"), "--data", args.data,
            "--epochs", str(args.epochs), "--device", args.device, "-o", str(run), "--overwrite",
            "--set", f"train.eval_every={args.eval_every}", "--set", "eval.projection=umap"]
    for o in args.overrides:
        argv += ["--set", o]
    start = time.time()
    code = cli(argv)
    wall = time.time() - start
    if code:
        return code

    with open(run / "eval_log.csv", newline="") as f:
        curve = list(csv.DictReader(f))
    with open(run / "log.csv", newline="") as f:
        train_seconds = sum(float(r["seconds"]) for r in csv.DictReader(f))
    final = json.loads((run / "metrics.json").read_text())["scores"]
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    stem = "mnist_quality" + (f"_{args.tag}" if args.tag else "")
    with open(out / f"{stem}_curve.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(curve[0]))
        w.writeheader()
        w.writerows(curve)
    (out / f"{stem}.json").write_text(json.dumps(
        {"final": final, "curve": curve, "epochs": args.epochs, "device": device_name(args.device),
         "wall_seconds": wall, "train_seconds": train_seconds, "overrides": args.overrides}, indent=2))

    lines = [
        f"# MNIST quality: DualContrast{' (' + args.tag + ')' if args.tag else ''}",
        "",
        f"Command: `python benchmarks/mnist_quality.py --epochs {args.epochs} --eval-every {args.eval_every}"
        + "".join(f" --set {o}" for o in args.overrides) + (f" --tag {args.tag}" if args.tag else "") + "`",
        "",
        f"- device: {device_name(args.device)}",
        f"- epochs: {args.epochs}; training time {train_seconds / 60:.1f} min "
        f"({train_seconds / args.epochs:.1f} s/epoch); wall time incl. evaluation {wall / 60:.1f} min",
        "- protocol: logistic regression on standardised code means, fit on the 60000 training codes, "
        "scored on the 10000 test codes (metrics.json of the run)",
        "",
        "| | D(c\\|c) | D(c\\|z) | SAP(c) |",
        "|---|---|---|---|",
        f"| this run, epoch {args.epochs} | {final['d_c_c']:.3f} | {final['d_c_z']:.3f} | {final['sap_c']:.3f} |",
        f"| paper (200 epochs, GPU) | {PAPER['d_c_c']:.2f} | {PAPER['d_c_z']:.2f} | {PAPER['sap_c']:.2f} |",
        "| quality bar | >= 0.89 | | >= 0.55 |",
        "",
        "## Curve",
        "",
        "| epoch | D(c\\|c) | D(c\\|z) | SAP(c) | reference procedure on CPU (issue): D(c\\|c) / D(c\\|z) |",
        "|---|---|---|---|---|",
    ]
    for row in curve:
        e = int(row["epoch"])
        ref = REFERENCE_CPU.get(e)
        ref_text = f"{ref[0]:.3f} / {ref[1]:.3f}" if ref else ""
        lines.append(f"| {e} | {float(row['d_c_c']):.3f} | {float(row['d_c_z']):.3f} | "
                     f"{float(row['sap_c']):.3f} | {ref_text} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
