"""The validation split (data.val_fraction): carved from the training data only, deterministic,
disjoint, the test set untouched; what workflow.load_splits returns; old run configs (saved
before the split existed) keep training on the whole training set."""

import numpy as np
import pytest
import yaml

from dualcontrast.config import Config, build_config, load_config, load_yaml
from dualcontrast.data import Dataset, DataSplits, carve_validation, load_data
from dualcontrast.errors import DataError
from dualcontrast.workflow import load_splits


def splits(n_train=50, n_test=10):
    def data(n, offset):
        return Dataset(x=np.zeros((n, 1, 4, 4), np.float32), factors={"content": np.arange(n) % 3},
                       ids=np.arange(offset, offset + n))
    return DataSplits(train=data(n_train, 0), test=data(n_test, 1000))


def test_validation_comes_from_train_only_and_is_deterministic():
    s = splits()
    a, b = carve_validation(s, 0.2, 7), carve_validation(s, 0.2, 7)
    assert len(a.val) == 10 and len(a.train) == 40
    assert np.array_equal(a.val.ids, b.val.ids) and np.array_equal(a.train.ids, b.train.ids)
    assert not set(a.val.ids) & set(a.train.ids)
    assert sorted({*a.val.ids, *a.train.ids}) == list(range(50))
    assert a.test is s.test
    assert not np.array_equal(carve_validation(s, 0.2, 8).val.ids, a.val.ids)
    assert [name for name, _ in a.parts()] == ["train", "val", "test"]


def test_no_validation_and_bad_fractions():
    s = splits()
    assert carve_validation(s, 0.0, 0) is s and s.val is None
    assert [name for name, _ in s.parts()] == ["train", "test"]
    with pytest.raises(DataError, match="validation fraction"):
        carve_validation(s, 1.0, 0)
    with pytest.raises(DataError, match=r"data\.val_fraction=0"):
        carve_validation(splits(n_train=2), 0.5, 0)


def test_load_splits_carves_the_configured_share_and_keeps_the_test_set():
    params = {"n_train_per_cell": 4, "n_test_per_cell": 2}
    plain = load_data(name="shapes2d", params=params)
    cfg = build_config({"data": {"params": params}})
    assert cfg.data.val_fraction == 0.1
    got = load_splits(cfg)
    assert len(got.val) == round(0.1 * len(plain.train)) and len(got.train) + len(got.val) == len(plain.train)
    assert np.array_equal(got.test.ids, plain.test.ids)
    cfg.data.val_fraction = 0.0
    assert load_splits(cfg).val is None


def test_a_run_saved_before_validation_existed_keeps_its_training_set(tmp_path):
    data = Config().to_dict()
    del data["data"]["val_fraction"]
    run_config = tmp_path / "config.yaml"
    run_config.write_text(yaml.safe_dump({**data, "meta": {"command": "dualcontrast train"}}))
    assert load_config(run_config).data.val_fraction == 0.0
    user_config = tmp_path / "mine.yaml"
    user_config.write_text(yaml.safe_dump({"data": {"name": "shapes2d"}}))
    assert build_config(load_yaml(user_config)).data.val_fraction == 0.1
