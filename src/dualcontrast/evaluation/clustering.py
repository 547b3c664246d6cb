"""Clusters of codes: a Gaussian mixture with k by BIC (the paper's protocol), or spectral
clustering of a k-nearest-neighbour graph with k by the eigengap.

Content codes are trained with cosine terms: only their direction matters to the loss, and one
identity's codes need not form a Gaussian blob. On the built-in phantoms (500 per state) a GMM
with 3 components merges two identities (ARI ~0.6) although a linear classifier separates all
three (D(c|c) 0.98), and BIC splits the rest into 7-10 sub-blobs; the neighbour graph of the
unit-norm codes has one connected group per identity, which spectral clustering finds
(``benchmarks/results/cluster_space.md``). Both first bring the codes into a clustering space
(:func:`prepare_codes`).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import SpectralClustering
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KNeighborsClassifier, kneighbors_graph

from ..config import CLUSTER_METHODS, CLUSTER_SPACES
from ..errors import ConfigError

log = logging.getLogger(__name__)

# The clustering space "auto" stands for, per method (cluster_space.md).
AUTO_SPACE = {"gmm": "pca", "spectral": "l2"}


@dataclass
class Clustering:
    labels: np.ndarray  # (N,) cluster index per sample
    k: int
    # The model-selection criterion of each k tried: "bic" (lower is better) or "eigengap" (higher).
    criterion: str = "bic"
    scores: dict[int, float] = field(default_factory=dict)
    # The criterion chose the largest k tried while more were possible: the true number may be larger.
    at_bound: bool = False


def resolve_space(method: str, space: str) -> str:
    """The clustering space ``space`` means for ``method`` (``auto``: :data:`AUTO_SPACE`)."""
    return AUTO_SPACE[method] if space == "auto" else space


def prepare_codes(codes: np.ndarray, space: str = "raw", dims: int | None = None) -> np.ndarray:
    """``codes (N, d)`` in the clustering ``space``: as given, L2-normalised rows (``l2``), their
    first ``dims`` principal components (``pca``), or both (``l2-pca``).

    The contrastive terms see only a code's direction, and a full-covariance GMM in 50 dimensions
    has ~1300 parameters per component, so BIC weighs the covariance of noise directions as much
    as the groups; ``benchmarks/cluster_space.py`` measures which space separates identities.
    """
    if space not in CLUSTER_SPACES or space == "auto":
        raise ConfigError(f"unknown clustering space {space!r}; known: {', '.join(CLUSTER_SPACES)}")
    x = np.asarray(codes, dtype=np.float64)
    if space.startswith("l2"):
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if space.endswith("pca"):
        if dims is None or dims < 1:
            raise ConfigError(f"clustering space {space!r} needs a number of dimensions >= 1, got {dims}")
        centred = x - x.mean(axis=0)
        # SVD of the centred codes: the rows of vt are the principal axes, largest first.
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        x = centred @ vt[: min(dims, vt.shape[0])].T
    return x


def cluster_label(method: str, space: str, dims: int | None) -> str:
    """``"gmm, pca 10"``, ``"spectral, l2"``: a clustering as :func:`cluster_codes` runs it."""
    space = resolve_space(method, space)
    return f"{method}, {space} {dims}" if space.endswith("pca") else f"{method}, {space}"


def _candidates(k: int | None, k_max: int, n: int) -> list[int]:
    if k is not None and not 1 <= k <= n:
        raise ConfigError(f"k={k} clusters: must be between 1 and the number of samples ({n})")
    if k is None and k_max < 1:
        raise ConfigError(f"k_max={k_max}: the choice of k needs at least one candidate (k_max >= 1)")
    return [k] if k is not None else list(range(1, min(k_max, n) + 1))


def _fit_rows(n: int, cap: int | None, seed: int) -> np.ndarray | None:
    """A seeded random subset of ``cap`` rows to fit on, or None for all."""
    if cap is None or n <= cap:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def _warn_at_bound(criterion: str, k: int) -> None:
    log.warning(
        "%s chose k=%d, the largest k tried: the data may hold more clusters; widen the search "
        "with --k-max (or k_max) above %d", criterion, k, k,
    )


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
    x = prepare_codes(codes, resolve_space("gmm", space), dims)
    rows = _fit_rows(len(x), max_fit_samples, seed)
    fit = x if rows is None else x[rows]
    candidates = _candidates(k, k_max, len(fit))
    best: tuple[float, GaussianMixture] | None = None
    bics: dict[int, float] = {}
    for kk in candidates:
        gmm = GaussianMixture(n_components=kk, covariance_type=covariance_type, random_state=seed,
                              reg_covar=1e-4)  # fmt: skip
        gmm.fit(fit)
        bics[kk] = float(gmm.bic(fit))
        if best is None or bics[kk] < best[0]:
            best = (bics[kk], gmm)
    assert best is not None
    chosen = best[1].n_components
    at_bound = k is None and len(candidates) > 1 and chosen == candidates[-1] and candidates[-1] < len(fit)
    if at_bound:
        _warn_at_bound("BIC", chosen)
    return Clustering(labels=best[1].predict(x), k=chosen, criterion="bic", scores=bics, at_bound=at_bound)


def _affinity(x: np.ndarray, neighbors: int):
    """The symmetrised k-nearest-neighbour graph of the rows of ``x`` (sparse, 0/1/0.5 weights)."""
    graph = kneighbors_graph(x, n_neighbors=min(neighbors, len(x) - 1), include_self=False)
    return 0.5 * (graph + graph.T)


def eigengaps(affinity, k_max: int) -> dict[int, float]:
    """``{k: lambda_{k+1} - lambda_k}`` of the normalised graph Laplacian's smallest eigenvalues,
    k = 1 .. k_max: a graph of k loosely joined groups has k eigenvalues near 0, then a gap."""
    from scipy.sparse import diags
    from scipy.sparse.linalg import eigsh

    n = affinity.shape[0]
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    scale = diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    normalised = scale @ affinity @ scale  # eigenvalues 1 - lambda(L), largest first
    m = min(k_max + 1, n - 1)
    if m < 2:
        return {1: 0.0}
    top = eigsh(normalised, k=m, which="LA", return_eigenvectors=False, v0=np.ones(n) / np.sqrt(n))
    lam = np.sort(1.0 - top)
    return {kk + 1: float(lam[kk + 1] - lam[kk]) for kk in range(m - 1)}


def spectral_cluster(
    codes: np.ndarray,
    k: int | None = None,
    *,
    k_max: int = 10,
    seed: int = 0,
    neighbors: int = 15,
    max_fit_samples: int | None = 20000,
    space: str = "l2",
    dims: int | None = None,
) -> Clustering:
    """Spectral clustering of the ``neighbors``-nearest-neighbour graph of ``codes (N, d)`` in the
    clustering ``space``; ``k=None`` picks k in [1, k_max] by the largest eigengap.

    The graph is built on at most ``max_fit_samples`` rows (a seeded random subset); the other
    rows take the majority cluster of their ``neighbors`` nearest fitted rows.
    """
    if neighbors < 1:
        raise ConfigError(f"neighbors={neighbors}: the neighbour graph needs at least one neighbour")
    x = prepare_codes(codes, resolve_space("spectral", space), dims)
    rows = _fit_rows(len(x), max_fit_samples, seed)
    fit = x if rows is None else x[rows]
    candidates = _candidates(k, k_max, len(fit))
    if len(fit) < 3:
        return Clustering(labels=np.zeros(len(x), dtype=np.int64), k=1, criterion="eigengap")
    affinity = _affinity(fit, neighbors)
    gaps: dict[int, float] = {}
    if k is None:
        gaps = {kk: g for kk, g in eigengaps(affinity, candidates[-1]).items() if kk in candidates}
        chosen = max(gaps, key=lambda kk: gaps[kk])
    else:
        chosen = k
    if chosen == 1:
        labels = np.zeros(len(fit), dtype=np.int64)
    else:
        with warnings.catch_warnings():
            # A graph of well separated groups is not connected: that is the aim, not a fault.
            warnings.filterwarnings("ignore", message="Graph is not fully connected")
            model = SpectralClustering(n_clusters=chosen, affinity="precomputed", assign_labels="cluster_qr",
                                       random_state=seed)  # fmt: skip
            labels = model.fit_predict(affinity).astype(np.int64)
    if rows is not None:
        vote = KNeighborsClassifier(n_neighbors=min(neighbors, len(fit))).fit(fit, labels)
        full = vote.predict(x)
        full[rows] = labels
        labels = full
    at_bound = k is None and len(candidates) > 1 and chosen == candidates[-1] and candidates[-1] < len(fit) - 1
    if at_bound:
        _warn_at_bound("the eigengap", chosen)
    return Clustering(labels=labels, k=chosen, criterion="eigengap", scores=gaps, at_bound=at_bound)


def cluster_codes(
    codes: np.ndarray,
    k: int | None = None,
    *,
    method: str = "spectral",
    space: str = "auto",
    dims: int | None = 10,
    neighbors: int = 15,
    k_max: int = 10,
    seed: int = 0,
    max_fit_samples: int | None = 20000,
) -> Clustering:
    """Clusters of ``codes`` by ``method`` (``gmm`` | ``spectral``) in ``space``; k given or chosen."""
    if method not in CLUSTER_METHODS:
        raise ConfigError(f"unknown clustering method {method!r}; known: {', '.join(CLUSTER_METHODS)}")
    common = {"k_max": k_max, "seed": seed, "max_fit_samples": max_fit_samples, "space": space, "dims": dims}
    if method == "gmm":
        return gmm_cluster(codes, k, **common)
    return spectral_cluster(codes, k, neighbors=neighbors, **common)
