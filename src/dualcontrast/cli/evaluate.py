"""Score a trained run: embeddings.npz, metrics.json (D-scores, SAP, ARI) and figures.

Works on finished and interrupted runs (it reads checkpoints/last.pt).

example:
  dualcontrast evaluate runs/mnist
"""

from __future__ import annotations

import argparse
import json
import logging

from .common import add_device_arg

log = logging.getLogger(__name__)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--no-figures", action="store_true", help="metrics only")
    add_device_arg(p)


def main(args: argparse.Namespace) -> int:
    from ..evaluation.run import evaluate_run
    from ..training import load_trained_model, resolve_device
    from .common import load_splits, open_run

    run, cfg = open_run(args.run)
    device = resolve_device(args.device or cfg.train.device)
    splits = load_splits(cfg)
    model, ckpt = load_trained_model(run, cfg, device)
    doc = evaluate_run(run, cfg, model, splits, device, epoch=int(ckpt["epoch"]), figures=not args.no_figures)
    print(json.dumps(doc["scores"], indent=2))
    return 0
