"""Non-rigid pair transformations (``elastic``, ``hinge``): identity at zero amplitude, smooth and
fold-free sampling maps, per-sample draws, 2D and 3D shapes, seeded determinism, composition
with rotation, and the hinge's rigid halves."""

from __future__ import annotations

import math

import pytest
import torch

from dualcontrast.config import build_config
from dualcontrast.errors import ConfigError
from dualcontrast.geometry import rotation_matrix_2d
from dualcontrast.transforms import build_transform
from dualcontrast.transforms.pairs import Elastic, Hinge, _pixel_grid

SPECS = [{"name": "elastic", "max_displacement": 3.0}, {"name": "hinge", "max_angle": 20.0}]
IDENTITY = [{"name": "elastic", "max_displacement": 0.0}, {"name": "hinge", "max_angle": 0.0}]


def blobs(n: int, size: int = 20, dims: int = 2) -> torch.Tensor:
    """An off-centre Gaussian blob per sample, inside the box: ``(n, 1, size^dims)``."""
    g = torch.linspace(-1, 1, size)
    grids = torch.meshgrid(*[g] * dims, indexing="ij")
    centre = [0.0] * (dims - 2) + [0.1, 0.3]
    r2 = sum((gi - ci) ** 2 for gi, ci in zip(grids, centre, strict=True))
    return torch.exp(-r2 / 0.05).expand(n, 1, *[size] * dims).clone()


def source_map(t, n: int, spatial: tuple[int, ...]) -> torch.Tensor:
    """Where each output pixel samples the input, ``(n, *spatial, k)`` pixels from the centre."""
    like = torch.zeros(1)
    if isinstance(t, Elastic):
        return _pixel_grid(spatial, like) + t.displacement(n, spatial, like)
    return t.source(n, spatial, like)


def jacobian_det(src: torch.Tensor) -> torch.Tensor:
    """Determinant of d source / d p by central differences (pixel units). ``(n, *spatial, k) -> (n, *inner)``."""
    k = src.shape[-1]
    cols = []
    for j in range(k):  # coordinate j (x, y, z) runs along array axis -1 - j of the spatial axes
        axis = src.dim() - 2 - j
        cols.append(torch.gradient(src, dim=axis)[0])
    jac = torch.stack(cols, -1)  # (n, *spatial, component, coordinate)
    inner = (slice(None),) + (slice(1, -1),) * k
    return torch.linalg.det(jac)[inner]


@pytest.mark.parametrize("spec", IDENTITY, ids=lambda s: s["name"])
@pytest.mark.parametrize("dims", [2, 3])
def test_zero_amplitude_is_the_identity(spec, dims):
    x = torch.rand(3, 2, *[9] * dims)
    torch.testing.assert_close(build_transform(spec)(x), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["name"])
@pytest.mark.parametrize("dims", [2, 3])
def test_shapes_dtypes_and_a_real_deformation(spec, dims):
    x = blobs(4, size=12, dims=dims).to(torch.float64)
    torch.manual_seed(0)
    y = build_transform(spec)(x)
    assert y.shape == x.shape and y.dtype == torch.float64
    assert (y - x).abs().amax() > 0.02  # it moved something


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["name"])
def test_each_sample_gets_its_own_draw_and_the_seed_fixes_them(spec):
    x = blobs(6)
    t = build_transform(spec)
    torch.manual_seed(3)
    a = t(x)
    torch.manual_seed(3)
    b = t(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    diffs = [(a[i] - a[j]).abs().amax() for i in range(6) for j in range(i + 1, 6)]
    assert min(diffs) > 1e-3
    assert not torch.equal(t(x), a)  # a fresh draw without reseeding


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["name"])
@pytest.mark.parametrize("dims", [2, 3])
def test_sampling_maps_are_smooth_and_fold_free(spec, dims):
    t = build_transform(spec)
    size = 24 if dims == 2 else 14
    torch.manual_seed(1)
    src = source_map(t, 16, (size,) * dims).double()
    det = jacobian_det(src)
    assert det.amin() > 0.2  # orientation kept everywhere: no folds
    # Low frequency: the second differences of the displacement stay far below its size (a
    # per-pixel random field would have them about 2-4 times its size).
    u = src - _pixel_grid((size,) * dims, src)
    second = max(float((u.narrow(a, 2, size - 2) - 2 * u.narrow(a, 1, size - 2) + u.narrow(a, 0, size - 2))
                       .abs().amax()) for a in range(1, dims + 1))
    assert second < 0.25 * float(u.abs().amax())


def test_elastic_amplitude_is_in_pixels():
    t = Elastic(max_displacement=2.5)
    torch.manual_seed(0)
    peaks = t.displacement(400, (16, 16), torch.zeros(1)).norm(dim=-1).flatten(1).amax(1)
    assert float(peaks.max()) <= 2.5 + 1e-5
    assert float(peaks.max()) > 2.3 and float(peaks.min()) < 0.2  # U(0, 2.5) per sample


def test_hinge_turns_one_half_rigidly_and_keeps_the_other():
    t = Hinge(max_angle=20.0, blend_angle=40.0)
    n, size = 8, 32
    torch.manual_seed(0)
    src = t.source(n, (size, size), torch.zeros(1))
    torch.manual_seed(0)  # replay the transform's draws to know its planes and angles
    phi = torch.rand(n) * 2 * math.pi
    theta = (torch.rand(n) * 2 - 1) * math.radians(20.0)
    p = _pixel_grid((size, size), src)
    normal = torch.stack([torch.cos(phi), torch.sin(phi)], -1)  # first column of the frame
    d = torch.einsum("hwk,nk->nhw", p, normal) / p.norm(dim=-1).clamp_min(1e-6)  # sin(psi)
    fixed, moving = d < -math.sin(math.radians(20.0)), d > math.sin(math.radians(20.0))
    expect_fixed = p.expand(n, size, size, 2)
    expect_moving = torch.einsum("nij,hwj->nhwi", rotation_matrix_2d(-theta), p)
    torch.testing.assert_close(src[fixed], expect_fixed[fixed], atol=1e-4, rtol=0)
    torch.testing.assert_close(src[moving], expect_moving[moving], atol=1e-4, rtol=0)


def test_off_centre_hinge_turns_the_part_beyond_its_pivot():
    t = Hinge(max_angle=20.0, blend_angle=40.0, pivot_radius=0.5)
    n, size = 8, 32
    torch.manual_seed(1)
    src = t.source(n, (size, size), torch.zeros(1))
    torch.manual_seed(1)  # replay: frame angle, turn angle, pivot direction, pivot radius
    phi = torch.rand(n) * 2 * math.pi
    theta = (torch.rand(n) * 2 - 1) * math.radians(20.0)
    direction = torch.nn.functional.normalize(torch.randn(n, 2), dim=-1)
    pivot = direction * 0.5 * size / 2 * torch.rand(n, 1) ** 0.5
    assert float(pivot.norm(dim=-1).max()) <= 8.0 and float(pivot.norm(dim=-1).max()) > 1.0
    p = _pixel_grid((size, size), src)
    rel = p - pivot[:, None, None, :]
    normal = torch.stack([torch.cos(phi), torch.sin(phi)], -1)
    d = torch.einsum("nhwk,nk->nhw", rel, normal) / rel.norm(dim=-1).clamp_min(1e-6)
    fixed, moving = d < -math.sin(math.radians(20.0)), d > math.sin(math.radians(20.0))
    expect_fixed = p.expand(n, size, size, 2)
    expect_moving = torch.einsum("nij,nhwj->nhwi", rotation_matrix_2d(-theta), rel) + pivot[:, None, None, :]
    torch.testing.assert_close(src[fixed], expect_fixed[fixed], atol=1e-4, rtol=0)
    torch.testing.assert_close(src[moving], expect_moving[moving], atol=1e-4, rtol=0)


@pytest.mark.parametrize("dims", [2, 3])
def test_composes_with_rotation(dims):
    cfg = build_config({"transform": {"name": "compose", "parts": [{"name": "rotation"}, {"name": "elastic"}]}})
    t = build_transform(cfg.transform)
    x = blobs(3, size=10, dims=dims)
    assert t(x).shape == x.shape
    assert [p["name"] for p in t.describe()["parts"]] == ["rotation", "elastic"]
    hinge = build_config({"transform": {"name": "hinge", "max_angle": 10}}).transform
    assert build_transform(hinge)(x).shape == x.shape


@pytest.mark.parametrize("spec,message", [
    ({"name": "elastic", "max_displacement": -1.0}, "max_displacement"),
    ({"name": "elastic", "modes": 1}, "modes"),
    ({"name": "hinge", "max_angle": 60.0}, "fold-free"),
    ({"name": "hinge", "blend_angle": 0.0}, "blend_angle"),
    ({"name": "hinge", "pivot_radius": 1.5}, "pivot_radius"),
])
def test_bad_parameters_name_the_key(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_transform(spec)
