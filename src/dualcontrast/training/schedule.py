"""Learning-rate schedules (``train.schedule``): one scheduler per optimizer of a method.

- ``step`` (default): the paper's ``StepLR(lr_step, lr_gamma)``, stepped once per epoch. Tuned
  for 150-200 GPU epochs at lr 1e-4; in a CPU budget of tens of epochs it never decays and
  learns slowly (METHOD.md: lr 1e-4 learns nothing in a few hundred steps on phantoms).
- ``cosine``: linear warm-up over ``warmup_epochs`` to ``train.lr``, then a half cosine to ~0 at
  the last batch; stepped every batch, so short runs get a smooth curve.
- ``onecycle``: the learning-rate curve of Smith & Topin's one-cycle policy as torch's
  ``OneCycleLR`` draws it (cosine rise from ``lr / 25`` to ``lr`` over ``warmup_epochs``,
  default 30% of the run, then cosine fall to ``lr / 2.5e5``); stepped every batch. Adam's betas
  are left alone (no momentum cycling), so the optimizer is the one the other schedules use.

``cosine`` and ``onecycle`` are closed-form functions of the batch counter (``LambdaLR``): a
checkpoint holds the counter, so a resumed run continues the same lr sequence bit for bit; a
resume that changes ``train.epochs`` stretches the rest of the curve to the new length.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..config import TrainConfig
from ..errors import ConfigError

SCHEDULES = ("step", "cosine", "onecycle")

#: torch OneCycleLR's defaults: start at lr / 25, end at lr / (25 * 1e4)
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4
ONECYCLE_RISE = 0.3


def _cos_between(start: float, end: float, frac: float) -> float:
    """Half-cosine from ``start`` (frac 0) to ``end`` (frac 1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, frac))))


def cosine_factor(total: int, warmup: int) -> Callable[[int], float]:
    """Factor on ``lr`` for batch ``t`` (0-based) of ``total``: rises linearly over ``warmup``
    batches (``(t + 1) / (warmup + 1)``), reaches 1 at batch ``warmup``, then falls as a half
    cosine to ~0 at batch ``total - 1``."""

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / (warmup + 1)
        return _cos_between(1.0, 0.0, (t - warmup) / max(1, total - warmup))

    return factor


def onecycle_factor(total: int, rise: int) -> Callable[[int], float]:
    """Factor on ``lr`` for batch ``t`` (0-based) of ``total``: cosine from ``1 / 25`` to 1 over
    ``rise`` batches, then cosine to ``1 / 2.5e5`` at the last batch."""
    low, final = 1.0 / ONECYCLE_DIV, 1.0 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)

    def factor(t: int) -> float:
        if t < rise:
            return _cos_between(low, 1.0, t / rise)
        return _cos_between(1.0, final, (t - rise) / max(1, total - 1 - rise))

    return factor


def build_schedulers(
    tc: TrainConfig, optimizers: dict[str, torch.optim.Optimizer], steps_per_epoch: int
) -> tuple[dict[str, torch.optim.lr_scheduler.LRScheduler], str]:
    """One scheduler per optimizer, and when to step them: ``"epoch"`` or ``"batch"``.

    ``steps_per_epoch``: the batches of one epoch (of one process in a distributed run).
    Constructing a per-batch schedule sets every optimizer's lr to the first batch's value.
    """
    if tc.schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got {tc.schedule!r}")
    if tc.schedule == "step":
        schedulers = {
            k: torch.optim.lr_scheduler.StepLR(o, step_size=tc.lr_step, gamma=tc.lr_gamma)
            for k, o in optimizers.items()
        }
        return schedulers, "epoch"
    if tc.warmup_epochs is not None and tc.warmup_epochs >= tc.epochs:
        raise ConfigError(
            f"train.warmup_epochs ({tc.warmup_epochs:g}) must be shorter than train.epochs ({tc.epochs})"
        )
    steps = max(1, steps_per_epoch)
    total = tc.epochs * steps
    if tc.schedule == "cosine":
        factor = cosine_factor(total, round((tc.warmup_epochs or 0.0) * steps))
    else:
        rise_epochs = tc.warmup_epochs if tc.warmup_epochs is not None else ONECYCLE_RISE * tc.epochs
        factor = onecycle_factor(total, max(1, round(rise_epochs * steps)))
    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in optimizers.items()}
    return schedulers, "batch"


def resync(schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]) -> None:
    """After loading a checkpoint: set the lr of per-batch schedules from their closed form at the
    restored batch counter. Unchanged settings give the very lr the checkpoint holds; a resume
    that changes ``train.epochs`` then starts on the re-stretched curve from its first batch."""
    for s in schedulers.values():
        if isinstance(s, torch.optim.lr_scheduler.LambdaLR):
            lrs = [base * f(s.last_epoch) for base, f in zip(s.base_lrs, s.lr_lambdas, strict=True)]
            for group, lr in zip(s.optimizer.param_groups, lrs, strict=True):
                group["lr"] = lr
