"""Rotations and warps: 2D against rot90, 3D matrices, uniformity of SO(3) sampling, shift convention."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from dualcontrast.geometry import (
    euler_zyz_to_matrix,
    quaternion_to_matrix,
    random_rotation_3d,
    rotation_matrix_2d,
)
from dualcontrast.transforms import rotate_2d, warp


def test_rotate_2d_by_90_degrees_matches_rot90():
    x = torch.rand(3, 2, 16, 16)
    r = rotate_2d(x, torch.full((3,), math.pi / 2))
    # Positive angles turn +x towards +y; with rows (y) pointing down that is clockwise on screen.
    torch.testing.assert_close(r, torch.rot90(x, -1, (-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate_2d(x, torch.full((3,), -math.pi / 2)), torch.rot90(x, 1, (-2, -1)),
                               atol=1e-5, rtol=0)


def test_rotate_2d_odd_angles_only_interpolate():
    """A smooth image rotated by 45 degrees and back is close to itself away from the corners."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    img = torch.exp(-((xx - 0.2) ** 2 + (yy + 0.1) ** 2) / 0.1)[None, None]
    a = torch.tensor([math.pi / 4])
    back = rotate_2d(rotate_2d(img, a), -a)
    assert (back - img).abs().max() < 0.05


def test_per_sample_angles_differ():
    x = torch.rand(2, 1, 8, 8)
    r = rotate_2d(x.expand(2, 1, 8, 8).clone(), torch.tensor([0.0, math.pi]))
    torch.testing.assert_close(r[0], x[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(r[1], torch.rot90(x[1], 2, (-2, -1)), atol=1e-5, rtol=0)


def test_shift_moves_along_the_last_axis_for_x():
    img = torch.zeros(1, 1, 9, 9)
    img[0, 0, 4, 4] = 1.0
    out = warp(img, torch.eye(2)[None], torch.tensor([[2.0, -1.0]]))
    assert out[0, 0].argmax().item() == 3 * 9 + 6  # row 4-1, column 4+2


def test_3d_matrices_are_rotations():
    torch.manual_seed(0)
    for r in (random_rotation_3d(500, dtype=torch.float64),
              euler_zyz_to_matrix(torch.rand(500, 3, dtype=torch.float64) * 6 - 3),
              quaternion_to_matrix(torch.randn(500, 4, dtype=torch.float64))):
        eye = torch.eye(3, dtype=torch.float64).expand(500, 3, 3)
        torch.testing.assert_close(r @ r.transpose(1, 2), eye, atol=1e-10, rtol=0)
        torch.testing.assert_close(torch.linalg.det(r), torch.ones(500, dtype=torch.float64), atol=1e-10, rtol=0)


def test_3d_rotation_about_z_matches_rot90_of_slices():
    vol = torch.rand(1, 1, 12, 12, 12)
    rz = rotation_matrix_2d(torch.tensor([math.pi / 2]))
    r = torch.eye(3).repeat(1, 1, 1)
    r[:, :2, :2] = rz
    out = warp(vol, r)
    torch.testing.assert_close(out, torch.rot90(vol, -1, (-2, -1)), atol=1e-5, rtol=0)


def test_so3_sampling_is_uniform():
    """Haar-uniform rotations: rotation angle has density (1 - cos w) / pi, and R e is uniform on S^2."""
    torch.manual_seed(1)
    r = random_rotation_3d(20000, dtype=torch.float64)
    cos_w = ((r.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    w = torch.arccos(cos_w).numpy()
    cdf = lambda t: (t - np.sin(t)) / np.pi  # noqa: E731
    assert stats.kstest(w, cdf).pvalue > 1e-3
    v = (r @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)).numpy()
    # Archimedes: each coordinate of a uniform point on the sphere is uniform in [-1, 1].
    for axis in range(3):
        assert stats.kstest(v[:, axis], stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-3


def test_euler_sampling_in_limited_range_is_not_uniform():
    """The reference's three Euler angles in [-90, 90] deg do not cover SO(3) uniformly."""
    torch.manual_seed(2)
    r = euler_zyz_to_matrix((torch.rand(20000, 3, dtype=torch.float64) - 0.5) * math.pi)
    v = (r @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)).numpy()
    assert stats.kstest(v[:, 2], stats.uniform(loc=-1, scale=2).cdf).pvalue < 1e-6


def test_warp_rejects_mismatched_rotation():
    with pytest.raises(ValueError, match="3x3"):
        warp(torch.rand(1, 1, 4, 4, 4), torch.eye(2)[None])
