"""Subtomogram averaging with alignment, map-to-map alignment, and writers for the results.

Pose convention (shared with the simulator and :mod:`dualcontrast.transforms.geometry`): particle
``i`` is modelled as ``x_i(R_i p + t_i) = ref(p)``, the reference rotated by ``R_i`` about the
box centre and shifted by ``t_i`` voxels along (x, y, z). The average brings every particle back
with the inverse transformation and takes the mean.

Alignment, per iteration, against the running reference (the average of the last iteration):

1. Particles and reference are low-pass filtered (raised cosine at ``lowpass`` x Nyquist) and,
   when that filter removes everything above half Nyquist, Fourier-cropped to half the box,
   which changes nothing the search can see and makes it 8x cheaper.
2. Rotation: each particle, centred with its current shift and masked by a soft sphere, is
   scored against the reference rotated by every rotation of a near-uniform SO(3) grid
   (super-Fibonacci quaternions, Alexa 2022): with shifts fixed this is one matrix product of
   particles x rotated references (normalised cross-correlation). The best grid rotation is then
   refined three times over shrinking balls of rotations, on particles rotated back by their estimate
   (again a shared set of rotated references, so again a matrix product).
3. Shift: FFT cross-correlation of each particle with the reference at its rotation, limited to
   ``max_shift`` voxels, peak refined to sub-voxel precision with a parabola per axis.

Without a starting reference, the particles are first centred against the spherical average
of all particles (whose plain average has no orientation to align to, as orientations are
random), and the seed reference is the centred particle, among a few random candidates, that
the others align to best.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..errors import DataError
from ..evaluation.fsc import soft_sphere_mask
from ..geometry import grid_spacing, local_rotations, rotation_angle, so3_grid
from ..simulation.ctf import ctf_3d, rfft_frequencies
from ..simulation.simulate import fourier_shift
from ..transforms.geometry import warp

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- rotation sets


# --------------------------------------------------------------------------- filtering


def _lowpass_profile(box: int, cutoff: float, device) -> torch.Tensor:
    """Raised-cosine low-pass on the ``rfftn`` grid: 1 below ``cutoff - 0.1``, 0 above ``cutoff`` (x Nyquist)."""
    kz, ky, kx = rfft_frequencies(box)
    s = torch.sqrt(kz**2 + ky**2 + kx**2) / 0.5
    width = 0.1
    t = ((s - (cutoff - width)) / width).clamp(0.0, 1.0)
    return (0.5 * (1.0 + torch.cos(math.pi * t))).to(torch.float32).to(device)


@dataclass(frozen=True)
class _Prep:
    """How volumes are prepared for the search: low-pass, then crop to ``small`` (``bin = box / small``)."""

    box: int
    small: int
    profile: torch.Tensor

    @property
    def bin(self) -> float:
        return self.box / self.small

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, box, box, box)`` -> ``(B, small, small, small)``, centre kept at the centre voxel."""
        n, m = self.box, self.small
        if m != n:
            # Put the full-size centre (n-1)/2 where the cropped grid's centre (m-1)/2 lands.
            delta = (n - 1) / 2.0 - self.bin * (m - 1) / 2.0
            x = fourier_shift(x, torch.full((x.shape[0], 3), -delta, dtype=torch.float64))
        f = torch.fft.rfftn(x, dim=(-3, -2, -1)) * self.profile
        if m != n:
            keep = torch.cat([torch.arange(m // 2), torch.arange(n - m // 2, n)]).to(x.device)
            f = f.index_select(-3, keep).index_select(-2, keep)[..., : m // 2 + 1] * (m / n) ** 3
        return torch.fft.irfftn(f, s=(m, m, m), dim=(-3, -2, -1))


def _prep_for(box: int, lowpass: float, device) -> _Prep:
    if not 0.0 < lowpass <= 1.0:
        raise ValueError(f"lowpass must be in (0, 1] (fraction of Nyquist), got {lowpass}")
    small = box // 2 if lowpass <= 0.5 and box % 2 == 0 and box >= 16 else box
    return _Prep(box, small, _lowpass_profile(box, lowpass, device))


# --------------------------------------------------------------------------- search pieces


def _masked_unit(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero mean inside the mask, masked, unit norm: rows ``(B, V)`` ready for dot products."""
    w = mask.reshape(1, -1)
    flat = x.reshape(x.shape[0], -1)
    mean = (flat * w).sum(1, keepdim=True) / w.sum()
    flat = (flat - mean) * w
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _rotated_refs(ref: torch.Tensor, rotations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``ref (m, m, m)`` rotated by each of ``rotations (K, 3, 3)``, masked and normalised: ``(K, V)``."""
    k = rotations.shape[0]
    rotated = warp(ref.expand(k, 1, *ref.shape), rotations.to(ref.dtype).to(ref.device))[:, 0]
    return _masked_unit(rotated, mask)


class _RotatedRefs:
    """A reference seen under a set of rotations, as normalised masked rows ``(K, V)``.

    Built once per reference and shared by every particle batch; when the whole set would take
    more than ``budget_bytes`` it is rebuilt chunk by chunk on each use instead.
    """

    def __init__(
        self, ref: torch.Tensor, rotations: torch.Tensor, mask: torch.Tensor, budget_bytes: int = 512 * 2**20
    ):
        self.ref, self.rotations, self.mask = ref, rotations, mask
        self.chunk = 512
        fits = rotations.shape[0] * ref.numel() * 4 <= budget_bytes
        self.cached = (
            [
                _rotated_refs(ref, rotations[s : s + self.chunk], mask)
                for s in range(0, rotations.shape[0], self.chunk)
            ]
            if fits
            else None
        )

    def chunks(self):
        for i, start in enumerate(range(0, self.rotations.shape[0], self.chunk)):
            if self.cached is not None:
                yield start, self.cached[i]
            else:
                yield start, _rotated_refs(self.ref, self.rotations[start : start + self.chunk], self.mask)


def _best_rotation(particles: torch.Tensor, refs: _RotatedRefs) -> tuple[torch.Tensor, torch.Tensor]:
    """For centred particles ``(B, m, m, m)``: index of the best rotation of ``refs`` and its score, ``(B,)`` each."""
    u = _masked_unit(particles, refs.mask)
    best = torch.full((u.shape[0],), -2.0, device=u.device)
    arg = torch.zeros(u.shape[0], dtype=torch.int64, device=u.device)
    for start, rows in refs.chunks():
        value, index = (u @ rows.T).max(dim=1)
        better = value > best
        best = torch.where(better, value, best)
        arg = torch.where(better, index + start, arg)
    return arg, best


def _shift_window(m: int, max_shift: float, device) -> torch.Tensor:
    """Boolean ``(m, m, m)`` of the correlation-map indices whose (wrapped) shift is within ``max_shift``."""
    d = torch.arange(m, device=device)
    d = torch.where(d < (m + 1) // 2, d, d - m).to(torch.float32)
    return (d[:, None, None] ** 2 + d[None, :, None] ** 2 + d[None, None, :] ** 2) <= max_shift**2 + 1e-6


def _best_shift(particles: torch.Tensor, refs: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Shift ``(B, 3)`` (x, y, z voxels) maximising ``sum_p particle(p) ref(p - t)``, sub-voxel by parabola."""
    m = particles.shape[-1]
    cc = torch.fft.irfftn(
        torch.fft.rfftn(particles, dim=(-3, -2, -1)) * torch.conj(torch.fft.rfftn(refs, dim=(-3, -2, -1))),
        s=(m, m, m),
        dim=(-3, -2, -1),
    )
    flat = torch.where(window, cc, torch.full_like(cc, -torch.inf)).reshape(cc.shape[0], -1)
    peak = flat.argmax(dim=1)
    iz, iy, ix = peak // (m * m), (peak // m) % m, peak % m
    b = torch.arange(cc.shape[0], device=cc.device)
    out = []
    for axis_index, axis in ((ix, 3), (iy, 2), (iz, 1)):

        def at(offset: int, axis=axis, axis_index=axis_index) -> torch.Tensor:
            idx = [b, iz, iy, ix]
            idx[axis] = (axis_index + offset) % m
            return cc[idx[0], idx[1], idx[2], idx[3]]

        lo, mid, hi = at(-1), at(0), at(1)
        curvature = lo - 2 * mid + hi
        frac = torch.where(
            curvature < 0, 0.5 * (lo - hi) / curvature.clamp(max=-1e-12), torch.zeros_like(mid)
        )
        whole = torch.where(axis_index < (m + 1) // 2, axis_index, axis_index - m).to(cc.dtype)
        out.append(whole + frac.clamp(-0.5, 0.5))
    return torch.stack(out, -1)


def _unwarp(x: torch.Tensor, rotations: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Undo ``x(R p + t) = v(p)``: returns ``v`` for volumes ``(B, n, n, n)``, ``R (B, 3, 3)``, ``t (B, 3)``.

    The shift is undone exactly in Fourier space, then the rotation by a trilinear warp with ``R^T``.
    """
    centred = fourier_shift(x, -shifts)
    rt = rotations.transpose(-1, -2).to(x.dtype)
    return warp(centred.unsqueeze(1), rt)[:, 0]


# --------------------------------------------------------------------------- particle access


def _reader(
    volumes: Any, indices: np.ndarray | None
) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray, int]:
    """``read(rows) -> (k, n, n, n)`` float32 (rows count within ``indices``), the rows of ``volumes``
    used, and the box; for arrays, lazy arrays or Datasets."""
    batch = getattr(volumes, "batch", None)
    shape = tuple(volumes.x.shape if batch is not None else volumes.shape)
    if len(shape) == 5 and shape[1] == 1:
        box = shape[2]
    elif len(shape) == 4:
        box = shape[1]
    else:
        raise DataError(None, f"averaging needs volumes shaped (N, 1, n, n, n) or (N, n, n, n), got {shape}")
    if len(set(shape[-3:])) != 1:
        raise DataError(None, f"volumes must be cubic, got {shape[-3:]}")
    rows_of = np.arange(shape[0]) if indices is None else np.asarray(indices, dtype=np.int64)

    def read(rows: np.ndarray) -> np.ndarray:
        sel = rows_of[rows]
        block = batch(sel) if batch is not None else np.asarray(volumes[sel], dtype=np.float32)
        return np.asarray(block, dtype=np.float32).reshape(len(sel), box, box, box)

    return read, rows_of, box


# --------------------------------------------------------------------------- results


@dataclass
class AlignmentResult:
    """Average and per-particle poses: particle ``i`` ~ ``warp(average, rotations[i], shifts[i])``.

    Attributes:
        average: ``(n, n, n)`` float32.
        rotations: ``(N, 3, 3)``.
        shifts: ``(N, 3)`` voxels along (x, y, z).
        scores: ``(N,)`` normalised cross-correlation of each particle with the (filtered, masked)
            reference at its pose, from the last iteration.
        history: per iteration, mean score and median pose change (degrees, voxels).
        raw_average: the aligned mean before CTF correction (equal to ``average`` without ``ctf``).
    """

    average: np.ndarray
    rotations: np.ndarray
    shifts: np.ndarray
    scores: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    raw_average: np.ndarray | None = None


class _Aligner:
    """The search state shared by :func:`average_subtomograms` and :func:`align_maps`.

    Call :meth:`set_reference` with each new reference, then :meth:`align` per particle batch.
    """

    def __init__(
        self,
        box: int,
        n_rotations: int,
        lowpass: float,
        max_shift: float,
        device,
        local_radius: float | None = None,
    ):
        """``local_radius`` (radians) is the first refinement ball; default: the grid's spacing."""
        self.device = torch.device(device)
        self.prep = _prep_for(box, lowpass, self.device)
        m = self.prep.small
        self.mask = torch.as_tensor(soft_sphere_mask(m, radius=m / 2.0 - 1.5, edge=1.5), device=self.device)
        self.grid = so3_grid(n_rotations).to(torch.float32).to(self.device)
        radius = grid_spacing(n_rotations) if local_radius is None else local_radius
        self.local = [local_rotations(r).float().to(self.device) for r in (radius, radius / 2, radius / 4)]
        self.window = _shift_window(m, max_shift / self.prep.bin, self.device)
        self.ref_small: torch.Tensor | None = None

    def set_reference(self, reference: torch.Tensor, search: bool = True) -> None:
        """A full-size reference ``(n, n, n)``; ``search=False`` skips the global grid (local refinement only)."""
        self.ref_small = self.prep(reference[None])[0]
        self.grid_refs = _RotatedRefs(self.ref_small, self.grid, self.mask) if search else None
        self.local_refs = [_RotatedRefs(self.ref_small, r, self.mask) for r in self.local]

    def align(
        self, small: torch.Tensor, shifts: torch.Tensor, rotations: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rotations ``(B, 3, 3)``, full-size shifts ``(B, 3)`` and scores for prepared particles ``small``.

        ``shifts`` (full-size voxels) centre the particles for the rotation search. Given
        ``rotations``, the global grid search is skipped and they are only refined locally.
        """
        centred = fourier_shift(small, -shifts / self.prep.bin)
        if rotations is None:
            rotations = self.grid[_best_rotation(centred, self.grid_refs)[0]]
        for local, refs in zip(self.local, self.local_refs, strict=True):
            back = warp(centred.unsqueeze(1), rotations.transpose(-1, -2))[:, 0]
            rotations = rotations @ local[_best_rotation(back, refs)[0]]
        refs = warp(self.ref_small.expand(small.shape[0], 1, *self.ref_small.shape), rotations)[:, 0]
        new_shifts = _best_shift(small, refs, self.window) * self.prep.bin
        centred = _masked_unit(fourier_shift(small, -new_shifts / self.prep.bin), self.mask)
        scores = (centred * _masked_unit(refs, self.mask)).sum(1)
        return rotations, new_shifts, scores

    def centre(self, small: torch.Tensor, ref_small: torch.Tensor) -> torch.Tensor:
        """Shifts ``(B, 3)`` (full-size voxels) against a rotation-free (prepared) reference."""
        refs = ref_small.expand(small.shape[0], *ref_small.shape)
        return _best_shift(small, refs, self.window) * self.prep.bin


def spherical_average(volume: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Radial profile of a cube about ``(n - 1) / 2``, spread back over the cube (rotation-invariant)."""
    v = torch.as_tensor(volume, dtype=torch.float32)
    n = v.shape[-1]
    c = (torch.arange(n, dtype=torch.float32) - (n - 1) / 2.0) ** 2
    r = torch.sqrt(c[:, None, None] + c[None, :, None] + c[None, None, :])
    shell = torch.round(r).to(torch.int64).reshape(-1)
    total = torch.zeros(int(shell.max()) + 1).index_add_(0, shell, v.reshape(-1).cpu())
    count = torch.zeros_like(total).index_add_(0, shell, torch.ones_like(v.reshape(-1).cpu()))
    return (total / count.clamp_min(1))[shell].reshape(n, n, n).to(v.device)


@dataclass(frozen=True)
class CTFParams:
    """The CTF the particles went through, for a CTF-corrected (Wiener-filtered) average.

    ``defocus_um`` is one value or one per row of the ``volumes`` passed to
    :func:`average_subtomograms` (sign and formula of :mod:`dualcontrast.simulation.ctf`).
    """

    defocus_um: float | np.ndarray
    voxel_size: float = 1.0
    cs_mm: float = 1.7
    voltage_kv: float = 300.0
    amplitude_contrast: float = 0.1

    def filters(self, box: int, rows: np.ndarray) -> torch.Tensor:
        """CTFs ``(B, n, n, n//2+1)`` of particles ``rows`` (rows of the full ``volumes``)."""
        defocus = np.asarray(self.defocus_um, dtype=np.float64)
        defocus = np.full(len(rows), float(defocus)) if defocus.ndim == 0 else defocus[rows]
        return ctf_3d(box, self.voxel_size, defocus, self.cs_mm, self.voltage_kv, self.amplitude_contrast)


def average_subtomograms(
    volumes: Any,
    *,
    indices: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    n_iter: int = 4,
    n_rotations: int = 1000,
    lowpass: float = 0.5,
    max_shift: float | None = None,
    n_candidates: int = 4,
    ctf: CTFParams | None = None,
    wiener: float = 0.1,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> AlignmentResult:
    """Align particles to a running average and average them (see the module docstring).

    Args:
        volumes: ``(N, 1, n, n, n)`` or ``(N, n, n, n)`` array, lazy array, or a
            :class:`~dualcontrast.data.base.Dataset` (read through its normalisation).
        indices: average only these rows (e.g. one cluster), read batch by batch.
        reference: starting reference ``(n, n, n)``; without one, a seed particle is chosen.
        n_iter: alignment iterations; each re-estimates every pose against the last average.
        n_rotations: size of the global SO(3) grid (1000 -> ~16 degree spacing); three local
            refinements over balls of 1, 1/2 and 1/4 of that spacing then reach ~2 degrees.
        lowpass: alignment filter cutoff as a fraction of Nyquist (the average is not filtered).
        max_shift: largest shift searched, voxels (default ``n / 4``).
        n_candidates: random particles tried as seed reference when ``reference`` is None.
        ctf: when given, ``average`` is CTF-corrected:
            ``F(avg) = sum_i c_i F(u_i) / (sum_i c_i^2 + N * wiener)`` over the aligned
            particles ``u_i`` with CTFs ``c_i``. Alignment always uses the uncorrected average,
            which carries the same CTF as the particles. (Missing-wedge weighting is not done.)
    """
    read, rows_of, box = _reader(volumes, indices)
    n = len(rows_of)
    if n < 1:
        raise DataError(None, "no particles to average")
    max_shift = box / 4.0 if max_shift is None else float(max_shift)
    aligner = _Aligner(box, n_rotations, lowpass, max_shift, device)
    dev = aligner.device
    batches = [np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]

    def load(rows: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(read(rows), device=dev)

    with torch.no_grad():
        if reference is None:
            reference, shifts = _seed_reference(load, batches, box, aligner, n_candidates, seed)
        else:
            reference = torch.as_tensor(np.asarray(reference, np.float32), device=dev)
            if tuple(reference.shape) != (box, box, box):
                raise DataError(None, f"reference is {tuple(reference.shape)}, particles are {(box,) * 3}")
            sphere = spherical_average(aligner.prep(reference[None])[0])
            shifts = torch.cat([aligner.centre(aligner.prep(load(b)), sphere) for b in batches])
        rotations = torch.eye(3, device=dev).repeat(n, 1, 1)
        scores = torch.zeros(n, device=dev)
        history: list[dict[str, float]] = []
        for it in range(n_iter):
            aligner.set_reference(reference)
            total = torch.zeros((box, box, box), device=dev)
            wiener_num = torch.zeros((box, box, box // 2 + 1), dtype=torch.complex64, device=dev)
            wiener_den = torch.zeros((box, box, box // 2 + 1), device=dev)
            old_r, old_t = rotations.clone(), shifts.clone()
            for rows in tqdm(batches, desc=f"align {it + 1}/{n_iter}", unit="batch", disable=not progress):
                x = load(rows)
                r, t, s = aligner.align(aligner.prep(x), shifts[rows])
                rotations[rows], shifts[rows], scores[rows] = r, t, s
                aligned = _unwarp(x, r, t)
                total += aligned.sum(0)
                if ctf is not None and it == n_iter - 1:
                    c = ctf.filters(box, rows_of[rows]).to(dev)
                    wiener_num += (c * torch.fft.rfftn(aligned, dim=(-3, -2, -1))).sum(0)
                    wiener_den += (c * c).sum(0)
            reference = total / n
            history.append(_progress(it, scores, old_r, rotations, old_t, shifts))
            logger.info("averaging iteration %d: %s", it + 1, history[-1])
    raw = reference.cpu().numpy().astype(np.float32)
    average = raw
    if ctf is not None and n_iter > 0:
        corrected = wiener_num / (wiener_den + n * wiener)
        average = (
            torch.fft.irfftn(corrected, s=(box, box, box), dim=(-3, -2, -1)).cpu().numpy().astype(np.float32)
        )
    return AlignmentResult(
        average=average,
        rotations=rotations.cpu().numpy().astype(np.float64),
        shifts=shifts.cpu().numpy().astype(np.float64),
        scores=scores.cpu().numpy(),
        history=history,
        raw_average=raw,
    )


def _progress(it, scores, old_r, new_r, old_t, new_t) -> dict[str, float]:
    return {
        "iteration": it + 1,
        "mean_score": float(scores.mean()),
        "median_rotation_change_deg": float(
            np.median(rotation_angle(old_r.cpu().numpy(), new_r.cpu().numpy()))
        ),
        "median_shift_change": float((new_t - old_t).norm(dim=1).median()),
    }


def _seed_reference(
    load, batches, box: int, aligner: _Aligner, n_candidates: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre every particle on the spherical average, then pick the candidate the others fit best.

    Candidates are scored on a probe set of up to 64 particles by their best score over a coarse
    rotation grid (a quarter of the full one). Returns the seed reference (full size, centred)
    and the centring shifts.
    """
    dev = aligner.device
    total = torch.zeros((box, box, box), device=dev)
    n = 0
    for rows in batches:
        total += load(rows).sum(0)
        n += len(rows)
    sphere = spherical_average(aligner.prep((total / n)[None])[0])
    shifts = torch.cat([aligner.centre(aligner.prep(load(b)), sphere) for b in batches])
    rng = np.random.default_rng(seed)
    candidates = rng.choice(n, size=min(n_candidates, n), replace=False)
    probe = np.sort(rng.choice(n, size=min(n, 64), replace=False))
    probe_small = aligner.prep(load(probe))
    coarse_grid = so3_grid(max(200, aligner.grid.shape[0] // 4)).to(torch.float32).to(dev)
    best, best_score = None, -np.inf
    for c in candidates:
        seed_ref = _unwarp(load(np.array([c])), torch.eye(3, device=dev)[None], shifts[[c]])[0]
        refs = _RotatedRefs(aligner.prep(seed_ref[None])[0], coarse_grid, aligner.mask)
        others = probe != c
        centred = fourier_shift(probe_small[others], -shifts[probe[others]] / aligner.prep.bin)
        _, score = _best_rotation(centred, refs)
        if float(score.mean()) > best_score:
            best, best_score = seed_ref, float(score.mean())
    logger.info("seed reference: best of %d candidates, mean score %.3f", len(candidates), best_score)
    return best, shifts


def align_maps(
    moving: np.ndarray,
    reference: np.ndarray,
    *,
    n_rotations: int = 2000,
    max_shift: float | None = None,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Bring ``moving`` onto ``reference`` (both ``(n, n, n)``), e.g. an average onto its ground truth before FSC.

    A global search at half Nyquist (as in :func:`average_subtomograms`) is followed by a local
    refinement with the full band. Rotations only (no mirror): rotations keep the hand, and
    subtomogram averages have the correct hand (the paper aligned manually in ChimeraX).

    Returns:
        ``(aligned, R, t, score)``: ``aligned`` is ``moving`` in the reference frame; ``moving``
        ~ ``warp(reference, R, t)``; ``score`` the normalised cross-correlation (full band).
    """
    a = np.asarray(moving, np.float32)
    b = np.asarray(reference, np.float32)
    if a.shape != b.shape or a.ndim != 3 or len(set(a.shape)) != 1:
        raise DataError(None, f"maps must be cubic and of one size, got {a.shape} and {b.shape}")
    box = a.shape[0]
    max_shift = box / 4.0 if max_shift is None else float(max_shift)
    with torch.no_grad():
        x = torch.as_tensor(a, device=device)[None]
        ref = torch.as_tensor(b, device=device)
        coarse = _Aligner(box, n_rotations, 0.5, max_shift, device)
        coarse.set_reference(ref)
        small = coarse.prep(x)
        shifts = coarse.centre(small, spherical_average(coarse.ref_small))
        r, t, _ = coarse.align(small, shifts)
        # Refine within twice the coarse search's final step, with the full band.
        fine = _Aligner(box, 1, 1.0, max_shift, device, local_radius=grid_spacing(n_rotations) / 2)
        fine.set_reference(ref, search=False)
        r, t, s = fine.align(fine.prep(x), t, rotations=r)
        aligned = _unwarp(x, r, t)[0]
    return (
        aligned.cpu().numpy(),
        r[0].cpu().numpy().astype(np.float64),
        t[0].cpu().numpy().astype(np.float64),
        float(s[0]),
    )


# --------------------------------------------------------------------------- writers


def write_mrc(path: str | Path, volume: np.ndarray, voxel_size: float = 1.0, overwrite: bool = False) -> Path:
    """One volume ``(n, n, n)`` as float32 MRC, voxel size given in nm (stored in Angstrom; see
    :func:`dualcontrast.io.mrc.write_volume` for the header)."""
    from ..io.mrc import write_volume

    return write_volume(path, volume, voxel_size * 10.0, overwrite=overwrite)


def save_central_slices(
    volume: np.ndarray,
    path: str | Path,
    title: str | None = None,
    overwrite: bool = False,
    voxel_size: float | None = None,
) -> Path:
    """Figure of the three central orthogonal slices (XY at z = centre, XZ, YZ) of ``(n, n, n)``,
    with a scale bar when ``voxel_size`` (nm) is given."""
    from ..evaluation.figures import add_scale_bar, plt, save_figure

    p = Path(path)
    if p.exists() and not overwrite:
        raise DataError(p, "already exists; choose another name or pass overwrite=True")
    v = np.asarray(volume, dtype=np.float32)
    c = v.shape[0] // 2
    slices = {"XY (z = centre)": v[c], "XZ (y = centre)": v[:, c], "YZ (x = centre)": v[:, :, c]}
    lo, hi = float(v.min()), float(v.max())
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.6), layout="constrained")
    for ax, (name, image) in zip(axes, slices.items(), strict=True):
        ax.imshow(image, cmap="gray", origin="lower", vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if voxel_size is not None:
        add_scale_bar(axes[0], v.shape[-1], voxel_size)
    heading = f"central slices of a {v.shape[0]}\u00b3 map"
    fig.suptitle(f"{title}: {heading}" if title else heading, fontsize=10)
    save_figure(fig, p, dpi=100)
    return p
