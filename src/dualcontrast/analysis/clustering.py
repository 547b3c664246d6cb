"""Clusters of identities (on c, by :func:`~dualcontrast.evaluation.clustering.cluster_codes`:
spectral or GMM) and, within each, of conformations (GMM on z, k by BIC unless given).

The clustering methods themselves live in :mod:`dualcontrast.evaluation.clustering`, which the
metrics (``ari_c``) use too; they are re-exported here for analysis code.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score

from ..evaluation.clustering import Clustering, cluster_codes, gmm_cluster, spectral_cluster

__all__ = ["Clustering", "ari", "cluster_codes", "cluster_within", "gmm_cluster", "spectral_cluster"]


def cluster_within(
    codes: np.ndarray,
    groups: np.ndarray,
    k: int | None = None,
    *,
    k_max: int = 8,
    min_size: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, dict[int, Clustering]]:
    """Cluster ``codes`` separately inside each group (e.g. z within each content cluster).

    Returns global labels (unique across groups) and each group's clustering. Groups with
    fewer than ``min_size`` members form a single cluster.
    """
    labels = np.empty(len(codes), dtype=np.int64)
    per_group: dict[int, Clustering] = {}
    offset = 0
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        if len(idx) < min_size:
            result = Clustering(labels=np.zeros(len(idx), dtype=np.int64), k=1)
        else:
            # A given k is capped per group: a small identity cannot hold more conformations than members.
            result = gmm_cluster(codes[idx], None if k is None else min(k, len(idx)), k_max=k_max, seed=seed)
        per_group[int(g)] = result
        labels[idx] = result.labels + offset
        offset += result.k
    return labels, per_group


def ari(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(adjusted_rand_score(truth, pred))
