"""Bad input on the command line ends in one line naming the option or file, exit code 2, no traceback;
every flag's help shows its default; `dualcontrast config` lists every key."""

import argparse

import numpy as np
import pytest
import yaml

from dualcontrast.cli.main import build_parser, main
from dualcontrast.config import iter_keys

TINY = ["--set", "data.params.n_train_per_cell=4", "--set", "data.params.n_test_per_cell=2",
        "--set", "eval.projection=none", "--set", "train.progress=false", "--no-eval", "--epochs", "1"]


def _fails_cleanly(capsys, argv, *needles):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--batch-size", "1000"], "fewer than one batch"),
        (["--batch-size", "-5"], "--batch-size"),
        (["--lr", "-1"], "--lr"),
        (["--set", "train.batch_size=1"], "train.batch_size"),
        (["--set", "data.max_samples=-3"], "data.max_samples"),
        (["--set", "data.test_fraction=1.5"], "data.test_fraction"),
        (["--set", "loss.gamma_c=-1"], "loss.gamma_c"),
        (["--set", "model.content_dim=0"], "model.content_dim"),
        (["--set", "transform.max_angle=abc"], "transform.max_angle"),
        (["--set", "transform.nonsense=1"], "transform.nonsense"),
    ],
)
def test_train_rejects_bad_settings(capsys, tmp_path, extra, needle):
    _fails_cleanly(capsys, ["train", *TINY, "-o", str(tmp_path / "run"), *extra], needle)
    assert not (tmp_path / "run").exists()


def test_divergence_names_both_causes(capsys, tmp_path):
    np.save(tmp_path / "huge.npy", np.full((40, 28, 28), 1e30, np.float32))
    err = _fails_cleanly(capsys, ["train", "--data", str(tmp_path / "huge.npy"), *TINY, "-o", str(tmp_path / "r"),
                                  "--batch-size", "20"], "diverged")
    assert "train.lr" in err and "data.normalize" in err


def test_float_labels_are_rejected_at_load_time(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((30, 8, 8)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.linspace(0, 1, 30))
    _fails_cleanly(capsys, ["train", "--data", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                            *TINY, "-o", str(tmp_path / "r")], "y.npy", "integers")


def test_corrupted_npy_header_is_a_data_error(capsys, tmp_path):
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros((20, 8, 8), np.float32))
    raw = bytearray(path.read_bytes())
    raw[20:30] = b"{((((((((("
    path.write_bytes(bytes(raw))
    _fails_cleanly(capsys, ["train", "--data", str(path), *TINY, "-o", str(tmp_path / "r")], "bad.npy")


@pytest.mark.parametrize("argv", [["analyze", "RUN", "--k", "0"], ["analyze", "RUN", "--k-max", "0"],
                                  ["analyze", "RUN", "--k-z-max", "-1"], ["simulate", "-o", "x.h5", "--n-per-map", "0"]])
def test_count_options_must_be_positive(capsys, argv):
    _fails_cleanly(capsys, argv, "must be >= 1")


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices.items()


def test_every_flag_has_help_with_its_default():
    missing = []
    for name, sp in _subparsers():
        formatter = sp._get_formatter()
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            text = formatter._get_help_string(action) if action.help else ""
            if "default" not in text and "required" not in text:
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing


def test_config_lists_every_key_with_default_and_meaning(capsys):
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    for path, f, _ in iter_keys():
        assert path in lines
        assert f.metadata["help"] and f.metadata["help"] in lines[path]
    assert ">= 2" in lines["train.batch_size"] and "100" in lines["train.batch_size"]


def test_config_yaml_is_a_loadable_default_config(capsys, tmp_path):
    from dualcontrast.config import Config, load_config

    assert main(["config", "--yaml"]) == 0
    path = tmp_path / "default.yaml"
    path.write_text(capsys.readouterr().out)
    assert yaml.safe_load(path.read_text())["train"]["epochs"] == 20
    assert load_config(path) == Config()
