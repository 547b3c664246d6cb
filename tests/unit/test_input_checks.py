"""Range checks of config keys, transform parameter types, label checks at load time, the BIC-at-bound
flag and the small-sample flag of the metrics."""

import logging
import re

import numpy as np
import pytest

from dualcontrast.analysis.clustering import gmm_cluster
from dualcontrast.config import build_config, iter_keys
from dualcontrast.data.loading import load_labels
from dualcontrast.errors import ConfigError, DataError
from dualcontrast.evaluation.metrics import small_samples


def test_every_key_has_help():
    assert all(f.metadata.get("help") for _, f, _ in iter_keys())


@pytest.mark.parametrize("override", [{"train": {"lr": 0}}, {"train": {"lr_gamma": 2.0}},
                                      {"eval": {"batch_size": 0}}, {"loss": {"gamma_z": -0.1}},
                                      {"data": {"test_fraction": 0.0}}, {"train": {"epochs": 0}},
                                      {"eval": {"cluster_space": "umap"}}, {"eval": {"cluster_dims": 0}},
                                      {"eval": {"cluster_method": "kmeans"}}, {"eval": {"cluster_neighbors": 0}},
                                      {"train": {"select": "sap_c"}}])
def test_out_of_range_values_name_the_key(override):
    section, values = next(iter(override.items()))
    with pytest.raises(ConfigError, match=re.escape(f"{section}.{next(iter(values))}")):
        build_config(override)


def test_transform_parameters_are_type_checked():
    with pytest.raises(ConfigError, match=r"transform\.max_angle must be a number"):
        build_config({"transform": {"max_angle": "abc"}})
    assert build_config({"transform": {"max_angle": "4.5e1"}}).transform["max_angle"] == 45.0
    with pytest.raises(ConfigError, match="unknown"):
        build_config({"transform": {"name": "warp9"}})


def test_float_labels_are_rejected(tmp_path):
    np.save(tmp_path / "y.npy", np.array([0.5, 1.0, 2.0]))
    with pytest.raises(DataError, match="integers"):
        load_labels(tmp_path / "y.npy", 3)
    np.save(tmp_path / "y.npy", np.array([0.0, 1.0, 2.0]))
    assert load_labels(tmp_path / "y.npy", 3).dtype == np.int64


def test_bic_at_the_bound_is_flagged_and_logged(caplog):
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.normal(m, 0.05, (30, 2)) for m in range(5)])
    with caplog.at_level(logging.WARNING):
        result = gmm_cluster(codes, k_max=3)
    assert result.k == 3 and result.at_bound
    assert "--k-max" in caplog.text
    assert not gmm_cluster(codes, k_max=8).at_bound


@pytest.mark.parametrize(("k", "k_max"), [(0, 10), (500, 10), (None, 0)])
def test_bad_k_is_a_config_error(k, k_max):
    with pytest.raises(ConfigError):
        gmm_cluster(np.zeros((50, 2)), k, k_max=k_max)


def test_small_classes_are_flagged():
    train = {"content": np.repeat([0, 1], [50, 5])}
    test = {"content": np.repeat([0, 1], [30, 30])}
    assert small_samples(train, test) == {"train/content": {"1": 5}}
    assert small_samples(test, test) == {}
