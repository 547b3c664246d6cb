"""SimCLR (discriminative) and SimCLR-gen as the trainer uses them: code shapes (no decoder for the
discriminative variant), one step, a few epochs through the Trainer, and SimCLRParams."""

import pytest

from dualcontrast.errors import ConfigError
from dualcontrast.models.simclr import SimCLRParams


@pytest.mark.parametrize("name", ["simclr", "simclr-gen"])
def test_codes_have_their_sizes(checks, batch, name):
    model = checks.build(name, model={"content_dim": 5, "transform_dim": 3})
    assert model.has_decoder == (name == "simclr-gen")
    checks.codes(model, batch, 5, 3)


def test_one_step_trains_the_generative_variant(checks, batch):
    terms = checks.gradients(checks.build("simclr-gen"), batch)
    assert {"infonce", "z_neg", "rec"} <= set(terms)


def test_trains_through_the_trainer(checks):
    checks.trains("simclr", {"temperature": 0.5})


def test_params_are_typed_and_checked():
    assert SimCLRParams.parse("simclr", {"temperature": 2}).temperature == 2.0
    with pytest.raises(ConfigError, match=r"model\.params\.temperature for simclr must be a number > 0"):
        SimCLRParams.parse("simclr", {"temperature": 0})
    with pytest.raises(ConfigError, match="did you mean 'temperature'"):
        SimCLRParams.parse("simclr", {"temprature": 1.0})
