"""Hydra (Levy et al., NeurIPS 2024): a mixture of K neural fields with ab initio pose search.

Written from the paper's description (no code of the GPL implementation, ml-struct-bio/hydra
or DRGN-AI, is used). The model explains each 2D particle image ``y_i`` by one of ``K``
volumes, each a neural field in Fourier space conditioned on the particle's conformation code:

- **fields**: ``F_k(kappa, z)`` for 3D frequencies ``kappa`` (cycles/pixel, ``|kappa| < 1/2``),
  an MLP over geometric Fourier features of ``kappa`` with the code ``z`` entering the first
  layer, two outputs (real, imaginary). The field is Hermitian by construction (``F(-kappa) =
  conj F(kappa)``: it is evaluated on one half-space and conjugated on the other), so its volume
  is real. It is the transform of the map about the box centre ``c = (n - 1) / 2``.
- **image formation** (Fourier slice theorem): the image of map k seen at rotation ``R`` and
  in-plane shift ``t`` (pixels) has the transform
  ``Y(k) = CTF_i(k) F_k(R^T (k_x, k_y, 0), z_i) exp(-2 pi i k . (c + t))`` on the ``rfft2``
  grid (``norm="ortho"``), i.e. the map rotated by ``R`` about the centre, summed along z,
  shifted by ``t``: the convention of :mod:`dualcontrast.simulation.simulate` and ``data.project``.
  Frequencies ``|k| >= 1/2`` are left out (the simulator zeroes them).
- **likelihood**: Gaussian, ``L_ik = sum_k w_k |y_i(k) - Y_ik(k)|^2 / sum_k w_k`` (``w = 2`` on
  the half-plane columns standing for two frequencies, Parseval), the noise variance one for
  all pixels; images are divided by the training set's standard deviation first.
- **per-particle tables** (auto-decoding, sparse Adam at ``table_lr`` / ``class_lr``): conformation codes
  ``z_i`` (``conf_dim``), class logits ``a_i`` (``K``), and a pose per particle and class
  (6D rotation, 2D shift). The loss of a batch is the expected error under the class
  probabilities, ``mean_i sum_k softmax(a_i)_k L_ik``: each field learns from the particles in
  proportion to their probability of being its class, and the logits move to the class that
  explains the particle best. The logits start random (N(0, 1): the symmetry between the fields
  is broken as random subsets start a 3D classification); after ``class_warmup`` epochs, each
  batch of a pose-search epoch also sets them by Bayes' rule at the poses found, with a uniform
  prior, ``a_ik = -n (L_ik - mean_batch L_k) / (2 sigma^2 T)`` (``n`` independent Fourier values,
  ``sigma^2`` the running mean residual, ``T = class_temperature``: a model still far from the
  data is overconfident at ``T = 1``), averaged half and half with the previous logits (one
  batch's errors are noisy). Subtracting each class's batch mean keeps a field that
  fits every particle a little better (it learned faster) from taking all of them, as a mixing
  proportion would. The assignment then follows the likelihood as fast as the poses do; the
  refinement epochs train the logits by gradient.
- **poses**: for the first ``pose_search_epochs`` epochs, every batch runs a hierarchical
  search per class (:func:`dualcontrast.geometry.view_grid`): all rotations of a near-uniform SO(3) grid and all
  shifts of a ``+-max_shift`` grid at frequencies up to ``search_radius``, rendered with the
  batch's mean code; then ``refine_levels`` local levels around the best ``refine_top``
  candidates with each particle's own code, the frequency limit growing to ``refine_radius``
  and the rotation and shift steps halving. The poses found are stored in the table (not trained
  by gradient then); afterwards the table is refined by gradient descent with everything else.

Codes (the model contract): ``c`` = class probabilities ``(K,)``, ``z`` = conformation code.
Training samples read them from the tables (by sample id); unseen samples (the test split) are
fitted with the fields frozen (amortisation-free inference, as Hydra and DRGN-AI do): the same
pose search per class at the mean code, class probabilities from the Gaussian likelihood at the
best poses (``softmax(-n L_k / 2 sigma^2)``, ``n`` independent Fourier values, ``sigma^2`` the
training residual), then ``infer_steps`` Adam steps on the code of the most likely class.

What is not from the paper: the network sizes, feature frequencies, grid sizes and learning
rates are this implementation's defaults for 32-pixel images on a CPU (the paper gives none of
them for this data set). The paper trained K = 4, 130 epochs, the first 30 with exhaustive
pose search, 15 h on one A5000. ``decode(c, z)`` renders the argmax class at the identity pose
without CTF (for transfer grids); :meth:`Hydra.class_volumes` gives the K maps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import ConfigError
from ..geometry import matrix_from_6d, matrix_to_6d, neighbour_turns, view_grid, view_grid_spacing
from .base import MODELS, Codes, DisentanglementModel
from .params import ModelParams


@dataclass
class HydraParams(ModelParams):
    """Hydra's settings (``model.params`` of ``--model hydra``)."""

    classes: int = 3  # K, the number of neural fields (the paper: the number of compositions)
    conf_dim: int = 4  # conformation code size
    hidden: int = 64  # units per hidden layer of each field
    layers: int = 3  # hidden layers of each field
    frequencies: int = 8  # geometric Fourier features per axis (from pi to pi * box)
    pose_search_epochs: int = 2  # epochs with the pose search (the paper: 30 of 130)
    directions: int = 100  # viewing directions of the base grid (100: 20 deg apart, x 18 in-plane)
    refine_levels: int = 4  # local refinement levels after the grid
    refine_top: int = 4  # candidates kept per level
    search_radius: float = 0.125  # cycles/pixel used on the grid level
    refine_radius: float = 0.3  # cycles/pixel reached by the last refinement level
    max_radius: float = 0.5  # cycles/pixel used in training (the likelihood)
    max_shift: float = 2.0  # pixels searched each way
    shift_step: float = 1.0  # pixels between shifts of the grid level
    table_lr: float = 0.1  # sparse Adam learning rate of the codes and poses (one step per epoch each)
    class_lr: float = 0.3  # sparse Adam learning rate of the class logits
    class_warmup: int = 1  # first epochs with the class probabilities held at their random start
    class_temperature: float = 5.0  # divides the log-likelihood in the search epochs' class update
    infer_steps: int = 10  # code-fitting steps for unseen particles

    def check(self, method: str) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "int":
                low = 0 if f.name in ("pose_search_epochs", "refine_levels", "infer_steps") else 1
                if isinstance(v, bool) or not isinstance(v, int) or v < low:
                    raise ConfigError(f"model.params.{f.name} for {method} must be an integer >= {low}, got {v!r}")
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"model.params.{f.name} for {method} must be a number > 0, got {v!r}")
            else:
                setattr(self, f.name, float(v))
        if not self.search_radius <= self.refine_radius <= self.max_radius <= 0.5:
            raise ConfigError(
                f"model.params for {method}: need search_radius <= refine_radius <= max_radius <= 0.5 "
                f"(cycles/pixel), got {self.search_radius}, {self.refine_radius} and {self.max_radius}"
            )


# --------------------------------------------------------------------------- Fourier grid


@dataclass
class SliceGrid:
    """Frequencies of the ``rfft2`` half-plane of an ``n x n`` image inside a radius (``P`` points)."""

    kx: torch.Tensor  # (P,) cycles/pixel
    ky: torch.Tensor
    weight: torch.Tensor  # (P,) 1 on the kx = 0 column, 2 elsewhere (each stands for k and -k)
    flat: torch.Tensor  # (P,) int64 index into the flattened (n, n // 2 + 1) rfft2 grid
    radius: torch.Tensor  # (P,) |k|

    @classmethod
    def make(cls, n: int, radius: float = 0.5) -> SliceGrid:
        ky = torch.fft.fftfreq(n).view(-1, 1).expand(n, n // 2 + 1)
        kx = torch.fft.rfftfreq(n).view(1, -1).expand(n, n // 2 + 1)
        r = torch.sqrt(kx**2 + ky**2)
        keep = (r < min(radius, 0.5)).reshape(-1)
        flat = torch.nonzero(keep).squeeze(1)
        kxf, kyf = kx.reshape(-1)[flat], ky.reshape(-1)[flat]
        weight = torch.where(kxf > 0, 2.0, 1.0)
        return cls(kxf.float(), kyf.float(), weight, flat, r.reshape(-1)[flat].float())

    def within(self, radius: float) -> torch.Tensor:
        """Positions ``(P',)`` of the points below ``radius``."""
        return torch.nonzero(self.radius < radius).squeeze(1)

    def points(self) -> torch.Tensor:
        """``(P, 3)`` slice points ``(kx, ky, 0)``."""
        return torch.stack([self.kx, self.ky, torch.zeros_like(self.kx)], -1)


def centre_phase(kx: torch.Tensor, ky: torch.Tensor, n: int, shift: torch.Tensor) -> torch.Tensor:
    """``exp(-2 pi i k . (c + t))``: puts the centred object at ``c + t``. ``shift (..., 2) -> (..., P)``."""
    c = (n - 1) / 2.0
    arg = -2.0 * math.pi * (kx * (c + shift[..., :1]) + ky * (c + shift[..., 1:2]))
    return torch.polar(torch.ones_like(arg), arg)


def image_transform(x: torch.Tensor, grid: SliceGrid) -> torch.Tensor:
    """Images ``(B, 1, n, n)`` -> their ``rfft2`` (orthonormal) at the grid points ``(B, P)`` complex."""
    f = torch.fft.rfft2(x[:, 0].float(), norm="ortho").flatten(1)
    return f[:, grid.flat.to(f.device)]


def image_from_transform(values: torch.Tensor, grid: SliceGrid, n: int) -> torch.Tensor:
    """Inverse of :func:`image_transform` (zeros off the grid). ``(B, P) -> (B, 1, n, n)``."""
    full = torch.zeros(values.shape[0], n * (n // 2 + 1), dtype=torch.complex64, device=values.device)
    full[:, grid.flat.to(values.device)] = values.to(torch.complex64)
    return torch.fft.irfft2(full.view(-1, n, n // 2 + 1), s=(n, n), norm="ortho").unsqueeze(1)


def render_slices(field, rotations: torch.Tensor, grid: SliceGrid, n: int, shift: torch.Tensor | None = None):
    """Image transforms of a 3D Fourier field seen at ``rotations`` (the central-slice theorem).

    ``field(points (..., P, 3)) -> (..., P)`` complex: the map's transform about its centre;
    ``rotations (..., 3, 3)``; ``shift (..., 2)`` pixels. ``-> (..., P)`` complex, to compare with
    :func:`image_transform` of the images (no CTF here).
    """
    pts = grid.points().to(rotations) @ rotations  # row p times R: (R^T p)^T
    values = field(pts)
    if shift is None:
        shift = torch.zeros(*rotations.shape[:-2], 2, dtype=rotations.dtype, device=rotations.device)
    return values * centre_phase(grid.kx.to(rotations), grid.ky.to(rotations), n, shift)


# --------------------------------------------------------------------------- neural fields


class FieldBank(nn.Module):
    """K coordinate MLPs evaluated together. ``(K, B, M, 3) points, (B, d) codes -> (K, B, M)`` complex."""

    def __init__(self, k: int, conf_dim: int, box: int, *, hidden: int, layers: int, frequencies: int):
        super().__init__()
        # Geometric frequencies from pi to pi * box on coordinates 2 * kappa in (-1, 1): the
        # transform of an object filling the box oscillates with period ~ 1 / box in kappa.
        omega = math.pi * torch.logspace(0, math.log10(box), frequencies)
        self.register_buffer("omega", omega.float(), persistent=False)
        n_in = 3 + 6 * frequencies
        self.k, self.conf_dim = k, conf_dim

        def weight(fan_in: int, fan_out: int, count: int = 1) -> nn.Parameter:
            return nn.Parameter(torch.randn(k, count, fan_in, fan_out) * math.sqrt(2.0 / fan_in))

        self.w_in = weight(n_in, hidden)
        self.w_conf = nn.Parameter(torch.randn(k, conf_dim, hidden) * math.sqrt(1.0 / max(conf_dim, 1)))
        self.b_in = nn.Parameter(torch.zeros(k, 1, 1, hidden))
        self.w_hidden = weight(hidden, hidden, layers - 1)
        self.b_hidden = nn.Parameter(torch.zeros(k, layers - 1, 1, 1, hidden))
        self.w_out = nn.Parameter(torch.randn(k, hidden, 2) * 0.01)
        self.b_out = nn.Parameter(torch.zeros(k, 1, 1, 2))

    def features(self, pts: torch.Tensor) -> torch.Tensor:
        u = 2.0 * pts
        arg = (u.unsqueeze(-1) * self.omega).flatten(-2)
        return torch.cat([u, torch.sin(arg), torch.cos(arg)], -1)

    def forward(self, pts: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``pts (K, B, M, 3)``, ``z (B, d)`` -> ``(K, B, M)`` complex, Hermitian in ``pts``."""
        # Fold every point into the half-space kz > 0 (ties broken by ky, then kx), conjugate back.
        key = pts[..., 2] + 1e-3 * pts[..., 1] + 1e-6 * pts[..., 0]
        sign = torch.where(key < 0, -1.0, 1.0).to(pts.dtype)
        h = torch.einsum("kbmf,kfh->kbmh", self.features(pts * sign.unsqueeze(-1)), self.w_in[:, 0])
        h = h + torch.einsum("bd,kdh->kbh", z, self.w_conf).unsqueeze(2) + self.b_in
        for j in range(self.w_hidden.shape[1]):
            h = torch.einsum("kbmh,khg->kbmg", F.relu(h), self.w_hidden[:, j]) + self.b_hidden[:, j]
        out = torch.einsum("kbmh,kho->kbmo", F.relu(h), self.w_out) + self.b_out
        return torch.complex(out[..., 0], out[..., 1] * sign)


# --------------------------------------------------------------------------- the model


class Hydra(DisentanglementModel):
    """K neural fields, per-particle classes, codes and poses; see the module docstring."""

    #: auto-decoding: the trainer passes ``(x, rows)`` and calls :meth:`bind_data` first
    wants_indices = True

    Params = HydraParams

    def __init__(self, sample_shape: Sequence[int], params: HydraParams | None = None):
        super().__init__()
        self.params = p = params or HydraParams()
        shape = tuple(sample_shape)
        if len(shape) != 3 or shape[0] != 1 or shape[1] != shape[2]:
            raise ConfigError(
                f"hydra needs square single-channel 2D particle images, got samples of shape {shape}; "
                "for subtomograms set data.project=true (their projections along z)"
            )
        self.box = n = shape[1]
        self.sample_shape = shape
        self.fields = FieldBank(
            p.classes, p.conf_dim, n, hidden=p.hidden, layers=p.layers, frequencies=p.frequencies
        )
        self.grid = SliceGrid.make(n, p.max_radius)
        self.register_buffer("so3", view_grid(p.directions), persistent=False)
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("noise_var", -torch.ones(()))  # running mean residual; < 0: not yet known
        self._make_tables(1)

    @classmethod
    def from_config(cls, cfg: Config, sample_shape: Sequence[int], output: str) -> Hydra:
        del output  # the likelihood is Gaussian on the (normalised) images
        return cls(sample_shape, cls.Params.parse(cfg.model.name, cfg.model.params))

    # -- per-particle tables -----------------------------------------------------------------------
    def _make_tables(self, n: int) -> None:
        p = self.params
        k = p.classes
        gen = torch.Generator().manual_seed(n)
        self.conf = nn.Embedding(n, p.conf_dim, sparse=True)
        self.logits = nn.Embedding(n, k, sparse=True)
        self.rot = nn.Embedding(n * k, 6, sparse=True)
        self.shift = nn.Embedding(n * k, 2, sparse=True)
        with torch.no_grad():
            self.conf.weight.normal_(0.0, 0.1, generator=gen)
            # Random class probabilities break the symmetry between the K fields (as random
            # subsets start a 3D classification).
            self.logits.weight.normal_(0.0, 1.0, generator=gen)
            self.rot.weight.copy_(matrix_to_6d(torch.eye(3)).expand(n * k, 6))
            self.shift.weight.zero_()
        self.register_buffer("train_ids", torch.zeros(n, dtype=torch.long))
        self.register_buffer("ctf", torch.zeros(n, 8))
        self.register_buffer("has_ctf", torch.zeros((), dtype=torch.bool))

    def bind_data(self, train) -> None:
        """Size the tables for the training set; keep its ids, CTF and intensity scale."""
        from ..data.ctf import ctf_table

        n = len(train)
        self._make_tables(n)
        self.train_ids.copy_(torch.as_tensor(np.asarray(train.ids), dtype=torch.long))
        table = ctf_table(train)
        if table is not None:
            self.ctf.copy_(torch.as_tensor(table, dtype=torch.float32))
            self.has_ctf.fill_(True)
        sample = train.batch(np.arange(min(n, 1000)))
        self.scale.fill_(float(np.std(sample)) or 1.0)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # The tables' size is the training set's, known only from the checkpoint here.
        n = state_dict["conf.weight"].shape[0] if "conf.weight" in state_dict else None
        if n is not None and n != self.conf.weight.shape[0]:
            device = self.scale.device
            self._make_tables(n)
            self.to(device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def named_networks(self):
        yield "fields", self.fields

    @property
    def searching(self) -> bool:
        return int(self.epochs_done) < self.params.pose_search_epochs

    def on_epoch_end(self, epoch: int) -> None:
        del epoch  # counted here, so the phase survives resume whatever the trainer passes
        self.epochs_done += 1

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        # Each table row gets one step per epoch, hence learning rates far above the fields'.
        p = self.params
        tables = [
            {"params": [self.conf.weight, self.rot.weight, self.shift.weight], "lr": p.table_lr},
            {"params": [self.logits.weight], "lr": p.class_lr},
        ]
        return {
            "fields": torch.optim.Adam(self.fields.parameters(), lr=lr),
            "tables": torch.optim.SparseAdam(tables),
        }

    # -- rendering --------------------------------------------------------------------------------
    def _ctf(self, params: torch.Tensor | None, grid: SliceGrid, b: int) -> torch.Tensor:
        from ..data.ctf import ctf_2d

        if params is None:
            return torch.ones(b, grid.kx.shape[0], device=self.scale.device)
        return ctf_2d(params, grid.kx, grid.ky).to(self.scale.device)

    def _predict(self, rot: torch.Tensor, shift: torch.Tensor, z: torch.Tensor, ctf: torch.Tensor,
                 grid: SliceGrid) -> torch.Tensor:  # fmt: skip
        """``rot (K, B, M, 3, 3)``, ``shift (K, B, M, 2)``, ``z (B, d)``, ``ctf (B, P)`` -> ``(K, B, M, P)``."""
        k, b, m = rot.shape[:3]
        pts = grid.points().to(rot) @ rot  # (K, B, M, P, 3)
        values = self.fields(pts.reshape(k, b, -1, 3), z).view(k, b, m, -1)
        phase = centre_phase(grid.kx.to(rot), grid.ky.to(rot), self.box, shift)
        return values * phase * ctf.view(1, b, 1, -1)

    @staticmethod
    def _error(y: torch.Tensor, pred: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Weighted mean squared error over the points; ``y (B, P)``, ``pred (K, B, ..., P)``."""
        shape = (1, y.shape[0]) + (1,) * (pred.dim() - 3) + (y.shape[1],)
        diff = pred - y.view(shape)
        return (diff.real**2 + diff.imag**2) @ weight / weight.sum()

    def _shifts(self, step: float, reach: float) -> torch.Tensor:
        m = math.floor(reach / step + 1e-6)
        axis = torch.arange(-m, m + 1, dtype=torch.float32) * step
        return torch.cartesian_prod(axis, axis).to(self.scale.device)  # (T, 2)

    def _beta(self) -> torch.Tensor:
        """``n / (2 sigma^2)``: turns a mean squared error into a log-likelihood (n independent values)."""
        return float(self.grid.weight.sum()) / 2.0 / (2.0 * self.noise_var.clamp_min(1e-8))

    @torch.no_grad()
    def search(self, y: torch.Tensor, ctf: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Best pose of every particle under every class (module docstring).

        ``y (B, P)`` image transforms on :attr:`grid`, ``ctf (B, P)``, ``z (B, d)``.
        Returns rotations ``(K, B, 3, 3)``, shifts ``(K, B, 2)``, errors ``(K, B)`` at full radius.
        """
        p, grid = self.params, self.grid
        k, b = p.classes, y.shape[0]
        dev = y.device
        # Grid level: one rendering of every class at every grid rotation, shared by the batch.
        near = grid.within(p.search_radius).to(dev)
        sub = _subgrid(grid, near)
        y0, c0, w0 = y[:, near], ctf[:, near], sub.weight.to(dev)
        rots = self.so3
        g = rots.shape[0]
        z_mean = z.mean(0, keepdim=True)
        pts = sub.points().to(rots) @ rots  # (G, P0, 3)
        f = self.fields(pts.reshape(1, 1, -1, 3).expand(k, 1, -1, 3), z_mean).view(k, g, -1)  # (K, G, P0)
        shifts = self._shifts(p.shift_step, p.max_shift)  # (T, 2)
        phase = centre_phase(sub.kx.to(dev), sub.ky.to(dev), self.box, shifts)  # (T, P0)
        a = (w0 * c0).unsqueeze(1) * torch.conj(y0).unsqueeze(1) * phase.unsqueeze(0)  # (B, T, P0)
        cross = torch.einsum("btp,kgp->kbtg", a.real, f.real) - torch.einsum("btp,kgp->kbtg", a.imag, f.imag)
        power = torch.einsum("bp,kgp->kbg", w0 * c0**2, f.real**2 + f.imag**2)
        score = power.unsqueeze(2) - 2.0 * cross  # (K, B, T, G): error up to a per-image constant
        top = min(p.refine_top, score.shape[2] * g)
        best = score.flatten(2).topk(top, dim=-1, largest=False).indices  # (K, B, C)
        cand_r = rots[best % g]  # (K, B, C, 3, 3)
        cand_t = shifts[best // g]  # (K, B, C, 2)
        h = view_grid_spacing(p.directions) / 2.0
        step = p.shift_step / 2.0
        local = torch.cartesian_prod(*([torch.tensor([-1.0, 0.0, 1.0], device=dev)] * 2))  # (9, 2)
        for level in range(1, p.refine_levels + 1):
            radius = p.search_radius + (p.refine_radius - p.search_radius) * level / p.refine_levels
            near = grid.within(radius + 1e-6).to(dev)
            sub = _subgrid(grid, near)
            r_n = neighbour_turns(cand_r, h).flatten(2, 3)  # (K, B, C*7, 3, 3)
            t_n = (cand_t.unsqueeze(3) + step * local).clamp(-p.max_shift, p.max_shift)  # (K, B, C, 9, 2)
            pts = sub.points().to(r_n) @ r_n  # (K, B, M, P, 3)
            vals = self.fields(pts.reshape(k, b, -1, 3), z).view(k, b, top, 7, -1) * ctf[:, near].view(1, b, 1, 1, -1)
            ph = centre_phase(sub.kx.to(dev), sub.ky.to(dev), self.box, t_n)  # (K, B, C, 9, P)
            pred = vals.unsqueeze(4) * ph.unsqueeze(3)  # (K, B, C, 7, 9, P)
            err = self._error(y[:, near], pred, sub.weight.to(dev)).flatten(2)  # (K, B, C*7*9)
            idx = err.topk(top, dim=-1, largest=False).indices
            c_idx, rest = idx // (7 * 9), idx % (7 * 9)
            cand_r = torch.gather(r_n, 2, (c_idx * 7 + rest // 9)[..., None, None].expand(-1, -1, -1, 3, 3))
            cand_t = torch.gather(t_n.flatten(2, 3), 2, (c_idx * 9 + rest % 9)[..., None].expand(-1, -1, -1, 2))
            h /= 2.0
            step /= 2.0
        r_best, t_best = cand_r[:, :, 0], cand_t[:, :, 0]
        pred = self._predict(r_best.unsqueeze(2), t_best.unsqueeze(2), z, ctf, grid)[:, :, 0]
        return r_best, t_best, self._error(y, pred, grid.weight.to(dev))

    # -- training -------------------------------------------------------------------------------
    def _rows_ctf(self, rows: torch.Tensor) -> torch.Tensor | None:
        return self.ctf[rows] if bool(self.has_ctf) else None

    def training_step(self, batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        x, rows = batch
        p, grid = self.params, self.grid
        k = p.classes
        y = image_transform(x / self.scale, grid)
        ctf = self._ctf(self._rows_ctf(rows), grid, x.shape[0])
        z = self.conf(rows)
        pose_rows = rows.unsqueeze(0) * k + torch.arange(k, device=rows.device).unsqueeze(1)  # (K, B)
        searching = self.searching
        if searching:
            r, t, found = self.search(y, ctf, z.detach())
            with torch.no_grad():
                self.rot.weight[pose_rows.reshape(-1)] = matrix_to_6d(r).reshape(-1, 6)
                self.shift.weight[pose_rows.reshape(-1)] = t.reshape(-1, 2)
                if int(self.epochs_done) >= p.class_warmup:
                    # Bayes' rule at the poses found (uniform prior, tempered likelihood).
                    if float(self.noise_var) < 0:
                        self.noise_var.copy_(found.min(0).values.mean())
                    # A field that fits every particle better (it has learned faster) would take
                    # them all: its batch-mean advantage is taken out (a per-class offset, as a
                    # mixing proportion would absorb), leaving each particle's own preference.
                    evidence = found.T - found.T.mean(0, keepdim=True)
                    posterior = -self._beta() * evidence / p.class_temperature
                    # Averaged with the previous assignment: one batch's errors are noisy.
                    old = self.logits.weight[rows]
                    self.logits.weight[rows] = 0.5 * (old - old.mean(-1, keepdim=True)) + 0.5 * posterior
        rot6, shift = self.rot(pose_rows), self.shift(pose_rows)
        if searching:
            rot6, shift = rot6.detach(), shift.detach()
        rot = matrix_from_6d(rot6)
        pred = self._predict(rot.unsqueeze(2), shift.unsqueeze(2), z, ctf, grid)[:, :, 0]
        err = self._error(y, pred, grid.weight.to(y.device))  # (K, B)
        logits = self.logits(rows)
        if int(self.epochs_done) < p.class_warmup:
            logits = logits.detach()
        prob = torch.softmax(logits, -1)  # (B, K)
        rec = (prob * err.T).sum(-1).mean()
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        rec.backward()
        for opt in optimizers.values():
            self.optimizer_step(opt)
        with torch.no_grad():
            residual = err.min(0).values.mean()
            if float(self.noise_var) < 0:  # first step: no running value yet
                self.noise_var.copy_(residual)
            self.noise_var.mul_(0.9).add_(0.1 * residual)
            entropy = -(prob * prob.clamp_min(1e-12).log()).sum(-1).mean()
        return {"loss": rec.detach(), "class_entropy": entropy, "pose_search": torch.tensor(float(searching))}

    # -- codes --------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Codes:
        """Codes of images with no known CTF or id: fitted as unseen particles."""
        return self.infer(x, None)

    def encode_rows(self, x: torch.Tensor, data, rows: np.ndarray) -> Codes:
        """Codes of samples ``rows`` of ``data``: from the tables for training samples, fitted otherwise."""
        from ..data.ctf import ctf_table

        ids = torch.as_tensor(np.asarray(data.ids)[rows], dtype=torch.long, device=self.train_ids.device)
        order = torch.argsort(self.train_ids)
        sorted_ids = self.train_ids[order]
        pos = torch.searchsorted(sorted_ids, ids).clamp(max=len(sorted_ids) - 1)
        seen = sorted_ids[pos] == ids
        table_rows = order[pos]
        c = torch.softmax(self.logits.weight[table_rows], -1)
        z = self.conf.weight[table_rows].clone()
        if not bool(seen.all()):
            unseen = torch.nonzero(~seen).squeeze(1)
            params = ctf_table(data, rows)
            params = None if params is None else torch.as_tensor(params, dtype=torch.float32)[unseen.cpu()]
            fitted = self.infer(x[unseen], params)
            c[unseen], z[unseen] = fitted.c_mu, fitted.z_mu
        return Codes(c.detach(), None, z.detach(), None)

    def infer(self, x: torch.Tensor, ctf_params: torch.Tensor | None) -> Codes:
        """Class probabilities and codes of unseen particles with the fields frozen (module docstring)."""
        grid = self.grid
        y = image_transform(x / self.scale, grid)
        ctf = self._ctf(ctf_params, grid, x.shape[0])
        z0 = self.conf.weight.mean(0, keepdim=True).expand(x.shape[0], -1)
        r, t, err = self.search(y, ctf, z0)
        prob = torch.softmax(-self._beta() * err.T, -1)
        best = prob.argmax(-1)
        pick = torch.arange(x.shape[0], device=x.device)
        r_b, t_b = r[best, pick], t[best, pick]
        z = z0.clone()
        if self.params.infer_steps:
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                opt = torch.optim.Adam([z], lr=0.05)
                for _ in range(self.params.infer_steps):
                    pred = self._predict_classes(best, r_b, t_b, z, ctf)
                    loss = self._error(y, pred.unsqueeze(0), grid.weight.to(y.device)).sum()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            z = z.detach()
        return Codes(prob, None, z, None)

    def _predict_classes(self, cls: torch.Tensor, rot: torch.Tensor, shift: torch.Tensor, z: torch.Tensor,
                         ctf: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """Each particle under its own class ``cls (B,)``: ``(B, P)`` (all K rendered, one kept)."""
        k = self.params.classes
        rr = rot.unsqueeze(0).unsqueeze(2).expand(k, -1, 1, 3, 3)
        tt = shift.unsqueeze(0).unsqueeze(2).expand(k, -1, 1, 2)
        pred = self._predict(rr, tt, z, ctf, self.grid)[:, :, 0]  # (K, B, P)
        return pred[cls, torch.arange(len(cls), device=cls.device)]

    # -- decoding, volumes, figures -----------------------------------------------------------------
    def decode(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The most probable class of ``c`` with code ``z``, at the identity pose, centred, no CTF."""
        b = c.shape[0]
        cls = c.argmax(-1)
        eye = torch.eye(3, device=c.device).expand(b, 3, 3)
        ones = torch.ones(b, self.grid.kx.shape[0], device=c.device)
        values = self._predict_classes(cls, eye, torch.zeros(b, 2, device=c.device), z.float(), ones)
        return image_from_transform(values, self.grid, self.box) * self.scale

    @torch.no_grad()
    def class_volumes(self, z: torch.Tensor | None = None) -> np.ndarray:
        """The K maps ``(K, n, n, n)`` (z, y, x), each at code ``z[k]`` (default: its particles' mean code)."""
        n, k = self.box, self.params.classes
        if z is None:
            prob = torch.softmax(self.logits.weight, -1)  # (N, K)
            z = (prob.T @ self.conf.weight) / prob.sum(0).clamp_min(1e-8).unsqueeze(-1)
        kz = torch.fft.fftfreq(n).view(-1, 1, 1).expand(n, n, n // 2 + 1)
        ky = torch.fft.fftfreq(n).view(1, -1, 1).expand(n, n, n // 2 + 1)
        kx = torch.fft.rfftfreq(n).view(1, 1, -1).expand(n, n, n // 2 + 1)
        pts = torch.stack([kx, ky, kz], -1).reshape(-1, 3).to(self.scale.device)
        inside = pts.norm(dim=-1) < 0.5
        out = []
        for j in range(k):
            values = torch.zeros(pts.shape[0], dtype=torch.complex64, device=pts.device)
            zz = z[j : j + 1]
            f = self.fields(pts[inside].view(1, 1, -1, 3).expand(k, 1, -1, 3), zz)[j, 0]
            c = (n - 1) / 2.0
            phase = torch.polar(torch.ones_like(f.real), -2.0 * math.pi * pts[inside].sum(-1) * c)
            values[inside] = f * phase
            vol = torch.fft.irfftn(values.view(n, n, n // 2 + 1), s=(n, n, n), norm="ortho")
            # rfft2 (ortho) of a projection is the unnormalised 3D transform over n: V = ortho / sqrt(n).
            out.append(vol / math.sqrt(n) * self.scale)
        return torch.stack(out).cpu().numpy()

    def write_figures(self, folder: str | Path) -> list[Path]:
        """``hydra_classes.png`` (central slices of each class map) and ``hydra_class_probabilities.png``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder = Path(folder)
        vols = self.class_volumes()
        k, n = vols.shape[0], self.box
        fig, axes = plt.subplots(k, 3, figsize=(6, 2 * k), squeeze=False)
        for j in range(k):
            for a, (name, img) in enumerate(
                (("xy", vols[j, n // 2]), ("xz", vols[j, :, n // 2]), ("yz", vols[j, :, :, n // 2]))
            ):
                axes[j, a].imshow(img, cmap="gray")
                axes[j, a].set_xticks([])
                axes[j, a].set_yticks([])
                axes[j, a].set_title(f"class {j} {name}", fontsize=8)
        fig.tight_layout()
        slices = folder / "hydra_classes.png"
        fig.savefig(slices, dpi=100)
        plt.close(fig)
        prob = torch.softmax(self.logits.weight.detach(), -1).cpu().numpy()
        fig, ax = plt.subplots(figsize=(4, 3))
        for j in range(k):
            ax.hist(prob[:, j], bins=20, range=(0, 1), histtype="step", label=f"class {j}")
        ax.set_xlabel("class probability (training particles)")
        ax.set_ylabel("particles")
        ax.legend(fontsize=7)
        fig.tight_layout()
        hist = folder / "hydra_class_probabilities.png"
        fig.savefig(hist, dpi=100)
        plt.close(fig)
        return [slices, hist]


def _subgrid(grid: SliceGrid, near: torch.Tensor) -> SliceGrid:
    near = near.cpu()
    return SliceGrid(grid.kx[near], grid.ky[near], grid.weight[near], grid.flat[near], grid.radius[near])


MODELS.register("hydra")(Hydra)
