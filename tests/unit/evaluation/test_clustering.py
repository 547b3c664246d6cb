"""Clustering of codes (evaluation.clustering): the clustering spaces; GMM with k by BIC (raw and
reduced spaces, subsampled fits); spectral clustering of the neighbour graph, whose eigengap is
checked against a dense hand-written Laplacian, which finds the number of groups, separates groups
no Gaussian fits, and labels rows left out of a subsampled graph; the method switch."""

import numpy as np
import pytest
from sklearn.datasets import make_moons
from sklearn.decomposition import PCA

from dualcontrast.analysis.clustering import ari
from dualcontrast.errors import ConfigError
from dualcontrast.evaluation.clustering import _affinity as affinity
from dualcontrast.evaluation.clustering import (
    cluster_codes,
    cluster_label,
    eigengaps,
    gmm_cluster,
    prepare_codes,
    resolve_space,
    spectral_cluster,
)


def blobs(k, n_per, d=3, spread=8.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (k, d))
    labels = np.repeat(np.arange(k), n_per)
    return centres[labels] + rng.normal(0, 1, (k * n_per, d)), labels


def test_clustering_spaces_l2_and_pca():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)) * np.linspace(5, 0.1, 12)
    np.testing.assert_array_equal(prepare_codes(x, "raw"), x)
    np.testing.assert_allclose(np.linalg.norm(prepare_codes(x, "l2"), axis=1), 1.0)
    reduced = prepare_codes(x, "pca", 3)
    reference = PCA(3).fit_transform(x)
    np.testing.assert_allclose(np.abs(reduced), np.abs(reference), atol=1e-8)  # equal up to each axis' sign
    assert prepare_codes(x, "l2-pca", 50).shape == (200, 12)  # at most the code size
    with pytest.raises(ConfigError, match="unknown clustering space 'umap'"):
        prepare_codes(x, "umap")
    with pytest.raises(ConfigError, match="needs a number of dimensions"):
        prepare_codes(x, "pca", None)


def test_bic_finds_the_number_of_blobs():
    for k in (1, 3, 5):
        x, truth = blobs(k, 80, seed=k)
        result = gmm_cluster(x, k_max=7)
        assert result.k == k
        assert result.criterion == "bic" and set(result.scores) == set(range(1, 8))
        if k > 1:
            assert ari(result.labels, truth) > 0.95


def test_bic_in_the_leading_principal_components_ignores_noise_dimensions():
    # Three blobs in 3 dimensions with 30 dimensions of unit noise appended, as a content code
    # whose unused dimensions carry noise: BIC in the first 3 components finds the 3 blobs.
    x, truth = blobs(3, 60, seed=2)
    x = np.hstack([x, np.random.default_rng(3).normal(size=(len(x), 30))])
    result = gmm_cluster(x, k_max=6, space="pca", dims=3)
    assert result.k == 3 and ari(result.labels, truth) > 0.95


def test_fixed_k_and_subsampled_fit_still_label_every_row():
    x, truth = blobs(4, 300, seed=1)
    result = gmm_cluster(x, k=4, max_fit_samples=200)
    assert result.k == 4 and len(result.labels) == len(x)
    assert ari(result.labels, truth) > 0.95


def test_eigengaps_match_a_dense_laplacian():
    x, _ = blobs(3, 40, seed=4)
    graph = affinity(x, 8)
    dense = graph.toarray()
    d = dense.sum(axis=1)
    laplacian = np.eye(len(x)) - dense / np.sqrt(np.outer(d, d))
    lam = np.sort(np.linalg.eigvalsh(laplacian))
    gaps = eigengaps(graph, 6)
    assert set(gaps) == set(range(1, 7))
    np.testing.assert_allclose([gaps[k] for k in range(1, 7)], np.diff(lam[:7]), atol=1e-6)


def test_the_eigengap_finds_the_number_of_groups():
    for k in (1, 2, 4):
        x, truth = blobs(k, 80, seed=k)
        result = spectral_cluster(x, k_max=7, space="raw")
        assert result.k == k and result.criterion == "eigengap"
        if k > 1:
            assert ari(result.labels, truth) > 0.95


def test_spectral_separates_groups_no_gaussian_fits():
    # Two interleaved half-moons: each group hangs together, neither is a Gaussian blob. (The
    # eigengap is not asked for k here: along a curve the Laplacian's eigenvalues grow steadily.)
    x, truth = make_moons(400, noise=0.05, random_state=0)
    assert ari(spectral_cluster(x, 2, space="raw").labels, truth) > 0.95
    assert ari(gmm_cluster(x, 2, space="raw").labels, truth) < 0.6


def test_a_subsampled_graph_still_labels_every_row():
    x, truth = blobs(3, 300, seed=5)
    result = spectral_cluster(x, max_fit_samples=200, space="raw")
    assert result.k == 3 and len(result.labels) == len(x)
    assert ari(result.labels, truth) > 0.95


def test_method_switch_and_auto_space():
    assert resolve_space("spectral", "auto") == "l2" and resolve_space("gmm", "auto") == "pca"
    assert cluster_label("gmm", "auto", 10) == "gmm, pca 10" and cluster_label("spectral", "auto", 10) == "spectral, l2"
    x, truth = blobs(3, 50, seed=6)
    assert cluster_codes(x, 3, method="gmm", space="raw").criterion == "bic"
    assert ari(cluster_codes(x, 3, method="spectral", space="raw").labels, truth) > 0.95
    with pytest.raises(ConfigError, match="unknown clustering method 'kmeans'"):
        cluster_codes(x, method="kmeans")
    with pytest.raises(ConfigError, match="neighbors=0"):
        spectral_cluster(x, neighbors=0)
