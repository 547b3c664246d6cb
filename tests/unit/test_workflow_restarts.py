"""train.restarts: several trainings from consecutive seeds, the run keeps the best validated one
(workflow._train_restarts); each restart is exactly the run of its seed; resume and overwrite."""

import csv

import pytest
import torch

from dualcontrast.config import load_config
from dualcontrast.errors import ConfigError
from dualcontrast.rundir import load_checkpoint
from dualcontrast.workflow import resolve_config, train_run


def tiny(epochs=1, **train):
    return resolve_config(data="shapes2d", settings={
        "data": {"params": {"n_train_per_cell": 4, "n_test_per_cell": 1}},
        "model": {"content_dim": 4, "transform_dim": 3},
        "train": {"epochs": epochs, "batch_size": 20, "lr": 1e-3, "device": "cpu", "progress": False, **train},
        "eval": {"rotation_samples": 0, "figures": False},
    })  # fmt: skip


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def same_weights(a, b):
    return all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_the_run_keeps_the_restart_with_the_best_validation_score(tmp_path):
    result = train_run(tiny(2, restarts=3, seed=5), tmp_path / "run", evaluate=False)
    table = rows(result.run.root / "restarts.csv")
    assert [r["seed"] for r in table] == ["5", "6", "7"]
    values = [float(r["value"]) for r in table]
    chosen = [r for r in table if r["chosen"] == "True"]
    assert len(chosen) == 1 and float(chosen[0]["value"]) == max(values)
    sub = result.run.root / "restarts" / f"seed{chosen[0]['seed']}"
    for name in ("last.pt", "best.pt"):
        assert same_weights(load_checkpoint(result.run.checkpoints / name), load_checkpoint(sub / "checkpoints" / name))
    assert (result.run.log.read_text() == (sub / "log.csv").read_text())
    assert result.state is not None and result.state.meta["seed"] == int(chosen[0]["seed"])


def test_each_restart_is_the_run_of_its_seed_alone(tmp_path):
    result = train_run(tiny(1, restarts=2), tmp_path / "restarts", evaluate=False)
    alone = train_run(tiny(1, seed=1), tmp_path / "alone", evaluate=False)
    assert same_weights(load_checkpoint(result.run.root / "restarts" / "seed1" / "checkpoints" / "last.pt"),
                        load_checkpoint(alone.run.last_checkpoint))  # fmt: skip


def test_resume_continues_every_restart_and_chooses_again(tmp_path):
    first = train_run(tiny(1, restarts=2), tmp_path / "run", evaluate=False)
    cfg = load_config(first.run.config)  # as `dualcontrast train --resume -o RUN --epochs 2` does
    cfg.train.epochs = 2
    result = train_run(cfg, tmp_path / "run", resume=True)
    for seed in (0, 1):
        assert load_checkpoint(result.run.root / "restarts" / f"seed{seed}" / "checkpoints" / "last.pt")["epoch"] == 2
    assert len(rows(result.run.root / "restarts.csv")) == 2
    assert result.metrics is not None and result.run.metrics.exists()
    page = (result.run.root / "report.html").read_text()
    assert "<h2>Restarts</h2>" in page and page.count("<td>kept</td>") == 1


def test_overwrite_keeps_the_users_own_files(tmp_path):
    first = train_run(tiny(1, restarts=2), tmp_path / "run", evaluate=False)
    (first.run.root / "notes.txt").write_text("mine")
    again = train_run(tiny(1, restarts=2, seed=3), tmp_path / "run", overwrite=True, evaluate=False)
    assert (again.run.root / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (again.run.root / "restarts").iterdir()) == ["seed3", "seed4"]
    assert not list(tmp_path.glob(".run.*"))  # no staging directory left behind


def test_restarts_need_a_validation_split(tmp_path):
    cfg = tiny(1, restarts=2)
    cfg.data.val_fraction = 0.0
    with pytest.raises(ConfigError, match="val_fraction"):
        train_run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_restart_epochs_compare_early_and_train_only_the_best_on(tmp_path):
    """train.restart_epochs 1: every restart trains one epoch, the best on validation after it trains
    on to train.epochs alone, and ends as the run of its seed trained straight through."""
    result = train_run(tiny(3, restarts=3, restart_epochs=1, seed=2), tmp_path / "run", evaluate=False)
    table = {int(r["seed"]): r for r in rows(result.run.root / "restarts.csv")}
    (kept,) = [s for s, r in table.items() if r["chosen"] == "True"]
    assert {s: int(r["epochs"]) for s, r in table.items()} == {s: 3 if s == kept else 1 for s in (2, 3, 4)}
    first = {s: float(rows(result.run.root / "restarts" / f"seed{s}" / "eval_log.csv")[0]["d_c_c"]) for s in table}
    assert first[kept] == max(first.values())
    assert {s: float(r["compared"]) for s, r in table.items()} == pytest.approx(first, abs=1e-4)  # what was compared
    alone = train_run(tiny(3, seed=kept), tmp_path / "alone", evaluate=False)
    assert same_weights(load_checkpoint(result.run.last_checkpoint), load_checkpoint(alone.run.last_checkpoint))
    assert result.state is not None and result.state.epoch == 3


def test_resume_after_restart_epochs_keeps_the_choice(tmp_path):
    first = train_run(tiny(2, restarts=2, restart_epochs=1), tmp_path / "run", evaluate=False)
    (kept,) = [r["seed"] for r in rows(first.run.root / "restarts.csv") if r["chosen"] == "True"]
    cfg = load_config(first.run.config)
    cfg.train.epochs = 3
    result = train_run(cfg, tmp_path / "run", resume=True)
    table = {r["seed"]: r for r in rows(result.run.root / "restarts.csv")}
    assert table[kept]["chosen"] == "True" and int(table[kept]["epochs"]) == 3
    assert all(int(r["epochs"]) == 1 for s, r in table.items() if s != kept)
    page = (result.run.root / "report.html").read_text()
    assert "<th>validation score compared</th>" in page and page.count("<td>kept</td>") == 1
