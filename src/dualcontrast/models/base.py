"""The contract every method implements, so training and evaluation never ask which it is.

- :meth:`encode` ``x -> Codes`` (means and log-variances of c and z; None where a method
  has no such code),
- :meth:`decode` ``(c, z) -> x`` where the method has a decoder,
- :meth:`configure_optimizers` -> named optimizers (the trainer adds one ``train.schedule`` scheduler to each),
- :meth:`training_step` ``(x, optimizers) -> named loss terms``: one full update on a batch
  (a method with several optimizers, like DualContrast, steps each itself). The terms are
  detached tensors, so logging never forces a device sync. The default is one Adam step of
  ``"main"`` on the ``"loss"`` term of :meth:`step_terms`.

:meth:`from_config` is shared: it passes the config's model settings, loss and transform sections,
the training step and the method's typed ``model.params`` (:attr:`Params`) to the constructor,
each where the constructor takes it; a method adds its own in :meth:`config_kwargs`.
"""

from __future__ import annotations

import contextlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..config import Config, LossConfig
from ..losses import vae_terms
from ..registry import Registry
from ..rundir import choose_checkpoint, load_checkpoint
from .params import ModelParams

if TYPE_CHECKING:
    from ..rundir import RunDir


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


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; the module's own mode is put back afterwards, also on errors."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


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
    #: the method's typed ``model.params`` (the base class: the method takes none)
    Params: ClassVar[type[ModelParams]] = ModelParams

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

    def training_step(
        self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]:
        """One update on batch ``x``; returns detached scalar loss terms (``"loss"`` is the total).

        Default: the inputs of :meth:`step_inputs` (without gradients), :meth:`step_terms` of them
        under autocast, then one step of optimizer ``"main"`` on ``"loss"``.
        """
        with torch.no_grad():
            inputs = self.step_inputs(x)
        with self.autocast():
            terms = self.step_terms(*inputs)
        self.minimize(optimizers["main"], terms["loss"])
        return {k: v.detach() for k, v in terms.items()}

    def step_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What :meth:`step_terms` takes, made from batch ``x`` without gradients (e.g. a method's
        pair views); ``(x,)`` by default."""
        return (x,)

    def step_terms(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The named loss terms of :meth:`step_inputs` with the total as ``"loss"`` (for the default
        :meth:`training_step`; a method with its own training step need not implement it)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither step_terms nor training_step")

    @classmethod
    def from_config(cls, cfg: Config, sample_shape: Sequence[int], output: str) -> DisentanglementModel:
        """The model ``cfg`` describes, for samples of ``sample_shape`` and decoder ``output``."""
        return cls(sample_shape, **cls.config_kwargs(cfg, sample_shape, output))

    @classmethod
    def config_kwargs(cls, cfg: Config, sample_shape: Sequence[int], output: str) -> dict[str, Any]:
        """Constructor keywords from ``cfg``: the settings every method shares, those the
        constructor takes, then the typed ``model.params`` (:attr:`Params`, checked)."""
        from ..transforms import build_transform
        from ..transforms.views import ViewSettings

        del sample_shape  # used by methods that build other models (DisCo)
        m = cfg.model
        shared: dict[str, Any] = {
            "content_dim": m.content_dim,
            "transform_dim": m.transform_dim,
            "arch": m.arch,
            "decoder": m.decoder,
            "output": output,
            "encoder_options": m.encoder_options,
            "decoder_options": m.decoder_options,
            "loss": lambda: LossConfig(**vars(cfg.loss)),
            "transform": lambda: build_transform(cfg.transform),
            "views": lambda: ViewSettings(**vars(cfg.views)),
            "step": cfg.train.step,
        }
        takes = inspect.signature(cls.__init__).parameters
        kwargs = {k: v() if callable(v) else v for k, v in shared.items() if k in takes}
        return {**kwargs, **cls.Params.parse(m.name, m.params).as_kwargs()}

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

    def minimize(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """``zero_grad -> backward -> step`` of ``optimizer`` on ``loss`` (gradients averaged across
        processes in distributed runs)."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer_step(optimizer)

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


def build_model(cfg: Config, sample_shape: Sequence[int], output: str) -> DisentanglementModel:
    """The model named by ``cfg.model.name`` for samples of ``sample_shape``."""
    return MODELS.get(cfg.model.name).from_config(cfg, sample_shape, output)


def load_trained_model(
    run: RunDir, cfg: Config, device: torch.device, checkpoint: str = "auto"
) -> tuple[DisentanglementModel, dict[str, Any]]:
    """The model of a run's checkpoint (finished or interrupted), in eval mode, and the checkpoint.

    ``checkpoint``: ``auto`` (best.pt where the run has one, else last.pt), ``best`` or ``last``.
    The returned checkpoint dict says which in ``ckpt["chosen"]``
    (see :func:`dualcontrast.training.checkpoint_label`).
    """
    path, kind = choose_checkpoint(run.last_checkpoint, run.best_checkpoint, checkpoint)
    ckpt = load_checkpoint(path, map_location=device)
    meta = ckpt["meta"]
    model = build_model(cfg, tuple(meta["sample_shape"]), meta["output"]).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    ckpt["chosen"] = kind
    return model, ckpt
