"""Evaluation: codes for a data set and the metrics computed on them."""

from .embed import CODE_KEYS, embed, embed_splits, save_embeddings, split_view
from .metrics import PROTOCOL, cluster_ari, d_score, disentanglement_metrics, flat_scores

__all__ = [
    "CODE_KEYS",
    "PROTOCOL",
    "cluster_ari",
    "d_score",
    "disentanglement_metrics",
    "embed",
    "embed_splits",
    "flat_scores",
    "save_embeddings",
    "split_view",
]
