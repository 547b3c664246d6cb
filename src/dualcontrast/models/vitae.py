"""VITAE (Detlefsen & Hauberg 2019): appearance c, and a perspective z that drives a diffeomorphic warp.

Generative model: ``x = W_{v(z)}(g(c))`` — an appearance decoder ``g`` draws the object in a
canonical frame from the content code c, a small network turns the transformation code z into a
velocity field ``v(z)``, and the warp ``W_v`` (the flow of ``v`` at time 1) moves the appearance into
place. Inference follows the paper's VITAE-CI ("conditional inference", the variant that
disentangles best): ``z ~ q(z | x)`` first, then the image is un-warped with the inverse map
``W_{-v(z)}`` and ``c ~ q(c | W_{-v(z)}(x))``, so the appearance encoder sees a canonical-frame
image. ``params.inference: unconditional`` gives VITAE-UI (``c ~ q(c | x)``).

Loss: VITAE's own ELBO, not DualContrast's weighted VAE term (whose ``loss.gamma_c = gamma_z =
0.01`` on a KL divided by the pixel count is a nearly absent prior, right for DualContrast's
contrastive codes but not for a plain VAE): per sample, the summed squared error plus
``beta_c KL(q(c|x) || N(0, I)) + beta_z KL(q(z|x) || N(0, I))`` with the correct Gaussian KL and
``beta = 1`` (the standard ELBO of a Gaussian likelihood of variance 1/2), divided by the pixel
count so the logged ``rec`` stays the mean squared error of the other methods. No ``loss.*`` key
acts on VITAE.

The transformation class (the paper uses CPAB, continuous piecewise-affine velocity fields on a
tessellation, integrated in closed form by libcpab): here a **stationary velocity field that is
continuous and piecewise (bi/tri)linear** on a coarse control grid of ``params.control_grid``
points per axis (zero on the outer ones with ``params.zero_boundary``, the default), upsampled
linearly to the image, and integrated by **scaling and squaring** (``params.steps`` squarings).
Why this one:

- it is the tensor-product cousin of CPAB — continuous, piecewise polynomial, Lipschitz — so its
  flow is a homeomorphism with a positive Jacobian, and ``W_{-v}`` is ``W_v^{-1}`` (up to
  discretisation), which VITAE-CI needs to un-warp;
- linear interpolation reproduces affine velocity fields exactly, so rotations (``v(p) = w J p``),
  scalings and shears — the transformations the data sets vary by — are in the family (with a
  zero boundary: exactly inside the central control cells, where the objects are);
- scaling and squaring needs only ``grid_sample`` (any device, differentiable, 2D and 3D), with
  cost logarithmic in the integration accuracy, and avoids CPAB's cell-tracking integrator.

The flow is a diffeomorphism in the continuum; on the pixel grid its Jacobian stays positive as
long as the deformation is resolved by the pixels. Fields that squeeze whole control cells to
below a pixel (``|grad v|`` of several units, far beyond the rotations and mild shape changes
the data hold) fold between pixels; ``params.max_velocity`` (a soft bound, 3 by default: a
half-turn of the central cells needs about 2.2) keeps the model away from them.

``model.params`` (defaults): ``control_grid`` 5, ``steps`` 7, ``max_velocity`` 3.0 (normalised
units per unit time), ``zero_boundary`` true, ``hidden`` 128 (width of the z -> velocity MLP),
``inference`` conditional, ``beta_c`` 1.0 and ``beta_z`` 1.0 (the ELBO's KL weights). Encoders
and the appearance decoder are the presets of :mod:`dualcontrast.nn` (``model.arch``,
``model.decoder``), one encoder per code.

Conventions are those of :mod:`dualcontrast.transforms.geometry`: ``align_corners=False``
normalised coordinates ``(x, y[, z])`` in ``[-1, 1]``, ``x`` along the last axis. A warp samples
``out(p) = img(phi(p))`` with ``phi = id + u`` the integrated map.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import ConfigError
from ..losses import vae_terms
from ..nn import build_decoder, build_encoder
from .base import MODELS, Codes, DisentanglementModel, reparameterize
from .params import ModelParams

INFERENCE = ("conditional", "unconditional")

# -- diffeomorphic warps by stationary velocity fields ---------------------------------------------


def identity_grid(n: int, spatial: Sequence[int], *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised pixel-centre coordinates ``(n, *spatial, k)``, last axis ``(x, y[, z])``."""
    k = len(spatial)
    theta = torch.zeros(n, k, k + 1, device=device, dtype=dtype)
    theta[:, :, :k] = torch.eye(k, device=device, dtype=dtype)
    return F.affine_grid(theta, [n, 1, *spatial], align_corners=False)


def _channels_last(u: torch.Tensor) -> torch.Tensor:
    """``(N, k, *spatial)`` -> ``(N, *spatial, k)``."""
    return u.movedim(1, -1)


def sample_field(field: torch.Tensor, grid: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Sample ``(N, C, *spatial)`` at normalised points ``(N, *out_spatial, k)`` (linear interpolation)."""
    return F.grid_sample(field, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def upsample_velocity(control: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """Control-grid velocities ``(N, k, g, ..., g)`` -> piecewise-linear field ``(N, k, *spatial)``.

    ``align_corners=True`` puts the outer control points on the outer pixel centres, so the
    field is linear inside each control cell and an affine field is reproduced exactly.
    """
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    return F.interpolate(control, size=tuple(spatial), mode=mode, align_corners=True)


def integrate_velocity(velocity: torch.Tensor, steps: int) -> torch.Tensor:
    """Displacement ``u`` of the time-1 flow ``phi = exp(v) = id + u`` by scaling and squaring.

    ``velocity: (N, k, *spatial)`` in normalised units per unit time -> ``u`` of the same shape.
    ``phi_0 = id + v / 2**steps`` is a small, hence invertible, step; each squaring
    ``phi <- phi o phi`` (``u <- u + u(id + u)``) doubles the time. Points leaving the image keep
    the velocity of the border (``padding_mode="border"``).
    """
    if steps < 0:
        raise ValueError(f"scaling and squaring needs steps >= 0, got {steps}")
    u = velocity / 2**steps
    if steps == 0:
        return u
    ident = identity_grid(u.shape[0], u.shape[2:], device=u.device, dtype=u.dtype)
    for _ in range(steps):
        u = u + sample_field(u, ident + _channels_last(u))
    return u


def apply_displacement(x: torch.Tensor, u: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """``out(p) = x(p + u(p))``. ``x: (N, C, *spatial)``, ``u: (N, k, *spatial)`` -> ``(N, C, *spatial)``."""
    ident = identity_grid(u.shape[0], u.shape[2:], device=u.device, dtype=u.dtype)
    return sample_field(x, ident + _channels_last(u).to(x.dtype), padding_mode)


def warp_by_velocity(
    x: torch.Tensor, velocity: torch.Tensor, steps: int, padding_mode: str = "border"
) -> torch.Tensor:
    """Warp ``x`` with ``exp(velocity)``; ``-velocity`` gives the inverse warp."""
    return apply_displacement(x, integrate_velocity(velocity, steps), padding_mode)


def jacobian_determinant(u: torch.Tensor) -> torch.Tensor:
    """Jacobian determinant of ``phi = id + u`` at every pixel by central differences.

    ``u: (N, k, *spatial)`` in normalised units -> ``(N, *spatial)``. The determinant is
    dimensionless (same units in and out); it is positive wherever ``phi`` preserves orientation.
    """
    k = u.shape[1]
    spatial = u.shape[2:]
    phi = _channels_last(u) + identity_grid(u.shape[0], spatial, device=u.device, dtype=u.dtype)
    # Coordinate j = 0 (x) runs along the last array axis, j = 1 (y) along the one before, ...
    cols = []
    for j in range(k):
        axis = u.dim() - 2 - j  # array axis of coordinate j in the (N, *spatial, k) layout
        spacing = 2.0 / spatial[k - 1 - j]
        cols.append(torch.gradient(phi, spacing=spacing, dim=axis)[0])
    jac = torch.stack(cols, dim=-1)  # (N, *spatial, k [component i], k [coordinate j])
    return torch.linalg.det(jac)


# -- the model ----------------------------------------------------------------------------------


class VelocityDecoder(nn.Module):
    """z ``(B, dz)`` -> control-grid velocities ``(B, k, g, ..., g)``, softly bounded by ``max_velocity``.

    With ``zero_boundary`` only the interior ``(g - 2)^k`` control points are free and the outer
    ones are 0 (CPAB's zero-boundary option): the flow then maps the image box onto itself, so no
    part of the image is pushed out and lost, and ``W_{-v}`` undoes ``W_v`` everywhere. Rotations
    of the object stay exact inside the central cells, where the field is still linear.

    The last layer starts near zero, so training starts from (almost) the identity warp, as
    spatial transformers usually do, while gradients already reach every layer.
    """

    def __init__(
        self, transform_dim: int, dims: int, grid: int, hidden: int, max_velocity: float, zero_boundary: bool
    ):
        super().__init__()
        self.dims = dims
        self.free = grid - 2 if zero_boundary else grid
        self.zero_boundary = zero_boundary
        self.max_velocity = max_velocity
        self.net = nn.Sequential(
            nn.Linear(transform_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, dims * self.free**dims),
        )
        last = self.net[-1]
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        raw = self.net(z).view(-1, self.dims, *[self.free] * self.dims)
        # tanh soft clamp: identity for small velocities, never beyond max_velocity.
        control = self.max_velocity * torch.tanh(raw / self.max_velocity)
        return F.pad(control, (1, 1) * self.dims) if self.zero_boundary else control


@dataclass
class VITAEParams(ModelParams):
    """``model.params`` of vitae: the velocity field (control grid, integration steps, bound, width),
    how z is inferred, whether the field vanishes at the border, and the KL weights of its own
    ELBO (checked by :class:`VITAE`)."""

    control_grid: int = 5
    steps: int = 7
    max_velocity: float = 3.0
    hidden: int = 128
    inference: str = "conditional"
    zero_boundary: bool = True
    beta_c: float = 1.0
    beta_z: float = 1.0


class VITAE(DisentanglementModel):
    Params = VITAEParams

    @classmethod
    def from_config(cls, cfg: Config, sample_shape: Sequence[int], output: str) -> VITAE:
        try:
            return super().from_config(cfg, sample_shape, output)
        except TypeError as e:  # a value of the wrong type, met by the constructor's checks
            raise ConfigError(f"bad model.params for vitae: {e}") from None

    def __init__(
        self,
        sample_shape: Sequence[int],
        *,
        content_dim: int = 10,
        transform_dim: int = 10,
        arch: str = "auto",
        decoder: str = "mlp",
        output: str = "sigmoid",
        encoder_options: dict[str, Any] | None = None,
        decoder_options: dict[str, Any] | None = None,
        control_grid: int = 5,
        steps: int = 7,
        max_velocity: float = 3.0,
        hidden: int = 128,
        inference: str = "conditional",
        zero_boundary: bool = True,
        beta_c: float = 1.0,
        beta_z: float = 1.0,
    ):
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        dims = len(self.sample_shape) - 1
        if dims not in (2, 3):
            raise ConfigError(f"VITAE needs (C, H, W) or (C, D, H, W) samples, got {self.sample_shape}")
        if inference not in INFERENCE:
            raise ConfigError(f"vitae params.inference must be one of {INFERENCE}, got {inference!r}")
        if control_grid < (3 if zero_boundary else 2):
            raise ConfigError(
                f"vitae params.control_grid must be >= {3 if zero_boundary else 2} "
                f"(zero_boundary={zero_boundary}), got {control_grid}"
            )
        if steps < 0 or max_velocity <= 0:
            raise ConfigError(
                f"vitae params need steps >= 0 and max_velocity > 0, got {steps}, {max_velocity}"
            )
        if beta_c < 0 or beta_z < 0:
            raise ConfigError(f"vitae params beta_c and beta_z must be >= 0, got {beta_c}, {beta_z}")
        self.content_dim = content_dim
        self.transform_dim = transform_dim
        self.steps = steps
        self.inference = inference
        self.beta_c = beta_c
        self.beta_z = beta_z
        enc = encoder_options or {}
        # One encoder per code: the perspective encoder has only z heads, the appearance encoder
        # only c heads (the preset encoder with the other code of width 0).
        self.perspective_encoder = build_encoder(arch, self.sample_shape, 0, transform_dim, **enc)
        self.appearance_encoder = build_encoder(arch, self.sample_shape, content_dim, 0, **enc)
        with warnings.catch_warnings():
            # The preset decoder's z input has width 0 here; torch warns that it cannot init it.
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.appearance_decoder = build_decoder(
                arch, decoder, self.sample_shape, content_dim, 0, output=output, **(decoder_options or {})
            )
        self.velocity_decoder = VelocityDecoder(
            transform_dim, dims, control_grid, hidden, max_velocity, zero_boundary
        )

    # -- pieces ---------------------------------------------------------------------------------
    def velocity(self, z: torch.Tensor) -> torch.Tensor:
        """Velocity field ``(B, k, *spatial)`` of transformation codes ``(B, dz)``."""
        return upsample_velocity(self.velocity_decoder(z), self.sample_shape[1:])

    def appearance(self, c: torch.Tensor) -> torch.Tensor:
        """The canonical-frame image ``(B, *sample_shape)`` of content codes ``(B, dc)``."""
        return self.appearance_decoder(c, c.new_zeros(c.shape[0], 0))

    def _appearance_input(self, x: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
        if self.inference == "unconditional":
            return x
        return warp_by_velocity(x, -velocity, self.steps)

    # -- contract -------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Codes:
        _, _, z_mu, z_logvar = self.perspective_encoder(x)
        c_mu, c_logvar, _, _ = self.appearance_encoder(self._appearance_input(x, self.velocity(z_mu)))
        return Codes(c_mu, c_logvar, z_mu, z_logvar)

    def decode(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return warp_by_velocity(self.appearance(c), self.velocity(z), self.steps)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.Adam(self.parameters(), lr=lr)}

    def elbo_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruction and the two KL terms for a batch, from one sample of each code."""
        _, _, z_mu, z_logvar = self.perspective_encoder(x)
        v = self.velocity(reparameterize(z_mu, z_logvar))
        c_mu, c_logvar, _, _ = self.appearance_encoder(self._appearance_input(x, v))
        x_rec = warp_by_velocity(self.appearance(reparameterize(c_mu, c_logvar)), v, self.steps)
        # Per-pixel scale: MSE_mean + KL / pixels is the per-sample ELBO divided by the pixel count.
        return vae_terms(x, x_rec, c_mu, c_logvar, z_mu, z_logvar, per_pixel=True)

    def step_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = self.elbo_terms(x)
        terms["loss"] = terms["rec"] + self.beta_c * terms["kl_c"] + self.beta_z * terms["kl_z"]
        return terms


MODELS.register("vitae")(VITAE)
