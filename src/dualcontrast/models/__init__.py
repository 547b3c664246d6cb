"""Methods: DualContrast, its ablations and the baselines, all behind one contract."""

from __future__ import annotations

from . import disco, harmony, hydra, simclr, spatial_vae, vitae  # noqa: F401  (importing registers the baselines)
from .base import MODELS, Codes, DisentanglementModel, build_model, load_trained_model, reparameterize
from .dualcontrast import ABLATIONS, DualContrast

__all__ = [
    "ABLATIONS",
    "MODELS",
    "Codes",
    "DisentanglementModel",
    "DualContrast",
    "build_model",
    "load_trained_model",
    "reparameterize",
]
