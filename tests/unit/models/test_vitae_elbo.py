"""VITAE's loss is its own ELBO (params.beta_c / beta_z, default 1 relative to the per-sample
summed squared error), independent of DualContrast's loss.gamma_* and loss.kl_normalization."""

from __future__ import annotations

import pytest
import torch

from dualcontrast.config import build_config
from dualcontrast.errors import ConfigError
from dualcontrast.losses import gaussian_kl
from dualcontrast.models import build_model

SMALL_NETS = {"encoder_options": {"channels": [8, 16]}, "decoder_options": {"hidden": [64]}}


def vitae(loss=None, **params):
    torch.manual_seed(0)
    model = {"name": "vitae", "content_dim": 4, "transform_dim": 3, **SMALL_NETS, "params": params}
    return build_model(build_config({"model": model, "loss": loss or {}}), (1, 16, 16), "sigmoid")


def step_loss(m, x) -> dict[str, torch.Tensor]:
    """The terms of one training step (taken before the update) under a fixed sampling seed."""
    torch.manual_seed(1)
    return m.training_step(x, m.configure_optimizers(1e-3))


def test_default_loss_is_the_per_sample_elbo_over_the_pixel_count():
    m = vitae()
    x = torch.rand(6, 1, 16, 16)
    with torch.no_grad():
        t = m.elbo_terms(x)
        codes = m.encode(x)
    # rec is the MSE mean (rec * pixels: the summed squared error of a sample); the KL is the
    # correct Gaussian KL of a sample, divided by the same pixel count.
    torch.testing.assert_close(t["kl_z"], gaussian_kl(codes.z_mu, codes.z_logvar).mean() / (16 * 16))
    terms = step_loss(m, x)
    torch.testing.assert_close(terms["loss"], terms["rec"] + terms["kl_c"] + terms["kl_z"])


def test_kl_weights_are_vitae_params_and_dualcontrast_gammas_do_not_act():
    x = torch.rand(6, 1, 16, 16)
    base = step_loss(vitae(), x)
    ignored = step_loss(vitae(loss={"gamma_c": 5.0, "gamma_z": 5.0, "kl_normalization": "sample"}), x)
    torch.testing.assert_close(ignored["loss"], base["loss"])
    weighted = step_loss(vitae(beta_c=0.5, beta_z=2.0), x)
    torch.testing.assert_close(
        weighted["loss"], weighted["rec"] + 0.5 * weighted["kl_c"] + 2.0 * weighted["kl_z"]
    )
    assert not torch.allclose(weighted["loss"], base["loss"])


def test_negative_kl_weight_is_refused():
    with pytest.raises(ConfigError, match="beta_c and beta_z"):
        vitae(beta_z=-1.0)
