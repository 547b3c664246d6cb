"""Hydra (models.hydra): the central-slice renderer against direct projections, the hierarchical
pose search on noise-free projections of a known map, the SO(3) grid, the per-particle tables
(training ids vs unseen samples, checkpoint round trip), parameter checks, and class recovery."""

import math

import numpy as np
import pytest
import torch

from dualcontrast.config import build_config
from dualcontrast.data.base import Dataset
from dualcontrast.errors import ConfigError
from dualcontrast.geometry import (
    geodesic_angle,
    matrix_from_6d,
    matrix_to_6d,
    random_rotation_3d,
    view_grid,
    view_grid_spacing,
)
from dualcontrast.models import build_model
from dualcontrast.models.hydra import (
    Hydra,
    HydraParams,
    SliceGrid,
    image_from_transform,
    image_transform,
    render_slices,
)
from dualcontrast.simulation.phantoms import phantom_maps
from dualcontrast.transforms.geometry import warp


def exact_field(volume: torch.Tensor):
    """The map's Fourier transform about its centre, evaluated exactly at any frequency (a direct sum)."""
    n = volume.shape[-1]
    c = (n - 1) / 2
    axes = torch.arange(n, dtype=torch.float64) - c
    zz, yy, xx = torch.meshgrid(axes, axes, axes, indexing="ij")
    pos = torch.stack([xx, yy, zz], -1).reshape(-1, 3)
    dens = volume.double().reshape(-1)

    def field(pts: torch.Tensor) -> torch.Tensor:
        arg = -2 * math.pi * (pts.reshape(-1, 3).double() @ pos.T)
        values = (torch.polar(torch.ones_like(arg), arg) * dens).sum(-1) / n
        return values.reshape(pts.shape[:-1]).to(torch.complex64)

    return field


class BlobField(torch.nn.Module):
    """Analytic transform of 40 Gaussian blobs (an asymmetric map), in FieldBank's call signature."""

    def __init__(self, n: int, seed: int = 1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.centres = ((torch.rand(40, 3, generator=g) - 0.5) * n * 0.6).double()
        self.weights = torch.linspace(1, 3, 40, dtype=torch.float64)

    def forward(self, pts: torch.Tensor, z=None) -> torch.Tensor:
        k = pts.double()
        amp = torch.exp(-2 * math.pi**2 * (k**2).sum(-1))  # sigma 1 pixel
        arg = -2 * math.pi * (k @ self.centres.T)
        return ((torch.polar(torch.ones_like(arg), arg) * self.weights).sum(-1) * amp).to(torch.complex64)


def test_slice_renderer_matches_direct_projection():
    n = 20
    vol = torch.as_tensor(next(iter(phantom_maps(box=n, voxel_size=1.8, n_states=1).values())))
    grid = SliceGrid.make(n)
    rot = random_rotation_3d(3, generator=torch.Generator().manual_seed(0))
    rendered = image_from_transform(render_slices(exact_field(vol), rot, grid, n), grid, n)
    direct = warp(vol[None, None].expand(3, 1, n, n, n), rot).sum(2)
    # Same band limit as the renderer (|k| < 1/2), then compare to trilinear-interpolation accuracy.
    direct = image_from_transform(image_transform(direct, grid), grid, n)
    for a, b in zip(rendered.flatten(1), direct.flatten(1), strict=True):
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.995
        assert (a - b).norm() / b.norm() < 0.1


def test_so3_grid_is_near_uniform_rotations():
    rots = view_grid(100)
    assert rots.shape == (100 * 18, 3, 3)
    assert torch.allclose(rots @ rots.transpose(1, 2), torch.eye(3).expand_as(rots), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rots), torch.ones(len(rots)), atol=1e-5)
    # Any rotation lies within about one grid spacing of the grid.
    probe = random_rotation_3d(200, generator=torch.Generator().manual_seed(3))
    nearest = geodesic_angle(probe[:, None], rots[None]).min(1).values
    assert float(nearest.max()) < view_grid_spacing(100)
    r = random_rotation_3d(5)
    assert torch.allclose(matrix_from_6d(matrix_to_6d(r)), r, atol=1e-5)


def test_pose_search_recovers_rotations_of_noise_free_projections():
    """Stated accuracy: 90% of the particles within 5 degrees, median under 2.5 degrees, shifts 0.5 px."""
    n, b = 24, 16
    model = Hydra((1, n, n), HydraParams(classes=1))
    model.fields = BlobField(n)
    g = torch.Generator().manual_seed(1)
    rot = random_rotation_3d(b, generator=g)
    shift = (torch.rand(b, 2, generator=g) - 0.5) * 3
    images = image_from_transform(render_slices(lambda p: model.fields(p), rot, model.grid, n, shift), model.grid, n)
    y = image_transform(images, model.grid)
    found_r, found_t, _ = model.search(y, torch.ones_like(y.real), torch.zeros(b, 4))
    err = torch.rad2deg(geodesic_angle(found_r[0], rot))
    assert float((err < 5).float().mean()) >= 0.9
    assert float(err.median()) < 2.5
    assert float((found_t[0] - shift).abs().median()) < 0.5


def _tiny_set(n: int = 12, count: int = 16) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(x=rng.standard_normal((count, 1, n, n)).astype(np.float32), ids=np.arange(100, 100 + count))


def test_tables_serve_training_ids_and_unseen_samples_are_fitted():
    data = _tiny_set()
    train, test = data.subset(np.arange(10)), data.subset(np.arange(10, 16))
    model = Hydra((1, 12, 12), HydraParams(classes=2, directions=12, refine_levels=1, infer_steps=2))
    model.bind_data(train)
    opts = model.configure_optimizers(1e-3)
    x = torch.as_tensor(train.batch(np.arange(10)))
    terms = model.training_step((x[:8], torch.arange(8)), opts)
    assert set(terms) == {"loss", "class_entropy", "pose_search"} and torch.isfinite(terms["loss"])
    codes = model.encode_rows(x, train, np.arange(10))
    assert torch.allclose(codes.c_mu, torch.softmax(model.logits.weight, -1))
    assert torch.equal(codes.z_mu, model.conf.weight.detach())
    fitted = model.encode_rows(torch.as_tensor(test.batch(np.arange(6))), test, np.arange(6))
    assert fitted.c_mu.shape == (6, 2) and torch.allclose(fitted.c_mu.sum(-1), torch.ones(6))
    assert fitted.z_mu.shape == (6, 4)
    assert model.decode(codes.c_mu[:3], codes.z_mu[:3]).shape == (3, 1, 12, 12)
    assert model.class_volumes().shape == (2, 12, 12, 12)
    # A fresh model (tables of size 1) takes the checkpoint's table size.
    fresh = Hydra((1, 12, 12), HydraParams(classes=2, directions=12, refine_levels=1))
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.logits.weight, model.logits.weight)
    model.on_epoch_end(0)
    assert int(model.epochs_done) == 1


def test_params_are_checked_and_volumes_are_refused():
    cfg = build_config({"model": {"name": "hydra", "params": {"clases": 2}}})
    with pytest.raises(ConfigError, match="did you mean 'classes'"):
        build_model(cfg, (1, 16, 16), "linear")
    cfg = build_config({"model": {"name": "hydra", "params": {"search_radius": 0.4, "refine_radius": 0.3}}})
    with pytest.raises(ConfigError, match="search_radius <= refine_radius"):
        build_model(cfg, (1, 16, 16), "linear")
    cfg = build_config({"model": {"name": "hydra", "params": {"pose_search_epochs": -1}}})
    with pytest.raises(ConfigError, match="pose_search_epochs"):
        build_model(cfg, (1, 16, 16), "linear")
    with pytest.raises(ConfigError, match=r"data\.project=true"):
        build_model(build_config({"model": {"name": "hydra"}}), (1, 16, 16, 16), "linear")


def _ball_and_rod(n: int) -> dict:
    ax = np.arange(n) - (n - 1) / 2
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    ball = np.exp(-(x**2 + y**2 + z**2) / (2 * 3.0**2))
    rod = np.exp(-((x / 5.0) ** 2 + (y / 1.2) ** 2 + (z / 1.2) ** 2) / 2) + 0.7 * np.exp(
        -(((x - 3) / 1.2) ** 2 + ((y - 3) / 1.2) ** 2 + (z / 1.2) ** 2) / 2
    )
    return {("ball", "s"): ball.astype(np.float32), ("rod", "s"): rod.astype(np.float32)}


@pytest.mark.slow
def test_two_clearly_different_maps_are_told_apart():
    """Projections (with CTF) of a ball and a bent rod at SNR 10: ARI >= 0.9 after 12 search epochs (~25 s)."""
    from sklearn.metrics import adjusted_rand_score

    from dualcontrast.data.base import DataSplits
    from dualcontrast.data.ctf import project_splits
    from dualcontrast.simulation.simulate import simulate_subtomograms

    torch.set_num_threads(1)
    n = 16
    vols, table = simulate_subtomograms(_ball_and_rod(n), 48, snr=10.0, voxel_size=2.0, progress=False, max_shift=1.0)
    data = Dataset(x=vols, factors={"content": table["identity"]})
    train = project_splits(DataSplits(data, data.subset(np.arange(4)), "t"), None, {"voxel_size": 2.0}).train
    torch.manual_seed(0)
    model = Hydra((1, n, n), HydraParams(classes=2, pose_search_epochs=12, directions=48, max_shift=1.0))
    model.bind_data(train)
    opts = model.configure_optimizers(1e-2)
    x = torch.as_tensor(train.batch(np.arange(len(train))))
    for epoch in range(14):
        perm = torch.randperm(len(train))
        for i in range(0, len(train) - 15, 16):
            rows = perm[i : i + 16]
            model.training_step((x[rows], rows), opts)
        model.on_epoch_end(epoch)
    assert adjusted_rand_score(train.factors["content"], model.logits.weight.argmax(-1).numpy()) >= 0.9
