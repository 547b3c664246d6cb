"""checkpoints/best.pt through Trainer.fit: the best validated epoch is kept (higher or lower
being better), resume goes on comparing against the checkpoint's record (and repairs a best.pt
a crash left behind), validation never changes the training itself, never reads the test set,
and the val-loss pass steps no optimizer."""

import csv

import numpy as np
import pytest
import torch

from dualcontrast.config import build_config
from dualcontrast.data import DataSplits, carve_validation
from dualcontrast.evaluation.run import select_score, validation_scorer
from dualcontrast.rundir import RunDir, load_checkpoint
from dualcontrast.training import Trainer, ValidationScore, validation_loss
from dualcontrast.training.runtime import rng_state


def tiny_cfg(epochs, model="dualcontrast", **train):
    return build_config({
        "model": {"name": model, "content_dim": 4, "transform_dim": 3},
        "train": {"epochs": epochs, "batch_size": 20, "lr": 1e-3, "progress": False, "seed": 3, **train},
        "eval": {"rotation_samples": 0},
    })


@pytest.fixture
def splits(tiny_splits):
    """80 training, 20 validation and 50 test images."""
    small = DataSplits(train=tiny_splits.train.subset(np.arange(0, 400, 4)),
                       test=tiny_splits.test.subset(np.arange(0, 200, 4)))  # fmt: skip
    return carve_validation(small, 0.2, 0)


def scripted(values, metric="d_c_c", higher=True):
    """A validator returning ``values[epoch]``."""
    return lambda st: ValidationScore({metric: values[st.epoch]}, metric, higher)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fit(cfg, run, splits, validate, resume=False):
    trainer = Trainer(cfg, run, splits, torch.device("cpu"), validate=validate)
    if resume:
        trainer.resume()
    return trainer.fit()


@pytest.mark.parametrize("higher, values, best", [
    (True, {1: 0.5, 2: 0.9, 3: 0.7}, 2),
    (False, {1: 0.5, 2: 0.9, 3: 0.2}, 3),
    (True, {1: 0.5, 2: 0.5, 3: 0.4}, 1),  # ties keep the earlier epoch
])
def test_best_checkpoint_is_the_best_validated_epoch(tmp_path, splits, higher, values, best):
    run = RunDir.create(tmp_path / "r")
    fit(tiny_cfg(3), run, splits, scripted(values, "val_loss" if not higher else "d_c_c", higher))
    ckpt, last = load_checkpoint(run.best_checkpoint), load_checkpoint(run.last_checkpoint)
    assert ckpt["epoch"] == best and last["epoch"] == 3
    assert set(ckpt) == set(last)  # same format: best.pt resumes like last.pt
    assert last["meta"]["best"] == {"epoch": best, "metric": "val_loss" if not higher else "d_c_c",
                                    "value": values[best], "higher_is_better": higher}
    assert [float(r["val_loss" if not higher else "d_c_c"]) for r in rows(run.eval_log)] == list(values.values())


@pytest.mark.parametrize("later, best", [(0.8, 2), (0.95, 4)])
def test_resume_keeps_comparing_against_the_checkpoints_best(tmp_path, splits, later, best):
    values = {1: 0.5, 2: 0.9, 3: 0.7, 4: later}
    run = RunDir.create(tmp_path / "r")
    fit(tiny_cfg(3), run, splits, scripted(values))
    fit(tiny_cfg(4), run, splits, scripted(values), resume=True)
    assert load_checkpoint(run.best_checkpoint)["epoch"] == best
    assert load_checkpoint(run.last_checkpoint)["meta"]["best"]["epoch"] == best
    assert [int(r["epoch"]) for r in rows(run.eval_log)] == [1, 2, 3, 4]


def test_resume_redoes_a_best_checkpoint_a_crash_left_out(tmp_path, splits):
    run = RunDir.create(tmp_path / "r")
    fit(tiny_cfg(2), run, splits, scripted({1: 0.1, 2: 0.9, 3: 0.2}))
    run.best_checkpoint.unlink()  # the crash came between writing last.pt and copying it
    fit(tiny_cfg(3), run, splits, scripted({1: 0.1, 2: 0.9, 3: 0.2}), resume=True)
    assert load_checkpoint(run.best_checkpoint)["epoch"] == 2


def test_validation_changes_nothing_the_training_does(tmp_path, splits):
    plain, validated = RunDir.create(tmp_path / "a"), RunDir.create(tmp_path / "b")
    cfg = tiny_cfg(2)
    a = fit(cfg, plain, splits, None)
    b = fit(cfg, validated, splits, validation_scorer(cfg, splits, torch.device("cpu")))
    assert validated.best_checkpoint.exists() and not plain.best_checkpoint.exists()
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert torch.equal(load_checkpoint(plain.last_checkpoint)["rng"]["torch"],
                       load_checkpoint(validated.last_checkpoint)["rng"]["torch"])


class _Untouchable:
    """A test set whose samples cannot be read: choosing anything from it fails loudly."""

    def __init__(self, shape):
        self.shape, self.dtype = shape, np.dtype(np.float32)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, index):
        raise AssertionError("the test set was read while training")


def test_validation_never_reads_the_test_set(tmp_path, splits):
    from dualcontrast.data import Dataset

    test = Dataset(x=_Untouchable((len(splits.test), *splits.sample_shape)), factors=dict(splits.test.factors))
    hidden = DataSplits(train=splits.train, test=test, val=splits.val)
    cfg = tiny_cfg(2, eval_every=1)
    run = RunDir.create(tmp_path / "r")
    fit(cfg, run, hidden, validation_scorer(cfg, hidden, torch.device("cpu")))
    log = rows(run.eval_log)
    assert len(log) == 2 and {"d_c_c", "d_c_z", "d_z_z", "ari_c"} <= set(log[0])  # all scores, on val


def test_the_per_epoch_validation_follows_identity_in_both_codes(tmp_path, splits):
    """eval_every 0: best.pt is still picked by D(c|c), and D(c|z) and SAP(c) are logged beside it."""
    cfg = tiny_cfg(2)
    run = RunDir.create(tmp_path / "r")
    fit(cfg, run, splits, validation_scorer(cfg, splits, torch.device("cpu")))
    log = rows(run.eval_log)
    assert len(log) == 2 and {"d_c_c", "d_c_z", "sap_c"} <= set(log[0]) and "d_z_z" not in log[0]
    for r in log:
        assert float(r["sap_c"]) == pytest.approx(abs(float(r["d_c_c"]) - float(r["d_c_z"])))
    assert load_checkpoint(run.last_checkpoint)["meta"]["best"]["metric"] == "d_c_c"


def unlabelled(splits):
    blind = DataSplits(*(s.subset(np.arange(len(s))) for s in (splits.train, splits.test)), val=splits.val)
    for data in (blind.train, blind.test, blind.val):
        data.factors.clear()
    return blind


def kept(run, metric, lower=True):
    """best.pt's record names ``metric`` and is the epoch where its eval_log.csv column is best."""
    values = [float(r[metric]) for r in rows(run.eval_log)]
    assert values and all(np.isfinite(values))
    best = load_checkpoint(run.last_checkpoint)["meta"]["best"]
    assert best["metric"] == metric and best["higher_is_better"] is not lower
    assert best["epoch"] == 1 + int(np.argmin(values) if lower else np.argmax(values))
    return values


def test_unlabelled_data_keep_the_epoch_with_the_lowest_content_negative_term(tmp_path, splits):
    """Without labels DualContrast's best.pt (and the restart kept) follows the content-negative
    term on validation, not the whole loss, which a collapsed z code swamps; the loss is logged beside it."""
    blind = unlabelled(splits)
    cfg = tiny_cfg(3)
    run = RunDir.create(tmp_path / "r")
    fit(cfg, run, blind, validation_scorer(cfg, blind, torch.device("cpu")))
    assert len(kept(run, "c_neg")) == 3
    assert all(np.isfinite(float(r["val_loss"])) for r in rows(run.eval_log))


def test_unlabelled_data_of_a_model_without_the_term_are_validated_by_their_loss(tmp_path, splits):
    blind = unlabelled(splits)
    cfg = tiny_cfg(3, model="vae2")
    run = RunDir.create(tmp_path / "r")
    fit(cfg, run, blind, validation_scorer(cfg, blind, torch.device("cpu")))
    assert len(kept(run, "val_loss")) == 3


def test_select_val_loss_keeps_the_lowest_validation_loss_labels_or_not(tmp_path, splits):
    """train.select val_loss: the earlier label-free choice, selectable; the labelled scores are still logged."""
    cfg = tiny_cfg(3, select="val_loss")
    run = RunDir.create(tmp_path / "r")
    fit(cfg, run, splits, validation_scorer(cfg, splits, torch.device("cpu")))
    assert len(kept(run, "val_loss")) == 3
    assert "d_c_c" in rows(run.eval_log)[0]


def test_validation_loss_steps_no_optimizer(tmp_path, splits):
    run = RunDir.create(tmp_path / "r")
    state = fit(tiny_cfg(1), run, splits, None)
    before = {k: v.clone() for k, v in state.model.state_dict().items()}
    adam = {k: o.state_dict()["state"][0]["exp_avg"].clone() for k, o in state.optimizers.items()}
    rng = rng_state()["torch"]
    terms = validation_loss(state.model, state.optimizers, splits.val, batch_size=20, device=torch.device("cpu"))
    again = validation_loss(state.model, state.optimizers, splits.val, batch_size=20, device=torch.device("cpu"))
    assert terms["loss"] > 0 and terms == again  # fixed seed: the same transformations every time
    for k, v in state.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, o in state.optimizers.items():
        assert torch.equal(o.state_dict()["state"][0]["exp_avg"], adam[k])
    assert all(p.grad is None for p in state.model.parameters())
    assert torch.equal(rng_state()["torch"], rng)


@pytest.mark.parametrize("select", ["d_c_c+sap_c", "d_c_c+sap_c+z_use"])
@pytest.mark.parametrize("eval_every", [0, 1])
def test_select_by_a_sum_of_scores_picks_the_best_sum(tmp_path, splits, eval_every, select):
    """train.select d_c_c+sap_c (+z_use): best.pt is the epoch with the highest validation sum,
    logged as its own column beside its terms, per-epoch score and full evaluation alike."""
    cfg = tiny_cfg(3, select=select, eval_every=eval_every)
    run = RunDir.create(tmp_path / "r")
    fit(cfg, run, splits, validation_scorer(cfg, splits, torch.device("cpu")))
    log = rows(run.eval_log)
    sums = [float(r[select]) for r in log]
    assert len(sums) == 3
    for r in log:
        assert 0 < float(r["z_use"]) < 1  # logged whatever the selection
        assert float(r[select]) == pytest.approx(sum(float(r[t]) for t in select.split("+")), abs=1e-4)
    best = load_checkpoint(run.last_checkpoint)["meta"]["best"]
    assert best["metric"] == select and best["epoch"] == 1 + int(np.argmax(sums))
    assert load_checkpoint(run.best_checkpoint)["epoch"] == best["epoch"]



def test_select_by_the_content_negative_term_keeps_its_lowest_epoch(tmp_path, splits):
    """train.select c_neg: best.pt is the epoch whose content codes of different validation
    samples are least aligned (the term of the objective), labels or not."""
    cfg = tiny_cfg(3, select="c_neg")
    run = RunDir.create(tmp_path / "r")
    fit(cfg, run, splits, validation_scorer(cfg, splits, torch.device("cpu")))
    values = [float(r["c_neg"]) for r in rows(run.eval_log)]
    assert len(values) == 3 and all(0 <= v <= 1 for v in values)
    best = load_checkpoint(run.last_checkpoint)["meta"]["best"]
    assert best["metric"] == "c_neg" and not best["higher_is_better"]
    assert best["epoch"] == 1 + int(np.argmin(values))
    assert "d_c_c" in rows(run.eval_log)[0]  # the labelled scores are still followed


def test_select_score_sums_its_terms_and_needs_all_of_them():
    scores = {"d_c_c": 0.8, "sap_c": 0.3, "z_use": 0.2}
    assert select_score("d_c_c", scores) == 0.8
    assert select_score("d_c_c+sap_c+z_use", scores) == pytest.approx(1.3)
    assert select_score("d_c_c+sap_c+z_use", {"d_c_c": 0.8, "sap_c": 0.3}) is None  # no decoder
