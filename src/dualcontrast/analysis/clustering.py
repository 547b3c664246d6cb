"""Clusters of identities (GMM on c) and, within each, of conformations (GMM on z).

The number of components is chosen by the Bayesian information criterion unless given; the
codes are first brought into a clustering space (:func:`dualcontrast.evaluation.metrics.prepare_codes`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from ..errors import ConfigError
from ..evaluation.metrics import prepare_codes

log = logging.getLogger(__name__)


@dataclass
class Clustering:
    labels: np.ndarray  # (N,) cluster index per sample
    k: int
    bic: dict[int, float] = field(default_factory=dict)  # k -> BIC of each candidate tried
    # BIC chose the largest k tried while more were possible: the true number may be larger.
    at_bound: bool = False


def gmm_cluster(
    codes: np.ndarray,
    k: int | None = None,
    *,
    k_max: int = 10,
    seed: int = 0,
    covariance_type: str = "full",
    max_fit_samples: int | None = 20000,
    space: str = "raw",
    dims: int | None = None,
) -> Clustering:
    """GMM clustering of ``codes (N, d)`` in the clustering ``space`` (``dims`` components where it
    reduces); ``k=None`` picks k in [1, k_max] by lowest BIC.

    Fitting uses at most ``max_fit_samples`` rows (a seeded random subset) so large data sets
    stay cheap; every row is then assigned by the fitted model.
    """
    x = prepare_codes(codes, space, dims)
    n = len(x)
    fit_rows = x
    if max_fit_samples is not None and n > max_fit_samples:
        fit_rows = x[np.random.default_rng(seed).choice(n, max_fit_samples, replace=False)]
    if k is not None and not 1 <= k <= n:
        raise ConfigError(f"k={k} clusters: must be between 1 and the number of samples ({n})")
    if k is None and k_max < 1:
        raise ConfigError(f"k_max={k_max}: BIC needs at least one candidate (k_max >= 1)")
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
    chosen = best[1].n_components
    at_bound = k is None and len(candidates) > 1 and chosen == candidates[-1] and candidates[-1] < len(fit_rows)
    if at_bound:
        log.warning(
            "BIC chose k=%d, the largest k tried (BIC still falling): the data may hold more "
            "clusters; widen the search with --k-max (or k_max) above %d", chosen, chosen,
        )
    return Clustering(labels=best[1].predict(x), k=chosen, bic=bics, at_bound=at_bound)


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
