"""Evaluate a trained model on its data: embeddings.npz, metrics.json and figures of a run."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..data.base import CONTENT, DataSplits
from ..models.base import DisentanglementModel
from ..report import write_report
from ..training.rundir import RunDir
from ..training.trainer import TrainState, append_csv
from .embed import embed_splits, save_embeddings, split_view
from .metrics import MIN_PER_CLASS, PROTOCOL, disentanglement_metrics, flat_scores, small_samples

log = logging.getLogger(__name__)


def compute_metrics(arrays: dict[str, np.ndarray], cfg: Config) -> dict[str, Any]:
    return disentanglement_metrics(
        split_view(arrays, "train"),
        split_view(arrays, "test"),
        max_fit_samples=cfg.eval.max_fit_samples,
        seed=cfg.eval.seed,
    )


def write_metrics(
    run: RunDir, scores: dict[str, Any], *, cfg: Config, splits: DataSplits, epoch: int
) -> dict[str, Any]:
    doc = {
        "scores": scores,
        "epoch": epoch,
        "model": cfg.model.name,
        "data": {
            "source": splits.train.source,
            "n_train": len(splits.train),
            "n_test": len(splits.test),
            "factors": sorted(splits.train.factors),
        },
        "protocol": {**PROTOCOL, "max_fit_samples": cfg.eval.max_fit_samples, "seed": cfg.eval.seed},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    few = small_samples(dict(splits.train.factors), dict(splits.test.factors))
    if few:
        doc["small_sample_warning"] = {"min_per_class": MIN_PER_CLASS, "classes": few}
        log.warning(
            "scores rest on classes with fewer than %d samples (%s): treat them as rough",
            MIN_PER_CLASS, "; ".join(f"{k}: {len(v)} classes" for k, v in few.items()),
        )
    tmp = run.metrics.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(run.metrics)
    return doc


def write_figures(
    run: RunDir,
    cfg: Config,
    model: DisentanglementModel,
    splits: DataSplits,
    arrays: dict[str, np.ndarray],
    device: torch.device,
) -> None:
    from ..analysis.figures import loss_curves, pick_examples, projection_figure, transfer_grid

    test = splits.test
    if model.has_decoder:
        idx = pick_examples(len(test), test.labels(CONTENT), 10, seed=cfg.eval.seed)
        images = test.batch(np.sort(idx))
        transfer_grid(model, images, images, run.figures / "transfer_grid.png", device=device)
    if run.log.exists():
        loss_curves(run.log, run.figures / "loss.png")
    own = getattr(model, "write_figures", None)  # a method's own figures (Hydra: class maps)
    if own is not None:
        own(run.figures)
    if cfg.eval.projection == "none":
        return
    view = split_view(arrays, "test")
    keep = np.sort(np.random.default_rng(cfg.eval.seed).permutation(len(test))[: cfg.eval.plot_samples])
    factors = {k: view[k][keep] for k in test.factors}
    for code in ("c", "z"):
        if f"{code}_mu" in view:
            projection_figure(
                view[f"{code}_mu"][keep],
                factors,
                run.figures / f"projection_{code}.png",
                title=f"{code} codes (test)",
                method=cfg.eval.projection,
                seed=cfg.eval.seed,
            )


def evaluate_run(
    run: RunDir,
    cfg: Config,
    model: DisentanglementModel,
    splits: DataSplits,
    device: torch.device,
    *,
    epoch: int,
    figures: bool = True,
) -> dict[str, Any]:
    """Embed train and test, score, and draw; everything lands in the run directory."""
    # Bars only on a terminal (as the trainer's): redirected, their refreshes would fill the file.
    progress = cfg.train.progress and sys.stderr.isatty()
    arrays = embed_splits(model, splits, batch_size=cfg.eval.batch_size, device=device, progress=progress)
    save_embeddings(run.embeddings, arrays)
    doc = write_metrics(run, compute_metrics(arrays, cfg), cfg=cfg, splits=splits, epoch=epoch)
    draw = figures and cfg.eval.figures
    if draw:
        write_figures(run, cfg, model, splits, arrays, device)
    write_report(run.root, projection=None if draw else "none")  # never a page with stale metrics
    return doc


def periodic_eval(run: RunDir, cfg: Config, splits: DataSplits, device: torch.device):
    """A trainer callback: every ``train.eval_every`` epochs, append scores to eval_log.csv."""

    def callback(state: TrainState) -> None:
        every = cfg.train.eval_every
        if every <= 0 or (state.epoch % every and state.epoch != cfg.train.epochs):
            return
        arrays = embed_splits(
            state.model, splits, batch_size=cfg.eval.batch_size, device=device, progress=False
        )
        scores = compute_metrics(arrays, cfg)
        append_csv(run.eval_log, {"epoch": state.epoch, **{k: round(v, 4) for k, v in flat_scores(scores).items()}})
        log.info("epoch %d: %s", state.epoch, scores)

    return callback
