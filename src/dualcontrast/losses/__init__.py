"""Loss terms as pure functions with documented shapes."""

from .contrastive import (
    abs_cosine,
    cosine_distance_loss,
    cosine_similarity_loss,
    derangement,
    info_nce,
    nearest_other,
)
from .independence import cross_correlation_loss
from .vae import gaussian_kl, kl_term, reconstruction_mse, reference_kl, vae_objective, vae_terms

__all__ = [
    "abs_cosine",
    "cosine_distance_loss",
    "cosine_similarity_loss",
    "cross_correlation_loss",
    "derangement",
    "gaussian_kl",
    "info_nce",
    "kl_term",
    "nearest_other",
    "reconstruction_mse",
    "reference_kl",
    "vae_objective",
    "vae_terms",
]
