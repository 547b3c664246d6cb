"""Differentiable warps of 2D images and 3D volumes (rotation matrices: :mod:`dualcontrast.geometry`).

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

import torch
import torch.nn.functional as F

from ..geometry import rotation_matrix_2d


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


