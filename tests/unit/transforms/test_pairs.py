"""Pair transformations T(x): per-sample parameters, ranges, shapes/dtypes, RGB-only colour transforms;
and the transformation-choice study configs (DualContrast trains with each T)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from dualcontrast.config import CONFIGS_DIR, build_config, load_config, load_yaml
from dualcontrast.errors import ConfigError
from dualcontrast.models import DualContrast
from dualcontrast.transforms import TRANSFORMS, build_transform

STUDY = CONFIGS_DIR / "transform_study"
RGB_ONLY = {"saturation", "hue"}
SPATIAL_3D = {"rotation", "translation", "scale", "blur", "contrast"}
ALL = ["rotation", "translation", "scale", "blur", "contrast", "saturation", "hue"]


def blobs(n: int, channels: int = 1, size: int = 24, dims: int = 2, dtype=torch.float32) -> torch.Tensor:
    """Off-centre Gaussian blobs ``(n, C, size^dims)``, one random colour per sample (well inside the box)."""
    g = torch.linspace(-1, 1, size, dtype=dtype)
    grids = torch.meshgrid(*[g] * dims, indexing="ij")  # (z,) y, x
    centre = [0.0] * (dims - 2) + [0.1, 0.3]  # off-centre along x so rotations move the centroid
    r2 = sum((gi - ci) ** 2 for gi, ci in zip(grids, centre, strict=True))
    blob = torch.exp(-r2 / 0.04)
    colour = torch.rand(n, channels, *[1] * dims, dtype=dtype) * 0.8 + 0.2
    return colour * blob


def centroid_2d(x: torch.Tensor) -> torch.Tensor:
    """Intensity centroid ``(n, 2)`` as (x, y) in normalised coordinates of ``(n, C, H, W)``."""
    w = x.sum(1)
    h, wd = w.shape[-2:]
    ys = ((2 * torch.arange(h, dtype=x.dtype) + 1) / h - 1)[:, None]
    xs = ((2 * torch.arange(wd, dtype=x.dtype) + 1) / wd - 1)[None, :]
    mass = w.sum((-2, -1))
    return torch.stack([(w * xs).sum((-2, -1)) / mass, (w * ys).sum((-2, -1)) / mass], -1)


def colourful(n: int, size: int = 12) -> torch.Tensor:
    """RGB images with saturated, varied colours, values well inside (0, 1)."""
    torch.manual_seed(1)
    return 0.15 + 0.7 * torch.rand(n, 3, size, size)


def test_registry_holds_every_study_transform():
    assert set(ALL) <= set(TRANSFORMS.names())


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype_preserved_2d(name, dtype):
    x = colourful(4).to(dtype) if name in RGB_ONLY else blobs(4, 1, dtype=dtype)
    out = build_transform(name)(x)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(SPATIAL_3D))
def test_3d_transforms_preserve_shape(name):
    x = blobs(3, 1, size=12, dims=3)
    out = build_transform(name)(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, x)


@pytest.mark.parametrize("name", sorted(RGB_ONLY))
@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 3, 4, 8, 8)])
def test_colour_transforms_refuse_non_rgb(name, shape):
    with pytest.raises(ConfigError, match="RGB"):
        build_transform(name)(torch.rand(*shape))


@pytest.mark.parametrize("name", ALL)
def test_parameters_are_drawn_per_sample(name):
    """Two copies of one image in the same batch get different transformations."""
    torch.manual_seed(0)
    one = colourful(1) if name in RGB_ONLY else blobs(1, 1)
    out = build_transform(name)(one.repeat(2, *[1] * (one.dim() - 1)))
    assert (out[0] - out[1]).abs().max() > 1e-3


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_output(name):
    x = colourful(3) if name in RGB_ONLY else blobs(3, 1)
    t = build_transform(name)
    torch.manual_seed(5)
    a = t(x)
    torch.manual_seed(5)
    torch.testing.assert_close(t(x), a)


def test_rotation_angles_stay_in_range_and_vary():
    torch.manual_seed(0)
    x = blobs(64, 1, size=32)
    out = build_transform({"name": "rotation", "max_angle": 30.0})(x)
    c0, c1 = centroid_2d(x), centroid_2d(out)
    angle = torch.atan2(c1[:, 1], c1[:, 0]) - torch.atan2(c0[:, 1], c0[:, 0])
    deg = torch.rad2deg(angle)
    assert deg.abs().max() <= 30.0 + 1.5  # interpolation error of the centroid
    assert deg.std() > 10.0  # uniform on [-30, 30] has std 17.3
    # Rotation about the centre keeps the centroid's distance from it.
    torch.testing.assert_close(c1.norm(dim=1), c0.norm(dim=1), atol=0.01, rtol=0)


def test_translation_shift_stays_in_range_and_keeps_mass():
    torch.manual_seed(0)
    x = blobs(64, 1, size=32)
    out = build_transform({"name": "translation", "max_shift": 3.0})(x)
    shift_px = (centroid_2d(out) - centroid_2d(x)) * 32 / 2
    assert shift_px.abs().max() <= 3.0 + 0.05
    assert shift_px.abs().max() > 1.5
    torch.testing.assert_close(out.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=1e-3, atol=0)


def test_scale_changes_area_by_factor_squared():
    torch.manual_seed(0)
    x = blobs(64, 1, size=32)
    out = build_transform({"name": "scale", "min_scale": 0.8, "max_scale": 1.25})(x)
    # warp(x, s I) draws the object s times larger: the integral grows by s^2 (in 2D).
    ratio = out.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert ratio.min() >= 0.8**2 - 0.01 and ratio.max() <= 1.25**2 + 0.01
    assert ratio.max() - ratio.min() > 0.3


def test_blur_keeps_mass_and_lowers_peaks():
    torch.manual_seed(0)
    x = blobs(16, 2, size=32)
    out = build_transform({"name": "blur", "max_sigma": 2.0})(x)
    torch.testing.assert_close(out.sum((2, 3)), x.sum((2, 3)), rtol=1e-4, atol=0)
    assert (out.amax((2, 3)) <= x.amax((2, 3)) + 1e-6).all()
    peak_drop = x.amax((1, 2, 3)) - out.amax((1, 2, 3))
    assert peak_drop.max() - peak_drop.min() > 0.01  # sigma varies per sample


def test_contrast_keeps_mean_and_scales_deviations_in_range():
    torch.manual_seed(0)
    x = blobs(32, 1, size=16)
    out = build_transform({"name": "contrast", "min_factor": 0.5, "max_factor": 1.5})(x)
    torch.testing.assert_close(out.mean((1, 2, 3)), x.mean((1, 2, 3)), rtol=0, atol=1e-6)
    factor = out.std((1, 2, 3)) / x.std((1, 2, 3))
    assert factor.min() >= 0.5 - 1e-5 and factor.max() <= 1.5 + 1e-5
    assert factor.max() - factor.min() > 0.3


@pytest.mark.parametrize("name", sorted(RGB_ONLY))
def test_colour_transforms_leave_grey_images_alone(name):
    """Grey pixels (R = G = B) have no saturation and no hue to change."""
    grey = torch.rand(4, 1, 8, 8).repeat(1, 3, 1, 1)
    torch.testing.assert_close(build_transform(name)(grey), grey, atol=1e-5, rtol=0)


def test_saturation_zero_gives_grey_and_keeps_luma():
    x = colourful(3)
    out = build_transform({"name": "saturation", "min_factor": 0.0, "max_factor": 0.0})(x)
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 1], out[:, 2])
    luma = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
    torch.testing.assert_close((out * luma).sum(1), (x * luma).sum(1))


def test_hue_keeps_luma_and_changes_colour_per_sample():
    torch.manual_seed(0)
    # Mild colours stay inside the RGB cube under any hue rotation, so the clamp never acts.
    x = 0.4 + 0.2 * torch.rand(6, 3, 8, 8)
    out = build_transform({"name": "hue", "max_shift": 0.5})(x)
    luma = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
    torch.testing.assert_close((out * luma).sum(1), (x * luma).sum(1), atol=1e-5, rtol=0)
    change = (out - x).abs().mean((1, 2, 3))
    assert change.max() > 0.02 and change.max() - change.min() > 0.005


def test_hue_zero_shift_is_identity():
    x = 0.4 + 0.2 * torch.rand(2, 3, 8, 8)
    # max_shift 0 draws no rotation: the round trip through YIQ must be exact.
    torch.testing.assert_close(build_transform({"name": "hue", "max_shift": 0.0})(x), x, atol=1e-5, rtol=0)


def test_compose_applies_parts_in_order():
    x = blobs(2, 1)
    spec = {
        "name": "compose",
        "parts": [
            {"name": "contrast", "min_factor": 2, "max_factor": 2},
            {"name": "translation", "max_shift": 0.0},
        ],
    }
    t = build_transform(spec)
    mean = x.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(t(x), mean + 2 * (x - mean), atol=1e-5, rtol=0)
    assert [p["name"] for p in t.describe()["parts"]] == ["contrast", "translation"]


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"name": "nope"}, "unknown transform"),
        ({"name": "rotation", "angle": 3}, "bad parameters"),
        ({"max_angle": 3}, "needs a 'name'"),
        ({"name": "scale", "min_scale": 2, "max_scale": 1}, "scale range"),
        ({"name": "compose", "parts": []}, "non-empty"),
        ({"name": "rotation", "so3": "random"}, "so3"),
    ],
)
def test_bad_specs_are_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_transform(spec)


def test_3d_rotation_keeps_distance_from_centre():
    torch.manual_seed(0)
    x = blobs(8, 1, size=16, dims=3)
    out = build_transform("rotation")(x)
    g = (2 * torch.arange(16) + 1) / 16 - 1
    zz, yy, xx = torch.meshgrid(g, g, g, indexing="ij")

    def radius(v):
        w = v[:, 0]
        c = torch.stack([(w * a).sum((1, 2, 3)) for a in (xx, yy, zz)], -1) / w.sum((1, 2, 3))[:, None]
        return c.norm(dim=1)

    torch.testing.assert_close(radius(out), radius(x), atol=0.02, rtol=0)


# -- the transformation-choice study -------------------------------------------------------------


def study_files() -> list[Path]:
    return sorted(STUDY.glob("*.yaml"))


def test_study_covers_table_2():
    names = {load_yaml(p)["transform"]["name"] for p in study_files()}
    assert names == set(ALL)
    for p in study_files():
        cfg = load_config(p)
        assert cfg.model.name == "dualcontrast"
        assert p.stem == cfg.transform["name"]
        build_transform(cfg.transform)  # parameters valid


def _tiny_model(path: Path, channels: int) -> DualContrast:
    layer = load_yaml(path)
    small = {
        "model": {
            "content_dim": 4,
            "transform_dim": 4,
            "decoder_options": {"hidden": [64]},
            "encoder_options": {"channels": [8, 16]},
        }
    }
    cfg = build_config(layer, small)
    return DualContrast.from_config(cfg, (channels, 16, 16), "sigmoid")


@pytest.mark.parametrize("path", study_files(), ids=lambda p: p.stem)
@pytest.mark.parametrize("channels", [1, 3], ids=["grey", "rgb"])
def test_dualcontrast_trains_with_each_study_transform(path, channels):
    name = load_yaml(path)["transform"]["name"]
    torch.manual_seed(0)
    model = _tiny_model(path, channels)
    x = 0.2 + 0.6 * blobs(8, channels, size=16) + 0.05 * torch.rand(8, channels, 16, 16)
    opts = model.configure_optimizers(1e-3)
    if channels == 1 and name in RGB_ONLY:
        with pytest.raises(ConfigError, match="RGB"):
            model.training_step(x, opts)
        return
    before = [p.detach().clone() for p in model.parameters()]
    losses = [float(model.training_step(x, opts)["loss"]) for _ in range(3)]
    assert all(math.isfinite(v) for v in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
