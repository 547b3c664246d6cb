"""Score a trained run: embeddings.npz, metrics.json (D-scores, SAP, ARI) and figures.

Works on finished and interrupted runs: it reads checkpoints/best.pt (the epoch with the best
validation score) where the run has one, else last.pt; metrics.json says which.

example:
  dualcontrast evaluate runs/mnist
  dualcontrast evaluate runs/mnist --checkpoint last
"""

from __future__ import annotations

import argparse
import json
import logging

from .common import add_checkpoint_arg, add_device_arg

log = logging.getLogger(__name__)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--no-figures", action="store_true", help="metrics only")
    add_checkpoint_arg(p)
    add_device_arg(p)


def main(args: argparse.Namespace) -> int:
    from ..workflow import evaluate_run

    doc = evaluate_run(
        args.run, device=args.device, figures=not args.no_figures, checkpoint=args.checkpoint or "auto"
    )
    print(json.dumps(doc["scores"], indent=2))
    return 0
