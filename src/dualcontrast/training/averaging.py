"""An exponential moving average of a model's weights (``train.ema``).

The contrastive terms make the validation scores swing from one epoch to the next by a few
points (benchmarks/results/ema.md); an average of the weights over the last ~1 / (1 - decay)
training batches smooths the codes, as BYOL's and MoCo's target networks do. Training goes on
with the raw weights; validation, best.pt's choice and every command that loads the run
(embed, evaluate, analyze) use the average.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


class WeightAverage:
    """The average of every floating-point entry of ``model.state_dict()`` (weights and buffers,
    so batch-norm statistics are averaged with the weights they belong to); integer entries
    (batch counts) are copied.

    The first steps use the smaller decay ``(1 + n) / (10 + n)`` (n: updates so far), as
    TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``: an average started at the
    random initialisation would otherwise remember it for thousands of steps.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"train.ema must be in (0, 1) (or 0: off), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
        live = model.state_dict()
        floats = [k for k, v in self.state.items() if v.is_floating_point()]
        return [self.state[k] for k in floats], [live[k] for k in floats], [k for k in self.state if k not in floats]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights in (after a training batch)."""
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        averaged, live, others = self._pairs(model)
        torch._foreach_lerp_(averaged, live, 1.0 - decay)
        current = model.state_dict()
        for k in others:
            self.state[k].copy_(current[k])

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own again after it."""
        live = model.state_dict()
        saved = {k: v.clone() for k, v in live.items()}
        for k, v in live.items():
            v.copy_(self.state[k])
        try:
            yield
        finally:
            for k, v in live.items():
                v.copy_(saved[k])

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "state": self.state}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.updates = int(saved["updates"])
        for k, v in saved["state"].items():
            self.state[k].copy_(v)
