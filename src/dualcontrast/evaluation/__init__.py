"""Evaluation: codes for a data set and the metrics computed on them."""

from .embed import CODE_KEYS, embed, embed_splits, save_embeddings, split_view
from .metrics import PROTOCOL, d_score, disentanglement_metrics, gmm_ari

__all__ = [
    "CODE_KEYS",
    "PROTOCOL",
    "d_score",
    "disentanglement_metrics",
    "embed",
    "embed_splits",
    "gmm_ari",
    "save_embeddings",
    "split_view",
]
