"""All rotation maths of the package: 2D rotations, quaternions, uniform and gridded SO(3), axis-angle,
intrinsic ZYZ Euler angles and RELION's Euler convention, and the pose-search grid of projection
methods (viewing directions x in-plane angles, local turns, 6D poses).

Rotation matrices act on ``(x, y[, z])`` column vectors (x along an array's last axis); see
:mod:`dualcontrast.transforms.geometry` for how they move images and volumes. Two Euler
conventions meet in this package:

- ours (simulation tables): intrinsic ZYZ, ``R = Rz(a) Ry(b) Rz(g)`` with *active* elementary
  rotations (:func:`euler_zyz_to_matrix`, :func:`matrix_to_euler_zyz`);
- RELION's ``rlnAngleRot, rlnAngleTilt, rlnAnglePsi``: ``A = Rz(psi) Ry(tilt) Rz(rot)`` with
  *passive* rotations (:func:`relion_matrix`, :func:`relion_angles`); how a RELION pose maps to
  ours (and the origin convention) is :func:`dualcontrast.io.star.relion_pose`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# --------------------------------------------------------------------------- 2D and quaternions


def rotation_matrix_2d(angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices for angles in radians. ``(N,) -> (N, 2, 2)``."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(w, x, y, z)`` to rotation matrices. ``(N, 4) -> (N, 3, 3)``."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - z * w),
            2 * (x * z + y * w),
            2 * (x * y + z * w),
            1 - 2 * (x * x + z * z),
            2 * (y * z - x * w),
            2 * (x * z - y * w),
            2 * (y * z + x * w),
            1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape((*q.shape[:-1], 3, 3))


def canonical_quaternions(q: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(N, 4)`` ``(w, x, y, z)`` with ``w >= 0`` (q and -q are the same rotation)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return np.where(q[:, :1] < 0, -q, q)


# --------------------------------------------------------------------------- SO(3): uniform, gridded, local


def random_rotation_3d(n: int, *, device=None, dtype=torch.float32, generator=None) -> torch.Tensor:
    """``n`` rotations drawn uniformly (Haar measure) on SO(3). ``-> (n, 3, 3)``.

    A normalised 4D standard-normal vector is a uniform unit quaternion, and the double
    cover q -> R maps the uniform measure on S^3 to the Haar measure on SO(3).
    """
    q = torch.randn(n, 4, device=device, dtype=dtype, generator=generator)
    return quaternion_to_matrix(q)


# Super-Fibonacci constants (Alexa 2022): sqrt(2) and the real root of psi^4 = psi + 4.
_PHI = math.sqrt(2.0)
_PSI = 1.533751168755204288118041


def so3_grid(n: int) -> torch.Tensor:
    """``n`` near-uniformly spread rotations ``(n, 3, 3)`` (super-Fibonacci spiral on unit quaternions)."""
    s = torch.arange(n, dtype=torch.float64) + 0.5
    r = torch.sqrt(s / n)
    big_r = torch.sqrt(1.0 - s / n)
    alpha = 2.0 * math.pi * s / _PHI
    beta = 2.0 * math.pi * s / _PSI
    q = torch.stack(
        [r * torch.sin(alpha), r * torch.cos(alpha), big_r * torch.sin(beta), big_r * torch.cos(beta)], -1
    )
    return quaternion_to_matrix(q)


def grid_spacing(n: int) -> float:
    """Typical angular distance (radians) from a random rotation to the nearest of ``n`` grid rotations.

    A ball of radius r in SO(3) holds the fraction ``(r - sin r) / pi`` of all rotations; the
    radius at which ``n`` balls cover SO(3) once.
    """
    lo, hi = 0.0, math.pi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if n * (mid - math.sin(mid)) / math.pi < 1.0 else (lo, mid)
    return hi


def local_rotations(radius: float, steps: int = 2) -> torch.Tensor:
    """Small rotations ``(K, 3, 3)``: axis-angle vectors on a cubic lattice (spacing ``radius / steps``) in a ball."""
    h = radius / steps
    axis = torch.arange(-steps, steps + 1, dtype=torch.float64) * h
    v = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    v = v[v.norm(dim=1) <= radius + 1e-9]
    return axis_angle_to_matrix(v)


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``(K, 3)`` (axis x angle in radians) -> ``(K, 3, 3)`` via quaternions."""
    angle = v.norm(dim=1, keepdim=True)
    axis = torch.where(angle > 0, v / angle.clamp_min(1e-12), torch.zeros_like(v))
    q = torch.cat([torch.cos(angle / 2), axis * torch.sin(angle / 2)], dim=1)
    return quaternion_to_matrix(q)


def rotation_angle(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Angle (degrees) of ``r1^T r2`` for stacks of rotation matrices ``(N, 3, 3)``."""
    rel = np.swapaxes(r1, -1, -2) @ r2
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix ``(3, 3)`` for ``angle`` radians about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


# --------------------------------------------------------------------------- Euler angles: ours (ZYZ) and RELION's


def euler_zyz_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Intrinsic ZYZ Euler angles (radians, ``(N, 3)``) to matrices ``(N, 3, 3)``: Rz(a) Ry(b) Rz(g)."""
    a, b, g = angles.unbind(-1)

    def rz(t: torch.Tensor) -> torch.Tensor:
        c, s, o, i = torch.cos(t), torch.sin(t), torch.zeros_like(t), torch.ones_like(t)
        return torch.stack([c, -s, o, s, c, o, o, o, i], -1).reshape((*t.shape, 3, 3))

    def ry(t: torch.Tensor) -> torch.Tensor:
        c, s, o, i = torch.cos(t), torch.sin(t), torch.zeros_like(t), torch.ones_like(t)
        return torch.stack([c, o, s, o, i, o, -s, o, c], -1).reshape((*t.shape, 3, 3))

    return rz(a) @ ry(b) @ rz(g)


def matrix_to_euler_zyz(r: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(N, 3, 3)`` -> intrinsic ZYZ angles ``(N, 3)`` in radians, ``R = Rz(a) Ry(b) Rz(g)``.

    ``b`` in [0, pi]; at the poles (``sin b ~ 0``) the split between a and g is arbitrary and
    ``g = 0`` is returned.
    """
    r = np.asarray(r, dtype=np.float64)
    b = np.arccos(np.clip(r[:, 2, 2], -1.0, 1.0))
    a = np.arctan2(r[:, 1, 2], r[:, 0, 2])
    g = np.arctan2(r[:, 2, 1], -r[:, 2, 0])
    pole = np.abs(np.sin(b)) < 1e-6
    # At b = 0 or pi, Rz(a) Ry(b) Rz(g) depends on a +- g only; put it all in a.
    a = np.where(pole, np.arctan2(-r[:, 0, 1], r[:, 1, 1]), a)
    g = np.where(pole, 0.0, g)
    return np.stack([a, b, g], -1)


# RELION's passive elementary rotations (the transposes of the active ones above).
def _rz(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, s, z], -1), np.stack([-s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _ry(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, z, -s], -1), np.stack([z, o, z], -1), np.stack([s, z, c], -1)], -2)


def relion_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """RELION's ``A(rot, tilt, psi) = Rz(psi) Ry(tilt) Rz(rot)`` (passive rotations), ``(..., 3, 3)``."""
    a = np.radians(np.asarray(angles_deg, np.float64))
    return _rz(a[..., 2]) @ _ry(a[..., 1]) @ _rz(a[..., 0])


def relion_angles(matrices: np.ndarray) -> np.ndarray:
    """Inverse of :func:`relion_matrix`: ``(rot, tilt, psi)`` degrees with tilt in [0, 180]."""
    a = np.asarray(matrices, np.float64)
    tilt = np.arccos(np.clip(a[..., 2, 2], -1.0, 1.0))
    sin_tilt = np.sin(tilt)
    regular = sin_tilt > 1e-6
    rot = np.where(regular, np.arctan2(a[..., 2, 1], a[..., 2, 0]), 0.0)
    psi = np.where(regular, np.arctan2(a[..., 1, 2], -a[..., 0, 2]), 0.0)
    # Gimbal lock (tilt 0 or 180): only rot +- psi is defined; put it all in psi.
    lock = np.where(
        a[..., 2, 2] > 0, np.arctan2(a[..., 0, 1], a[..., 0, 0]), np.arctan2(a[..., 0, 1], -a[..., 0, 0])
    )
    psi = np.where(regular, psi, lock)
    return np.degrees(np.stack([rot, tilt, psi], -1))


# --------------------------------------------------------------------------- SO(3) for a projection pose search
# (Hydra): viewing directions x in-plane angles, local refinement, 6D poses.
#
# The grid is written here rather than taken from healpy (which would only give the viewing
# directions): viewing directions on a Fibonacci sphere (near-uniform, any count), each with
# ``round(2 pi / s)`` in-plane angles where ``s = sqrt(4 pi / n)`` is the directions' spacing, so
# both parts of the rotation are sampled about equally finely. A grid rotation ``R`` looks along
# ``d = R^T e_z``: the central slice of the map it shows is spanned by ``R^T e_x`` and ``R^T e_y``
# (see dualcontrast.models.hydra for the projection convention).
#
# Refinement (neighbour_turns) replaces a rotation by itself and six small turns
# ``R exp(+-h e_j)`` about the three axes, with ``h`` halved at every level: a hierarchical search
# that reaches ``s / 2^(L+1)`` after ``L`` levels while evaluating only 7 rotations per candidate.


def fibonacci_sphere(n: int) -> torch.Tensor:
    """``n`` near-uniform unit vectors ``(n, 3)`` (golden-angle spiral)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = torch.sqrt(torch.clamp(1.0 - z * z, min=0.0))
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)


def view_grid_spacing(n_directions: int) -> float:
    """Angular spacing (radians) of a grid of ``n_directions`` viewing directions."""
    return math.sqrt(4.0 * math.pi / n_directions)


def view_grid(n_directions: int) -> torch.Tensor:
    """Near-uniform rotations ``(n_directions * n_psi, 3, 3)`` float32 (see the comment above)."""
    d = fibonacci_sphere(n_directions)
    helper = torch.where(
        (d[:, 2].abs() < 0.9).unsqueeze(-1),
        torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
        torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
    )
    u = torch.nn.functional.normalize(torch.cross(helper, d, dim=-1), dim=-1)
    v = torch.cross(d, u, dim=-1)
    n_psi = max(1, round(2.0 * math.pi / view_grid_spacing(n_directions)))
    psi = torch.arange(n_psi, dtype=torch.float64) * (2.0 * math.pi / n_psi)
    c, s = torch.cos(psi).view(1, -1, 1), torch.sin(psi).view(1, -1, 1)
    u2 = c * u.unsqueeze(1) + s * v.unsqueeze(1)  # (n, n_psi, 3)
    v2 = -s * u.unsqueeze(1) + c * v.unsqueeze(1)
    rows = torch.stack([u2, v2, d.unsqueeze(1).expand_as(u2)], -2)  # R has rows u', v', d
    return rows.reshape(-1, 3, 3).float()


def rotation_vectors_to_matrices(w: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``(..., 3)`` (axis times angle, radians) to matrices ``(..., 3, 3)`` (Rodrigues)."""
    theta = w.norm(dim=-1, keepdim=True).unsqueeze(-1)
    k = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    kx, ky, kz = k.unbind(-1)
    o = torch.zeros_like(kx)
    cross = torch.stack([o, -kz, ky, kz, o, -kx, -ky, kx, o], -1).reshape(*w.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(cross)
    return eye + torch.sin(theta) * cross + (1.0 - torch.cos(theta)) * (cross @ cross)


def neighbour_turns(rotations: torch.Tensor, h: float) -> torch.Tensor:
    """Each rotation and its six turns by ``+-h`` radians about x, y, z. ``(..., 3, 3) -> (..., 7, 3, 3)``."""
    steps = torch.cat([torch.zeros(1, 3), torch.eye(3) * h, -torch.eye(3) * h]).to(rotations)
    turns = rotation_vectors_to_matrices(steps)  # (7, 3, 3)
    return rotations.unsqueeze(-3) @ turns


def matrix_to_6d(r: torch.Tensor) -> torch.Tensor:
    """The first two columns of each rotation, ``(..., 3, 3) -> (..., 6)`` (a continuous parameterisation)."""
    return r[..., :, :2].transpose(-1, -2).reshape(*r.shape[:-2], 6)


def matrix_from_6d(a: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt of two 3-vectors to a rotation, ``(..., 6) -> (..., 3, 3)``."""
    a1, a2 = a[..., :3], a[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], -1)


def geodesic_angle(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Angle (radians) of ``r1^T r2``; ``(..., 3, 3)`` pairs -> ``(...)``."""
    trace = (r1 * r2).sum((-1, -2))
    return torch.arccos(torch.clamp((trace - 1.0) / 2.0, -1.0, 1.0))
