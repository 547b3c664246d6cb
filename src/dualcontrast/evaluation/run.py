"""Evaluate a trained model on its data: embeddings.npz, metrics.json and figures of a run; and
the validation scores a run is steered by while it trains (never the test set)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..data.base import CONTENT, Dataset, DataSplits
from ..models.base import DisentanglementModel
from ..rundir import RunDir, atomic_write_json
from ..training.trainer import TrainState
from ..training.validation import ValidationScore, validation_loss
from .embed import embed, embed_splits, save_embeddings, split_view
from .metrics import (
    MIN_PER_CLASS,
    PROTOCOL,
    d_score,
    decoder_z_use,
    disentanglement_metrics,
    flat_scores,
    rotation_probe,
    small_samples,
    subsample,
)

log = logging.getLogger(__name__)


def compute_metrics(
    arrays: dict[str, np.ndarray], cfg: Config, *, on: str = "test", raw: bool = True
) -> dict[str, Any]:
    """Scores of the codes of split ``on`` (``test``, or ``val`` while training), the classifiers
    fit on the train codes; ``raw``: the ``*_raw`` scores too."""
    return disentanglement_metrics(
        split_view(arrays, "train"),
        split_view(arrays, on),
        max_fit_samples=cfg.eval.max_fit_samples,
        seed=cfg.eval.seed,
        standardize=cfg.eval.standardize,
        raw=raw,
        clustering=clustering_options(cfg),
    )


def clustering_options(cfg: Config) -> dict[str, Any]:
    """The content clustering of ``cfg.eval`` as keyword arguments of ``cluster_codes``."""
    e = cfg.eval
    return {"method": e.cluster_method, "space": e.cluster_space, "dims": e.cluster_dims,
            "neighbors": e.cluster_neighbors}  # fmt: skip


def rotation_max_angle(cfg: Config) -> float:
    """The angle range of S(z)'s rotations: the training rotation's where there is one (2D)."""
    if cfg.transform.get("name") == "rotation":
        return float(cfg.transform.get("max_angle", 90.0))
    return 180.0


def write_metrics(
    run: RunDir,
    scores: dict[str, Any],
    *,
    cfg: Config,
    splits: DataSplits,
    epoch: int,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    doc = {
        "scores": scores,
        "epoch": epoch,
        "checkpoint": checkpoint or f"epoch {epoch}",
        "model": cfg.model.name,
        "data": {
            "source": splits.train.source,
            "n_train": len(splits.train),
            "n_val": len(splits.val) if splits.val is not None else 0,
            "n_test": len(splits.test),
            "factors": sorted(splits.train.factors),
        },
        "protocol": {
            **PROTOCOL,
            "max_fit_samples": cfg.eval.max_fit_samples,
            "seed": cfg.eval.seed,
            "standardize": cfg.eval.standardize,
            "cluster_space": cfg.eval.cluster_space,
            "cluster_dims": cfg.eval.cluster_dims,
            "rotation_samples": cfg.eval.rotation_samples,
            "rotation_max_angle": rotation_max_angle(cfg),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    few = small_samples(dict(splits.train.factors), dict(splits.test.factors))
    if few:
        doc["small_sample_warning"] = {"min_per_class": MIN_PER_CLASS, "classes": few}
        log.warning(
            "scores rest on classes with fewer than %d samples (%s): treat them as rough",
            MIN_PER_CLASS, "; ".join(f"{k}: {len(v)} classes" for k, v in few.items()),
        )
    atomic_write_json(run.metrics, doc)
    return doc


def write_figures(
    run: RunDir,
    cfg: Config,
    model: DisentanglementModel,
    splits: DataSplits,
    arrays: dict[str, np.ndarray],
    device: torch.device,
) -> None:
    from .figures import loss_curves, pick_examples, projection_figure, transfer_grid

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
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """Embed every split, score on test, and draw; everything lands in the run directory (report.html
    is the caller's: :func:`dualcontrast.workflow.write_evaluation`). ``checkpoint`` (e.g.
    ``"best (epoch 7, validation d_c_c 0.9123)"``) is recorded in metrics.json."""
    # Bars only on a terminal (as the trainer's): redirected, their refreshes would fill the file.
    progress = cfg.train.progress and sys.stderr.isatty()
    arrays = embed_splits(model, splits, batch_size=cfg.eval.batch_size, device=device, progress=progress)
    save_embeddings(run.embeddings, arrays)
    scores = compute_metrics(arrays, cfg)
    if cfg.eval.rotation_samples > 0:
        rotation = rotation_probe(
            model, splits.test, n=cfg.eval.rotation_samples, max_angle=rotation_max_angle(cfg),
            batch_size=cfg.eval.batch_size, device=device, seed=cfg.eval.seed,
        )  # fmt: skip
        scores.update(rotation or {})
    if "test_c_mu" in arrays and "test_z_mu" in arrays:
        scores.update(decoder_z_use(model, arrays["test_c_mu"], arrays["test_z_mu"], batch_size=cfg.eval.batch_size,
                                    device=device, seed=cfg.eval.seed) or {})  # fmt: skip
    doc = write_metrics(run, scores, cfg=cfg, splits=splits, epoch=epoch, checkpoint=checkpoint)
    if figures and cfg.eval.figures:
        write_figures(run, cfg, model, splits, arrays, device)
    return doc


# Training codes the per-epoch selection score (validation D(c|c)) is fit on. Measured on the first
# run's data (9000 training images, 2-core CPU): all of them cost ~4.5 s an epoch (epochs take
# ~10 s), 2000 about a quarter of that; enough codes to rank epochs.
SELECTION_FIT_SAMPLES = 2000


def select_score(name: str, scores: dict[str, float]) -> float | None:
    """The value of ``train.select`` ``name`` (a score or a ``+``-sum of scores, e.g.
    ``d_c_c+sap_c+z_use``) from one epoch's validation ``scores``; None where one of its terms is
    missing (no labels, or a model without a z code or a decoder)."""
    terms = name.split("+")
    if not all(t in scores for t in terms):
        return None
    return float(sum(scores[t] for t in terms))


def validation_scorer(
    cfg: Config, splits: DataSplits, device: torch.device
) -> Callable[[TrainState], ValidationScore | None] | None:
    """The trainer's ``validate``: scores on the validation split (None when there is none).

    - ``train.eval_every`` N > 0: every N epochs (and the last) all scores, on the validation
      codes with the classifiers fit on train codes (at most ``eval.max_fit_samples`` of them);
    - ``train.eval_every`` 0: every epoch the score that picks best.pt, with D(c|z) and SAP(c)
      beside it where there is a z code, so the split of identity between the codes is followed
      on validation too (classifiers fit on at most :data:`SELECTION_FIT_SAMPLES` training codes).

    Both add the decoder's use of z (``z_use`` on validation codes) where the model has a z code
    and a decoder. The score is ``train.select`` where the data have content labels (and the model
    a content code): the validation D(c|c), or a sum with SAP(c) (and ``z_use``) where the model
    has those terms, else D(c|c) alone. Without labels, and under ``train.select c_neg`` labels or
    not, the content-negative term of the objective on the validation batches (lower better) where
    the model has it; else, and under ``train.select val_loss``, the whole objective (``val_loss``).
    """
    val = splits.val
    if val is None:
        return None

    def fit_subset(cap: int | None) -> Dataset:
        rows = subsample(len(splits.train), cap, cfg.eval.seed)
        return splits.train.subset(rows) if len(rows) < len(splits.train) else splits.train

    full_fit = fit_subset(cfg.eval.max_fit_samples)
    quick_fit = fit_subset(min(SELECTION_FIT_SAMPLES, cfg.eval.max_fit_samples or SELECTION_FIT_SAMPLES))
    content = splits.train.labels(CONTENT)
    labelled = content is not None and len(np.unique(content)) >= 2 and val.labels(CONTENT) is not None

    def codes(model: DisentanglementModel, data: Dataset) -> dict[str, np.ndarray]:
        return embed(model, data, batch_size=cfg.eval.batch_size, device=device, progress=False)

    def score(state: TrainState) -> ValidationScore | None:
        every = cfg.train.eval_every
        full = every > 0 and (state.epoch % every == 0 or state.epoch == cfg.train.epochs)
        if every > 0 and not full:
            return None
        scores: dict[str, float] = {}
        if labelled or full:
            tr, va = codes(state.model, full_fit if full else quick_fit), codes(state.model, val)
            if full:
                arrays = {**{f"train_{k}": v for k, v in tr.items()}, **{f"val_{k}": v for k, v in va.items()}}
                scores = flat_scores(compute_metrics(arrays, cfg, on="val", raw=False))
            elif "c_mu" in tr:
                scores = {f"d_c_{code}": d_score(tr[f"{code}_mu"], tr[CONTENT], va[f"{code}_mu"], va[CONTENT],
                                                 seed=cfg.eval.seed, standardize=cfg.eval.standardize)
                          for code in ("c", "z") if f"{code}_mu" in tr}  # fmt: skip
                if "d_c_z" in scores:
                    scores["sap_c"] = abs(scores["d_c_c"] - scores["d_c_z"])
            if "c_mu" in va and "z_mu" in va:
                scores.update(decoder_z_use(state.model, va["c_mu"], va["z_mu"], batch_size=cfg.eval.batch_size,
                                            device=device, seed=cfg.eval.seed) or {})  # fmt: skip
        terms: dict[str, float] | None = None  # the objective on the validation batches, computed once

        def objective() -> dict[str, float]:
            nonlocal terms
            if terms is None:
                terms = validation_loss(state.model, state.optimizers, val, batch_size=cfg.train.batch_size,
                                        device=device, seed=cfg.eval.seed)  # fmt: skip
            return terms

        if cfg.train.select != "val_loss":
            if cfg.train.select == "c_neg" or "d_c_c" not in scores:
                # The content codes of different samples as far apart as the objective asks: the
                # label-free score that, unlike the whole loss, a z stuck at |cos| 1 does not swamp;
                # it chose the better of two or three seeds more often (restart_scores.md).
                if "c_neg" in objective():
                    return ValidationScore({**scores, "val_loss": objective()["loss"], "c_neg": objective()["c_neg"]},
                                           "c_neg", higher_is_better=False)  # fmt: skip
            selected = select_score(cfg.train.select, scores)
            if selected is not None:
                scores[cfg.train.select] = selected
                return ValidationScore(scores, cfg.train.select, higher_is_better=True)
            if "d_c_c" in scores:  # a sum whose other terms this model lacks (no z code): D(c|c) alone
                return ValidationScore(scores, "d_c_c", higher_is_better=True)
        if "loss" not in objective():
            return None
        return ValidationScore({**scores, "val_loss": objective()["loss"]}, "val_loss", higher_is_better=False)

    return score
