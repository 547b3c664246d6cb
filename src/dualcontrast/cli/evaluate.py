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
    from ..workflow import evaluate_run

    doc = evaluate_run(args.run, device=args.device, figures=not args.no_figures)
    print(json.dumps(doc["scores"], indent=2))
    return 0
