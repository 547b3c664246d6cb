"""Rotations for Hydra's pose search: a near-uniform SO(3) grid, its local refinement, 6D poses.

The grid is written here rather than taken from healpy (which would only give the viewing
directions): viewing directions on a Fibonacci sphere (near-uniform, any count), each with
``round(2 pi / s)`` in-plane angles where ``s = sqrt(4 pi / n)`` is the directions' spacing, so
both parts of the rotation are sampled about equally finely. A grid rotation ``R`` looks along
``d = R^T e_z``: the central slice of the map it shows is spanned by ``R^T e_x`` and ``R^T e_y``
(see :mod:`dualcontrast.models.hydra` for the projection convention).

Refinement (:func:`neighbours`) replaces a rotation by itself and six small turns
``R exp(+-h e_j)`` about the three axes, with ``h`` halved at every level: a hierarchical search
that reaches ``s / 2^(L+1)`` after ``L`` levels while evaluating only 7 rotations per candidate.
"""

from __future__ import annotations

import math

import torch


def fibonacci_sphere(n: int) -> torch.Tensor:
    """``n`` near-uniform unit vectors ``(n, 3)`` (golden-angle spiral)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = torch.sqrt(torch.clamp(1.0 - z * z, min=0.0))
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)


def grid_spacing(n_directions: int) -> float:
    """Angular spacing (radians) of a grid of ``n_directions`` viewing directions."""
    return math.sqrt(4.0 * math.pi / n_directions)


def so3_grid(n_directions: int) -> torch.Tensor:
    """Near-uniform rotations ``(n_directions * n_psi, 3, 3)`` float32 (module docstring)."""
    d = fibonacci_sphere(n_directions)
    helper = torch.where(
        (d[:, 2].abs() < 0.9).unsqueeze(-1),
        torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
        torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
    )
    u = torch.nn.functional.normalize(torch.cross(helper, d, dim=-1), dim=-1)
    v = torch.cross(d, u, dim=-1)
    n_psi = max(1, round(2.0 * math.pi / grid_spacing(n_directions)))
    psi = torch.arange(n_psi, dtype=torch.float64) * (2.0 * math.pi / n_psi)
    c, s = torch.cos(psi).view(1, -1, 1), torch.sin(psi).view(1, -1, 1)
    u2 = c * u.unsqueeze(1) + s * v.unsqueeze(1)  # (n, n_psi, 3)
    v2 = -s * u.unsqueeze(1) + c * v.unsqueeze(1)
    rows = torch.stack([u2, v2, d.unsqueeze(1).expand_as(u2)], -2)  # R has rows u', v', d
    return rows.reshape(-1, 3, 3).float()


def axis_angle_to_matrix(w: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``(..., 3)`` (axis times angle, radians) to matrices ``(..., 3, 3)`` (Rodrigues)."""
    theta = w.norm(dim=-1, keepdim=True).unsqueeze(-1)
    k = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    kx, ky, kz = k.unbind(-1)
    o = torch.zeros_like(kx)
    cross = torch.stack([o, -kz, ky, kz, o, -kx, -ky, kx, o], -1).reshape(*w.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(cross)
    return eye + torch.sin(theta) * cross + (1.0 - torch.cos(theta)) * (cross @ cross)


def neighbours(rotations: torch.Tensor, h: float) -> torch.Tensor:
    """Each rotation and its six turns by ``+-h`` radians about x, y, z. ``(..., 3, 3) -> (..., 7, 3, 3)``."""
    steps = torch.cat([torch.zeros(1, 3), torch.eye(3) * h, -torch.eye(3) * h]).to(rotations)
    turns = axis_angle_to_matrix(steps)  # (7, 3, 3)
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
