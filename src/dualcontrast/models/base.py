"""The contract every method implements, so training and evaluation never ask which it is.

- :meth:`encode` ``x -> Codes`` (means and log-variances of c and z; None where a method
  has no such code),
- :meth:`decode` ``(c, z) -> x`` where the method has a decoder,
- :meth:`configure_optimizers` -> named optimizers (the trainer adds one ``train.schedule`` scheduler to each),
- :meth:`training_step` ``(x, optimizers) -> named loss terms``: one full update on a batch
  (a method with several optimizers, like DualContrast, steps each itself). The terms are
  detached tensors, so logging never forces a device sync.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import LossConfig
from ..losses import vae_terms
from ..registry import Registry


@dataclass
class Codes:
    """Posterior parameters of the content code c and the transformation code z. ``(B, d)`` each."""

    c_mu: torch.Tensor | None
    c_logvar: torch.Tensor | None
    z_mu: torch.Tensor | None
    z_logvar: torch.Tensor | None

    def split(self, sizes: list[int]) -> list[Codes]:
        parts = [t.split(sizes) if t is not None else [None] * len(sizes) for t in self.as_tuple()]
        return [Codes(*p) for p in zip(*parts, strict=True)]

    def as_tuple(self) -> tuple[torch.Tensor | None, ...]:
        return (self.c_mu, self.c_logvar, self.z_mu, self.z_logvar)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def configured_vae_terms(
    lc: LossConfig,
    x: torch.Tensor,
    x_rec: torch.Tensor,
    c_mu: torch.Tensor,
    c_logvar: torch.Tensor,
    z_mu: torch.Tensor,
    z_logvar: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """:func:`~dualcontrast.losses.vae_terms` under the KL conventions chosen in ``lc``."""
    return vae_terms(
        x,
        x_rec,
        c_mu,
        c_logvar,
        z_mu,
        z_logvar,
        per_pixel=lc.kl_normalization == "pixels",
        reference=lc.kl == "reference",
    )


class DisentanglementModel(nn.Module, ABC):
    """Base class of every method (DualContrast and the baselines)."""

    #: set by the trainer: autocast dtype for forward passes (None = full precision)
    amp_dtype: torch.dtype | None = None

    def __init__(self) -> None:
        super().__init__()
        self._grad_sync: Any = None

    @abstractmethod
    def encode(self, x: torch.Tensor) -> Codes:
        """Posterior parameters for a batch ``(B, C, H, W)`` / ``(B, C, D, H, W)``."""

    def decode(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
        """Reconstruction from codes; None for methods without a decoder."""
        return None

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A data batch as the encoder saw its training inputs (embedding, evaluation, figures).

        Methods that train on finished pair views (:mod:`dualcontrast.transforms.views`) apply
        the same finishing here; others see the data as loaded.
        """
        return x

    def embed_codes(self, x: torch.Tensor) -> Codes:
        """:meth:`encode` of a data batch through :meth:`prepare`: what every code reported is."""
        return self.encode(self.prepare(x))

    @abstractmethod
    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers; their names key the checkpoint."""

    @abstractmethod
    def training_step(
        self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]:
        """One update on batch ``x``; returns detached scalar loss terms (``"loss"`` is the total)."""

    def on_epoch_end(self, epochs_done: int) -> None:
        """Hook for methods with per-epoch state (none by default), called by the trainer after
        every epoch with the number of epochs completed so far (1 after the first)."""
        del epochs_done

    @property
    def has_decoder(self) -> bool:
        return True

    # -- helpers for subclasses -------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for forward passes, when the trainer enabled mixed precision."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        device_type = next(self.parameters()).device.type
        return torch.autocast(device_type=device_type, dtype=self.amp_dtype)

    def set_gradient_sync(self, sync: Any) -> None:
        """Install a callable ``sync(params)`` that averages gradients across processes."""
        self._grad_sync = sync

    def optimizer_step(
        self, optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter] | None = None
    ) -> None:
        """Average gradients across processes (in distributed runs), then step."""
        if self._grad_sync is not None:
            if params is None:
                params = [p for g in optimizer.param_groups for p in g["params"]]
            self._grad_sync(list(params))
        optimizer.step()

    def named_networks(self) -> Iterator[tuple[str, nn.Module]]:
        """Submodules holding weights, for torch.compile / channels_last / device moves."""
        return self.named_children()


MODELS: Registry[type[DisentanglementModel]] = Registry("model")
