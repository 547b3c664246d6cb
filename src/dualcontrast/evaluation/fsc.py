"""Fourier shell correlation between two maps, its area under the curve, and resolution.

Following paper 001 (and METHOD.md, "Structures")::

    FSC(s) = Re sum_{k in s} F1(k) F2*(k) / sqrt(sum_{k in s} |F1(k)|^2 * sum_{k in s} |F2(k)|^2)
    AUC-FSC = integral_0^1 FSC(s) ds          (s as a fraction of Nyquist)

Shells are one Fourier voxel thick: shell ``j`` holds the frequencies whose radius rounds to
``j`` (in units of 1/box), for ``j = 0 .. box // 2``, so ``s_j = j / (box / 2)`` runs from 0 to
1 (Nyquist); the corners of the Fourier cube beyond Nyquist are left out. A shell where either
map has no power gets FSC 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FSCCurve:
    """One FSC curve. Unpacks as ``freq, fsc = curve``.

    Attributes:
        freq: ``(S,)`` shell frequencies as a fraction of Nyquist, ``0 .. 1``.
        fsc: ``(S,)`` correlation per shell.
        n_voxels: ``(S,)`` Fourier voxels per shell (the FSC of pure noise scatters ~1/sqrt of it).
        voxel_size: length per voxel (e.g. nm, as elsewhere in the package), for resolutions.
    """

    freq: np.ndarray
    fsc: np.ndarray
    n_voxels: np.ndarray
    voxel_size: float = 1.0

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.freq, self.fsc))

    @property
    def spatial_frequency(self) -> np.ndarray:
        """Shell frequencies in 1 / (voxel_size unit): Nyquist is ``1 / (2 voxel_size)``."""
        return self.freq / (2.0 * self.voxel_size)


def _check_pair(map1: np.ndarray, map2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(map1, dtype=np.float64)
    b = np.asarray(map2, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or len(set(a.shape)) != 1:
        raise ValueError(f"FSC needs square images or cubic volumes, got shape {a.shape}")
    return a, b


def shell_index(box: int, ndim: int = 3) -> np.ndarray:
    """Shell number of every point of a ``box^ndim`` FFT grid (``np.fft`` layout); ``-1`` beyond Nyquist."""
    k = np.fft.fftfreq(box) * box
    grids = np.meshgrid(*([k] * ndim), indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids))
    shells = np.rint(radius).astype(np.int64)
    return np.where(shells <= box // 2, shells, -1)


def fsc(
    map1: np.ndarray, map2: np.ndarray, voxel_size: float = 1.0, mask: np.ndarray | None = None
) -> FSCCurve:
    """FSC between two cubic maps ``(n, n, n)`` (or square images), optionally both multiplied by ``mask``."""
    a, b = _check_pair(map1, map2)
    if mask is not None:
        a, b = a * mask, b * mask
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    shells = shell_index(a.shape[0], a.ndim).ravel()
    keep = shells >= 0
    shells = shells[keep]
    n_shells = a.shape[0] // 2 + 1
    fa, fb = fa.ravel()[keep], fb.ravel()[keep]
    cross = np.bincount(shells, weights=(fa * np.conj(fb)).real, minlength=n_shells)
    pa = np.bincount(shells, weights=np.abs(fa) ** 2, minlength=n_shells)
    pb = np.bincount(shells, weights=np.abs(fb) ** 2, minlength=n_shells)
    denom = np.sqrt(pa * pb)
    values = np.divide(cross, denom, out=np.zeros(n_shells), where=denom > 0)
    freq = np.arange(n_shells) / (a.shape[0] / 2.0)
    return FSCCurve(freq, values, np.bincount(shells, minlength=n_shells), float(voxel_size))


def auc_fsc(curve: FSCCurve) -> float:
    """Area under the FSC curve over ``[0, 1]`` of Nyquist (trapezoid rule over the shells)."""
    freq, values = curve
    inside = freq <= 1.0 + 1e-12
    f, v = freq[inside], values[inside]
    return float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(f)))


def resolution_at(curve: FSCCurve, threshold: float = 0.143) -> float:
    """Resolution where the FSC first drops below ``threshold`` (0.143 gold standard, 0.5 vs a known map).

    The crossing is interpolated linearly between shells; returned as a length in the curve's
    ``voxel_size`` unit (``2 * voxel_size / s``). A curve that never drops below the threshold
    returns the Nyquist limit ``2 * voxel_size`` (resolution limited by sampling).
    """
    freq, values = curve
    below = np.flatnonzero(values[1:] < threshold) + 1
    if len(below) == 0:
        return 2.0 * curve.voxel_size
    j = int(below[0])
    f0, f1, v0, v1 = freq[j - 1], freq[j], values[j - 1], values[j]
    s = f0 + (v0 - threshold) / (v0 - v1) * (f1 - f0) if v0 != v1 else f1
    return 2.0 * curve.voxel_size / s if s > 0 else float("inf")


def soft_sphere_mask(box: int, radius: float | None = None, edge: float = 3.0) -> np.ndarray:
    """Sphere of ``radius`` voxels (default ``box / 2 - edge``) about ``(box - 1) / 2`` with a raised-cosine edge.

    ``(box, box, box)`` float32 in [0, 1].
    """
    radius = box / 2.0 - edge if radius is None else radius
    c = (np.arange(box) - (box - 1) / 2.0) ** 2
    r = np.sqrt(c[:, None, None] + c[None, :, None] + c[None, None, :])
    t = np.clip((r - radius) / max(edge, 1e-6), 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)
