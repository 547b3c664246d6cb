"""Run directories are never lost (issue 11, item 3), and what a run tells a user (issue 12).

Each test here failed on the code before: relative data paths stored as given (evaluate from
another folder failed), resume accepting another model / dimensions / data and rewriting the
original command, --overwrite deleting the old run before the new one had a checkpoint, stale
analysis/ and embeddings_*.npz surviving an overwrite, a failed run leaving a directory neither
--resume nor a rerun accepted, a failed simulate leaving a partial file, and progress bars
written into a redirected stderr.
"""

import json

import numpy as np
import pytest
import yaml

from dualcontrast.cli.main import main

TINY = ["--set", "data.params.n_train_per_cell=4", "--set", "data.params.n_test_per_cell=2",
        "--set", "eval.projection=none", "--set", "eval.figures=false", "--batch-size", "20"]


def _meta(run):
    return yaml.safe_load((run / "config.yaml").read_text())["meta"]


@pytest.fixture
def stack_run(tmp_path, monkeypatch):
    """A 1-epoch run on a data file given by a relative path, trained from ``tmp_path/work``."""
    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    np.savez(work / "data.npz", x=rng.random((40, 28, 28)).astype(np.float32), content=np.arange(40) % 4)
    monkeypatch.chdir(work)
    assert main(["train", "--data", "data.npz", "--epochs", "1", "-o", "run", *TINY]) == 0
    return work / "run"


def test_data_path_is_stored_absolute_and_run_works_from_elsewhere(stack_run, tmp_path, monkeypatch):
    saved = yaml.safe_load((stack_run / "config.yaml").read_text())
    assert saved["data"]["path"] == str(stack_run.parent / "data.npz")
    assert _meta(stack_run)["data_as_given"] == {"data.path": "data.npz"}
    monkeypatch.chdir(tmp_path)  # another folder: the relative path would not resolve here
    assert main(["evaluate", str(stack_run), "--no-figures"]) == 0
    assert main(["train", "--resume", "-o", str(stack_run), "--epochs", "2", "--no-eval"]) == 0


@pytest.mark.parametrize(
    "change, key",
    [
        (["--set", "model.content_dim=20"], "model.content_dim"),
        (["--model", "vae2"], "model.name"),
        (["--set", "model.decoder=conv"], "model.decoder"),
        (["--data", "other.npz"], "data.path"),
    ],
)
def test_resume_refuses_changes_of_what_was_trained(stack_run, change, key, capsys):
    np.savez(stack_run.parent / "other.npz", x=np.zeros((40, 28, 28), np.float32))
    before = (stack_run / "config.yaml").read_text()
    assert main(["train", "--resume", "-o", str(stack_run), *change]) == 2
    err = capsys.readouterr().err
    assert f"cannot change {key}" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (stack_run / "config.yaml").read_text() == before


def test_resume_records_an_entry_and_keeps_the_original_command(stack_run):
    first = _meta(stack_run)
    assert main(["train", "--resume", "-o", str(stack_run), "--epochs", "2", "--no-eval"]) == 0
    meta = _meta(stack_run)
    assert meta["command"] == first["command"] and meta["created"] == first["created"]
    (entry,) = meta["resumes"]
    assert entry["from_epoch"] == 1 and entry["changes"] == {"train.epochs": [1, 2]}
    assert "--resume" in entry["command"]


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(stack_run, monkeypatch, capsys):
    from dualcontrast.training import Trainer

    old_ckpt = (stack_run / "checkpoints" / "last.pt").read_bytes()
    old_metrics = (stack_run / "metrics.json").read_text()

    def crash(self, until=None):
        raise FloatingPointError("loss term 'loss' became nan in epoch 1; lower train.lr")

    monkeypatch.setattr(Trainer, "fit", crash)
    with pytest.raises(FloatingPointError):
        main(["train", "--data", "data.npz", "--epochs", "1", "-o", "run", "--overwrite", *TINY])
    assert (stack_run / "checkpoints" / "last.pt").read_bytes() == old_ckpt
    assert (stack_run / "metrics.json").read_text() == old_metrics
    assert sorted(p.name for p in stack_run.parent.iterdir()) == ["data.npz", "run"]  # no staging left


def test_overwrite_replaces_every_output_and_keeps_the_users_files(stack_run):
    (stack_run / "analysis").mkdir()
    (stack_run / "analysis" / "analysis.json").write_text("{}")
    (stack_run / "embeddings_other.npz").write_bytes(b"stale")
    (stack_run / "notes.txt").write_text("mine")
    created = _meta(stack_run)["created"]
    assert main(["train", "--data", "data.npz", "--epochs", "1", "-o", "run", "--overwrite", *TINY]) == 0
    names = sorted(p.name for p in stack_run.iterdir())
    assert "analysis" not in names and "embeddings_other.npz" not in names
    assert (stack_run / "notes.txt").read_text() == "mine"
    assert {"config.yaml", "checkpoints", "metrics.json", "log.csv"} <= set(names)
    assert _meta(stack_run)["created"] >= created
    assert sorted(p.name for p in stack_run.parent.iterdir()) == ["data.npz", "run"]


def test_a_run_failing_before_its_first_checkpoint_leaves_nothing(tmp_path, monkeypatch):
    from dualcontrast.training import Trainer

    monkeypatch.setattr(Trainer, "fit", lambda self, until=None: (_ for _ in ()).throw(KeyboardInterrupt()))
    run = tmp_path / "new"
    assert main(["train", "--epochs", "1", "-o", str(run), *TINY]) == 130
    assert not run.exists()
    monkeypatch.undo()
    assert main(["train", "--epochs", "1", "-o", str(run), "--no-eval", *TINY]) == 0


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it(tmp_path):
    run = tmp_path / "killed"
    assert main(["train", "--epochs", "1", "-o", str(run), "--no-eval", *TINY]) == 0
    (run / "checkpoints" / "last.pt").unlink()  # as if killed (SIGKILL) during epoch 1
    (run / "log.csv").unlink()
    assert main(["train", "--resume", "-o", str(run), "--no-eval"]) == 0
    assert (run / "checkpoints" / "last.pt").exists()


def test_failed_simulate_leaves_no_partial_file(tmp_path, monkeypatch):
    from dualcontrast.data import simulated

    real = simulated.simulate_to_file

    def partial(path, *args, **kwargs):
        real(path, *args, **kwargs)
        raise KeyboardInterrupt  # the file is complete on disk, the command is not

    monkeypatch.setattr(simulated, "simulate_to_file", partial)
    out = tmp_path / "sim.h5"
    assert main(["simulate", "-o", str(out), "--n-per-map", "1", "--box", "16", "--voxel-size", "2", "--states", "2"]) == 130
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert main(["simulate", "-o", str(out), "--n-per-map", "1", "--box", "16", "--voxel-size", "2", "--states", "2"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.h5", "sim_groundtruth.csv", "sim_maps.npz"]


def test_redirected_stderr_gets_log_lines_not_bars(tmp_path, capfd, caplog):
    caplog.set_level("INFO")
    run = tmp_path / "r"
    assert main(["train", "--epochs", "2", "-o", str(run), *TINY[:-2], "--batch-size", "5",
                 "--set", "train.progress=true"]) == 0  # fmt: skip
    err = capfd.readouterr().err
    assert "\r" not in err and "it/s" not in err and "batch/s" not in err
    assert "epoch 1/2: loss" in caplog.text and "epoch 2/2: loss" in caplog.text


def test_summary_says_the_metrics_in_words_and_what_to_do_next(stack_run, caplog):
    caplog.set_level("INFO")
    assert main(["train", "--resume", "-o", str(stack_run), "--epochs", "2"]) == 0
    (record,) = [r for r in caplog.records if "finished" in r.getMessage()]
    err = record.getMessage()
    assert record.levelname == "INFO" and "the content code c predicting the content class:" in err
    assert "(lower is better)" in err and "wrote: config.yaml, checkpoints/last.pt" in err
    assert f"dualcontrast analyze {stack_run}" in err and str(stack_run / "report.html") in err
    doc = json.loads((stack_run / "metrics.json").read_text())
    # Scored with the best validation epoch of the two (best.pt), which the summary names.
    assert doc["checkpoint"].startswith(f"best (epoch {doc['epoch']}, validation d_c_c")
    assert f"with the {doc['checkpoint']} checkpoint" in err


def test_no_argument_run_is_the_quick_preset_and_data_flags_keep_the_defaults(monkeypatch, tmp_path):
    import dualcontrast.workflow as workflow
    from dualcontrast.config import Config

    seen = []

    def record(cfg, outdir, **kwargs):
        seen.append(cfg)
        return workflow.TrainResult(None, None, None, None)

    monkeypatch.setattr(workflow, "train_run", record)
    assert main(["train"]) == 0
    assert main(["train", "--data", "shapes2d"]) == 0
    quick, plain = seen
    assert quick.train.epochs == workflow.FIRST_RUN["train"]["epochs"]
    assert quick.data.params == workflow.FIRST_RUN["data"]["params"]
    assert plain.train == Config().train and plain.data.params == {}  # what the benchmarks use
