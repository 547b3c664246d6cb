"""VITAE as the trainer uses it: code shapes, one step training every parameter, a few epochs
through the Trainer, and VITAEParams (unknown keys here, ranges in the constructor)."""

import pytest

from dualcontrast.errors import ConfigError
from dualcontrast.models.vitae import VITAEParams

SMALL = {"hidden": 16, "steps": 2}


def test_codes_have_their_sizes(checks, batch):
    checks.codes(checks.build("vitae", SMALL, model={"content_dim": 4, "transform_dim": 2}), batch, 4, 2)


def test_one_step_trains_every_parameter(checks, batch):
    checks.gradients(checks.build("vitae", SMALL), batch)


def test_trains_through_the_trainer(checks):
    checks.trains("vitae", SMALL)


def test_params_are_typed_and_checked(checks):
    assert VITAEParams.parse("vitae", {"steps": 3}).steps == 3
    with pytest.raises(ConfigError, match=r"unknown model\.params for vitae"):
        VITAEParams.parse("vitae", {"step": 3})
    with pytest.raises(ConfigError, match="control_grid"):
        checks.build("vitae", {"control_grid": 1})
