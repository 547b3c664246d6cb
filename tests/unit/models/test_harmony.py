"""Harmony as the trainer uses it: code shapes (c, and z = the transformation parameters), one step
training every parameter, a few epochs through the Trainer, and HarmonyParams."""

import pytest

from dualcontrast.errors import ConfigError
from dualcontrast.models.harmony import HarmonyParams


def test_codes_have_their_sizes(checks, batch):
    model = checks.build("harmony", {"encoder": "mlp", "decoder": "mlp"}, model={"content_dim": 4})
    checks.codes(model, batch, 4, model.encode(batch).z_mu.shape[1])


def test_one_step_trains_every_parameter(checks, batch):
    checks.gradients(checks.build("harmony", {"encoder": "mlp", "decoder": "mlp"}), batch)


def test_trains_through_the_trainer(checks):
    checks.trains("harmony", {"encoder": "mlp", "decoder": "mlp"})


def test_params_are_typed_and_checked():
    p = HarmonyParams.parse("harmony", {"gamma": 2, "max_shift": 3})
    assert (p.gamma, p.max_shift, p.scale_range) == (2.0, 3.0, [1.0, 1.5])
    with pytest.raises(ConfigError, match="scale_range"):
        HarmonyParams.parse("harmony", {"scale_range": [2.0, 1.0]})
    with pytest.raises(ConfigError, match="must be true or false"):
        HarmonyParams.parse("harmony", {"scale": "yes"})



def test_split_encoder_is_ignored_with_a_warning(checks, batch, caplog):
    # configs/subtomo.yaml asks for split trunks; Harmony's k head reads the content trunk.
    model = checks.build("harmony", {"encoder": "conv"}, model={"encoder_options": {"split": True}})
    assert "split ignored" in caplog.text and not getattr(model.encoder, "split", False)
    checks.codes(model, batch, model.content_dim, model.encode(batch).z_mu.shape[1])
