"""Codes (c and z means and log-variances) of a trained run for any data set.

Works on finished and interrupted runs: it reads checkpoints/best.pt (the epoch with the best
validation score) where the run has one, else last.pt (--checkpoint chooses).

examples:
  dualcontrast embed runs/mnist                          # the run's own data -> RUN/embeddings.npz
  dualcontrast embed runs/mnist --data new.npy -o new_codes.npz
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .common import add_checkpoint_arg, add_device_arg

log = logging.getLogger(__name__)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--data", metavar="PATH", help="data to embed (default: the run's train and test data)")
    p.add_argument("--normalize", choices=["none", "per_sample"], help="default: as in training")
    p.add_argument("-o", "--output", metavar="NPZ", help="output file (default RUN/embeddings[_<data>].npz)")
    p.add_argument("--batch-size", type=int, help="samples per batch (default: the run's eval.batch_size)")
    add_checkpoint_arg(p)
    add_device_arg(p)


def main(args: argparse.Namespace) -> int:
    from ..data import DataSplits, load_path
    from ..errors import ConfigError
    from ..evaluation import embed, embed_splits, save_embeddings
    from ..models import load_trained_model
    from ..training import run_device
    from ..workflow import load_splits, open_run

    run, cfg = open_run(args.run)
    device = run_device(cfg, args.device)
    batch_size = args.batch_size or cfg.eval.batch_size
    normalize = args.normalize or cfg.data.normalize
    model, ckpt = load_trained_model(run, cfg, device, args.checkpoint or "auto")
    log.info("embedding with checkpoints/%s.pt (epoch %d)", ckpt["chosen"], ckpt["epoch"])
    if args.data is None:
        arrays = embed_splits(model, load_splits(cfg), batch_size=batch_size, device=device)
        out = Path(args.output) if args.output else run.embeddings
    else:
        loaded = load_path(args.data)
        datasets = [loaded.train, loaded.test] if isinstance(loaded, DataSplits) else [loaded]
        arrays = {}
        for name, data in zip(["train", "test"] if len(datasets) == 2 else [""], datasets, strict=True):
            if data.sample_shape != tuple(ckpt["meta"]["sample_shape"]):
                raise ConfigError(
                    f"{args.data}: samples are shaped {data.sample_shape} but the model was trained on "
                    f"{tuple(ckpt['meta']['sample_shape'])}"
                )
            data.normalize = normalize
            prefix = f"{name}_" if name else ""
            for k, v in embed(model, data, batch_size=batch_size, device=device).items():
                arrays[prefix + k] = v
        out = Path(args.output) if args.output else run.root / f"embeddings_{Path(args.data).stem}.npz"
    save_embeddings(out, arrays)
    log.warning("wrote %s (%s)", out, ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    return 0
