"""Config: strict keys, types, overrides, YAML round trip with provenance."""

import pytest
import yaml

from dualcontrast.config import build_config, load_config, load_yaml, parse_override, save_config
from dualcontrast.errors import ConfigError


def test_defaults_are_the_reference_hyperparameters():
    cfg = build_config()
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.lr_step, cfg.train.lr_gamma) == (1e-4, 100, 50, 0.1)
    assert cfg.loss.gamma_c == cfg.loss.gamma_z == 0.01
    assert cfg.transform == {"name": "rotation", "max_angle": 90.0}


def test_unknown_key_is_an_error_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.epoch' \(did you mean 'epochs'\?\)"):
        build_config({"train": {"epoch": 3}})
    with pytest.raises(ConfigError, match="unknown config key 'trian'"):
        build_config({"trian": {}})


@pytest.mark.parametrize(
    "layer,message",
    [
        ({"train": {"epochs": "many"}}, "train.epochs must be an integer"),
        ({"train": {"epochs": 2.5}}, "train.epochs must be an integer"),
        ({"train": {"amp": "yes"}}, "train.amp must be true or false"),
        ({"loss": {"gamma_c": "x"}}, "loss.gamma_c must be a number"),
        ({"train": {"lr": None}}, "train.lr cannot be null"),
        ({"data": "mnist"}, "data must be a mapping"),
        # Checked when the config is built, before a training reads any data.
        ({"loss": {"swap_content": "batch"}}, "loss.swap_content must be one of view, neighbour"),
        ({"loss": {"cosine_scale": "sum"}}, "loss.cosine_scale must be"),
    ],
)
def test_wrong_types_are_errors(layer, message):
    with pytest.raises(ConfigError, match=message):
        build_config(layer)


def test_overrides_parse_yaml_values_and_nest():
    assert parse_override("train.epochs=5") == {"train": {"epochs": 5}}
    assert parse_override("data.path=/x/y.npz") == {"data": {"path": "/x/y.npz"}}
    assert parse_override("data.params.size=64") == {"data": {"params": {"size": 64}}}
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override("train.epochs")


def test_exponent_without_a_dot_is_a_number():
    assert build_config(parse_override("train.lr=5e-4")).train.lr == 5e-4


def test_later_layers_win_and_freeform_dicts_merge():
    cfg = build_config({"train": {"epochs": 3}}, {"train": {"epochs": 7}}, parse_override("transform.max_angle=45"))
    assert cfg.train.epochs == 7
    assert cfg.transform == {"name": "rotation", "max_angle": 45}
    cfg = build_config(parse_override("transform.name=blur"))
    assert cfg.transform == {"name": "blur"}


def test_save_and_load_round_trip_with_provenance(tmp_path):
    cfg = build_config({"train": {"epochs": 4}, "data": {"params": {"size": 32}}})
    path = tmp_path / "config.yaml"
    save_config(cfg, path, command=["dualcontrast", "train", "--epochs", "4"])
    raw = yaml.safe_load(path.read_text())
    assert raw["meta"]["command"] == "dualcontrast train --epochs 4"
    assert "dualcontrast_version" in raw["meta"]
    assert load_config(path) == cfg


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(scalar)
