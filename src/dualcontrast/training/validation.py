"""Validation during training: the score of each validated epoch and the best checkpoint.

The trainer asks a ``validate(state) -> ValidationScore | None`` function (built by
:func:`dualcontrast.evaluation.run.validation_scorer` from the validation split) after every
epoch; the scores go to ``eval_log.csv`` and the epoch with the best selection score so far is
kept as ``checkpoints/best.pt`` (a copy of that epoch's ``last.pt``). What "best" was is stored
in every checkpoint's ``meta["best"]``, so a resumed run goes on comparing against it.

For data without content labels the selection score is the training objective on the
validation batches (:func:`validation_loss`), computed without an optimizer step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.base import Dataset
from ..models.base import DisentanglementModel
from .runtime import rng_state, seed_everything, set_rng_state


@dataclass
class ValidationScore:
    """One validated epoch: ``scores`` (the eval_log.csv row), and which of them (``metric``)
    picks best.pt, higher or lower being better."""

    scores: dict[str, float]
    metric: str
    higher_is_better: bool

    @property
    def value(self) -> float:
        return float(self.scores[self.metric])

    def beats(self, best: dict[str, Any] | None) -> bool:
        """Whether this score improves on the record ``best`` (``meta["best"]`` of a checkpoint)."""
        if not math.isfinite(self.value):
            return False
        if best is None or best.get("metric") != self.metric:
            return True
        return self.value > best["value"] if self.higher_is_better else self.value < best["value"]

    def record(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "metric": self.metric, "value": self.value,
                "higher_is_better": self.higher_is_better}  # fmt: skip


def describe_best(best: dict[str, Any]) -> str:
    """``"epoch 7, validation d_c_c 0.9123"``."""
    return f"epoch {best['epoch']}, validation {best['metric']} {best['value']:.4f}"


class _NoStep:
    """An optimizer stand-in for :func:`validation_loss`: the step computes its losses and
    gradients, the weights stay as they are."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.param_groups = optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self, closure: Any = None) -> None:
        return None


def validation_loss(
    model: DisentanglementModel,
    optimizers: dict[str, torch.optim.Optimizer],
    data: Dataset,
    *,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
) -> dict[str, float]:
    """Mean loss terms of ``model.training_step`` over ``data`` in fixed batches, weights unchanged.

    The step runs with optimizers that do not step, in eval mode, under a fixed seed (the
    random transformations are the same at every epoch, so epochs compare on equal terms).
    Afterwards everything the step may have touched is put back: buffers, gradients, the
    gradient averaging of distributed runs (rank 0 validates alone) and every RNG state, so a
    validated run continues exactly as one that is not.
    """
    n = len(data)
    size = max(2, min(batch_size, n))
    starts = [s for s in range(0, n, size) if min(size, n - s) >= 2]  # pair terms need two samples
    if not starts:
        return {}
    saved_rng = rng_state()
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    sync = model._grad_sync  # restored below: validation runs on one process, nothing to average
    was_training = model.training
    fake = {k: _NoStep(o) for k, o in optimizers.items()}
    sums: dict[str, float] = {}
    count = 0
    try:
        seed_everything(seed)
        model.set_gradient_sync(None)
        model.eval()
        for start in starts:
            rows = np.arange(start, min(start + size, n))
            x = torch.from_numpy(data.batch(rows)).to(device)
            terms = model.training_step(x, fake)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(rows)
            count += len(rows)
    finally:
        for opt in fake.values():
            opt.zero_grad()
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(buffers[k])
        model.set_gradient_sync(sync)
        model.train(was_training)
        set_rng_state(saved_rng)
    return {k: v / count for k, v in sums.items()}
