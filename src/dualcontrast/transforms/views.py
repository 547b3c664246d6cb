"""The two views of a contrastive pair, and the one input path that embedding shares with them.

The published pairing compares ``x`` as loaded with ``T(x)``, the only one of the two that is
resampled (``grid_sample`` with zero padding). Resampling leaves a signature a network finds
before it finds the object: lower variance, exact zeros in the corners, less high-frequency
energy (bilinear interpolation at a random sub-pixel offset is a low-pass). One scalar of
that kind tells ``x`` from ``T(x)`` perfectly, so the term that pushes ``z(x)`` from ``z(T(x))``
is met by a "was resampled" feature, and the content code has nothing left to learn from the
pair (issue 9 has the measurements).

``pairing: symmetric`` (the default) removes the signature:

- both views are resampled by independent draws of T (``x_a = T_a(x)``, ``x_b = T_b(x)``);
- each view then goes through :meth:`PairViews.finish`: a Gaussian low-pass (where
  interpolation would leave a spectral difference, most of the power is gone), the same soft
  circular / spherical mask (the corners that zero padding fills are outside it), and, for
  data that are not intensities in [0, 1], re-normalisation to zero mean and unit variance
  inside the mask;
- inputs that are not resampled (embedding, evaluation, analysis) first get
  :func:`interpolation_filter`, the power response of linear interpolation at a uniform random
  offset along each axis, so a code is computed from the same input distribution it was trained
  on.

``pairing: paper`` keeps the published behaviour exactly (``x`` against ``T(x)``, nothing
finished), for like-for-like comparisons with the paper's numbers.

``pairing: anchored`` keeps the paper's asymmetry without its signature: ``x`` in the pose it
was loaded in, prepared as an embedding input is (:meth:`PairViews.prepare`), against
``finish(T(x))``. Where the data come in a canonical pose (upright digits), one view of every
pair is in that pose, which the symmetric views give up; subtomograms have no such pose.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ConfigError

PAIRINGS = ("symmetric", "paper", "anchored")
RENORMALIZE = ("auto", "on", "off")


@dataclass(frozen=True)
class ViewSettings:
    """How pair views are drawn (the ``views`` config section)."""

    pairing: str = "symmetric"
    mask_radius: float | None = 0.95
    mask_edge: float = 0.15
    lowpass: float | None = 0.5
    renormalize: str = "auto"

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ConfigError(f"views.pairing must be one of {', '.join(PAIRINGS)}, got {self.pairing!r}")
        if self.renormalize not in RENORMALIZE:
            raise ConfigError(
                f"views.renormalize must be one of {', '.join(RENORMALIZE)}, got {self.renormalize!r}"
            )


def soft_mask(spatial: tuple[int, ...], radius: float, edge: float, like: torch.Tensor) -> torch.Tensor:
    """A circle (2D) or sphere (3D) about the array centre with a raised-cosine edge.

    ``radius`` and ``edge`` are fractions of half the smallest side: 1 inside
    ``radius - edge``, 0 beyond ``radius``. ``-> (1, 1, *spatial)``.
    """
    half = min(spatial) / 2
    axes = [torch.arange(n, device=like.device, dtype=like.dtype) - (n - 1) / 2 for n in spatial]
    r = torch.zeros(spatial, device=like.device, dtype=like.dtype)
    for i, a in enumerate(axes):
        shape = [1] * len(spatial)
        shape[i] = -1
        r = r + a.reshape(shape) ** 2
    r = r.sqrt() / half
    inner = radius - edge
    if edge <= 0:
        m = (r <= radius).to(like.dtype)
    else:
        t = ((r - inner) / edge).clamp(0, 1)
        m = 0.5 * (1 + torch.cos(math.pi * t))
    return m.reshape(1, 1, *spatial)


def _frequencies(spatial: tuple[int, ...], like: torch.Tensor) -> list[torch.Tensor]:
    """Per axis, the ``rfftn`` frequencies in cycles per pixel, shaped to broadcast."""
    k = len(spatial)
    out = []
    for i, n in enumerate(spatial):
        f = torch.fft.rfftfreq(n, device=like.device) if i == k - 1 else torch.fft.fftfreq(n, device=like.device)
        shape = [1] * k
        shape[i] = -1
        out.append(f.to(like.dtype).reshape(shape))
    return out


def _filter(x: torch.Tensor, gain: Callable[[list[torch.Tensor]], torch.Tensor]) -> torch.Tensor:
    """Multiply the spectrum of each sample by ``gain(frequencies)`` (real, symmetric)."""
    spatial = tuple(x.shape[2:])
    dims = tuple(range(2, x.dim()))
    spectrum = torch.fft.rfftn(x.float(), dim=dims)
    g = gain(_frequencies(spatial, spectrum.real))
    return torch.fft.irfftn(spectrum * g, s=spatial, dim=dims).to(x.dtype)


def gaussian_lowpass(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Gaussian low-pass with gain 1/2 at ``cutoff`` x Nyquist (radially). Shape kept."""
    f_half = 0.5 * cutoff

    def gain(freqs: list[torch.Tensor]) -> torch.Tensor:
        f2 = sum(f**2 for f in freqs)
        return torch.exp(-math.log(2) * f2 / f_half**2)

    return _filter(x, gain)


def interpolation_filter(x: torch.Tensor) -> torch.Tensor:
    """The average power response of (bi/tri)linear interpolation at a uniform random offset.

    Along one axis, sampling between two pixels at offset ``s`` has response
    ``1 - s + s e^{-2 pi i f}``; its power averaged over ``s ~ U(0, 1)`` is
    ``(2 + cos 2 pi f) / 3``. A rotation by a generic angle (or a random shift) samples every
    output pixel at such an offset, independently along each axis, so an input filtered by the
    square root of the product over axes has the spectrum of a resampled one.
    """

    def gain(freqs: list[torch.Tensor]) -> torch.Tensor:
        g = torch.ones((), dtype=freqs[0].dtype, device=freqs[0].device)
        for f in freqs:
            g = g * (2 + torch.cos(2 * math.pi * f)) / 3
        return g.sqrt()

    return _filter(x, gain)


class PairViews:
    """Draws the two views of each sample, and prepares inputs that are not resampled.

    ``intensities``: the data are intensities in [0, 1] (the model decodes through a
    sigmoid); then views are clipped to [0, 1] instead of re-normalised (``renormalize: auto``).
    """

    def __init__(self, settings: ViewSettings | None = None, *, intensities: bool = False):
        self.settings = settings or ViewSettings()
        self.intensities = intensities
        self._masks: dict[tuple, torch.Tensor] = {}

    @property
    def finished(self) -> bool:
        """Whether views are finished (every pairing but the paper's)."""
        return self.settings.pairing != "paper"

    def _mask(self, x: torch.Tensor) -> torch.Tensor | None:
        s = self.settings
        if s.mask_radius is None:
            return None
        key = (tuple(x.shape[2:]), x.device, x.dtype)
        if key not in self._masks:
            self._masks[key] = soft_mask(tuple(x.shape[2:]), s.mask_radius, s.mask_edge, x)
        return self._masks[key]

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Low-pass, mask and re-normalise a batch (identity under the paper's pairing)."""
        if not self.finished:
            return x
        s = self.settings
        if s.lowpass is not None:
            x = gaussian_lowpass(x, s.lowpass)
        mask = self._mask(x)
        renorm = s.renormalize == "on" or (s.renormalize == "auto" and not self.intensities)
        if renorm:
            w = mask if mask is not None else torch.ones_like(x[:1])
            dims = tuple(range(1, x.dim()))
            total = w.sum() * x.shape[1]
            mean = (w * x).sum(dims, keepdim=True) / total
            var = (w * (x - mean) ** 2).sum(dims, keepdim=True) / total
            x = (x - mean) / (var + 1e-8).sqrt()
        if mask is not None:
            x = x * mask
        if self.intensities:
            x = x.clamp(0, 1)
        return x

    def pair(self, x: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(view a, view b)`` of a batch: ``(finish(T_a x), finish(T_b x))``; ``(x, T x)``
        under the paper's pairing; ``(prepare(x), finish(T x))`` under ``anchored``."""
        if not self.finished:
            return x, transform(x)
        if self.settings.pairing == "anchored":
            return self.prepare(x), self.finish(transform(x))
        return self.finish(transform(x)), self.finish(transform(x))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """An input that is not resampled (embedding, evaluation), matched to the views."""
        if not self.finished:
            return x
        return self.finish(interpolation_filter(x))
