"""SpatialVAE as the trainer uses it: code shapes (c, and z = rotation + translation), the default
training step training every parameter, a few epochs through the Trainer, and SpatialVAEParams."""

import pytest

from dualcontrast.errors import ConfigError
from dualcontrast.models.spatial_vae import SpatialVAEParams

SMALL = {"hidden": 16, "encoder": "mlp"}


def test_codes_have_their_sizes(checks, batch):
    model = checks.build("spatial-vae", SMALL, model={"content_dim": 3})
    checks.codes(model, batch, 3, model.encode(batch).z_mu.shape[1])


def test_default_step_trains_every_parameter(checks, batch):
    terms = checks.gradients(checks.build("spatial-vae", SMALL), batch)
    assert "loss" in terms and len(terms) > 1


def test_trains_through_the_trainer(checks):
    checks.trains("spatial-vae", SMALL)


def test_params_are_typed_and_checked():
    assert SpatialVAEParams.parse("spatial-vae", {"hidden": 8}).hidden == 8
    with pytest.raises(ConfigError, match=r"hidden for spatial-vae must be an integer >= 1"):
        SpatialVAEParams.parse("spatial-vae", {"hidden": 1.5})
    with pytest.raises(ConfigError, match="activation"):
        SpatialVAEParams.parse("spatial-vae", {"activation": "gelu"})
