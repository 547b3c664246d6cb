"""Trainer: checkpoints, exact resume, run directory safety."""

import csv

import pytest
import torch

from dualcontrast.config import build_config
from dualcontrast.errors import RunDirError
from dualcontrast.rundir import RunDir, atomic_save, load_checkpoint
from dualcontrast.training import Trainer


def tiny_cfg(epochs, step="fused"):
    return build_config({
        "model": {"content_dim": 4, "transform_dim": 3},
        "train": {"epochs": epochs, "batch_size": 50, "lr": 1e-3, "progress": False, "step": step, "seed": 3},
    })


def read_log(run):
    with open(run.log, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("step", ["fused", "reference"])
def test_resume_continues_to_the_same_result(tmp_path, tiny_splits, step):
    straight = RunDir.create(tmp_path / "straight")
    Trainer(tiny_cfg(3, step), straight, tiny_splits, torch.device("cpu")).fit()

    split = RunDir.create(tmp_path / "split")
    Trainer(tiny_cfg(2, step), split, tiny_splits, torch.device("cpu")).fit()  # "interrupted" after 2 epochs
    resumed = Trainer(tiny_cfg(3, step), split, tiny_splits, torch.device("cpu"))
    resumed.resume()
    assert resumed.state.epoch == 2
    resumed.fit()

    a = load_checkpoint(straight.last_checkpoint)
    b = load_checkpoint(split.last_checkpoint)
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for name in a["optimizers"]:
        sa, sb = a["optimizers"][name]["state"], b["optimizers"][name]["state"]
        for i in sa:
            assert torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"])
    rows_a, rows_b = read_log(straight), read_log(split)
    assert [r["epoch"] for r in rows_b] == ["1", "2", "3"]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra["loss"] == rb["loss"]


def test_checkpoint_holds_everything_needed(tmp_path, tiny_splits):
    run = RunDir.create(tmp_path / "r")
    Trainer(tiny_cfg(1), run, tiny_splits, torch.device("cpu")).fit()
    ckpt = load_checkpoint(run.last_checkpoint)
    assert {"model", "optimizers", "schedulers", "rng", "epoch", "meta"} <= set(ckpt)
    assert set(ckpt["optimizers"]) == set(ckpt["schedulers"]) == {"main", "encoder"}
    assert ckpt["meta"]["sample_shape"] == [1, 28, 28] and ckpt["meta"]["output"] == "sigmoid"


def test_resume_drops_log_rows_written_after_the_checkpoint(tmp_path, tiny_splits):
    run = RunDir.create(tmp_path / "r")
    Trainer(tiny_cfg(1), run, tiny_splits, torch.device("cpu")).fit()
    with open(run.log, "a") as f:  # a crash between logging epoch 2 and saving its checkpoint
        f.write("2,1.0,0.001,1,1,1,1,1,1,1,1\n")
    t = Trainer(tiny_cfg(2), run, tiny_splits, torch.device("cpu"))
    t.resume()
    t.fit()
    assert [r["epoch"] for r in read_log(run)] == ["1", "2"]


def test_atomic_save_leaves_no_partial_file(tmp_path):
    target = tmp_path / "ckpt.pt"
    atomic_save({"a": torch.ones(2)}, target)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("serialisation failed")

    with pytest.raises(RuntimeError):
        atomic_save({"a": Boom()}, target)
    assert torch.equal(torch.load(target)["a"], torch.ones(2))  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RunDirError, match="cannot read checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(RunDirError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_run_directory_is_never_overwritten_silently(tmp_path):
    root = tmp_path / "run"
    run = RunDir.create(root)
    run.config.write_text("old")
    (root / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="already exists"):
        RunDir.create(root)
    assert run.config.read_text() == "old"
    RunDir.create(root, overwrite=True)
    assert not run.config.exists()
    assert (root / "notes.txt").read_text() == "mine"  # only run outputs are replaced


def test_opening_something_that_is_not_a_run(tmp_path):
    with pytest.raises(RunDirError, match="no such run directory"):
        RunDir.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match=r"no config\.yaml"):
        RunDir.open(tmp_path / "empty")


def test_too_few_samples_for_a_batch(tmp_path, tiny_splits):
    cfg = tiny_cfg(1)
    cfg.train.batch_size = 10_000
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(cfg, RunDir.create(tmp_path / "r"), tiny_splits, torch.device("cpu"))
