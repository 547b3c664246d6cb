"""Harmony (Uddin et al., CVPR 2022; paper 003): explicit transformation parameters + content Gaussian.

The encoder maps ``x`` to transformation parameters ``k`` (deterministic) and a content posterior
``q(c|x) = N(mu, diag exp(logvar))``. The decoder ``g`` generates a canonical (pose-free) image
from c alone. With ``T(x, k)`` a differentiable warp and ``x'`` a randomly transformed copy of
``x`` (the Siamese branch), the loss on a batch is

    gamma * [D(x_z, x_k) + D(x_k, x'_k') + D(x'_k', x'_z')] + KL(q(c|x) || q(c|x')) / dim(c)

with ``x_k = T(x, k(x))``, ``x_z = g(c ~ q(c|x))`` and the same for ``x'``. Facts taken from the
public Harmony code (see METHOD.md):

- ``D`` is the sum of squared errors over the pixels, averaged over the batch (``mse_loss(...,
  reduction="sum") / B``); the KL is the closed-form KL between the two diagonal Gaussians,
  averaged over the batch and divided by the content dimension; there is no KL to a prior.
- ``gamma``: the public code's default is ``ceil(N / (1000 * batch_size))`` with N training
  samples. A model is built without knowing N, so ``model.params.gamma`` defaults to 1.0, which
  is that rule's value whenever ``N <= 1000 * batch_size`` (MNIST with batch 100, the paper's
  subtomogram set with batch 50, every built-in set at default sizes); set it for larger data.
- The random copy: 2D rotation U(-90, 90) degrees and shift U(-3, 3) pixels per axis (and, with
  ``scale: true``, zoom U(1, 1.5)); 3D three ZYZ Euler angles U(-90, 90) degrees and shift
  U(-4, 4) voxels; one draw per sample. Warps are bilinear / trilinear with zero padding.
- The 2D encoder is a tanh MLP (512-512-512-512-128); the 3D encoder is the conv encoder that
  DualContrast reuses (``nn.presets`` ``subtomo``) and the 3D decoder is a transposed-conv one.
  The MLP is the default in 2D for faithfulness; it learns content much more slowly than the
  conv encoder (``encoder: conv``, the same network DualContrast uses) in short runs.

Transformations follow :func:`dualcontrast.transforms.geometry.warp`: parameters ``k`` give a
matrix ``M`` and a shift ``t`` (pixels / voxels) and ``T(x, k) = warp(x, M, t)``. The encoder
learns the ``k`` that brings ``x`` to the canonical pose of ``g(c)``, so rendering a pose means
the inverse warp: ``decode(c, k) = warp(g(c), M^-1, -M^-1 t)``; the content-transformation
transfer grid therefore shows each content in the other sample's pose.

The transformation code z reported to the metrics is the parameter vector ``k``:

- 2D: ``(angle [rad], shift_x, shift_y [pixels])``, dimension 3 as in Table 1; with
  ``scale: true`` a fourth entry ``log(scale)`` (``M = scale * R(angle)``; the exponential keeps
  the scale positive and is 1 at initialisation);
- 3D: ``(alpha, beta, gamma [rad, ZYZ Euler angles of geometry.euler_zyz_to_matrix], shift_x,
  shift_y, shift_z [voxels])``, dimension 6.

``z_logvar`` is None: k is a point estimate. Angles and shifts are raw linear outputs, as in the
public code; ``shift_bound: <pixels>`` instead bounds the shift as ``bound * tanh(raw)`` (the
paper's "appropriate activation functions", section 3.6), which rules out the degenerate
solution of shifting the object out of the frame.

``model.params``: ``gamma`` (1.0), ``scale`` (false; 2D only), ``max_angle`` (90 degrees),
``max_shift`` (null: 3 px in 2D, 4 voxels in 3D), ``scale_range`` ([1.0, 1.5]),
``shift_bound`` (null), ``encoder`` (auto: mlp in 2D, conv in 3D | mlp | conv), ``decoder``
(auto: mlp in 2D, conv in 3D | mlp | conv). ``model.arch`` picks the conv / decoder presets,
``model.encoder_options`` / ``model.decoder_options`` override them; ``model.transform_dim``
and the ``transform`` section are not used (k's size is fixed by the transformation family, the
random copy by the settings above).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..geometry import euler_zyz_to_matrix, rotation_matrix_2d
from ..nn import build_decoder, build_encoder, one_trunk
from ..nn.mlp import MLPEncoder
from ..transforms.geometry import warp
from ..transforms.views import PairViews, ViewSettings
from .base import MODELS, Codes, DisentanglementModel, reparameterize
from .params import ModelParams, choice, non_negative, positive


@dataclass
class HarmonyParams(ModelParams):
    """``model.params`` of harmony: weight of the siamese term, the transformations it models and
    their ranges, and its networks."""

    gamma: float = 1.0
    scale: bool = False
    max_angle: float = 90.0
    max_shift: float | None = None
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.5])
    shift_bound: float | None = None
    encoder: str = "auto"
    decoder: str = "auto"

    def check(self, method: str) -> None:
        if not isinstance(self.scale, bool):
            raise ConfigError(f"model.params.scale for {method} must be true or false, got {self.scale!r}")
        rng = self.scale_range
        if not (isinstance(rng, (list, tuple)) and len(rng) == 2 and 0 < float(rng[0]) <= float(rng[1])):
            raise ConfigError(f"model.params.scale_range for {method} must be [low, high] with 0 < low <= high")
        self.encoder = choice(method, "encoder", self.encoder, ("auto", "mlp", "conv"))
        self.decoder = choice(method, "decoder", self.decoder, ("auto", "mlp", "conv"))
        self.gamma = positive(method, "gamma", self.gamma)
        self.max_angle = non_negative(method, "max_angle", self.max_angle)
        if self.max_shift is not None:
            self.max_shift = non_negative(method, "max_shift", self.max_shift)
        if self.shift_bound is not None:
            self.shift_bound = positive(method, "shift_bound", self.shift_bound)
DEFAULT_MAX_SHIFT = {2: 3.0, 3: 4.0}
MLP_ENCODER = {"hidden": (512, 512, 512, 512, 128), "activation": "tanh"}


# -- loss pieces (pure functions) -------------------------------------------------------------------
def sum_squared_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Harmony's dissimilarity D: squared error summed over a sample, mean over the batch. ``-> ()``."""
    return (a.float() - b.float()).pow(2).sum() / a.shape[0]


def gaussian_kl_between(
    mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu1, diag e^logvar1) || N(mu2, diag e^logvar2)) per sample. ``(B, d) x 4 -> (B,)``."""
    return 0.5 * (logvar2 - logvar1 + (logvar1.exp() + (mu1 - mu2).pow(2)) / logvar2.exp() - 1.0).sum(-1)


def harmony_terms(
    x_z: torch.Tensor,
    x_k: torch.Tensor,
    xp_k: torch.Tensor,
    xp_z: torch.Tensor,
    posterior: tuple[torch.Tensor, torch.Tensor],
    posterior_prime: tuple[torch.Tensor, torch.Tensor],
    gamma: float,
) -> dict[str, torch.Tensor]:
    """The Harmony loss and its terms.

    ``x_z``, ``x_k``, ``xp_k``, ``xp_z``: ``(B, C, ...)`` images; ``posterior(_prime)``: content
    ``(mu, logvar)`` of x and x', ``(B, d)`` each. Returns ``rec`` = D(x_z, x_k), ``rec_prime`` =
    D(x'_k', x'_z'), ``branch`` = D(x_k, x'_k'), ``kl`` (per dimension) and ``loss``.
    """
    (mu, logvar), (mu_p, logvar_p) = posterior, posterior_prime
    terms = {
        "rec": sum_squared_error(x_z, x_k),
        "rec_prime": sum_squared_error(xp_z, xp_k),
        "branch": sum_squared_error(x_k, xp_k),
        "kl": gaussian_kl_between(mu.float(), logvar.float(), mu_p.float(), logvar_p.float()).mean()
        / mu.shape[-1],
    }
    terms["loss"] = gamma * (terms["rec"] + terms["rec_prime"] + terms["branch"]) + terms["kl"]
    return terms


class _Heads(nn.Module):
    """One linear layer -> ``(c_mu, c_logvar, k)`` (k: transformation parameters, raw)."""

    def __init__(self, features: int, content_dim: int, n_params: int):
        super().__init__()
        self.sizes = [content_dim, content_dim, n_params]
        self.linear = nn.Linear(features, sum(self.sizes))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.linear(h).split(self.sizes, dim=-1))


class Harmony(DisentanglementModel):
    Params = HarmonyParams

    def __init__(
        self,
        sample_shape: Sequence[int],
        *,
        content_dim: int = 10,
        arch: str = "auto",
        output: str = "sigmoid",
        encoder: str = "auto",
        decoder: str = "auto",
        encoder_options: dict[str, Any] | None = None,
        decoder_options: dict[str, Any] | None = None,
        gamma: float = 1.0,
        scale: bool = False,
        max_angle: float = 90.0,
        max_shift: float | None = None,
        scale_range: Sequence[float] = (1.0, 1.5),
        shift_bound: float | None = None,
        views: ViewSettings | None = None,
    ):
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        self.dims = len(self.sample_shape) - 1
        if self.dims not in (2, 3):
            raise ConfigError(f"Harmony needs (C, H, W) or (C, D, H, W) samples, got {self.sample_shape}")
        if scale and self.dims == 3:
            raise ConfigError("Harmony: model.params.scale is implemented for 2D images only")
        self.content_dim = content_dim
        self.scale = bool(scale)
        self.n_params = (1 + 2 + int(self.scale)) if self.dims == 2 else 6
        self.gamma = gamma
        self.max_angle = max_angle
        self.max_shift = DEFAULT_MAX_SHIFT[self.dims] if max_shift is None else max_shift
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.shift_bound = shift_bound
        self.encoder = self._build_encoder(encoder, arch, encoder_options or {})
        kind = decoder if decoder != "auto" else ("mlp" if self.dims == 2 else "conv")
        options = dict(decoder_options or {})
        if kind == "mlp":
            # The generator sees c only: concatenate the codes directly (no per-code input layer).
            options.setdefault("input_hidden", None)
        self.decoder = build_decoder(arch, kind, sample_shape, content_dim, 0, output=output, **options)
        self.views = PairViews(views, intensities=output == "sigmoid")

    def _build_encoder(self, kind: str, arch: str, options: dict[str, Any]) -> nn.Module:
        if kind == "auto":
            kind = "mlp" if self.dims == 2 else "conv"
        options = one_trunk(options, "harmony", "Harmony reads c and its k head off one trunk")
        if kind == "mlp":
            enc: nn.Module = MLPEncoder(self.sample_shape, self.content_dim, 1, **{**MLP_ENCODER, **options})
        else:
            enc = build_encoder(arch, self.sample_shape, self.content_dim, 1, **options)
        # Replace the Gaussian z heads by a deterministic k head of the transformation's size.
        enc.heads = _Heads(enc.heads.linear.in_features, self.content_dim, self.n_params)
        return enc

    # -- transformation parameters <-> warps ------------------------------------------------------
    def _effective(self, k_raw: torch.Tensor) -> torch.Tensor:
        """Raw head outputs -> the reported parameter vector (bounded shift where configured)."""
        if self.shift_bound is None:
            return k_raw
        n_rot = 1 if self.dims == 2 else 3
        shift = self.shift_bound * torch.tanh(k_raw[:, n_rot : n_rot + self.dims])
        return torch.cat([k_raw[:, :n_rot], shift, k_raw[:, n_rot + self.dims :]], dim=-1)

    def geometry(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameter vectors ``(B, n_params)`` -> matrices ``(B, d, d)`` and shifts ``(B, d)``."""
        k = k.float()
        if self.dims == 2:
            m = rotation_matrix_2d(k[:, 0])
            if self.scale:
                m = k[:, 3].exp()[:, None, None] * m
            return m, k[:, 1:3]
        return euler_zyz_to_matrix(k[:, :3]), k[:, 3:6]

    def transform(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``T(x, k) = warp(x, M(k), t(k))``: brings x to the canonical pose."""
        m, t = self.geometry(k)
        return warp(x.float(), m, t)

    def untransform(self, y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The inverse warp of :meth:`transform`: puts a canonical image into the pose ``k``."""
        m, t = self.geometry(k)
        m_inv = torch.linalg.inv(m)
        return warp(y.float(), m_inv, -(m_inv @ t.unsqueeze(-1)).squeeze(-1))

    def random_parameters(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """Parameters of the Siamese branch's random copy, one draw per sample. ``-> (n, n_params)``."""
        a = math.radians(self.max_angle)
        n_rot = 1 if self.dims == 2 else 3

        def uniform(cols: int, low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(n, cols, device=like.device, dtype=torch.float32)

        parts = [uniform(n_rot, -a, a), uniform(self.dims, -self.max_shift, self.max_shift)]
        if self.scale:
            low, high = self.scale_range
            parts.append(uniform(1, low, high).log())
        return torch.cat(parts, dim=-1)

    # -- contract -----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Codes:
        c_mu, c_logvar, k_raw = self.encoder(x)
        return Codes(c_mu, c_logvar, self._effective(k_raw), None)

    def generate(self, c: torch.Tensor) -> torch.Tensor:
        """The canonical image of content codes ``(B, d) -> (B, C, ...)``."""
        return self.decoder(c, c.new_zeros(c.shape[0], 0))

    def decode(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.untransform(self.generate(c), z).to(c.dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.views.prepare(x)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.Adam(self.parameters(), lr=lr)}

    def step_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.views.pair(
            x, lambda v: self.transform(v, self.random_parameters(v.shape[0], v)).to(v.dtype)
        )

    def step_terms(self, xa: torch.Tensor, xp: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.siamese_terms(xa, xp)

    def siamese_terms(self, x: torch.Tensor, xp: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both branches on ``x`` and its transformed copy ``xp``; the loss terms of the batch."""
        b = x.shape[0]
        codes = self.encode(torch.cat([x, xp]))
        assert codes.c_mu is not None and codes.c_logvar is not None and codes.z_mu is not None
        warped = self.transform(torch.cat([x, xp]), codes.z_mu)
        generated = self.generate(reparameterize(codes.c_mu, codes.c_logvar))
        (mu, mu_p), (lv, lv_p) = codes.c_mu.split([b, b]), codes.c_logvar.split([b, b])
        return harmony_terms(
            generated[:b], warped[:b], warped[b:], generated[b:], (mu, lv), (mu_p, lv_p), self.gamma
        )


MODELS.register("harmony")(Harmony)
