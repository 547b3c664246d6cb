"""GMM clustering with BIC model selection (raw and reduced spaces), and clustering within groups."""

import numpy as np

from dualcontrast.analysis.clustering import ari, cluster_within, gmm_cluster


def blobs(k, n_per, d=3, spread=8.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (k, d))
    labels = np.repeat(np.arange(k), n_per)
    return centres[labels] + rng.normal(0, 1, (k * n_per, d)), labels


def test_bic_finds_the_number_of_blobs():
    for k in (1, 3, 5):
        x, truth = blobs(k, 80, seed=k)
        result = gmm_cluster(x, k_max=7)
        assert result.k == k
        assert set(result.bic) == set(range(1, 8))
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


def test_clustering_within_groups_gives_globally_unique_labels():
    xa, ta = blobs(2, 60, seed=2)
    xb, tb = blobs(3, 60, seed=3)
    x = np.vstack([xa, xb])
    groups = np.r_[np.zeros(len(xa), int), np.ones(len(xb), int)]
    truth = np.r_[ta, tb + 2]
    labels, per_group = cluster_within(x, groups, k_max=5)
    assert per_group[0].k == 2 and per_group[1].k == 3
    assert len(np.unique(labels)) == 5
    assert ari(labels, truth) > 0.95


def test_tiny_groups_are_one_cluster():
    x = np.random.default_rng(0).normal(size=(5, 2))
    labels, per_group = cluster_within(x, np.zeros(5, int), min_size=10)
    assert per_group[0].k == 1 and (labels == 0).all()
