"""VAE loss terms: reconstruction and the KL divergence to a standard normal prior."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over dimensions. ``(B, d) -> (B,)``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def reference_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The reference scripts' KL, written for log-sigma but fed log-variance. ``(B, d) -> (B,)``.

    ``-0.5 - s + 0.5 (mu^2 + exp(s)^2)`` is the Gaussian KL when ``s = log sigma``; the scripts
    sample with ``exp(0.5 * logvar)``, so this is kept only to reproduce their numbers.
    """
    return (-0.5 - logvar + 0.5 * (mu.pow(2) + logvar.exp().pow(2))).sum(-1)


def reconstruction_mse(x_rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element. ``(B, ...), (B, ...) -> ()``."""
    return F.mse_loss(x_rec, x, reduction="mean")


def kl_term(
    mu: torch.Tensor, logvar: torch.Tensor, *, normalizer: float, reference: bool = False
) -> torch.Tensor:
    """Batch-mean KL divided by ``normalizer``. ``(B, d), (B, d) -> ()``.

    With ``normalizer`` = pixels per sample, ``MSE_mean + gamma * KL / pixels`` is the summed
    Gaussian log-likelihood plus ``gamma * KL``, divided by the pixel count: the scale the
    reference scripts use, in which ``gamma ~ 0.01`` is the paper's "very small" weight.
    """
    kl = reference_kl(mu, logvar) if reference else gaussian_kl(mu, logvar)
    return kl.mean() / normalizer


def vae_terms(
    x: torch.Tensor,
    x_rec: torch.Tensor,
    c_mu: torch.Tensor,
    c_logvar: torch.Tensor,
    z_mu: torch.Tensor,
    z_logvar: torch.Tensor,
    *,
    per_pixel: bool = True,
    reference: bool = False,
) -> dict[str, torch.Tensor]:
    """The unweighted pieces of ``L_vae``: ``rec`` and the two KL terms. ``(B, ...) -> ()`` each.

    ``per_pixel`` divides the KLs by the pixels (voxels) per sample (see :func:`kl_term`);
    ``reference`` uses the reference scripts' log-sigma KL. Computed in float32 under autocast.
    """
    norm = float(x[0].numel()) if per_pixel else 1.0
    return {
        "rec": reconstruction_mse(x_rec.float(), x.float()),
        "kl_c": kl_term(c_mu.float(), c_logvar.float(), normalizer=norm, reference=reference),
        "kl_z": kl_term(z_mu.float(), z_logvar.float(), normalizer=norm, reference=reference),
    }


def vae_objective(terms: dict[str, torch.Tensor], w_rec: float, gamma_c: float, gamma_z: float) -> torch.Tensor:
    """``w_rec * rec + gamma_c * kl_c + gamma_z * kl_z``."""
    return w_rec * terms["rec"] + gamma_c * terms["kl_c"] + gamma_z * terms["kl_z"]
