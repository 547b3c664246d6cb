"""Metrics on representations known to be perfect, useless and duplicated."""

import numpy as np
import pytest

from dualcontrast.evaluation import cluster_ari, d_score, disentanglement_metrics


def factors(n, k_content=5, k_transform=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k_content, n), rng.integers(0, k_transform, n)


def one_hot(labels, k, rng, noise=0.05):
    return np.eye(k)[labels] + noise * rng.standard_normal((len(labels), k))


def codes(kind, content, transform, seed):
    rng = np.random.default_rng(seed)
    c_perfect, z_perfect = one_hot(content, 5, rng), one_hot(transform, 4, rng)
    if kind == "perfect":
        return {"c_mu": c_perfect, "z_mu": z_perfect, "content": content, "transform": transform}
    if kind == "useless":
        return {"c_mu": rng.standard_normal((len(content), 5)), "z_mu": rng.standard_normal((len(content), 4)),
                "content": content, "transform": transform}
    if kind == "duplicated":  # both codes hold both factors
        both = np.hstack([c_perfect, z_perfect])
        return {"c_mu": both, "z_mu": both.copy(), "content": content, "transform": transform}
    if kind == "swapped":
        return {"c_mu": z_perfect, "z_mu": c_perfect, "content": content, "transform": transform}
    raise ValueError(kind)


def metrics(kind):
    ctr, ttr = factors(2000, seed=1)
    cte, tte = factors(1000, seed=2)
    return disentanglement_metrics(codes(kind, ctr, ttr, 3), codes(kind, cte, tte, 4))


def test_perfect_codes_score_perfectly():
    m = metrics("perfect")
    assert m["d_c_c"] == pytest.approx(1.0) and m["d_z_z"] == pytest.approx(1.0)
    assert m["d_c_z"] < 0.3 and m["d_z_c"] < 0.35  # chance: 0.2 and 0.25
    assert m["sap_c"] > 0.7 and m["sap_z"] > 0.65
    assert m["ari_c"] > 0.95


def test_useless_codes_score_at_chance():
    m = metrics("useless")
    for key, chance in (("d_c_c", 0.2), ("d_c_z", 0.2), ("d_z_z", 0.25), ("d_z_c", 0.25)):
        assert abs(m[key] - chance) < 0.06, key
    assert m["sap_c"] < 0.06 and m["sap_z"] < 0.06
    assert abs(m["ari_c"]) < 0.05


def test_duplicated_codes_have_no_separation():
    m = metrics("duplicated")
    assert m["d_c_c"] == pytest.approx(1.0) and m["d_c_z"] == pytest.approx(1.0)
    assert m["sap_c"] == pytest.approx(0.0) and m["sap_z"] == pytest.approx(0.0)


def test_swapped_codes_are_informative_but_in_the_wrong_place():
    m = metrics("swapped")
    assert m["d_c_c"] < 0.3 and m["d_c_z"] == pytest.approx(1.0)
    assert m["sap_c"] > 0.7  # SAP is symmetric: the gap, not its sign


def test_missing_labels_and_codes_are_skipped():
    ctr, _ = factors(300)
    cte, _ = factors(200, seed=5)
    rng = np.random.default_rng(0)
    train = {"c_mu": one_hot(ctr, 5, rng), "content": ctr}  # no z code, no transform labels
    test = {"c_mu": one_hot(cte, 5, rng), "content": cte}
    m = disentanglement_metrics(train, test)
    assert set(m) == {"d_c_c", "d_c_c_raw", "ari_c"}


def test_d_score_subsampling_is_deterministic_and_bounded():
    ctr, _ = factors(3000)
    cte, _ = factors(500, seed=9)
    rng = np.random.default_rng(1)
    xtr, xte = one_hot(ctr, 5, rng, noise=1.0), one_hot(cte, 5, rng, noise=1.0)
    a = d_score(xtr, ctr, xte, cte, max_fit_samples=200, seed=3)
    b = d_score(xtr, ctr, xte, cte, max_fit_samples=200, seed=3)
    assert a == b and 0.0 <= a <= 1.0


def test_d_score_needs_two_classes():
    with pytest.raises(ValueError, match="two classes"):
        d_score(np.zeros((5, 2)), np.zeros(5), np.zeros((5, 2)), np.zeros(5))


@pytest.mark.parametrize("method", ["gmm", "spectral"])
def test_cluster_ari_on_separated_clusters(method):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 100)
    # Away from the origin, so the groups stay apart in every space (l2 keeps only directions).
    centres = np.array([[10, 0], [0, 10], [-10, -10]])
    x = centres[labels] + rng.standard_normal((300, 2))
    assert cluster_ari(x, labels, method=method) == pytest.approx(1.0)


def test_within_content_scores_and_flattening():
    from dualcontrast.evaluation import flat_scores

    ctr, ttr = factors(2000, seed=1)
    cte, tte = factors(1000, seed=2)
    m = disentanglement_metrics(codes("perfect", ctr, ttr, 3), codes("perfect", cte, tte, 4))
    assert set(m["within_content"]) == {"0", "1", "2", "3", "4"}
    for scores in m["within_content"].values():
        assert scores["d_z_z"] == pytest.approx(1.0) and scores["d_z_c"] < 0.5
    flat = flat_scores(m)
    assert flat["d_z_z@content=2"] == m["within_content"]["2"]["d_z_z"]
    assert all(isinstance(v, float) for v in flat.values())


def test_gmm_ari_in_a_reduced_space_finds_groups_that_noise_dimensions_hide():
    # Three groups along two directions, plus 40 noise dimensions of the same scale as the groups'
    # spread: the full 42-d GMM on 150 points is ill-posed, the first 2 principal components are not.
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 50)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    x = np.hstack([centres[labels] + rng.normal(size=(150, 2)), rng.normal(size=(150, 40))])
    assert cluster_ari(x, labels, method="gmm", space="raw") < 0.6
    assert cluster_ari(x, labels, method="gmm", space="pca", dims=2) > 0.95
