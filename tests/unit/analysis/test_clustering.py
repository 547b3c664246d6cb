"""Clustering within groups (conformations inside each content cluster): labels unique across groups,
tiny groups kept whole. The clustering methods themselves: tests/unit/evaluation/test_clustering.py."""

import numpy as np

from dualcontrast.analysis.clustering import ari, cluster_within


def blobs(k, n_per, d=3, spread=8.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (k, d))
    labels = np.repeat(np.arange(k), n_per)
    return centres[labels] + rng.normal(0, 1, (k * n_per, d)), labels


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
