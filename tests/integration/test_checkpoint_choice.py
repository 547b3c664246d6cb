"""``evaluate`` / ``embed`` / ``analyze`` read best.pt where a run has one and say so
(metrics.json ``checkpoint``); ``--checkpoint last`` reads last.pt; ``--checkpoint best`` on a run
without a validation set is one line naming the problem (exit 2), nothing overwritten."""

import json

import numpy as np
import pytest

from dualcontrast.cli.main import main
from dualcontrast.rundir import load_checkpoint

TINY = ["--set", "data.params.n_train_per_cell=4", "--set", "data.params.n_test_per_cell=2",
        "--set", "eval.projection=none", "--set", "eval.figures=false", "--set", "eval.rotation_samples=0",
        "--set", "train.progress=false", "--batch-size", "20"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "run"
    assert main(["train", "--epochs", "3", "-o", str(path), *TINY]) == 0
    return path


def test_evaluate_uses_best_and_names_it(run):
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    doc = json.loads((run / "metrics.json").read_text())  # written by train
    record = best["meta"]["best"]
    assert doc["epoch"] == best["epoch"] == record["epoch"]
    assert doc["checkpoint"] == f"best (epoch {record['epoch']}, validation d_c_c {record['value']:.4f})"
    assert main(["evaluate", str(run), "--no-figures", "--checkpoint", "last"]) == 0
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["checkpoint"] == "last (epoch 3)" and doc["epoch"] == 3


def test_embed_and_analyze_take_the_option(run, tmp_path):
    out_last, out_best = tmp_path / "last.npz", tmp_path / "best.npz"
    assert main(["embed", str(run), "--checkpoint", "last", "-o", str(out_last)]) == 0
    assert main(["embed", str(run), "-o", str(out_best)]) == 0
    last, best = np.load(out_last), np.load(out_best)
    assert {"train_c_mu", "val_c_mu", "test_c_mu"} <= set(best.files)
    same_epoch = load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] == 3
    assert np.array_equal(last["test_c_mu"], best["test_c_mu"]) == same_epoch
    assert main(["analyze", str(run), "--checkpoint", "last", "--no-average", "--projection", "none",
                 "--k", "2"]) == 0  # fmt: skip
    assert json.loads((run / "analysis" / "analysis.json").read_text())["checkpoint"] == "last (epoch 3)"


def test_best_on_a_run_without_validation_is_one_line(tmp_path, capsys):
    path = tmp_path / "noval"
    assert main(["train", "--epochs", "1", "-o", str(path), *TINY, "--set", "data.val_fraction=0"]) == 0
    assert not (path / "checkpoints" / "best.pt").exists()
    before = (path / "metrics.json").read_text()
    assert json.loads(before)["checkpoint"] == "last (epoch 1)"
    capsys.readouterr()
    assert main(["evaluate", str(path), "--checkpoint", "best"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.pt: no best checkpoint" in err[0] and "--checkpoint last" in err[0]
    assert (path / "metrics.json").read_text() == before
