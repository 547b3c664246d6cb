"""DualContrast: a two-latent VAE with contrastive pairs on both codes (paper 000).

Loss on a batch ``x`` with ``T(x)`` a random per-sample transformation (rotation by default).
Below, ``x`` and ``T(x)`` stand for the pair's two views: by default two independent draws
``T_a(x)``, ``T_b(x)`` finished alike (``views.pairing: symmetric``, see
:mod:`dualcontrast.transforms.views`), or ``x`` as loaded and ``T(x)`` as published
(``views.pairing: paper``), or ``x`` prepared as an embedding input and a finished ``T(x)``
(``views.pairing: anchored``). The z-positive images are finished like the views.

- ``L_vae(x) + L_vae(T(x))``: reconstruction from sampled codes + ``gamma_c KL(c) + gamma_z KL(z)``;
- ``L_con(c)``: pull ``c(x)`` towards ``c(T(x))`` (positive) and push ``c(x)`` from ``c(x[perm])``
  (negative; ``perm`` has no fixed point);
- ``L_con(z)``: push ``z(x)`` from ``z(T(x))`` (negative), and pull together the z codes of two
  images decoded from one prior draw ``z*`` with the (detached) contents of two other samples
  (positive). The positive z term is minimised by a second, encoder-only Adam, as in the
  reference scripts. ``loss.z_pos_source: codes`` takes ``z*`` from the batch's own z codes
  instead of the prior, so the decoded pair looks like data whatever ``gamma_z`` is;
- optionally (``loss.w_swap``, not in the paper) the swapped reconstruction: ``x`` decoded from
  ``c(T(x))`` and ``z(x)``, ``T(x)`` from ``c(x)`` and ``z(T(x))``. The published terms leave a
  way out: the cosine terms see only the directions of c, so c can carry the pose in small
  deviations and the decoder never reads z (``benchmarks/results/z_use.md``). Decoding a view
  with the other view's content, the only route to its own pose is its own z. With
  ``loss.swap_content: neighbour`` the content comes from the other view of the batch's sample
  nearest by ``|cos|`` of c instead: mostly the same identity, not always the same state, so the
  only route to the view's own state is its own z as well.
- optionally (``loss.w_decorr``, not in the paper) the c-z decorrelation: the mean squared
  correlation between every dimension of c and of z over the batch (both views), so what c holds
  linearly (the identity) is not held by z as well.
- optionally (``loss.w_c_nn``, not in the paper) the content neighbour term: ``c(x)`` pulled
  towards the detached ``c(T(x'))`` of the other sample ``x'`` nearest to it by ``|cos|``, so
  that codes gather by class, which the per-image pair terms never ask for.

Two training steps with the same objective (``train.step``):

- ``reference``: the published per-step procedure — 7 encoder and 4 decoder passes, the
  z-positive pair built after the first optimizer step;
- ``fused``: one encoder pass over ``[x, T(x)]``, negatives by permuting codes already
  computed (the encoders are per-sample: instance norm, no batch statistics), the z-positive
  images decoded without a graph, one encoder pass over them; both gradients from the same
  weights, then both optimizers step.

The ablations of Table 1 are this model with some weights at zero (see ``ABLATIONS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from ..config import Config, LossConfig, check_loss
from ..errors import ConfigError
from ..losses import (
    cosine_distance_loss,
    cosine_similarity_loss,
    cross_correlation_loss,
    derangement,
    nearest_other,
    reconstruction_mse,
    vae_objective,
)
from ..nn import build_decoder, build_encoder
from ..transforms import PairTransform, build_transform
from ..transforms.views import PairViews, ViewSettings
from .base import MODELS, Codes, DisentanglementModel, configured_vae_terms

# Table 1 ablations: model name -> loss weights forced to zero.
ABLATIONS: dict[str, tuple[str, ...]] = {
    "dualcontrast": (),
    "vae2": ("w_c_pos", "w_c_neg", "w_z_pos", "w_z_neg"),
    "dualcontrast-no-con-c": ("w_c_pos", "w_c_neg"),
    "dualcontrast-no-con-z": ("w_z_pos", "w_z_neg"),
    "dualcontrast-pos-only": ("w_c_neg", "w_z_neg"),
    "dualcontrast-neg-only": ("w_c_pos", "w_z_pos"),
}

STEPS = ("fused", "reference")


class DualContrast(DisentanglementModel):
    contrastive_scale: torch.Tensor  # buffer: the warm-up factor on the cosine weights

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
        loss: LossConfig | None = None,
        transform: PairTransform | None = None,
        views: ViewSettings | None = None,
        step: str = "fused",
    ):
        super().__init__()
        if step not in STEPS:
            raise ConfigError(f"unknown train.step {step!r}; known: {', '.join(STEPS)}")
        self.sample_shape = tuple(sample_shape)
        self.content_dim = content_dim
        self.transform_dim = transform_dim
        self.encoder = build_encoder(
            arch, sample_shape, content_dim, transform_dim, **(encoder_options or {})
        )
        self.decoder = build_decoder(
            arch, decoder, sample_shape, content_dim, transform_dim, output=output, **(decoder_options or {})
        )
        self.loss_cfg = loss or LossConfig()
        check_loss(self.loss_cfg)
        # A buffer, so checkpoints carry it and a resumed run continues the ramp; a tensor, so
        # a compiled step reads its value instead of recompiling when it changes.
        self.register_buffer(
            "contrastive_scale", torch.tensor(0.0 if self.loss_cfg.contrastive_warmup else 1.0)
        )
        self.transform = transform or build_transform({"name": "rotation", "max_angle": 90.0})
        self.views = PairViews(views, intensities=output == "sigmoid")
        self.step = step

    @classmethod
    def config_kwargs(cls, cfg: Config, sample_shape: Sequence[int], output: str) -> dict[str, Any]:
        kwargs = super().config_kwargs(cfg, sample_shape, output)
        for weight in ABLATIONS[cfg.model.name]:  # the ablations: DualContrast without these terms
            setattr(kwargs["loss"], weight, 0.0)
        return kwargs

    # -- contract -----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Codes:
        c_mu, c_logvar, z_mu, z_logvar = self.encoder(x)
        return Codes(c_mu, c_logvar, z_mu, z_logvar)

    def decode(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(c, z)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.views.prepare(x)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"main": _adam(self.parameters(), lr), "encoder": _adam(self.encoder.parameters(), lr)}

    def training_step(
        self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]:
        if self.step == "reference":
            return self._reference_step(x, optimizers)
        return self._fused_step(x, optimizers)

    # -- loss pieces --------------------------------------------------------------------------
    def _vae_terms(self, x: torch.Tensor, x_rec: torch.Tensor, codes: Codes) -> dict[str, torch.Tensor]:
        return configured_vae_terms(
            self.loss_cfg, x, x_rec, codes.c_mu, codes.c_logvar, codes.z_mu, codes.z_logvar
        )

    def _vae_loss(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        lc = self.loss_cfg
        return vae_objective(t, lc.w_rec, lc.gamma_c, lc.gamma_z)

    def _cos_weight(self, name: str) -> torch.Tensor:
        lc = self.loss_cfg
        w = getattr(lc, name)
        if lc.cosine_scale == "per_dim":
            w = w / (self.content_dim if name.startswith("w_c") else self.transform_dim)
        return w * self.contrastive_scale

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Checkpoints from before the warm-up option had none: their terms were at full weight.
        state_dict.setdefault(prefix + "contrastive_scale", torch.tensor(1.0))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def on_epoch_end(self, epochs_done: int) -> None:
        # Epoch k (1-based) trains at (k - 1) / warmup: the first at 0, full weight from epoch warmup + 1.
        warmup = self.loss_cfg.contrastive_warmup
        if warmup:
            self.contrastive_scale.fill_(min(1.0, epochs_done / warmup))

    def _main_terms(
        self,
        x: torch.Tensor,
        xt: torch.Tensor,
        cx: Codes,
        ct: Codes,
        c_neg: torch.Tensor | None,
        rec_x: torch.Tensor,
        rec_t: torch.Tensor | None,
        rec_swap: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Everything minimised by the main optimizer. Returns (loss, raw terms).

        ``rec_swap``: ``(2B, ...)``, ``x`` then ``T(x)`` decoded with each other's content.
        """
        terms = self._vae_terms(x, rec_x, cx)
        loss = self._vae_loss(terms)
        if rec_t is not None:
            tt = self._vae_terms(xt, rec_t, ct)
            loss = loss + self._vae_loss(tt)
            terms = {k: terms[k] + tt[k] for k in terms}
        if rec_swap is not None:
            swap_x, swap_t = rec_swap.float().chunk(2)
            terms["rec_swap"] = reconstruction_mse(swap_x, x.float()) + reconstruction_mse(swap_t, xt.float())
            loss = loss + self.loss_cfg.w_swap * terms["rec_swap"]
        cxm, ctm = cx.c_mu.float(), ct.c_mu.float()
        if self.loss_cfg.w_c_pos:
            terms["c_pos"] = cosine_distance_loss(cxm, ctm)
            loss = loss + self._cos_weight("w_c_pos") * terms["c_pos"]
        if self.loss_cfg.w_c_neg and c_neg is not None:
            terms["c_neg"] = cosine_similarity_loss(cxm, c_neg.float())
            loss = loss + self._cos_weight("w_c_neg") * terms["c_neg"]
        if self.loss_cfg.w_c_nn:
            neighbour = ctm.detach()[nearest_other(cxm, ctm)]
            terms["c_nn"] = cosine_distance_loss(cxm, neighbour)
            loss = loss + self._cos_weight("w_c_nn") * terms["c_nn"]
        if self.loss_cfg.w_z_neg:
            terms["z_neg"] = cosine_similarity_loss(cx.z_mu.float(), ct.z_mu.float(), self.loss_cfg.z_neg_margin)
            loss = loss + self._cos_weight("w_z_neg") * terms["z_neg"]
        if self.loss_cfg.w_decorr:
            z_views = [cast(torch.Tensor, codes.z_mu).float() for codes in (cx, ct)]  # DualContrast always has z
            both_c, both_z = torch.cat([cxm, ctm]), torch.cat(z_views)
            terms["decorr"] = cross_correlation_loss(both_c, both_z)
            loss = loss + self.loss_cfg.w_decorr * terms["decorr"]
        return loss, terms

    def draw(self, x: torch.Tensor) -> StepDraws:
        """Every random draw of one step on batch ``x``, taken in a fixed order.

        Both steps consume exactly these draws, so from the same RNG state they see the same
        transformations, noise and pairings (the equivalence tests and the quality comparison
        of the benchmark rely on it). Draws a term does not use are still taken, so ablations
        see the same stream too.
        """
        b = x.shape[0]
        with torch.no_grad():
            xa, xt = self.views.pair(x, self.transform)
        dev, dt = x.device, x.dtype
        return StepDraws(
            xa=xa,
            xt=xt,
            eps_c=torch.randn(2 * b, self.content_dim, device=dev, dtype=dt),
            eps_z=torch.randn(2 * b, self.transform_dim, device=dev, dtype=dt),
            neg=derangement(b, dev),
            perm_a=torch.randperm(b, device=dev),
            perm_b=torch.randperm(b, device=dev),
            z_star=torch.randn(b, self.transform_dim, device=dev, dtype=dt),
        )

    def _sample_codes(
        self, codes: Codes, eps_c: torch.Tensor, eps_z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert codes.c_mu is not None and codes.c_logvar is not None
        assert codes.z_mu is not None and codes.z_logvar is not None
        return _sample(codes.c_mu, codes.c_logvar, eps_c), _sample(codes.z_mu, codes.z_logvar, eps_z)

    def _decode_sample(self, codes: Codes, eps_c: torch.Tensor, eps_z: torch.Tensor) -> torch.Tensor:
        return self.decoder(*self._sample_codes(codes, eps_c, eps_z))

    def _z_star(self, d: StepDraws, z_mu: torch.Tensor | None) -> torch.Tensor:
        """The shared z of each z-positive pair: the prior draw, or (``codes``) the z mean of the
        sample the content negatives pair it with, detached."""
        if self.loss_cfg.z_pos_source == "codes":
            assert z_mu is not None
            return z_mu.detach()[d.neg]
        return d.z_star

    def _z_positive(self, z1: torch.Tensor, z2: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        terms["z_pos"] = cosine_distance_loss(z1.float(), z2.float())
        return self._cos_weight("w_z_pos") * terms["z_pos"]

    def _swap_partners(self, cx: Codes, ct: Codes) -> torch.Tensor:
        """``(2B,)``: for each row of ``[view a; view b]``, the row whose sampled c decodes it in the
        swapped reconstruction: its own other view, or the other view of its nearest other sample."""
        ca, cb = cx.c_mu, ct.c_mu
        assert ca is not None and cb is not None
        b = ca.shape[0]
        if self.loss_cfg.swap_content == "view":
            return torch.arange(2 * b, device=ca.device).roll(b)
        return torch.cat([b + nearest_other(ca, cb), nearest_other(cb, ca)])

    # -- the two steps --------------------------------------------------------------------------
    def _fused_losses(
        self, x: torch.Tensor, d: StepDraws, shadow: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """The forward part of the fused step: ``(main loss, z-positive loss, raw terms)``.

        The z-positive pair is encoded with ``shadow``: detached copies of the encoder's
        weights (same storage, separate leaves), so ONE backward pass leaves the main
        gradient in the weights' ``.grad`` and the z-positive gradient in the copies'
        ``.grad``. This function is pure tensor code: :meth:`compile_step` compiles it whole.
        """
        b = x.shape[0]
        lc = self.loss_cfg
        with self.autocast():
            both = self.encode(torch.cat([d.xa, d.xt]))
            cx, ct = both.split([b, b])
            rec_swap = None
            if lc.w_swap:
                # One decoder pass: the plain reconstructions, then [c with the views' halves
                # exchanged] with [z].
                c_s, z_s = self._sample_codes(both, d.eps_c, d.eps_z)
                own = 2 * b if lc.vae_on_transformed else b
                rec, rec_swap = self.decoder(
                    torch.cat([c_s[:own], c_s[self._swap_partners(cx, ct)]]), torch.cat([z_s[:own], z_s])
                ).split([own, 2 * b])
                rec_x, rec_t = rec.split([b, b]) if lc.vae_on_transformed else (rec, None)
            elif lc.vae_on_transformed:
                rec_x, rec_t = self._decode_sample(both, d.eps_c, d.eps_z).split([b, b])
            else:
                rec_x, rec_t = self._decode_sample(cx, d.eps_c[:b], d.eps_z[:b]), None
            assert cx.c_mu is not None
            c_neg = cx.c_mu[d.neg] if lc.w_c_neg else None
            loss, terms = self._main_terms(d.xa, d.xt, cx, ct, c_neg, rec_x, rec_t, rec_swap)
            z_pos_loss = None
            if lc.w_z_pos:
                c = cx.c_mu.detach()
                z_star = self._z_star(d, cx.z_mu)
                with torch.no_grad():
                    pair = self.views.finish(
                        self.decoder(torch.cat([c[d.perm_a], c[d.perm_b]]), z_star.repeat(2, 1))
                    )
                _, _, z_pair, _ = torch.func.functional_call(self.encoder, shadow, (pair,))
                z_pos_loss = self._z_positive(z_pair[:b], z_pair[b:], terms)
        return loss, z_pos_loss, terms

    def compile_step(self, **options: Any) -> None:
        """``torch.compile`` the training computation: for the fused step its whole forward
        (networks and losses: one graph, one compiled backward), for the reference step the
        networks. ``options`` go to ``torch.compile`` (e.g. ``mode="max-autotune"``)."""
        if self.step == "fused":
            self._fused_forward = torch.compile(self._fused_losses, **options)
        else:
            for _, net in self.named_networks():
                net.compile(**options)

    def _fused_step(
        self, x: torch.Tensor, opt: dict[str, torch.optim.Optimizer], draws: StepDraws | None = None
    ) -> dict[str, torch.Tensor]:
        """The objective of :meth:`_reference_step` with nothing computed twice.

        - one encoder pass over ``[x, T(x)]`` (per-sample encoders: concatenating changes no
          output); the content negatives are the codes of ``x`` permuted, not a re-encoding;
        - one decoder pass over both reconstructions;
        - the z-positive images decoded from the contents of ``x`` already computed, under
          ``no_grad`` (the reference backpropagates through the decoder's weights only to
          discard the result), then one encoder pass over both;
        - one backward pass yields both gradients, at the same weights, before either
          optimizer steps. The reference builds the z-positive pair after the main step;
          that is the only difference (tests/unit/models/test_dualcontrast_fused_step.py proves the gradients
          equal otherwise).
        """
        d = draws if draws is not None else self.draw(x)
        enc_params = dict(self.encoder.named_parameters())
        shadow = {k: p.detach().requires_grad_() for k, p in enc_params.items()}
        forward = getattr(self, "_fused_forward", self._fused_losses)
        loss, z_pos_loss, terms = forward(x, d, shadow)
        main, enc = opt["main"], opt["encoder"]
        main.zero_grad(set_to_none=True)
        (loss if z_pos_loss is None else loss + z_pos_loss).backward()
        self.optimizer_step(main)
        if z_pos_loss is not None:
            for k, p in enc_params.items():
                p.grad = shadow[k].grad
            self.optimizer_step(enc, list(enc_params.values()))
            loss = loss + z_pos_loss
        terms["loss"] = loss
        return {k: v.detach() for k, v in terms.items()}

    def _reference_step(
        self, x: torch.Tensor, opt: dict[str, torch.optim.Optimizer], draws: StepDraws | None = None
    ) -> dict[str, torch.Tensor]:
        """The published per-step procedure (train_mnist.py / train_subtomo.py of the authors).

        Seven encoder passes (x, T(x), the permuted x, two more permuted copies for the
        z-positive contents, the two decoded images) and four decoder passes (six with the
        swapped reconstruction, not in the scripts: one per swapped view); the main loss
        is backpropagated and stepped first, then the z-positive pair is built with the
        updated weights and backpropagated through decoder and encoder, and only the
        encoder optimizer steps. Kept as the speed baseline and the check that the fused
        step learns the same thing.
        """
        d = draws if draws is not None else self.draw(x)
        b = x.shape[0]
        lc = self.loss_cfg
        with self.autocast():
            cx = self.encode(d.xa)
            rec_x = self._decode_sample(cx, d.eps_c[:b], d.eps_z[:b])
            ct = self.encode(d.xt)
            rec_t = self._decode_sample(ct, d.eps_c[b:], d.eps_z[b:]) if lc.vae_on_transformed else None
            rec_swap = None
            if lc.w_swap:
                c_x, z_x = self._sample_codes(cx, d.eps_c[:b], d.eps_z[:b])
                c_t, z_t = self._sample_codes(ct, d.eps_c[b:], d.eps_z[b:])
                partner = torch.cat([c_x, c_t])[self._swap_partners(cx, ct)]
                rec_swap = torch.cat([self.decoder(partner[:b], z_x), self.decoder(partner[b:], z_t)])
            c_neg = self.encode(d.xa[d.neg]).c_mu if lc.w_c_neg else None
            loss, terms = self._main_terms(d.xa, d.xt, cx, ct, c_neg, rec_x, rec_t, rec_swap)
        opt["main"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer_step(opt["main"])
        if lc.w_z_pos:
            with self.autocast():
                c_a = self.encode(d.xa[d.perm_a]).c_mu
                c_b = self.encode(d.xa[d.perm_b]).c_mu
                assert c_a is not None and c_b is not None
                z_star = self._z_star(d, self.encode(d.xa).z_mu if lc.z_pos_source == "codes" else None)
                x1 = self.views.finish(self.decoder(c_a.detach(), z_star))
                x2 = self.views.finish(self.decoder(c_b.detach(), z_star))
                z1, z2 = self.encode(x1).z_mu, self.encode(x2).z_mu
                assert z1 is not None and z2 is not None
                z_pos_loss = self._z_positive(z1, z2, terms)
            opt["encoder"].zero_grad(set_to_none=True)
            z_pos_loss.backward()
            self.optimizer_step(opt["encoder"])
            loss = loss + z_pos_loss.detach()
        terms["loss"] = loss
        return {k: v.detach() for k, v in terms.items()}


@dataclass
class StepDraws:
    """The random draws of one step. ``B`` = batch size.

    ``xa`` / ``xt``: the two views of ``x`` (:meth:`PairViews.pair`: ``T_a(x)`` and ``T_b(x)``
    finished alike, or ``x`` and ``T(x)`` under the paper's pairing), like ``x``; ``eps_c`` ``(2B, dc)`` / ``eps_z`` ``(2B, dz)``: the
    reparameterisation noise of ``x`` (first ``B`` rows) and ``T(x)``; ``neg``: ``(B,)``
    derangement pairing each sample with a content negative; ``perm_a`` / ``perm_b``:
    ``(B,)`` the samples whose contents decode the z-positive pair; ``z_star``: ``(B, dz)``
    the shared prior draw of each pair.
    """

    xa: torch.Tensor
    xt: torch.Tensor
    eps_c: torch.Tensor
    eps_z: torch.Tensor
    neg: torch.Tensor
    perm_a: torch.Tensor
    perm_b: torch.Tensor
    z_star: torch.Tensor


def _adam(params: Any, lr: float) -> torch.optim.Adam:
    """Adam as in the reference scripts, with the fused implementation where torch has one.

    One kernel updates every tensor instead of about ten per tensor: on a GPU that removes
    most of the optimizer's launches and keeps the step counter on the device (no host
    read per step); on a CPU the optimizer costs about a fifth of the per-tensor loop.
    """
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused)


def _sample(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The reparameterisation ``mu + eps * sigma`` with given noise. ``(B, d) x3 -> (B, d)``."""
    return mu + eps * torch.exp(0.5 * logvar)



for _name in ABLATIONS:
    MODELS.register(_name)(DualContrast)
