"""DualContrast (and its ablations) as the trainer uses it: code shapes, one step training every
parameter, a few epochs through the Trainer, and the ablations' zeroed loss weights."""

import pytest

from dualcontrast.errors import ConfigError
from dualcontrast.models.dualcontrast import ABLATIONS


def test_codes_have_their_sizes(checks, batch):
    checks.codes(checks.build("dualcontrast", model={"content_dim": 6, "transform_dim": 4}), batch, 6, 4)


@pytest.mark.parametrize("step", ["fused", "reference"])
def test_one_step_trains_every_parameter(checks, batch, step):
    terms = checks.gradients(checks.build("dualcontrast", train={"step": step}), batch)
    assert {"rec", "kl_c", "kl_z", "c_pos", "c_neg", "z_pos", "z_neg"} <= set(terms)


def test_trains_through_the_trainer(checks):
    checks.trains("dualcontrast")


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablations_zero_their_weights_and_take_no_params(checks, name):
    model = checks.build(name)
    for weight in ABLATIONS[name]:
        assert getattr(model.loss_cfg, weight) == 0.0
    with pytest.raises(ConfigError, match=r"takes no model\.params"):
        checks.build(name, {"temperature": 1.0})
