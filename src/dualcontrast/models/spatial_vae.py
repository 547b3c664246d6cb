"""SpatialVAE (Bepler et al., NeurIPS 2019): a coordinate decoder with explicit rotation and shift.

Generative model: content ``c ~ N(0, I)``, rotation ``theta``, translation ``dt ~ N(0, I)``;
the image is an MLP evaluated at every pixel coordinate after the coordinate grid has been
moved by the pose, ``x(p) ~ p(. | g(R(theta)^T (p - dx_scale * dt), c))``. Inference is amortised
by an encoder giving diagonal Gaussians over ``(c, theta, dt)``; the loss is the negative ELBO
per sample (likelihood summed over pixels, KL summed over latent dimensions, batch mean).

Facts from the public code (``tbepler/spatial-VAE``), followed here:

- generator: ``h = act(W_p p + W_c c)``, then ``layers - 1`` more ``Linear -> act``, then a
  Linear to the channels (hidden 500, 2 layers, tanh by default);
- inference network: a tanh MLP over the flattened image (2 hidden layers of 500);
- priors: rotation ``N(0, theta_prior^2)`` (``theta_prior = pi`` by default), translation a unit
  normal scaled by ``dx_scale`` (0.1 of the half-width; i.e. a shift prior ``N(0, dx_scale^2)``
  in normalised coordinates), content ``N(0, I)``; KL terms in closed form;
- likelihood: Bernoulli on logits for images in [0, 1] (the MNIST script) and a unit-variance
  Gaussian for real-valued data (the particle script). ``likelihood: auto`` follows the
  ``output`` argument accordingly (sigmoid -> bernoulli, linear -> gaussian); ``gaussian``
  (with ``noise_std``) or ``bernoulli`` force one.

Coordinates and poses follow :mod:`dualcontrast.transforms.geometry`: pixel centres in
normalised ``(x, y[, z])`` coordinates (``x`` along the last axis, ``(2i + 1) / n - 1``), and
``decode(c, (theta, dt))`` equals ``warp(decode(c, 0), R(theta), shift)`` with ``shift = dx_scale *
dt * size / 2`` pixels, up to interpolation: the canonical object is rotated about the centre,
then shifted. (The public code moves coordinates the other way, ``R p + dt``; with symmetric
priors the two differ only by the sign of the latent.)

The transformation code z (``Codes.z_mu``, ``z_logvar``) is the posterior of the pose latents:

- 2D: ``(theta [rad], dt_x, dt_y)``, dimension 3 as in Table 1;
- 3D: three ZYZ Euler angles (``geometry.euler_zyz_to_matrix``, each with the ``theta_prior``
  normal prior, as the 3D extension of Harmony's paper does not specify one) then
  ``(dt_x, dt_y, dt_z)``, dimension 6.

Angles enter the linear D-score as raw radians (no ``(cos, sin)`` features): the metric is
applied to the code the method outputs, and the code keeps the Table 1 dimension. Angles are not
wrapped, so a code near ``pi`` and one near ``-pi`` describe nearby poses.

3D is supported (coordinates in 3D, rotation by the Euler angles above) but costly: the decoder
evaluates the MLP at every voxel, ``B * D * H * W * hidden`` activations per layer (about 3 GB per
layer for 50 samples of 32^3 with 500 hidden units), which is why Harmony's authors reported
3D SpatialVAE as very slow. For volumes the default encoder is the conv encoder (``encoder:
auto``), which Harmony's authors found necessary for subtomograms.

``model.params``: ``theta_prior`` (pi), ``dx_scale`` (0.1), ``likelihood`` (auto | gaussian |
bernoulli), ``noise_std`` (1.0, Gaussian only), ``hidden`` (500), ``layers`` (2),
``activation`` (tanh | relu | leaky_relu), ``encoder`` (auto: mlp in 2D, conv in 3D | mlp |
conv). ``model.content_dim`` sizes c; ``model.transform_dim`` is not used (the pose fixes it).
``model.encoder_options`` override the encoder (``hidden``, ``activation`` of the MLP or the conv
preset's settings).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..geometry import euler_zyz_to_matrix, rotation_matrix_2d
from ..losses import gaussian_kl
from ..nn import build_encoder
from ..nn.mlp import MLPEncoder, make_activation
from .base import MODELS, Codes, DisentanglementModel, reparameterize
from .params import ModelParams, choice, positive, positive_int


@dataclass
class SpatialVAEParams(ModelParams):
    """``model.params`` of spatial-vae: pose prior and scale, likelihood, and its coordinate decoder."""

    theta_prior: float = math.pi
    dx_scale: float = 0.1
    likelihood: str = "auto"
    noise_std: float = 1.0
    hidden: int = 500
    layers: int = 2
    activation: str = "tanh"
    encoder: str = "auto"

    def check(self, method: str) -> None:
        self.hidden = positive_int(method, "hidden", self.hidden)
        self.layers = positive_int(method, "layers", self.layers)
        self.encoder = choice(method, "encoder", self.encoder, ("auto", "mlp", "conv"))
        self.theta_prior = positive(method, "theta_prior", self.theta_prior)
        self.dx_scale = positive(method, "dx_scale", self.dx_scale)
        self.likelihood = choice(method, "likelihood", self.likelihood, ("auto", "gaussian", "bernoulli"))
        self.noise_std = positive(method, "noise_std", self.noise_std)
        self.activation = choice(method, "activation", self.activation, ("tanh", "relu", "leaky_relu"))
MLP_ENCODER = {"hidden": (500, 500), "activation": "tanh"}


def pixel_grid(spatial: Sequence[int]) -> torch.Tensor:
    """Normalised pixel-centre coordinates ``(x, y[, z])`` in array (C) order. ``-> (prod(spatial), d)``.

    ``spatial`` is ``(H, W)`` or ``(D, H, W)``; row ``i`` of the result is the pixel at flat index
    ``i`` of an array of that shape, so a ``(B, N, C)`` decoder output reshapes directly.
    """
    axes = [(2 * torch.arange(n, dtype=torch.float32) + 1) / n - 1 for n in spatial]
    mesh = torch.meshgrid(*axes, indexing="ij")  # (H, W) or (D, H, W) components
    return torch.stack([m.reshape(-1) for m in reversed(mesh)], dim=-1)


def move_coordinates(grid: torch.Tensor, rotation: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Where each output pixel samples the canonical object: ``R^T (p - t)``.

    ``grid (N, d)``, ``rotation (B, d, d)``, ``shift (B, d)`` in normalised units ``-> (B, N, d)``.
    An image rendered at these coordinates shows the object rotated by R about the centre, then
    shifted by t (the convention of ``geometry.warp``).
    """
    return (grid.unsqueeze(0) - shift.unsqueeze(1)) @ rotation


class CoordinateDecoder(nn.Module):
    """The spatial generator: an MLP over ``(coordinate, content)``. ``(B, N, d), (B, dc) -> (B, N, C)``."""

    def __init__(
        self,
        dims: int,
        content_dim: int,
        channels: int,
        *,
        hidden: int = 500,
        layers: int = 2,
        activation="tanh",
    ):
        super().__init__()
        if layers < 1:
            raise ValueError("the coordinate decoder needs at least one layer")
        self.coord_linear = nn.Linear(dims, hidden)
        self.content_linear = nn.Linear(content_dim, hidden, bias=False)
        body: list[nn.Module] = [make_activation(activation)]
        for _ in range(layers - 1):
            body += [nn.Linear(hidden, hidden), make_activation(activation)]
        body.append(nn.Linear(hidden, channels))
        self.body = nn.Sequential(*body)

    def forward(self, coords: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # The content enters as a per-sample bias of the first layer (computed once, not per pixel).
        return self.body(self.coord_linear(coords) + self.content_linear(c).unsqueeze(1))


class SpatialVAE(DisentanglementModel):
    Params = SpatialVAEParams

    def __init__(
        self,
        sample_shape: Sequence[int],
        *,
        content_dim: int = 10,
        arch: str = "auto",
        output: str = "sigmoid",
        encoder: str = "auto",
        encoder_options: dict[str, Any] | None = None,
        theta_prior: float = math.pi,
        dx_scale: float = 0.1,
        likelihood: str = "auto",
        noise_std: float = 1.0,
        hidden: int = 500,
        layers: int = 2,
        activation: str = "tanh",
    ):
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        self.dims = len(self.sample_shape) - 1
        if self.dims not in (2, 3):
            raise ConfigError(f"SpatialVAE needs (C, H, W) or (C, D, H, W) samples, got {self.sample_shape}")
        if output not in ("sigmoid", "linear"):
            raise ConfigError(f"SpatialVAE output must be 'sigmoid' or 'linear', got {output!r}")
        self.output = output
        self.content_dim = content_dim
        self.n_rot = 1 if self.dims == 2 else 3
        self.pose_dim = self.n_rot + self.dims
        self.theta_prior = theta_prior
        self.dx_scale = dx_scale
        self.likelihood = (
            likelihood if likelihood != "auto" else ("bernoulli" if output == "sigmoid" else "gaussian")
        )
        self.noise_std = noise_std
        kind = encoder if encoder != "auto" else ("mlp" if self.dims == 2 else "conv")
        options = encoder_options or {}
        if kind == "mlp":
            self.encoder: nn.Module = MLPEncoder(
                self.sample_shape, content_dim, self.pose_dim, **{**MLP_ENCODER, **options}
            )
        else:
            self.encoder = build_encoder(arch, self.sample_shape, content_dim, self.pose_dim, **options)
        self.generator = CoordinateDecoder(
            self.dims, content_dim, self.sample_shape[0], hidden=hidden, layers=layers, activation=activation
        )
        # Derived from the shape, so not part of the checkpoint.
        self.register_buffer("grid", pixel_grid(self.sample_shape[1:]), persistent=False)

    # -- pose -> coordinates -> image -------------------------------------------------------------
    def rotation(self, angles: torch.Tensor) -> torch.Tensor:
        """Rotation latents ``(B, n_rot)`` -> matrices ``(B, d, d)``."""
        if self.dims == 2:
            return rotation_matrix_2d(angles[:, 0])
        return euler_zyz_to_matrix(angles)

    def render(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Decoder output before the output activation (logits / means). ``-> (B, C, *spatial)``."""
        z = z.float()
        coords = move_coordinates(
            self.grid, self.rotation(z[:, : self.n_rot]), self.dx_scale * z[:, self.n_rot :]
        )
        out = self.generator(coords.to(c.dtype), c)  # (B, N, C)
        return out.transpose(1, 2).reshape(c.shape[0], *self.sample_shape)

    # -- contract -----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Codes:
        return Codes(*self.encoder(x))

    def decode(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = self.render(c, z)
        return torch.sigmoid(out) if self.output == "sigmoid" else out

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.Adam(self.parameters(), lr=lr)}

    def step_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.elbo_terms(x)

    # -- loss -----------------------------------------------------------------------------------
    def neg_log_likelihood(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``-log p(x | .)`` summed over pixels, mean over the batch (constants dropped). ``-> ()``."""
        out, x = out.float(), x.float()
        if self.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            mean = torch.sigmoid(out) if self.output == "sigmoid" else out
            nll = 0.5 * (mean - x).pow(2) / self.noise_std**2
        return nll.flatten(1).sum(-1).mean()

    def rotation_kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, e^logvar) || N(0, theta_prior^2)) summed over angles, mean over the batch."""
        s2 = self.theta_prior**2
        kl = 0.5 * (math.log(s2) - logvar + (logvar.exp() + mu.pow(2)) / s2 - 1.0)
        return kl.sum(-1).mean()

    def elbo_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Negative ELBO of a batch and its parts: ``rec``, ``kl_c``, ``kl_rot``, ``kl_shift``, ``loss``."""
        codes = self.encode(x)
        assert codes.c_mu is not None and codes.c_logvar is not None
        assert codes.z_mu is not None and codes.z_logvar is not None
        c = reparameterize(codes.c_mu, codes.c_logvar)
        z = reparameterize(codes.z_mu, codes.z_logvar)
        r = self.n_rot
        zm, zl = codes.z_mu.float(), codes.z_logvar.float()
        terms = {
            "rec": self.neg_log_likelihood(self.render(c, z), x),
            "kl_c": gaussian_kl(codes.c_mu.float(), codes.c_logvar.float()).mean(),
            "kl_rot": self.rotation_kl(zm[:, :r], zl[:, :r]),
            "kl_shift": gaussian_kl(zm[:, r:], zl[:, r:]).mean(),
        }
        terms["loss"] = terms["rec"] + terms["kl_c"] + terms["kl_rot"] + terms["kl_shift"]
        return terms


MODELS.register("spatial-vae")(SpatialVAE)
