"""The weight average (train.ema): its arithmetic against a hand-written running mean, and through
Trainer.fit that validation scores it, checkpoints hold it beside the raw weights, resume
continues it exactly, and the commands that load a run get it."""

import numpy as np
import pytest
import torch
from torch import nn

from dualcontrast.config import build_config
from dualcontrast.data import DataSplits, carve_validation
from dualcontrast.errors import ConfigError, RunDirError
from dualcontrast.models import load_trained_model
from dualcontrast.rundir import RunDir, load_checkpoint
from dualcontrast.training import Trainer, ValidationScore
from dualcontrast.training.averaging import WeightAverage


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_average_is_the_running_mean_with_its_warm_up():
    net = small_net()
    average = WeightAverage(net, 0.9)
    expected = {k: v.clone().double() for k, v in net.state_dict().items()}
    for n in range(1, 30):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net[1].running_mean.normal_()
        net[1].num_batches_tracked += 1
        average.update(net)
        decay = min(0.9, (1 + n) / (10 + n))
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                expected[k] = decay * expected[k] + (1 - decay) * v.double()
            else:
                expected[k] = v.clone()
    for k, v in average.state.items():
        assert torch.allclose(v.to(expected[k].dtype), expected[k], atol=1e-5), k
    assert int(average.state["1.num_batches_tracked"]) == 29  # counters are copied, not averaged


def test_applied_holds_the_average_inside_and_the_own_weights_after():
    net = small_net()
    average = WeightAverage(net, 0.5)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    own = net[0].weight.detach().clone()
    average.update(net)
    with average.applied(net):
        assert torch.equal(net[0].weight, average.state["0.weight"])
        assert not torch.equal(net[0].weight, own)
    assert torch.equal(net[0].weight, own)


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_decay_out_of_range_is_refused(decay):
    with pytest.raises(ConfigError, match=r"train\.ema"):
        build_config({"train": {"ema": decay}})


def tiny_cfg(epochs, ema=0.9):
    return build_config({
        "model": {"content_dim": 4, "transform_dim": 3},
        "train": {"epochs": epochs, "batch_size": 20, "lr": 1e-3, "progress": False, "seed": 3, "ema": ema},
        "eval": {"rotation_samples": 0},
    })


@pytest.fixture
def splits(tiny_splits):
    small = DataSplits(train=tiny_splits.train.subset(np.arange(0, 400, 4)),
                       test=tiny_splits.test.subset(np.arange(0, 200, 4)))  # fmt: skip
    return carve_validation(small, 0.2, 0)


def first_weight(model):
    return next(model.parameters()).detach().clone()


def first_weight_key(model):
    return next(name for name, _ in model.named_parameters())


def test_validation_scores_the_average_and_checkpoints_keep_both(tmp_path, splits):
    seen = {}

    def validate(st):  # what the validator sees of the weights, per epoch
        seen[st.epoch] = first_weight(st.model)
        return ValidationScore({"d_c_c": float(st.epoch == 2)}, "d_c_c", True)

    run = RunDir.create(tmp_path / "r")
    state = Trainer(tiny_cfg(3), run, splits, torch.device("cpu"), validate=validate).fit()
    last, best = load_checkpoint(run.last_checkpoint), load_checkpoint(run.best_checkpoint)
    key = first_weight_key(state.model)
    assert torch.equal(seen[3], last["ema"]["state"][key])
    assert not torch.equal(last["ema"]["state"][key], last["model"][key])
    assert torch.equal(first_weight(state.model), last["model"][key])  # training goes on with its own weights
    assert best["epoch"] == 2 and torch.equal(seen[2], best["ema"]["state"][key])
    cfg = tiny_cfg(3)
    loaded, _ = load_trained_model(run, cfg, torch.device("cpu"), "best")
    assert torch.equal(first_weight(loaded), seen[2])


def test_resume_continues_the_average_exactly(tmp_path, splits):
    straight = RunDir.create(tmp_path / "straight")
    Trainer(tiny_cfg(3), straight, splits, torch.device("cpu")).fit()
    split = RunDir.create(tmp_path / "split")
    Trainer(tiny_cfg(2), split, splits, torch.device("cpu")).fit()
    resumed = Trainer(tiny_cfg(3), split, splits, torch.device("cpu"))
    resumed.resume()
    resumed.fit()
    a, b = load_checkpoint(straight.last_checkpoint)["ema"], load_checkpoint(split.last_checkpoint)["ema"]
    assert a["updates"] == b["updates"] == 12
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k


def test_off_by_default_and_a_run_without_it_cannot_resume_with_it(tmp_path, splits):
    run = RunDir.create(tmp_path / "r")
    Trainer(tiny_cfg(1, ema=0.0), run, splits, torch.device("cpu")).fit()
    assert "ema" not in load_checkpoint(run.last_checkpoint)
    trainer = Trainer(tiny_cfg(2), run, splits, torch.device("cpu"))
    with pytest.raises(RunDirError, match=r"train\.ema"):
        trainer.resume()


def test_the_average_never_changes_training(tmp_path, splits):
    """Validation with the average swapped in, and its updates, leave the raw weights' path as
    it is without one."""
    from dualcontrast.evaluation.run import validation_scorer

    ends = []
    for ema in (0.0, 0.9):
        run = RunDir.create(tmp_path / f"r{ema}")
        cfg = tiny_cfg(2, ema=ema)
        Trainer(cfg, run, splits, torch.device("cpu"), validate=validation_scorer(cfg, splits, torch.device("cpu"))).fit()
        ends.append(load_checkpoint(run.last_checkpoint)["model"])
    for k in ends[0]:
        assert torch.equal(ends[0][k], ends[1][k]), k
