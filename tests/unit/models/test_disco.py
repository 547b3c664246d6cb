"""DisCo as the trainer uses it: codes without a decoder, the generator phase's step, both phases
through the Trainer, and DisCoParams (the generator's share of the schedule)."""

import pytest

from dualcontrast.errors import ConfigError
from dualcontrast.models.disco import DisCoParams

SMALL = {"queries": 4, "positives": 4, "negatives": 8}


def test_codes_and_no_decoder(checks, batch):
    model = checks.build("disco", SMALL, model={"content_dim": 4, "transform_dim": 2})
    assert not model.has_decoder
    checks.codes(model, batch, 4, 2)


def test_generator_phase_steps_the_generator(checks, batch):
    model = checks.build("disco", SMALL, train={"epochs": 4})
    assert model.in_generator_phase
    terms = model.training_step(batch, model.configure_optimizers(1e-3))
    assert {"rec", "kl_c", "kl_z", "loss"} <= set(terms)


def test_trains_both_phases_through_the_trainer(checks):
    state = checks.trains("disco", SMALL, epochs=2)  # generator for 1 epoch, then DisCo
    assert not state.model.in_generator_phase


def test_params_are_typed_and_checked(checks):
    assert DisCoParams.parse("disco", {}).generator_epochs is None  # half of train.epochs, set when built
    assert checks.build("disco", SMALL, train={"epochs": 6}).generator_epochs == 3
    with pytest.raises(ConfigError, match="generator_epochs"):
        checks.build("disco", {**SMALL, "generator_epochs": 2}, train={"epochs": 2})



def test_split_encoder_is_ignored_with_a_warning(checks, caplog):
    model = checks.build("disco", model={"encoder_options": {"split": True}})
    assert "split ignored" in caplog.text and not hasattr(model.contrastor.features, "z_features")
