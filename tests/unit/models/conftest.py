"""Fixtures of the per-model tests: a tiny built-in data set, models built from a config as the
trainer builds them, and the checks of the model contract every method passes (code shapes,
gradients to every parameter, a few epochs through the Trainer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from dualcontrast.config import build_config
from dualcontrast.data import load_data
from dualcontrast.models import DisentanglementModel, build_model
from dualcontrast.rundir import RunDir
from dualcontrast.training import Trainer

TINY = {"n_train_per_cell": 2, "n_test_per_cell": 1}  # 40 train / 20 test images (1, 28, 28)


def config(name: str, params: dict[str, Any] | None = None, **sections: dict[str, Any]):
    layers = {"model": {"name": name, "params": params or {}},
              "data": {"name": "shapes2d", "params": TINY},
              "train": {"epochs": 2, "batch_size": 20, "device": "cpu", "progress": False}}  # fmt: skip
    for section, values in sections.items():
        layers[section] = {**layers.get(section, {}), **values}
    return build_config(layers)


@dataclass
class Checks:
    """The contract checks, as one fixture."""

    tmp_path: Any

    def build(self, name: str, params: dict[str, Any] | None = None, shape=(1, 28, 28), **sections):
        torch.manual_seed(0)
        return build_model(config(name, params, **sections), shape, "sigmoid")

    def codes(self, model: DisentanglementModel, x: torch.Tensor, dc: int | None, dz: int | None) -> None:
        """``encode`` gives ``(B, dc)`` / ``(B, dz)`` means (None where the method has no such code)
        and ``decode`` an image of the input's shape where the method decodes."""
        model.eval()
        with torch.no_grad():
            codes = model.encode(x)
        for mu, d in ((codes.c_mu, dc), (codes.z_mu, dz)):
            assert (mu is None) if d is None else (mu.shape == (x.shape[0], d))
        if model.has_decoder:
            with torch.no_grad():
                out = model.decode(codes.c_mu, codes.z_mu)
            assert out.shape == x.shape and torch.isfinite(out).all()

    def gradients(self, model: DisentanglementModel, x: torch.Tensor, *, lr: float = 1e-3) -> dict[str, torch.Tensor]:
        """One ``training_step``: finite terms with a total, and every parameter it trains moved."""
        model.train()
        optimizers = model.configure_optimizers(lr)
        trained = [p for o in optimizers.values() for g in o.param_groups for p in g["params"]]
        before = [p.detach().clone() for p in trained]
        terms = model.training_step(x, optimizers)
        assert "loss" in terms and all(torch.isfinite(v) and not v.requires_grad for v in terms.values())
        moved = [not torch.equal(b, p) for b, p in zip(before, trained, strict=True)]
        assert np.mean(moved) > 0.9, f"only {sum(moved)} of {len(moved)} parameters changed"
        return terms

    def trains(self, name: str, params: dict[str, Any] | None = None, epochs: int = 2, **sections):
        """``epochs`` epochs of the tiny set through the Trainer: one log row per epoch with finite
        terms, and a checkpoint at the last epoch."""
        cfg = config(name, params, train={"epochs": epochs}, **sections)
        splits = load_data(name="shapes2d", params=TINY)
        run = RunDir.create(self.tmp_path / "run")
        state = Trainer(cfg, run, splits, torch.device("cpu")).fit()
        rows = run.log.read_text().strip().splitlines()
        assert len(rows) == 1 + epochs and state.epoch == epochs
        header, last = rows[0].split(","), rows[-1].split(",")
        assert "loss" in header and np.isfinite(float(last[header.index("loss")]))
        assert run.last_checkpoint.exists()
        return state


@pytest.fixture
def checks(tmp_path) -> Checks:
    return Checks(tmp_path)


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.as_tensor(load_data(name="shapes2d", params=TINY).train.batch(np.arange(8)))
