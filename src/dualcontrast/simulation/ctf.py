"""The contrast transfer function and missing wedge the simulator applies (and averaging corrects).

CTF (weak-phase approximation, applied in 3D as a function of ``|k|``, as in the TOM / AITom
simulators the paper's authors use)::

    lambda(V) = h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2)))     (relativistic electron wavelength)
    chi(k)    = pi lambda dz k^2 - (pi / 2) Cs lambda^3 k^4 + arcsin(A)
    CTF(k)    = sin(chi(k))

with ``k`` in 1/Angstrom, ``dz = -defocus`` the underfocus (the paper's "defocus -5 um" is 5 um
of underfocus, TOM toolbox sign) and ``A`` the amplitude contrast. With this overall sign the
CTF is +A at k = 0 and positive at low frequency, so a positive density keeps positive
contrast (TOM convention); RELION / CTFFIND write the CTF with the opposite overall sign.
Frequencies beyond Nyquist (``|k| >= 0.5`` cycles/voxel) are zeroed, which keeps every copy
band-limited isotropically.

Missing wedge: tilt axis along ``y`` (H), beam along ``z`` (D). A tilt of theta turns the beam
from +z towards +x; the Fourier point ``k`` is measured when some tilt in ``tilt_range`` has its
central plane through ``k``, i.e. ``atan(-k_z / k_x)`` (folded to [-90, 90] degrees) lies in the
range. The wedge is fixed in the tomogram frame and applied after the rotation.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..errors import ConfigError

# --------------------------------------------------------------------------- physics


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Angstrom (300 kV -> 0.019687 A)."""
    h, m0, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    v = voltage_kv * 1e3
    return h / math.sqrt(2.0 * m0 * e * v * (1.0 + e * v / (2.0 * m0 * c * c))) * 1e10


def ctf_1d(
    k: np.ndarray | torch.Tensor,
    defocus_um: float | np.ndarray | torch.Tensor = -5.0,
    cs_mm: float = 1.7,
    voltage_kv: float = 300.0,
    amplitude_contrast: float = 0.1,
):
    """CTF at spatial frequencies ``k`` (1/Angstrom); see the module docstring for the formula and sign.

    Works on numpy arrays and torch tensors (broadcasting ``defocus_um`` against ``k``).
    """
    lam = electron_wavelength(voltage_kv)
    dz = -defocus_um * 1e4  # underfocus in Angstrom
    cs = cs_mm * 1e7
    k2 = k * k
    chi = math.pi * lam * dz * k2 - 0.5 * math.pi * cs * lam**3 * k2 * k2 + math.asin(amplitude_contrast)
    return np.sin(chi) if isinstance(chi, np.ndarray) else torch.sin(chi)


def rfft_frequencies(box: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cycles/voxel on the ``rfftn`` grid of a ``box^3`` volume, broadcastable to ``(D, H, W//2+1)``."""
    kz = torch.fft.fftfreq(box, dtype=torch.float64).reshape(-1, 1, 1)
    ky = torch.fft.fftfreq(box, dtype=torch.float64).reshape(1, -1, 1)
    kx = torch.fft.rfftfreq(box, dtype=torch.float64).reshape(1, 1, -1)
    return kz, ky, kx


@functools.lru_cache(maxsize=8)
def radial_index(box: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct radii (cycles/voxel) of the ``rfftn`` grid and, per grid point, the index of its radius.

    A radial function then costs one evaluation per distinct radius (a few hundred for 32^3)
    plus a gather, instead of one per Fourier voxel.
    """
    kz, ky, kx = rfft_frequencies(box)
    squared = torch.round((kz**2 + ky**2 + kx**2) * box * box).to(torch.int64)  # integer |k|^2 in grid units
    unique, inverse = torch.unique(squared, return_inverse=True)
    return torch.sqrt(unique.to(torch.float64)) / box, inverse


def ctf_3d(
    box: int,
    voxel_size: float = 1.0,
    defocus_um: float | np.ndarray = -5.0,
    cs_mm: float = 1.7,
    voltage_kv: float = 300.0,
    amplitude_contrast: float = 0.1,
) -> torch.Tensor:
    """Radial 3D CTF on the ``rfftn`` grid, zero beyond Nyquist.

    ``defocus_um`` scalar -> ``(D, H, W//2+1)``; array ``(B,)`` -> ``(B, D, H, W//2+1)``. float32.
    """
    radius, inverse = radial_index(box)
    defocus = torch.as_tensor(np.asarray(defocus_um, dtype=np.float64))
    profile = ctf_1d(
        radius / (voxel_size * 10.0), defocus.reshape(-1, 1), cs_mm, voltage_kv, amplitude_contrast
    )
    profile = torch.where(radius < 0.5, profile, torch.zeros(())).to(torch.float32)
    out = profile[:, inverse]
    return out[0] if defocus.ndim == 0 else out


def missing_wedge_mask(box: int, tilt_range: tuple[float, float]) -> torch.Tensor:
    """Measured Fourier points ``(D, H, W//2+1)`` bool for a single-axis tilt series about ``y``."""
    lo, hi = float(tilt_range[0]), float(tilt_range[1])
    if not -90.0 <= lo < hi <= 90.0:
        raise ConfigError(f"tilt range must satisfy -90 <= min < max <= 90 degrees, got {tilt_range}")
    kz, _, kx = rfft_frequencies(box)
    kz, kx = torch.broadcast_tensors(kz, kx)
    theta = torch.rad2deg(torch.atan(-kz / kx))  # kx == 0 gives +-90 (or nan at kz == 0)
    on_axis = (kx == 0) & (kz == 0)
    mask = ((theta >= lo) & (theta <= hi)) | on_axis
    return mask.expand(box, box, box // 2 + 1)


