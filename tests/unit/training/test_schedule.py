"""Learning-rate schedules (train.schedule): the curves' shapes, per-batch stepping through
Trainer.fit, and resume mid-schedule continuing the same lr sequence bit for bit."""

from __future__ import annotations

import csv
from itertools import pairwise

import pytest
import torch

from dualcontrast.config import build_config
from dualcontrast.errors import ConfigError
from dualcontrast.training import RunDir, Trainer, load_checkpoint
from dualcontrast.training.schedule import build_schedulers

SMALL_NETS = {"encoder_options": {"channels": [8, 16]}, "decoder_options": {"hidden": [64]}}
LR = 1e-3


def lr_curve(schedule: str, epochs: int, steps: int, **train) -> list[float]:
    """The lr of every batch of a run (one parameter, one optimizer), as the trainer steps it."""
    tc = build_config({"train": {"epochs": epochs, "lr": LR, "schedule": schedule, **train}}).train
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    scheds, interval = build_schedulers(tc, {"main": opt}, steps)
    sched = scheds["main"]
    out = []
    for _ in range(epochs):
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            if interval == "batch":
                sched.step()
        if interval == "epoch":
            sched.step()
    return out


def test_step_is_the_papers_steplr_per_epoch():
    curve = lr_curve("step", 6, 3, lr_step=2, lr_gamma=0.5)
    assert curve == pytest.approx([LR] * 6 + [LR / 2] * 6 + [LR / 4] * 6)


def test_cosine_warms_up_linearly_then_falls_to_about_zero():
    curve = lr_curve("cosine", 10, 10, warmup_epochs=2)  # 100 batches, 20 of warm-up
    rise, fall = curve[:21], curve[20:]
    assert rise == pytest.approx([LR * (t + 1) / 21 for t in range(21)])
    assert max(curve) == pytest.approx(LR) and curve.index(max(curve)) == 20
    assert all(a > b for a, b in pairwise(fall))
    assert 0 < curve[-1] < 1e-3 * LR
    assert fall[40] == pytest.approx(LR / 2, rel=0.05)  # half way down at the middle of the fall
    # No warm-up by default: the first batch trains at the peak.
    assert lr_curve("cosine", 4, 5)[0] == pytest.approx(LR)


def test_onecycle_rises_from_lr_over_25_and_ends_near_zero():
    curve = lr_curve("onecycle", 10, 10)  # rise: 30% of the run by default
    assert curve[0] == pytest.approx(LR / 25)
    peak = curve.index(max(curve))
    assert peak == 30 and curve[peak] == pytest.approx(LR)
    assert all(a < b for a, b in pairwise(curve[: peak + 1]))
    assert all(a > b for a, b in pairwise(curve[peak:]))
    assert curve[-1] == pytest.approx(LR / 2.5e5)
    assert lr_curve("onecycle", 10, 10, warmup_epochs=1).index(LR) == 10


def test_bad_schedules_name_the_key():
    opt = {"main": torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)}
    with pytest.raises(ConfigError, match=r"train\.schedule"):
        build_schedulers(build_config({"train": {"schedule": "linear"}}).train, opt, 5)
    with pytest.raises(ConfigError, match=r"train\.warmup_epochs"):
        tc = build_config({"train": {"schedule": "cosine", "epochs": 3, "warmup_epochs": 3}}).train
        build_schedulers(tc, opt, 5)


# -- through the trainer -------------------------------------------------------------------------


def cfg_for(epochs: int, schedule: str, **train):
    return build_config({
        "model": {"content_dim": 4, "transform_dim": 3, **SMALL_NETS},
        "train": {"epochs": epochs, "batch_size": 50, "lr": LR, "progress": False, "seed": 3,
                  "schedule": schedule, **train},
    })


def record_lrs(trainer: Trainer) -> list[tuple[float, ...]]:
    """Wrap the training step to record the lr of every optimizer at each batch."""
    seen: list[tuple[float, ...]] = []
    step = trainer.model.training_step

    def recording(x, optimizers):
        seen.append(tuple(o.param_groups[0]["lr"] for o in optimizers.values()))
        return step(x, optimizers)

    trainer.model.training_step = recording
    return seen


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_fit_steps_every_optimizer_every_batch(tmp_path, tiny_splits, schedule):
    t = Trainer(cfg_for(3, schedule, warmup_epochs=1), RunDir.create(tmp_path / "r"), tiny_splits,
                torch.device("cpu"))
    seen = record_lrs(t)
    t.fit()
    steps = len(t.batches)
    assert steps >= 3 and len(seen) == 3 * steps
    assert all(len(set(lrs)) == 1 for lrs in seen)  # DualContrast's two optimizers move together
    main = [lrs[0] for lrs in seen]
    assert main == pytest.approx(lr_curve(schedule, 3, steps, warmup_epochs=1))
    with open(t.run.log, newline="") as f:
        logged = [float(r["lr"]) for r in csv.DictReader(f)]
    assert logged == pytest.approx(main[::steps])  # the log shows the lr each epoch starts at


class Interrupted(Exception):
    pass


def stop_after(epochs: int):
    """A callback that interrupts the run once ``epochs`` epochs are checkpointed (a crash)."""

    def callback(st) -> None:
        if st.epoch == epochs:
            raise Interrupted

    return callback


@pytest.mark.parametrize("schedule", ["step", "cosine", "onecycle"])
def test_resume_mid_schedule_continues_the_same_lr_sequence(tmp_path, tiny_splits, schedule):
    extra = {"lr_step": 2} if schedule == "step" else {"warmup_epochs": 1.5}
    straight = Trainer(cfg_for(4, schedule, **extra), RunDir.create(tmp_path / "a"), tiny_splits,
                       torch.device("cpu"))
    seen_straight = record_lrs(straight)
    straight.fit()

    run = RunDir.create(tmp_path / "b")
    first = Trainer(cfg_for(4, schedule, **extra), run, tiny_splits, torch.device("cpu"), callbacks=[stop_after(2)])
    seen_first = record_lrs(first)
    with pytest.raises(Interrupted):
        first.fit()
    resumed = Trainer(cfg_for(4, schedule, **extra), run, tiny_splits, torch.device("cpu"))
    resumed.resume()
    assert resumed.state.epoch == 2
    seen_resumed = record_lrs(resumed)
    resumed.fit()
    seen_split = seen_first + seen_resumed
    assert seen_split == seen_straight  # exact: the same floats, batch for batch

    a, b = load_checkpoint(straight.run.last_checkpoint), load_checkpoint(run.last_checkpoint)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["schedulers"]["main"]["last_epoch"] == b["schedulers"]["main"]["last_epoch"]


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_extending_a_run_continues_on_the_restretched_curve(tmp_path, tiny_splits, schedule):
    run = RunDir.create(tmp_path / "r")
    Trainer(cfg_for(2, schedule, warmup_epochs=0.5), run, tiny_splits, torch.device("cpu")).fit()
    longer = Trainer(cfg_for(3, schedule, warmup_epochs=0.5), run, tiny_splits, torch.device("cpu"))
    longer.resume()
    seen = record_lrs(longer)
    longer.fit()
    steps = len(longer.batches)
    expected = lr_curve(schedule, 3, steps, warmup_epochs=0.5)[2 * steps :]
    assert [lrs[0] for lrs in seen] == pytest.approx(expected)  # from the first resumed batch on
