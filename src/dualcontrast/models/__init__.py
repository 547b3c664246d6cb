"""Methods: DualContrast, its ablations and the baselines, all behind one contract."""

from __future__ import annotations

from collections.abc import Sequence

from ..config import Config
from . import disco, harmony, hydra, simclr, spatial_vae, vitae  # noqa: F401  (importing registers the baselines)
from .base import MODELS, Codes, DisentanglementModel, reparameterize
from .dualcontrast import ABLATIONS, DualContrast


def build_model(cfg: Config, sample_shape: Sequence[int], output: str) -> DisentanglementModel:
    """The model named by ``cfg.model.name`` for samples of ``sample_shape``."""
    return MODELS.get(cfg.model.name).from_config(cfg, sample_shape, output)


__all__ = [
    "ABLATIONS",
    "MODELS",
    "Codes",
    "DisentanglementModel",
    "DualContrast",
    "build_model",
    "reparameterize",
]
