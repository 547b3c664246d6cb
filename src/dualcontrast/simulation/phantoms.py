"""Built-in phantom density maps: three molecule-like identities, each in several conformations.

No download is needed: every map is a sum of isotropic 3D Gaussian blobs laid out in physical
units (nm) and rendered on the requested grid, in the spirit of the paper's nucleosome / spike /
fatty-acid-synthase set (METHOD.md, "Subtomogram data set"):

============  ===========================================  ======================================
identity      composition                                  what changes between states
============  ===========================================  ======================================
nucleosome    histone-core disc, DNA superhelix wrapped     the two linker-DNA arms open by
              ~1.65 turns, two straight linker arms         0..40 degrees (clearly visible, like
                                                            the paper's nucleosome states)
spike         trimer of tilted lobes with side domains on   one receptor-binding domain hinges
              a thin stalk                                  outwards by 0..20 degrees (subtle)
fas           barrel: central wheel between two domes of    an inner arm slides by 0..2 nm and the
              three arches each (D3-like)                   top dome twists by 0..4 degrees
              (subtle)
============  ===========================================  ======================================

State ``k`` of ``n_states`` uses the state parameter ``t = k / (n_states - 1)``, scaling the
changes listed above linearly. Molecules are 17-22 nm across, so at the default 32^3 box of 1 nm
voxels they leave a few voxels of margin for random shifts. Densities are ~1 inside solid parts
(blob weights compensate for the blob spacing), so bigger molecules carry more signal, as real
ones do. Each identity is centred on the mass centre of its state 0, so parts that do not move
stay put across states.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..geometry import axis_angle_matrix

_SQRT_2PI = math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Blobs:
    """Isotropic Gaussian blobs in nm: ``centers (K, 3)`` as ``(x, y, z)``, ``sigma (K,)``, ``mass (K,)``.

    ``mass`` is the integral of each blob, so widening a blob for a coarse grid keeps the total
    density unchanged.
    """

    centers: np.ndarray
    sigma: np.ndarray
    mass: np.ndarray

    @staticmethod
    def concat(parts: list[Blobs]) -> Blobs:
        return Blobs(
            np.concatenate([p.centers for p in parts]),
            np.concatenate([p.sigma for p in parts]),
            np.concatenate([p.mass for p in parts]),
        )

    def rotated(self, axis: np.ndarray, degrees: float, pivot: np.ndarray) -> Blobs:
        """Rigid rotation by ``degrees`` about ``axis`` through ``pivot`` (right-handed)."""
        r = axis_angle_matrix(axis, math.radians(degrees))
        return Blobs((self.centers - pivot) @ r.T + pivot, self.sigma, self.mass)

    def shifted(self, shift: np.ndarray) -> Blobs:
        return Blobs(self.centers + np.asarray(shift, dtype=float), self.sigma, self.mass)

    def center_of_mass(self) -> np.ndarray:
        return (self.centers * self.mass[:, None]).sum(0) / self.mass.sum()

    def radius(self) -> float:
        """Distance from the origin that holds the molecule up to two blob widths."""
        return float(np.max(np.linalg.norm(self.centers, axis=1) + 2.0 * self.sigma))


# --- primitives: each returns blobs whose summed density is ~1 inside the shape -------------


def solid(inside: Callable[[np.ndarray], np.ndarray], half_extent: float, sigma: float) -> Blobs:
    """Blobs on a cubic lattice (spacing ``sigma``) at the points where ``inside(points)`` holds.

    A lattice of spacing h with blobs of mass h^3 sums to density ~1 when h <= sigma.
    """
    h = sigma
    axis = np.arange(-half_extent, half_extent + 1e-9, h)
    pts = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    pts = pts[inside(pts)]
    n = len(pts)
    return Blobs(pts, np.full(n, sigma), np.full(n, h**3))


def tube(curve: np.ndarray, sigma: float) -> Blobs:
    """Blobs along a polyline ``(P, 3)``, resampled to spacing <= sigma / 2, line density ~1 peak.

    Blobs spaced h along a line with mass h * 2 pi sigma^2 give a tube whose axis density is 1.
    """
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, math.ceil(arc[-1] / (0.5 * sigma)) + 1)
    s = np.linspace(0.0, arc[-1], n)
    pts = np.stack([np.interp(s, arc, curve[:, i]) for i in range(3)], -1)
    h = arc[-1] / (n - 1)
    return Blobs(pts, np.full(n, sigma), np.full(n, h * 2.0 * math.pi * sigma**2))


def segment(start, end, sigma: float) -> Blobs:
    return tube(np.stack([np.asarray(start, float), np.asarray(end, float)]), sigma)


def ball(center, radius: float, sigma: float) -> Blobs:
    c = np.asarray(center, dtype=float)
    return solid(lambda p: np.linalg.norm(p, axis=1) <= radius, radius, sigma).shifted(c)


def sphere_shell(
    radius: float, sigma: float, keep: Callable[[np.ndarray], np.ndarray], n_points: int = 4000
) -> Blobs:
    """Blobs on a sphere (Fibonacci points) where ``keep(points)`` holds; surface density ~1 peak.

    Points of area a each with mass a * sqrt(2 pi) sigma give a sheet whose mid-plane density is 1.
    """
    i = np.arange(n_points) + 0.5
    z = 1.0 - 2.0 * i / n_points
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    r = np.sqrt(1.0 - z**2)
    pts = radius * np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)
    pts = pts[keep(pts)]
    area = 4.0 * math.pi * radius**2 / n_points
    return Blobs(pts, np.full(len(pts), sigma), np.full(len(pts), area * _SQRT_2PI * sigma))


def _azimuth(p: np.ndarray) -> np.ndarray:
    return np.arctan2(p[:, 1], p[:, 0])


def _near_angles(p: np.ndarray, centers_deg: list[float], half_width_deg: float) -> np.ndarray:
    az = _azimuth(p)
    keep = np.zeros(len(p), dtype=bool)
    for c in centers_deg:
        d = np.angle(np.exp(1j * (az - math.radians(c))))
        keep |= np.abs(d) <= math.radians(half_width_deg)
    return keep


# --- identities: state parameter t in [0, 1] -> blobs (nm, roughly centred) -------------------

_Z = np.array([0.0, 0.0, 1.0])


def nucleosome(t: float) -> Blobs:
    """Histone disc + DNA superhelix (1.65 turns) + two linker arms opening by 40 t degrees."""
    core = solid(lambda p: (np.hypot(p[:, 0], p[:, 1]) <= 3.6) & (np.abs(p[:, 2]) <= 2.4), 3.6, 0.8)
    radius, pitch, turns = 5.0, 2.6, 1.65
    s = np.linspace(-turns / 2, turns / 2, 200)
    helix = np.stack([radius * np.cos(2 * np.pi * s), radius * np.sin(2 * np.pi * s), pitch * s], -1)
    parts = [core, tube(helix, 0.85)]
    for end, neighbour in ((helix[0], helix[1]), (helix[-1], helix[-2])):
        # Swing each arm from the helix tangent towards the outward radial direction, so the
        # arms open away from the core.
        tangent = (end - neighbour) / np.linalg.norm(end - neighbour)
        outward = np.array([end[0], end[1], 0.0]) / np.hypot(end[0], end[1])
        outward -= tangent * (outward @ tangent)
        outward /= np.linalg.norm(outward)
        angle = math.radians(40.0 * t)
        direction = math.cos(angle) * tangent + math.sin(angle) * outward
        parts.append(segment(end, end + 7.0 * direction, 0.85))
    return Blobs.concat(parts)


def spike(t: float) -> Blobs:
    """Trimer of tilted lobes with side domains on a stalk; one top domain hinges out by 20 t deg."""
    parts = [segment((0, 0, -9.0), (0, 0, -2.0), 0.9)]
    for j, phi_deg in enumerate((0.0, 120.0, 240.0)):
        phi = math.radians(phi_deg)
        radial = np.array([math.cos(phi), math.sin(phi), 0.0])
        parts.append(segment(1.4 * radial + (0, 0, -2.5), 3.2 * radial + (0, 0, 3.0), 1.5))
        side = np.array([math.cos(phi + 0.6), math.sin(phi + 0.6), 0.0])
        parts.append(ball(5.0 * side + (0, 0, 1.0), 1.9, 0.8))
        top = np.array([math.cos(phi - 0.35), math.sin(phi - 0.35), 0.0])
        domain = ball(2.8 * top + (0, 0, 7.0), 1.8, 0.8)
        if j == 0:
            hinge = 3.0 * radial + (0, 0, 3.0)
            domain = domain.rotated(np.cross(radial, _Z), -20.0 * t, hinge)
        parts.append(domain)
    return Blobs.concat(parts)


def fas(t: float) -> Blobs:
    """Wheel between two domes of three arches; an inner arm slides 2 t nm, top dome twists 4 t deg."""
    wheel = solid(lambda p: (np.hypot(p[:, 0], p[:, 1]) <= 6.5) & (np.abs(p[:, 2]) <= 0.9), 6.5, 0.9)
    top = sphere_shell(
        7.5, 0.9, lambda p: (p[:, 2] >= 1.5) & (_near_angles(p, [0, 120, 240], 22) | (p[:, 2] > 6.6))
    )
    bottom = sphere_shell(
        7.5, 0.9, lambda p: (p[:, 2] <= -1.5) & (_near_angles(p, [60, 180, 300], 22) | (p[:, 2] < -6.6))
    )
    top = top.rotated(_Z, 4.0 * t, np.zeros(3))
    arm = ball((3.0, 0.0, 3.6), 1.3, 0.8).shifted((0.0, 2.0 * t, 0.0))
    return Blobs.concat([wheel, top, bottom, arm])


PHANTOMS: dict[str, Callable[[float], Blobs]] = {"nucleosome": nucleosome, "spike": spike, "fas": fas}


# --- rendering --------------------------------------------------------------------------------


def render(blobs: Blobs, box: int, voxel_size: float) -> np.ndarray:
    """Sum of the blobs on a ``box^3`` grid of ``voxel_size`` nm. ``-> (box, box, box)`` float32 (z, y, x).

    The origin sits at voxel ``(box - 1) / 2`` on every axis, the rotation centre of
    :func:`dualcontrast.transforms.geometry.warp`. Blobs are widened in quadrature by half a voxel
    so that the map is smooth at the grid spacing (no aliasing at coarse voxel sizes). Gaussians
    are separable, so the sum is one matrix product over the blobs.
    """
    coords = (np.arange(box) - (box - 1) / 2.0) * voxel_size
    sigma = np.sqrt(blobs.sigma**2 + (0.5 * voxel_size) ** 2)
    amp = blobs.mass / (_SQRT_2PI * sigma) ** 3
    g = [
        np.exp(-0.5 * ((coords[None, :] - blobs.centers[:, i : i + 1]) / sigma[:, None]) ** 2)
        for i in range(3)
    ]
    gx, gy, gz = g
    zy = (amp[:, None, None] * gz[:, :, None] * gy[:, None, :]).reshape(len(amp), box * box)
    return (zy.T @ gx).reshape(box, box, box).astype(np.float32)


def phantom_blobs(identity: str, n_states: int = 4) -> list[Blobs]:
    """Blobs of every state of one identity, centred on the mass centre of state 0."""
    if identity not in PHANTOMS:
        raise ConfigError(f"unknown phantom {identity!r}; known: {', '.join(PHANTOMS)}")
    if n_states < 1:
        raise ConfigError(f"phantoms need at least one state, got n_states={n_states}")
    ts = [0.0] if n_states == 1 else [k / (n_states - 1) for k in range(n_states)]
    states = [PHANTOMS[identity](t) for t in ts]
    center = states[0].center_of_mass()
    return [b.shifted(-center) for b in states]


def phantom_maps(
    box: int = 32, voxel_size: float = 1.0, n_states: int = 4, identities: list[str] | None = None
) -> dict[tuple[str, str], np.ndarray]:
    """Density maps of the built-in phantoms.

    Args:
        box: grid size (voxels per side).
        voxel_size: nm per voxel. The molecules are ~17-22 nm across, so ``box * voxel_size``
            must be at least ~26 nm (checked).
        n_states: conformational states per identity (>= 1).
        identities: subset of ``PHANTOMS`` (default: all, in the order of the module docstring).

    Returns:
        ``{(identity, "state<k>"): (box, box, box) float32}``, identity-major, states in order.
    """
    names = list(PHANTOMS) if identities is None else list(identities)
    half_extent = 0.5 * box * voxel_size
    maps: dict[tuple[str, str], np.ndarray] = {}
    for name in names:
        for k, blobs in enumerate(phantom_blobs(name, n_states)):
            if blobs.radius() > half_extent:
                raise ConfigError(
                    f"phantom {name!r} needs a box of at least {2 * blobs.radius():.0f} nm, but "
                    f"box {box} x voxel size {voxel_size} nm = {2 * half_extent:.0f} nm; "
                    "raise the box or the voxel size"
                )
            maps[(name, f"state{k}")] = render(blobs, box, voxel_size)
    return maps
