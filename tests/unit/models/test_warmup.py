"""Per-epoch model state driven by the trainer: the ``on_epoch_end(epochs_done)`` hook as
``Trainer.fit`` calls it, including across a resume.

- DualContrast's ``loss.contrastive_warmup``: epoch k (1-based) trains at weight (k - 1) / W;
  the first epoch is exactly the two-latent VAE's objective.
- DisCo's phase switch after ``params.generator_epochs`` epochs.
"""

from __future__ import annotations

import csv

import pytest
import torch

from dualcontrast.config import build_config
from dualcontrast.models import build_model
from dualcontrast.training import RunDir, Trainer

SMALL_NETS = {"encoder_options": {"channels": [8, 16]}, "decoder_options": {"hidden": [64]}}


def cfg_for(epochs: int, **layers):
    model = {"content_dim": 4, "transform_dim": 3, **SMALL_NETS, **layers.pop("model", {})}
    train = {"epochs": epochs, "batch_size": 50, "lr": 1e-3, "progress": False, "seed": 3}
    return build_config({"model": model, "train": train, **layers})


def record_scales(trainer: Trainer) -> list[float]:
    """Wrap the model's training step to record the warm-up factor each batch trained with."""
    seen: list[float] = []
    model = trainer.model
    step = model.training_step

    def recording(x, optimizers):
        seen.append(float(model.contrastive_scale))
        return step(x, optimizers)

    model.training_step = recording
    return seen


def per_epoch(values: list[float], batches: int) -> list[float]:
    assert len(values) % batches == 0
    epochs = [values[i : i + batches] for i in range(0, len(values), batches)]
    assert all(len(set(e)) == 1 for e in epochs)  # the factor changes only between epochs
    return [e[0] for e in epochs]


def test_warmup_through_fit_starts_at_zero_and_reaches_full_weight_after_warmup_epochs(tmp_path, tiny_splits):
    cfg = cfg_for(5, loss={"contrastive_warmup": 3})
    t = Trainer(cfg, RunDir.create(tmp_path / "r"), tiny_splits, torch.device("cpu"))
    seen = record_scales(t)
    t.fit()
    assert per_epoch(seen, len(t.batches)) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0, 1.0])


def test_warmup_continues_across_a_resume(tmp_path, tiny_splits):
    cfg = cfg_for(4, loss={"contrastive_warmup": 4})
    run = RunDir.create(tmp_path / "r")
    Trainer(cfg_for(2, loss={"contrastive_warmup": 4}), run, tiny_splits, torch.device("cpu")).fit()
    resumed = Trainer(cfg, run, tiny_splits, torch.device("cpu"))
    resumed.resume()
    seen = record_scales(resumed)
    resumed.fit()
    assert per_epoch(seen, len(resumed.batches)) == pytest.approx([0.5, 0.75])


def test_no_warmup_trains_at_full_weight_from_the_first_batch(tmp_path, tiny_splits):
    t = Trainer(cfg_for(2), RunDir.create(tmp_path / "r"), tiny_splits, torch.device("cpu"))
    seen = record_scales(t)
    t.fit()
    assert set(seen) == {1.0}


@pytest.mark.parametrize("step", ["fused", "reference"])
def test_first_warmup_epoch_is_the_two_latent_vae(step):
    torch.manual_seed(0)
    x = torch.rand(8, 1, 16, 16)
    layers = {"model": {"content_dim": 4, "transform_dim": 3}, "train": {"step": step}}
    warm = build_model(build_config({**layers, "loss": {"contrastive_warmup": 4}}), (1, 16, 16), "sigmoid")
    vae2 = build_model(
        build_config({**layers, "model": {"name": "vae2", "content_dim": 4, "transform_dim": 3}}),
        (1, 16, 16),
        "sigmoid",
    )
    vae2.load_state_dict(warm.state_dict())
    warm_opt, vae2_opt = warm.configure_optimizers(1e-3), vae2.configure_optimizers(1e-3)
    draws = warm.draw(x)
    t_warm = getattr(warm, f"_{step}_step")(x, warm_opt, draws)
    t_vae2 = getattr(vae2, f"_{step}_step")(x, vae2_opt, draws)
    assert t_warm["c_neg"] > 0  # the terms are still computed and logged
    assert t_warm["loss"] - t_vae2["loss"] == pytest.approx(0.0, abs=1e-6)
    for a, b in zip(warm.decoder.parameters(), vae2.decoder.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_checkpoints_carry_the_ramp_and_old_ones_load_at_full_weight():
    cfg = build_config({"model": {"content_dim": 4, "transform_dim": 3}, "loss": {"contrastive_warmup": 4}})
    warm = build_model(cfg, (1, 16, 16), "sigmoid")
    warm.on_epoch_end(2)
    fresh = build_model(cfg, (1, 16, 16), "sigmoid")
    assert float(fresh.contrastive_scale) == 0.0
    fresh.load_state_dict(warm.state_dict())
    assert float(fresh.contrastive_scale) == 0.5
    # A checkpoint written before the option existed loads with the terms at full weight.
    fresh.load_state_dict({k: v for k, v in warm.state_dict().items() if k != "contrastive_scale"})
    assert float(fresh.contrastive_scale) == 1.0


def test_disco_switches_phase_after_generator_epochs_through_fit(tmp_path, tiny_splits):
    params = {"generator_epochs": 2, "queries": 4, "positives": 4, "negatives": 8}
    cfg = cfg_for(3, model={"name": "disco", "params": params})
    run = RunDir.create(tmp_path / "r")
    Trainer(cfg, run, tiny_splits, torch.device("cpu")).fit()
    with open(run.log, newline="") as f:
        phases = [float(r["phase"]) for r in csv.DictReader(f)]
    assert phases == [1.0, 1.0, 2.0]
