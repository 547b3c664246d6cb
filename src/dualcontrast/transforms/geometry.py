"""Rotation matrices and differentiable warps of 2D images and 3D volumes.

Conventions used everywhere in the package:

- Arrays are ``(N, C, H, W)`` (2D) or ``(N, C, D, H, W)`` (3D). A point is written in
  normalised array coordinates ``p = (x, y[, z])`` with ``x`` along the last axis (W), ``y``
  along H and ``z`` along D, each in ``[-1, 1]`` with pixel centres at ``(2i + 1) / n - 1``
  (``align_corners=False``).
- ``warp(v, R, t)`` moves the object: the result satisfies ``v'(R p + t) = v(p)``, i.e. the
  object is rotated by ``R`` about the array centre and then shifted by ``t`` (in pixels).
- Rotation matrices act on ``(x, y[, z])`` column vectors.

Everything is plain ``affine_grid`` / ``grid_sample``, so it runs on any device and
gradients flow to both the image and the transformation parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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


def random_rotation_3d(n: int, *, device=None, dtype=torch.float32, generator=None) -> torch.Tensor:
    """``n`` rotations drawn uniformly (Haar measure) on SO(3). ``-> (n, 3, 3)``.

    A normalised 4D standard-normal vector is a uniform unit quaternion, and the double
    cover q -> R maps the uniform measure on S^3 to the Haar measure on SO(3).
    """
    q = torch.randn(n, 4, device=device, dtype=dtype, generator=generator)
    return quaternion_to_matrix(q)


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


def _theta(rotation: torch.Tensor, shift: torch.Tensor | None, spatial: tuple[int, ...]) -> torch.Tensor:
    """``affine_grid`` parameters that sample ``v(R^T (p - t))`` for ``v'(p)``."""
    n, k = rotation.shape[0], rotation.shape[-1]
    rt = rotation.transpose(-1, -2)
    theta = torch.zeros(n, k, k + 1, device=rotation.device, dtype=rotation.dtype)
    theta[:, :, :k] = rt
    if shift is not None:
        # spatial is (H, W) or (D, H, W); coordinates are (x, y[, z]) so reverse it.
        sizes = torch.tensor(spatial[::-1], device=rotation.device, dtype=rotation.dtype)
        t_norm = 2.0 * shift / sizes
        theta[:, :, k] = -(rt @ t_norm.unsqueeze(-1)).squeeze(-1)
    return theta


def warp(
    x: torch.Tensor,
    rotation: torch.Tensor,
    shift: torch.Tensor | None = None,
    *,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Rotate by ``rotation`` about the centre, then shift by ``shift`` pixels/voxels.

    Args:
        x: ``(N, C, H, W)`` with ``rotation`` ``(N, 2, 2)``, or ``(N, C, D, H, W)`` with ``(N, 3, 3)``.
        shift: ``(N, 2)`` or ``(N, 3)`` in pixels along ``(x, y[, z])``; None for no shift.
    """
    spatial = tuple(x.shape[2:])
    k = len(spatial)
    if rotation.shape[-2:] != (k, k):
        raise ValueError(f"{k}D data needs {k}x{k} rotations, got {tuple(rotation.shape)}")
    theta = _theta(rotation.to(x.dtype), None if shift is None else shift.to(x.dtype), spatial)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def rotate_2d(x: torch.Tensor, angle: torch.Tensor, **kwargs) -> torch.Tensor:
    """Rotate each image by its angle (radians). ``(N, C, H, W), (N,) -> (N, C, H, W)``."""
    return warp(x, rotation_matrix_2d(angle), **kwargs)


def degrees(d: float) -> float:
    return d * math.pi / 180.0
