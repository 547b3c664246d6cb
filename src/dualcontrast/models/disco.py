"""DisCo (paper 004): contrast image variations along learned directions of a frozen generator.

The harness trains one model per run, so DisCo trains in two phases inside one model:

1. **Generator** (the first ``params.generator_epochs`` epochs; default half of ``train.epochs``):
   the generator G is the project's two-latent VAE ``vae2`` (DualContrast with every contrastive
   weight at zero), trained exactly as the ``vae2`` model trains. ``params.generator_run`` = a
   finished ``vae2`` run directory loads a trained generator instead and skips this phase (the
   weights are copied into this run's checkpoints, but building the model — also for ``embed``
   and ``evaluate`` — reads that run again, so keep it). The phase is stored in the checkpoint.
2. **DisCo** (the remaining epochs): G is frozen. A *Navigator* ``A`` (``L x K``, unit-norm
   columns: the paper's best variant) holds K directions in G's latent space (``[z, c]``
   concatenated, ``L = dz + dc``), and a *Disentangling Encoder* E maps images to a J-dim
   representation. A variation is ``v = |E(G(w + eps A_d)) - E(G(w))|`` normalised to unit length.
   Each step draws one direction ``d^`` shared by B queries and N positive keys, and M negative
   keys along other directions (each uniform over the rest), all from independent start points
   ``w`` and shifts ``eps``. Loss: ``L_logits-f + lambda L_ed``:

   - ``L_logits``: binary cross-entropy on the logits ``q . k / tau`` with label 1 for positive
     and 0 for negative keys (eq. 3-4; averaged over the ``B x (N + M)`` logits like the public
     code, where the paper sums over keys — a constant factor);
   - hard-negative flipping (eq. 7): a negative whose similarity ``q . k`` reaches
     ``params.threshold`` gets that similarity as its (soft) label instead of 0 — the BCE with a
     pseudo-label (the paper's eq. 7 writes only the ``alpha log sigma(alpha)`` half of it); the
     similarity, not the logit, is the label, which is the paper's alpha at its ``tau = 1`` and
     stays a probability for any tau;
   - ``L_ed`` (eq. 5-6): the entropy of ``softmax(mean of the queries and positive keys)``
     divided by J, which pushes each direction's variations to one dominant dimension.

   Negative keys are detached (``params.detach_negatives``, as in the public code, which treats
   them as a queue). Adam on Navigator and E only (``params.disco_lr``, default ``train.lr``; the
   paper uses 1e-5). The log's ``hard_neg`` column is the share of negatives at or above the
   threshold: with flipping on, a value drifting towards 1 means the variations are collapsing
   onto one another (small J makes that easier; the paper uses J = 32).

   Defaults follow the paper's appendix A: ``queries`` B = 32, ``positives`` N = 32,
   ``negatives`` M = 64, ``temperature`` 1, ``threshold`` 0.95, ``entropy_weight`` 1;
   ``directions`` K defaults to G's latent size L.

Where the walks start: ``params.latent_source: posterior`` (default) takes G's encoder means of the
current real batch — the project's VAE has a very small KL weight, so its prior N(0, I) covers
regions the decoder never saw; ``prior`` samples N(0, I) as the paper does for GANs. Shift
magnitudes are uniform in ``[shift_min, shift_max]`` with a random sign (the paper's
``U[-eps, eps]`` with the tiny shifts the public code also avoids removed), in units of the
start points' spread (mean per-dimension std), so they mean the same whatever scale G's latent has.

**Content and transformation codes.** DisCo learns one J-dim representation ``E(x)`` with
``J = model.content_dim + model.transform_dim``; which dimensions are "transformation" is decided
the same way DualContrast defines z — by what changes under the pair transformation T
(``cfg.transform``, rotation by default). During every DisCo epoch the real batches are encoded
as ``E(x)`` and ``E(T(x))``; the sensitivity of dimension j is ``mean |E_j(T x) - E_j(x)|`` divided
by the std of ``E_j(x)`` over the data (scale-free). At each epoch end the ``transform_dim`` most
sensitive dimensions become z and the others c (stored in the checkpoint). ``decode`` has no
honest implementation — E's representation has no map back to G's latent — so DisCo has no
decoder (``has_decoder`` is False; no transfer grid).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..config import Config, load_config
from ..errors import ConfigError
from ..nn import build_encoder, one_trunk
from ..rundir import RunDir
from ..transforms import PairTransform, build_transform
from .base import MODELS, Codes, DisentanglementModel, load_trained_model
from .dualcontrast import ABLATIONS, DualContrast
from .params import ModelParams

log = logging.getLogger(__name__)

GENERATOR_MODEL = "vae2"
LATENT_SOURCES = ("posterior", "prior")
PHASE_GENERATOR, PHASE_DISCO = 1, 2

# -- the loss pieces, as pure functions --------------------------------------------------------


def unit_columns(a: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise each column of ``(L, K)`` to unit length."""
    return a / a.norm(dim=0, keepdim=True).clamp_min(eps)


def variation(e_shifted: torch.Tensor, e_start: torch.Tensor) -> torch.Tensor:
    """Unit-length ``|E(G(w + eps A_d)) - E(G(w))|`` (eq. 1). ``(n, J), (n, J) -> (n, J)``."""
    return F.normalize((e_shifted - e_start).abs(), dim=1)


def flip_labels(sim_neg: torch.Tensor, threshold: float) -> torch.Tensor:
    """Targets of the negative logits: 0, or the (detached) similarity where it reaches ``threshold``.

    ``(B, M) -> (B, M)``; the pairs flipped are exactly those with ``sim >= threshold``.
    """
    sim = sim_neg.detach()
    return torch.where(sim >= threshold, sim, torch.zeros_like(sim))


def contrastive_logits_loss(
    q: torch.Tensor,
    k_pos: torch.Tensor,
    k_neg: torch.Tensor,
    *,
    temperature: float = 1.0,
    threshold: float = 0.95,
    flip: bool = True,
) -> torch.Tensor:
    """``L_logits`` (eq. 3-4) or, with ``flip``, ``L_logits-f`` (eq. 7-8), averaged over all logits.

    ``q: (B, J)``, ``k_pos: (N, J)``, ``k_neg: (M, J)``, unit rows -> scalar.
    """
    sim_pos = q @ k_pos.T
    sim_neg = q @ k_neg.T
    neg_labels = flip_labels(sim_neg, threshold) if flip else torch.zeros_like(sim_neg)
    logits = torch.cat([sim_pos, sim_neg], dim=1) / temperature
    labels = torch.cat([torch.ones_like(sim_pos), neg_labels], dim=1)
    return F.binary_cross_entropy_with_logits(logits, labels)


def entropy_domination(q: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
    """``L_ed`` (eq. 5-6): ``-(1/J) sum_j p_j log p_j`` with ``p = softmax(mean of [q; k_pos])``."""
    c = torch.cat([q, k_pos]).mean(0)
    logp = F.log_softmax(c, dim=0)
    return -(logp.exp() * logp).sum() / c.numel()


def split_by_sensitivity(sensitivity: torch.Tensor, transform_dim: int) -> torch.Tensor:
    """Dimension order ``(J,)``: the ``J - transform_dim`` least sensitive first (c), then the rest (z).

    Stable order inside each group (ascending dimension index), so equal sensitivities keep
    the natural order.
    """
    j = sensitivity.numel()
    if not 0 <= transform_dim <= j:
        raise ValueError(f"transform_dim must be in [0, {j}], got {transform_dim}")
    most = torch.argsort(sensitivity, descending=True, stable=True)[:transform_dim]
    is_z = torch.zeros(j, dtype=torch.bool, device=sensitivity.device)
    is_z[most] = True
    idx = torch.arange(j, device=sensitivity.device)
    return torch.cat([idx[~is_z], idx[is_z]])


def draw_directions(k: int, n_pos: int, n_neg: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One direction index for the positives (repeated ``n_pos`` times) and ``n_neg`` others.

    Each negative is uniform over the ``k - 1`` other directions.
    """
    if k < 2:
        raise ValueError("DisCo needs at least 2 directions")
    d_hat = torch.randint(k, (), device=device)
    r = torch.randint(k - 1, (n_neg,), device=device)
    return d_hat.expand(n_pos), r + (r >= d_hat).long()


def draw_shifts(n: int, low: float, high: float, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Shifts with magnitude ~ U[low, high] and a random sign. ``-> (n,)``."""
    mag = low + (high - low) * torch.rand(n, device=device, dtype=dtype)
    sign = torch.randint(2, (n,), device=device).to(dtype) * 2 - 1
    return mag * sign


# -- networks -------------------------------------------------------------------------------------


class Navigator(nn.Module):
    """K learnable directions in an L-dim latent space (unit-norm columns of ``A``)."""

    def __init__(self, latent_dim: int, directions: int):
        super().__init__()
        self.matrix = nn.Parameter(torch.randn(latent_dim, directions))

    def forward(self, index: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Latent offsets ``shift_i * A[:, index_i]``. ``(n,), (n,) -> (n, L)``."""
        return shift[:, None] * unit_columns(self.matrix)[:, index].T


class DisentanglingEncoder(nn.Module):
    """E: the preset conv trunk, then FC 256 -> 256 -> J (the paper's head, Table 7)."""

    def __init__(self, arch: str, sample_shape: Sequence[int], dim: int, hidden: int = 256, **options: Any):
        super().__init__()
        options = one_trunk(options, "disco", "DisCo's encoder E has one code")
        self.features = build_encoder(arch, sample_shape, 1, 1, **options).features
        with torch.no_grad():
            n_features = self.features(torch.zeros(1, *sample_shape)).shape[1]
        self.head = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# -- the model ------------------------------------------------------------------------------------


@dataclass
class DisCoParams(ModelParams):
    """``model.params`` of disco (checked by :class:`DisCo`): the generator (a finished run, or trained
    here for ``generator_epochs``, default half of train.epochs), the navigator's directions, the
    contrastive draw and loss, the shifts, and the DisCo phase's learning rate."""

    generator_run: str | None = None
    generator_epochs: int | None = None
    directions: int | None = None
    queries: int = 32
    positives: int = 32
    negatives: int = 64
    temperature: float = 1.0
    threshold: float = 0.95
    flip: bool = True
    entropy_weight: float = 1.0
    shift_min: float = 0.5
    shift_max: float = 3.0
    latent_source: str = "posterior"
    detach_negatives: bool = True
    disco_lr: float | None = None


class DisCo(DisentanglementModel):
    Params = DisCoParams

    def __init__(
        self,
        sample_shape: Sequence[int],
        generator: DualContrast,
        *,
        content_dim: int = 10,
        transform_dim: int = 10,
        arch: str = "auto",
        encoder_options: dict[str, Any] | None = None,
        transform: PairTransform | None = None,
        generator_epochs: int = 1,
        directions: int | None = None,
        queries: int = 32,
        positives: int = 32,
        negatives: int = 64,
        temperature: float = 1.0,
        threshold: float = 0.95,
        flip: bool = True,
        entropy_weight: float = 1.0,
        shift_min: float = 0.5,
        shift_max: float = 3.0,
        latent_source: str = "posterior",
        detach_negatives: bool = True,
        disco_lr: float | None = None,
    ):
        super().__init__()
        if latent_source not in LATENT_SOURCES:
            raise ConfigError(
                f"disco params.latent_source must be one of {LATENT_SOURCES}, got {latent_source!r}"
            )
        if min(queries, positives, negatives) < 1:
            raise ConfigError("disco params queries, positives and negatives must be >= 1")
        if not 0 < shift_min <= shift_max:
            raise ConfigError(f"disco needs 0 < shift_min <= shift_max, got {shift_min}, {shift_max}")
        if temperature <= 0:
            raise ConfigError(f"disco params.temperature must be > 0, got {temperature}")
        if generator_epochs < 0:
            raise ConfigError(f"disco params.generator_epochs must be >= 0, got {generator_epochs}")
        self.sample_shape = tuple(sample_shape)
        self.content_dim = content_dim
        self.transform_dim = transform_dim
        self.generator = generator
        self.latent_dim = generator.content_dim + generator.transform_dim
        k = directions if directions is not None else self.latent_dim
        if k < 2:
            raise ConfigError(f"disco params.directions must be >= 2, got {k}")
        self.navigator = Navigator(self.latent_dim, k)
        self.contrastor = DisentanglingEncoder(
            arch, self.sample_shape, content_dim + transform_dim, **(encoder_options or {})
        )
        self.transform = transform or build_transform({"name": "rotation", "max_angle": 90.0})
        self.generator_epochs = generator_epochs
        self.counts = (queries, positives, negatives)
        self.temperature = temperature
        self.threshold = threshold
        self.flip = flip
        self.entropy_weight = entropy_weight
        self.shift_range = (shift_min, shift_max)
        self.latent_source = latent_source
        self.detach_negatives = detach_negatives
        self.disco_lr = disco_lr
        j = content_dim + transform_dim
        self.register_buffer("phase", torch.tensor(PHASE_DISCO if generator_epochs == 0 else PHASE_GENERATOR))
        self.register_buffer("dim_order", torch.arange(j))
        # Per-epoch sums for the c/z split; reset every epoch, so not part of the checkpoint.
        self.register_buffer("_sens_sum", torch.zeros(j), persistent=False)
        self.register_buffer("_feat_sum", torch.zeros(j, dtype=torch.float64), persistent=False)
        self.register_buffer("_feat_sq", torch.zeros(j, dtype=torch.float64), persistent=False)
        self.register_buffer("_count", torch.zeros((), dtype=torch.float64), persistent=False)

    @classmethod
    def from_config(cls, cfg: Config, sample_shape: Sequence[int], output: str) -> DisCo:
        try:
            return super().from_config(cfg, sample_shape, output)
        except TypeError as e:  # a value of the wrong type, met by the constructor's checks
            raise ConfigError(f"bad model.params for disco: {e}") from None

    @classmethod
    def config_kwargs(cls, cfg: Config, sample_shape: Sequence[int], output: str) -> dict[str, Any]:
        kwargs = super().config_kwargs(cfg, sample_shape, output)
        run = kwargs.pop("generator_run")
        if run is not None:
            kwargs["generator"] = load_generator(run, sample_shape)
            if kwargs["generator_epochs"] is None:
                kwargs["generator_epochs"] = 0
            if kwargs["generator_epochs"] != 0:
                raise ConfigError(
                    "disco: params.generator_run loads a trained generator; set generator_epochs to 0"
                )
            return kwargs
        gen_cfg = copy.deepcopy(cfg)
        gen_cfg.model.name, gen_cfg.model.params = GENERATOR_MODEL, {}
        kwargs["generator"] = DualContrast.from_config(gen_cfg, sample_shape, output)
        # The generator trains for the first part of the schedule, so its length bounds that part.
        total = cfg.train.epochs
        epochs = kwargs["generator_epochs"]
        if epochs is None:
            epochs = kwargs["generator_epochs"] = max(1, total // 2)
        if not isinstance(epochs, int) or not 1 <= epochs < total:
            raise ConfigError(
                f"disco: params.generator_epochs must be an integer in [1, train.epochs) = "
                f"[1, {total}) so both phases run, got {epochs!r} "
                "(or give params.generator_run, a finished vae2 run)"
            )
        return kwargs

    # -- phases ---------------------------------------------------------------------------------
    @property
    def in_generator_phase(self) -> bool:
        return int(self.phase) == PHASE_GENERATOR

    def _apply_phase(self) -> None:
        """Freeze G in phase 2 (idempotent; also right after loading a checkpoint)."""
        self.generator.requires_grad_(self.in_generator_phase)

    def on_epoch_end(self, epochs_done: int) -> None:
        if self.in_generator_phase:
            if epochs_done >= self.generator_epochs:
                self.phase.fill_(PHASE_DISCO)
                self._apply_phase()
                log.info("disco: generator trained for %d epochs; frozen, DisCo phase starts", epochs_done)
            return
        self._reduce_stats()
        if self._count > 1:
            self.dim_order.copy_(split_by_sensitivity(self.sensitivity(), self.transform_dim))
        self._reset_stats()

    def _reduce_stats(self) -> None:
        """In distributed runs, sum the statistics of every process, so all ranks split alike."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for buf in (self._sens_sum, self._feat_sum, self._feat_sq, self._count):
                dist.all_reduce(buf)

    def _reset_stats(self) -> None:
        for buf in (self._sens_sum, self._feat_sum, self._feat_sq, self._count):
            buf.zero_()

    def sensitivity(self) -> torch.Tensor:
        """Per-dimension ``mean |E(T x) - E(x)| / std(E(x))`` over the batches seen this epoch. ``(J,)``."""
        n = self._count
        mean = self._feat_sum / n
        var = (self._feat_sq / n - mean**2).clamp_min(0.0) * n / (n - 1)
        return (self._sens_sum.double() / n / var.sqrt().clamp_min(1e-8)).float()

    @torch.no_grad()
    def update_split_stats(self, x: torch.Tensor) -> None:
        """Add a real batch ``(B, ...)`` to this epoch's sensitivity statistics (``E(x)`` vs ``E(T(x))``)."""
        e = self.contrastor(torch.cat(self.generator.views.pair(x, self.transform))).float()
        e_x, e_t = e.split(x.shape[0])
        self._sens_sum += (e_t - e_x).abs().sum(0)
        self._feat_sum += e_x.double().sum(0)
        self._feat_sq += e_x.double().pow(2).sum(0)
        self._count += x.shape[0]

    def named_networks(self) -> Iterator[tuple[str, nn.Module]]:
        for name, net in self.generator.named_networks():
            yield f"generator.{name}", net
        yield "navigator", self.navigator
        yield "contrastor", self.contrastor

    def set_gradient_sync(self, sync: Any) -> None:
        super().set_gradient_sync(sync)
        self.generator.set_gradient_sync(sync)

    # -- contract -------------------------------------------------------------------------------
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator.prepare(x)

    def encode(self, x: torch.Tensor) -> Codes:
        e = self.contrastor(x)[:, self.dim_order]
        c, z = e.split([self.content_dim, self.transform_dim], dim=1)
        return Codes(c, None, z, None)

    @property
    def has_decoder(self) -> bool:
        return False

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        gen = {f"generator_{k}": o for k, o in self.generator.configure_optimizers(lr).items()}
        params = [*self.navigator.parameters(), *self.contrastor.parameters()]
        return {**gen, "disco": torch.optim.Adam(params, lr=self.disco_lr or lr)}

    def training_step(
        self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]:
        self._apply_phase()
        zero = torch.zeros((), device=x.device)
        if self.in_generator_phase:
            gen_opts = {
                k.removeprefix("generator_"): o for k, o in optimizers.items() if k.startswith("generator_")
            }
            terms = self.generator.training_step(x, gen_opts)
            disco_keys = {"logits": zero, "entropy": zero, "hard_neg": zero}
            return {**terms, **disco_keys, "phase": zero + PHASE_GENERATOR}
        terms = self._disco_step(x, optimizers["disco"])
        self.update_split_stats(x)
        # Same columns in both phases (log.csv fixes them with its first row); inactive terms are 0.
        gen_keys = {"rec": zero, "kl_c": zero, "kl_z": zero}
        return {**gen_keys, **terms, "phase": zero + PHASE_DISCO}

    # -- DisCo ----------------------------------------------------------------------------------
    def _start_points(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, float]:
        """``n`` latent start points ``(n, L)`` ordered ``[z, c]``, and the unit of the shifts."""
        if self.latent_source == "prior":
            return torch.randn(n, self.latent_dim, device=x.device), 1.0
        with torch.no_grad():
            codes = self.generator.embed_codes(x)
            w = torch.cat([codes.z_mu, codes.c_mu], dim=1).float()
        unit = float(w.std(0).mean()) if w.shape[0] > 1 else 1.0
        return w[torch.randint(w.shape[0], (n,), device=x.device)], unit

    def generate(self, w: torch.Tensor) -> torch.Tensor:
        """G of latents ``(n, L)`` ordered ``[z, c]``."""
        z, c = w.split([self.generator.transform_dim, self.generator.content_dim], dim=1)
        return self.generator.decode(c, z)

    def draw_variations(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One draw of unit variations: queries ``(B, J)``, positive ``(N, J)`` and negative keys ``(M, J)``.

        The real batch ``x`` only seeds the walks' start points (``latent_source: posterior``).
        """
        b, n_pos, n_neg = self.counts
        total = b + n_pos + n_neg
        w, unit = self._start_points(x, total)
        d_pos, d_neg = draw_directions(self.navigator.matrix.shape[1], b + n_pos, n_neg, x.device)
        index = torch.cat([d_pos, d_neg])
        shifts = draw_shifts(total, *self.shift_range, device=x.device) * unit
        shifted = w + self.navigator(index, shifts)
        images = self.generate(torch.cat([w, shifted]))
        e = self.contrastor(images).float()
        v = variation(e[total:], e[:total])
        q, k_pos, k_neg = v.split([b, n_pos, n_neg])
        return q, k_pos, k_neg.detach() if self.detach_negatives else k_neg

    def disco_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The DisCo loss ``L_logits(-f) + lambda L_ed`` on one draw, plus the share of hard negatives."""
        q, k_pos, k_neg = self.draw_variations(x)
        logits = contrastive_logits_loss(
            q, k_pos, k_neg, temperature=self.temperature, threshold=self.threshold, flip=self.flip
        )
        ent = entropy_domination(q, k_pos)
        with torch.no_grad():
            # Negatives as similar as positives (flipped when flipping is on); near 1 = collapse.
            hard = (q @ k_neg.T >= self.threshold).float().mean()
        return {
            "logits": logits,
            "entropy": ent,
            "hard_neg": hard,
            "loss": logits + self.entropy_weight * ent,
        }

    def _disco_step(self, x: torch.Tensor, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        with self.autocast():
            terms = self.disco_terms(x)
        self.minimize(opt, terms["loss"])
        return {k: v.detach() for k, v in terms.items()}


def load_generator(run_path: str | Path, sample_shape: Sequence[int]) -> DualContrast:
    """The generator of a finished (or interrupted) DualContrast-family run directory, in eval mode."""
    run = RunDir.open(run_path)
    cfg = load_config(run.config)
    if cfg.model.name not in ABLATIONS:
        raise ConfigError(
            f"disco params.generator_run: {run.root} trained {cfg.model.name!r}; a generator must be "
            f"{GENERATOR_MODEL!r} (or another of {', '.join(ABLATIONS)})"
        )
    generator, ckpt = load_trained_model(run, cfg, torch.device("cpu"))
    meta = ckpt.get("meta", {})
    if tuple(meta.get("sample_shape", ())) != tuple(sample_shape):
        raise ConfigError(
            f"disco params.generator_run: {run.root} was trained on samples of shape "
            f"{tuple(meta.get('sample_shape', ()))}, the data here are {tuple(sample_shape)}"
        )
    if cfg.model.name != GENERATOR_MODEL:
        log.warning("disco: generator %s is a %s model, not %s", run.root, cfg.model.name, GENERATOR_MODEL)
    return generator


MODELS.register("disco")(DisCo)
