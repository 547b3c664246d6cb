"""SimCLR with rotation augmentation, the setting of Von Kügelgen et al. (2021), in two variants.

Both encode a batch ``x`` and its transformed copy ``T(x)`` (``transform`` section of the config;
rotation U(-90, 90) degrees per sample by default) with DualContrast's conv encoder (same
presets, same ``content_dim`` / ``transform_dim``), which outputs a content code c and a
transformation code z.

- ``simclr`` (discriminative; encoder only, no decoder):
  ``L = w_infonce * InfoNCE(c(x), c(T(x)); temperature) + w_z_neg * mean |cos(z(x), z(T(x)))|``.
  InfoNCE is the symmetric NT-Xent of :func:`dualcontrast.losses.info_nce` on the code means:
  the two views of a sample are the positive pair, the other ``2B - 2`` codes the negatives.
  How z is trained: DualContrast's paper describes this baseline as "positive pairs w.r.t.
  content and negative pairs w.r.t. style"; z(x) and z(T(x)) are that negative pair, pushed to
  orthogonal with the same absolute-cosine term DualContrast uses. With ``w_z_neg: 0`` z is an
  untrained linear read-out of the shared encoder features. The log-variance heads get no
  gradient here, so :meth:`encode` reports ``c_logvar`` and ``z_logvar`` as None.
- ``simclr-gen`` (generative): the same terms plus DualContrast's ``L_vae`` (reconstruction from
  sampled codes through the VAE decoder, ``gamma_c KL(c) + gamma_z KL(z)``), on x and, with
  ``loss.vae_on_transformed``, on T(x). z is then trained by the decoder as well as by the
  negative pair. The VAE weights come from the ``loss`` section (``w_rec``, ``gamma_c``,
  ``gamma_z``, ``kl``, ``kl_normalization``, ``vae_on_transformed``); its contrastive weights
  (``w_c_pos`` ...) belong to DualContrast and are not used.

``model.params``: ``temperature`` (1.0, the default of the public code of Von Kügelgen et
al.), ``w_infonce`` (1.0), ``w_z_neg`` (1.0). One Adam optimizer over all parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..config import Config, LossConfig
from ..errors import ConfigError
from ..losses import cosine_similarity_loss, info_nce, vae_objective
from ..nn import build_decoder, build_encoder
from ..transforms import PairTransform, build_transform
from ..transforms.views import PairViews, ViewSettings
from .base import MODELS, Codes, DisentanglementModel, configured_vae_terms, reparameterize
from .params import ModelParams, non_negative, positive


@dataclass
class SimCLRParams(ModelParams):
    """``model.params`` of simclr / simclr-gen: InfoNCE temperature and the weights of its terms."""

    temperature: float = 1.0
    w_infonce: float = 1.0
    w_z_neg: float = 1.0

    def check(self, method: str) -> None:
        self.temperature = positive(method, "temperature", self.temperature)
        self.w_infonce = non_negative(method, "w_infonce", self.w_infonce)
        self.w_z_neg = non_negative(method, "w_z_neg", self.w_z_neg)


VARIANTS = {"simclr": False, "simclr-gen": True}  # name -> generative


class SimCLR(DisentanglementModel):
    Params = SimCLRParams

    def __init__(
        self,
        sample_shape: Sequence[int],
        *,
        generative: bool,
        content_dim: int = 10,
        transform_dim: int = 10,
        arch: str = "auto",
        decoder: str = "mlp",
        output: str = "sigmoid",
        encoder_options: dict[str, Any] | None = None,
        decoder_options: dict[str, Any] | None = None,
        temperature: float = 1.0,
        w_infonce: float = 1.0,
        w_z_neg: float = 1.0,
        loss: LossConfig | None = None,
        transform: PairTransform | None = None,
        views: ViewSettings | None = None,
    ):
        super().__init__()
        self.generative = generative
        self.sample_shape = tuple(sample_shape)
        self.content_dim = content_dim
        self.transform_dim = transform_dim
        self.encoder = build_encoder(
            arch, sample_shape, content_dim, transform_dim, **(encoder_options or {})
        )
        if generative:
            self.decoder = build_decoder(
                arch,
                decoder,
                sample_shape,
                content_dim,
                transform_dim,
                output=output,
                **(decoder_options or {}),
            )
        self.temperature = temperature
        self.w_infonce = w_infonce
        self.w_z_neg = w_z_neg
        self.loss_cfg = loss or LossConfig()
        if self.loss_cfg.kl not in ("standard", "reference"):
            raise ConfigError(f"loss.kl must be 'standard' or 'reference', got {self.loss_cfg.kl!r}")
        if self.loss_cfg.kl_normalization not in ("pixels", "sample"):
            raise ConfigError(
                f"loss.kl_normalization must be 'pixels' or 'sample', got {self.loss_cfg.kl_normalization!r}"
            )
        self.transform = transform or build_transform({"name": "rotation", "max_angle": 90.0})
        self.views = PairViews(views, intensities=output == "sigmoid")

    @classmethod
    def config_kwargs(cls, cfg: Config, sample_shape: Sequence[int], output: str) -> dict[str, Any]:
        return {**super().config_kwargs(cfg, sample_shape, output), "generative": VARIANTS[cfg.model.name]}

    # -- contract -----------------------------------------------------------------------------
    def posterior(self, x: torch.Tensor) -> Codes:
        """All four encoder outputs, log-variances included (trained only in ``simclr-gen``)."""
        return Codes(*self.encoder(x))

    def encode(self, x: torch.Tensor) -> Codes:
        codes = self.posterior(x)
        if self.generative:
            return codes
        return Codes(codes.c_mu, None, codes.z_mu, None)

    def decode(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
        return self.decoder(c, z) if self.generative else None

    @property
    def has_decoder(self) -> bool:
        return self.generative

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.views.prepare(x)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.Adam(self.parameters(), lr=lr)}

    def step_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.views.pair(x, self.transform)

    def step_terms(self, xa: torch.Tensor, xt: torch.Tensor) -> dict[str, torch.Tensor]:
        loss, terms = self.loss_terms(xa, xt)
        terms["loss"] = loss
        return terms

    # -- loss -----------------------------------------------------------------------------------
    def loss_terms(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its raw terms for views ``x`` and ``xt`` (``(B, C, ...)`` each)."""
        b = x.shape[0]
        both = self.posterior(torch.cat([x, xt]))
        cx, ct = both.split([b, b])
        assert cx.c_mu is not None and ct.c_mu is not None and cx.z_mu is not None and ct.z_mu is not None
        terms = {"infonce": info_nce(cx.c_mu.float(), ct.c_mu.float(), self.temperature)}
        loss = self.w_infonce * terms["infonce"]
        if self.w_z_neg:
            terms["z_neg"] = cosine_similarity_loss(cx.z_mu.float(), ct.z_mu.float())
            loss = loss + self.w_z_neg * terms["z_neg"]
        if self.generative:
            views = both if self.loss_cfg.vae_on_transformed else cx
            target = torch.cat([x, xt]) if self.loss_cfg.vae_on_transformed else x
            assert views.c_logvar is not None and views.z_logvar is not None
            rec = self.decoder(
                reparameterize(views.c_mu, views.c_logvar), reparameterize(views.z_mu, views.z_logvar)
            )
            lc = self.loss_cfg
            vt = configured_vae_terms(lc, target, rec, views.c_mu, views.c_logvar, views.z_mu, views.z_logvar)
            # Per-view sums, as DualContrast adds L_vae(x) and L_vae(T(x)).
            n_views = 2.0 if self.loss_cfg.vae_on_transformed else 1.0
            vt = {k: v * n_views for k, v in vt.items()}
            loss = loss + vae_objective(vt, lc.w_rec, lc.gamma_c, lc.gamma_z)
            terms.update(vt)
        return loss, terms


for _name in VARIANTS:
    MODELS.register(_name)(SimCLR)
