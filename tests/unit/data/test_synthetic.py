"""The built-in ``shapes2d`` data set: determinism, layout, balance, identifiability of both factors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dualcontrast.data import BUILTIN_DATASETS, CONTENT, TRANSFORM, load_data, synthetic
from dualcontrast.data.synthetic import CLASS_NAMES, bend_angles, make_shapes2d, render_shapes
from dualcontrast.errors import ConfigError
from dualcontrast.geometry import rotation_matrix_2d
from dualcontrast.transforms.geometry import warp

SMALL = {"n_train_per_cell": 12, "n_test_per_cell": 4}


def test_registered_as_default_builtin():
    assert BUILTIN_DATASETS.get("shapes2d") is make_shapes2d
    splits = load_data(params=SMALL)
    assert splits.name == "shapes2d"
    assert len(splits.train) == 12 * 5 * 4


def test_shapes_dtype_range_and_factors():
    splits = make_shapes2d(**SMALL, size=64, n_classes=4, n_states=3)
    assert splits.train.x.shape == (12 * 12, 1, 64, 64)
    assert splits.test.x.shape == (4 * 12, 1, 64, 64)
    assert splits.sample_shape == (1, 64, 64)
    for ds in (splits.train, splits.test):
        assert ds.x.dtype == np.float32
        assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
        assert ds.x.max() == 1.0  # figures are drawn at full intensity
        assert set(ds.factors) == {CONTENT, TRANSFORM, "angle", "shift_x", "shift_y", "scale"}
        assert np.issubdtype(ds.factors[CONTENT].dtype, np.integer)
        assert np.issubdtype(ds.factors[TRANSFORM].dtype, np.integer)
        assert np.all((ds.factors["angle"] >= -180) & (ds.factors["angle"] < 180))
        assert ds.source == "builtin:shapes2d"


def test_same_seed_identical_different_seed_differs():
    a, b = make_shapes2d(**SMALL, seed=7), make_shapes2d(**SMALL, seed=7)
    c = make_shapes2d(**SMALL, seed=8)
    for split in ("train", "test"):
        da, db, dc = getattr(a, split), getattr(b, split), getattr(c, split)
        np.testing.assert_array_equal(da.x, db.x)
        for name in da.factors:
            np.testing.assert_array_equal(da.factors[name], db.factors[name])
        assert not np.array_equal(da.x, dc.x)
        assert not np.array_equal(da.factors["angle"], dc.factors["angle"])


def test_balanced_cells():
    splits = make_shapes2d(**SMALL, n_classes=6, n_states=3)
    for ds, per_cell in ((splits.train, 12), (splits.test, 4)):
        counts = np.zeros((6, 3), dtype=int)
        np.add.at(counts, (ds.factors[CONTENT], ds.factors[TRANSFORM]), 1)
        assert np.all(counts == per_cell)
        # Shuffled: the first cell's samples are not all at the start.
        assert len(np.unique(ds.factors[CONTENT][:12])) > 1


def test_train_and_test_share_no_sample():
    splits = make_shapes2d(n_train_per_cell=50, n_test_per_cell=50)
    train_rows = {row.tobytes() for row in splits.train.x.reshape(len(splits.train), -1)}
    assert not any(row.tobytes() in train_rows for row in splits.test.x.reshape(len(splits.test), -1))
    assert not np.intersect1d(splits.train.factors["angle"], splits.test.factors["angle"]).size


def test_unknown_and_invalid_parameters_raise_config_error():
    with pytest.raises(ConfigError, match="colour"):
        make_shapes2d(colour=3, **SMALL)
    with pytest.raises(ConfigError, match="n_classes"):
        make_shapes2d(n_classes=len(CLASS_NAMES) + 1)
    with pytest.raises(ConfigError, match="n_states"):
        make_shapes2d(n_states=1)
    with pytest.raises(ConfigError, match="size"):
        make_shapes2d(size=28.5)
    with pytest.raises(ConfigError, match="noise"):
        make_shapes2d(noise=-0.1)


def test_noise_is_added_and_clipped():
    clean = make_shapes2d(**SMALL, seed=1)
    noisy = make_shapes2d(**SMALL, seed=1, noise=0.2)
    diff = noisy.train.x - clean.train.x
    assert 0.05 < diff.std() < 0.2
    assert noisy.train.x.min() >= 0.0 and noisy.train.x.max() <= 1.0
    np.testing.assert_array_equal(noisy.train.factors["angle"], clean.train.factors["angle"])


def test_no_pose_cuts_the_figure_off():
    """At the largest allowed jitter the border of every image stays empty."""
    splits = make_shapes2d(**SMALL, n_classes=8, max_shift=0.05, scale_jitter=0.15, seed=2)
    x = splits.train.x[:, 0]
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)
    assert border.max() == 0.0


def test_render_follows_warp_convention():
    """A posed render equals the canonical render moved by geometry.warp (same angle and shift)."""
    classes, states = np.array([3, 2, 4]), np.array([1, 3, 2])
    angles, shifts = np.array([37.0, -120.0, 90.0]), np.array([[3.0, -2.0], [0.0, 4.0], [-5.0, 1.0]])
    posed = render_shapes(classes, states, angles, shifts, size=64)
    canonical = torch.from_numpy(render_shapes(classes, states, size=64))
    rot = rotation_matrix_2d(torch.deg2rad(torch.from_numpy(angles)).float())
    moved = warp(canonical, rot, torch.from_numpy(shifts).float()).numpy()
    assert np.abs(posed - moved).mean() < 0.1 * posed.mean()
    opposite = render_shapes(classes, states, -angles, shifts, size=64)
    assert np.abs(opposite - moved).mean() > 0.5 * posed.mean()


def test_render_is_independent_of_chunking(monkeypatch):
    classes, states = np.arange(8), np.arange(8) % 4
    angles = np.linspace(-180, 170, 8)
    whole = render_shapes(classes, states, angles)
    monkeypatch.setattr(synthetic, "_CHUNK_POINTS", 3 * 28 * 28)
    np.testing.assert_array_equal(render_shapes(classes, states, angles), whole)


def test_render_rejects_bad_arguments():
    with pytest.raises(ValueError, match="classes"):
        render_shapes([len(CLASS_NAMES)], [0])
    with pytest.raises(ValueError, match="states"):
        render_shapes([0], [4], n_states=4)
    with pytest.raises(ValueError, match="one entry per sample"):
        render_shapes([0, 1], [0])


def test_states_are_distinct_shapes_and_bend_grows():
    """Without pose, each state changes the image, and more so the further it bends."""
    angles = bend_angles(4)
    assert angles[0] == 0.0 and np.all(np.diff(angles) > 0)
    x = render_shapes(np.zeros(4, dtype=int), np.arange(4)).reshape(4, -1)
    dist_from_straight = np.abs(x[1:] - x[0]).sum(1)
    assert np.all(np.diff(dist_from_straight) > 0)
    # A bend is a small change next to a change of class.
    other_class = render_shapes([2], [0]).reshape(1, -1)
    assert dist_from_straight[0] < np.abs(other_class[0] - x[0]).sum()


def _rotation_invariant_features(x: np.ndarray) -> np.ndarray:
    """Angular Fourier magnitudes of rings around each image's centroid: ``(N, 1, H, W) -> (N, F)``.

    An in-plane rotation about the centroid only shifts each ring's angular profile, which
    leaves these magnitudes unchanged, so pose cannot leak into the features.
    """
    img = x[:, 0]
    n, h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    mass = img.sum((1, 2))
    cy, cx = (img * yy).sum((1, 2)) / mass, (img * xx).sum((1, 2)) / mass
    radius = np.arange(1, 13) * h / 28
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r, t = np.meshgrid(radius, theta, indexing="ij")
    coords = np.stack(
        [
            np.broadcast_to(np.arange(n)[:, None, None], (n, *r.shape)),
            cy[:, None, None] + r * np.sin(t),
            cx[:, None, None] + r * np.cos(t),
        ]
    )
    rings = map_coordinates(img, coords, order=1)
    return np.abs(np.fft.rfft(rings, axis=2)[:, :, :9]).reshape(n, -1)


def _accuracy(train_x, train_y, test_x, test_y) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train_x, train_y)
    return clf.score(test_x, test_y)


def test_class_and_state_identifiable_under_rotation():
    """Rotation-invariant features predict class and state; they cannot predict the pose, so the
    state must be a change of shape, not of pose."""
    splits = make_shapes2d(n_train_per_cell=60, n_test_per_cell=20, seed=5)
    f_train = _rotation_invariant_features(splits.train.x)
    f_test = _rotation_invariant_features(splits.test.x)
    tr, te = splits.train.factors, splits.test.factors
    assert _accuracy(f_train, tr[CONTENT], f_test, te[CONTENT]) > 0.9
    assert _accuracy(f_train, tr[TRANSFORM], f_test, te[TRANSFORM]) > 0.6  # chance 0.25

    def quadrant(angle):
        return ((angle + 180) // 90).astype(int)

    assert _accuracy(f_train, quadrant(tr["angle"]), f_test, quadrant(te["angle"])) < 0.4


def test_default_generation_is_fast():
    """Loose bound: catches per-pixel Python loops (minutes), not scheduler noise."""
    start = time.perf_counter()
    splits = make_shapes2d()
    elapsed = time.perf_counter() - start
    assert len(splits.train) == 20000 and len(splits.test) == 4000
    assert elapsed < 60.0
