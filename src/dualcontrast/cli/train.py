"""Train a model and write a run directory (config, checkpoints, log, embeddings, metrics, figures).

With no data argument it trains DualContrast on the built-in 2D data set ``shapes2d``.

examples:
  dualcontrast train                                        # built-in data, defaults
  dualcontrast train --data ../shared/datasets/mnist.npz --epochs 20 -o runs/mnist
  dualcontrast train --config configs/subtomo.yaml -o runs/subtomo
  dualcontrast train --resume -o runs/mnist --epochs 40     # continue (or extend) a run
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .argtypes import non_negative_int, positive_float, positive_int
from .common import add_config_args, add_device_arg, data_layer, default_run_name, load_splits, resolve_config

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
    from ..errors import ConfigError
    from ..training import RunDir
    from ..training.distributed import init_distributed, shutdown

    if args.resume:
        if not args.outdir:
            raise ConfigError("--resume needs -o RUN (the run directory to continue)")
        run = RunDir.open(args.outdir)
        # The run's own config, with only the flags given now on top (e.g. more epochs).
        cfg = resolve_config(args, FLAGS, base={**load_yaml(run.config), **data_layer(args.data)})
    else:
        cfg = resolve_config(args, FLAGS, base=data_layer(args.data))
        run = None
    # Under torchrun (or srun with MASTER_ADDR) this joins the process group; else 1 process.
    ctx = init_distributed(cfg.train.device)
    done = False
    try:
        _train(args, cfg, run, ctx)
        done = True
    finally:
        shutdown(ctx, synchronize=done)
    return 0


def _train(args: argparse.Namespace, cfg, run, ctx) -> None:
    import torch.distributed as dist

    from ..config import save_config
    from ..evaluation import flat_scores
    from ..evaluation.run import evaluate_run, periodic_eval
    from ..training import RunDir, Trainer

    device = ctx.device
    # Everything that can fail on bad input happens before the run directory is touched.
    splits = load_splits(cfg)
    target = run or RunDir(Path(args.outdir) if args.outdir else default_run_name(cfg))
    if ctx.enabled and run is None:
        # A default name holds the time: every rank must use rank 0's.
        name = [str(target.root)]
        dist.broadcast_object_list(name, src=0)
        target = RunDir(Path(name[0]))
    trainer = Trainer(
        cfg,
        target,
        splits,
        device,
        rank=ctx.rank,
        world_size=ctx.world_size,
        callbacks=[periodic_eval(target, cfg, splits, device)],
    )
    if run is None:  # the model and data are valid: only now is the directory made
        # Rank 0 alone writes the run directory; the others train and wait for it.
        run = RunDir.create(target.root, overwrite=args.overwrite) if ctx.is_main else target
        if ctx.enabled:
            dist.barrier()
    if args.resume:
        trainer.resume()
    if ctx.is_main:
        save_config(cfg, run.config, command=["dualcontrast", *args.argv])
    log.info(
        "training %s on %s (%d train / %d test) on %s%s -> %s",
        cfg.model.name,
        splits.train.source,
        len(splits.train),
        len(splits.test),
        device,
        f" (process {ctx.rank} of {ctx.world_size})" if ctx.enabled else "",
        run.root,
    )
    state = trainer.fit()
    if not args.no_eval and ctx.is_main:
        doc = evaluate_run(run, cfg, state.model, splits, device, epoch=state.epoch)
        scores = ", ".join(f"{k}={v:.3f}" for k, v in flat_scores(doc["scores"]).items())
        log.warning("run %s: %s", run.root, scores or "no labels to score")
