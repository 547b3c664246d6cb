"""Train a model and write a run directory (config, checkpoints, log, embeddings, metrics, figures).

With neither --data nor --config it trains DualContrast on a small version of the built-in 2D
data set ``shapes2d`` (about 3 minutes on a 2-core CPU; configs/shapes2d_quality.yaml is the long
setting).

examples:
  dualcontrast train                                        # quick first run, built-in data
  dualcontrast train --config configs/shapes2d_quality.yaml # the same data at full size
  dualcontrast train --data mnist.npz --epochs 20 -o runs/mnist    # your MNIST copy
  dualcontrast train --config configs/subtomo.yaml -o runs/subtomo
  dualcontrast train --resume -o runs/mnist --epochs 40     # continue (or extend) a run
"""

from __future__ import annotations

import argparse
import logging

from ..errors import ConfigError
from .argtypes import non_negative_int, positive_float, positive_int
from .common import add_config_args, add_device_arg, resolve_config

log = logging.getLogger(__name__)

FLAGS = {
    "labels": "data.labels",
    "model": "model.name",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "seed": "train.seed",
    "device": "train.device",
    "step": "train.step",
    "name": "name",
}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="PATH|NAME", help="data file/folder, or a built-in data set name (default: shapes2d)")
    p.add_argument("--labels", metavar="FILE", help="content labels (.npy/.txt/.csv) for an unlabeled stack (default: none)")
    from ..models import MODELS

    p.add_argument("--model", help="method (default dualcontrast): " + ", ".join(MODELS.names()))
    p.add_argument("--epochs", type=positive_int, help="training epochs (default: train.epochs, 20)")
    p.add_argument("--batch-size", type=positive_int, help="samples per batch, >= 2 (default: train.batch_size, 100)")
    p.add_argument("--lr", type=positive_float, help="learning rate (default: train.lr, 1e-4)")
    p.add_argument("--seed", type=non_negative_int, help="random seed (default: train.seed, 0)")
    p.add_argument("--step", choices=["fused", "reference"], help="training step implementation (default: train.step, fused)")
    p.add_argument("--name", help="run name recorded in the config (default: none)")
    add_device_arg(p)
    add_config_args(p)
    p.add_argument("-o", "--outdir", metavar="RUN", help="run directory (default runs/<data>-<model>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in -o from its last checkpoint")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the outputs of an existing run directory"
    )
    p.add_argument(
        "--no-eval", action="store_true", help="skip embeddings, metrics and figures after training"
    )


def main(args: argparse.Namespace) -> int:
    from ..config import load_yaml
    from ..rundir import RunDir
    from ..workflow import FIRST_RUN, run_summary, train_run

    if args.resume:
        if not args.outdir:
            raise ConfigError("--resume needs -o RUN (the run directory to continue)")
        # The run's own config, with only the flags given now on top (e.g. more epochs).
        base = load_yaml(RunDir.open(args.outdir).config)
    else:
        # Neither data nor a config file: the quick first run (README); flags still apply on top.
        base = FIRST_RUN if args.data is None and not args.config else None
    cfg = resolve_config(args, FLAGS, base=base)
    result = train_run(
        cfg, args.outdir, resume=args.resume, overwrite=args.overwrite, evaluate=not args.no_eval,
        command=["dualcontrast", *args.argv],
    )  # fmt: skip
    if result.metrics is not None:
        log.info("%s", run_summary(result.run, result.metrics))
    return 0
