"""Clusters of identities (GMM on c) and, within each, of conformations (GMM on z).

The number of components is chosen by the Bayesian information criterion unless given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture


@dataclass
class Clustering:
    labels: np.ndarray  # (N,) cluster index per sample
    k: int
    bic: dict[int, float] = field(default_factory=dict)  # k -> BIC of each candidate tried


def gmm_cluster(
    codes: np.ndarray,
    k: int | None = None,
    *,
    k_max: int = 10,
    seed: int = 0,
    covariance_type: str = "full",
    max_fit_samples: int | None = 20000,
) -> Clustering:
    """GMM clustering of ``codes (N, d)``; ``k=None`` picks k in [1, k_max] by lowest BIC.

    Fitting uses at most ``max_fit_samples`` rows (a seeded random subset) so large data sets
    stay cheap; every row is then assigned by the fitted model.
    """
    x = np.asarray(codes, dtype=np.float64)
    n = len(x)
    fit_rows = x
    if max_fit_samples is not None and n > max_fit_samples:
        fit_rows = x[np.random.default_rng(seed).choice(n, max_fit_samples, replace=False)]
    candidates = [k] if k is not None else list(range(1, min(k_max, len(fit_rows)) + 1))
    best: tuple[float, GaussianMixture] | None = None
    bics: dict[int, float] = {}
    for kk in candidates:
        gmm = GaussianMixture(n_components=kk, covariance_type=covariance_type, random_state=seed,
                              reg_covar=1e-4)
        gmm.fit(fit_rows)
        bics[kk] = float(gmm.bic(fit_rows))
        if best is None or bics[kk] < best[0]:
            best = (bics[kk], gmm)
    assert best is not None
    return Clustering(labels=best[1].predict(x), k=best[1].n_components, bic=bics)


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
            result = gmm_cluster(codes[idx], k, k_max=k_max, seed=seed)
        per_group[int(g)] = result
        labels[idx] = result.labels + offset
        offset += result.k
    return labels, per_group


def ari(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(adjusted_rand_score(truth, pred))
