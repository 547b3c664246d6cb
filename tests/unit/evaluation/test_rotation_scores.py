"""S(z) and R^2(pose|z) on representations known to be perfect (z = the angle's cos/sin),
useless (random), duplicated and partial (the pose plus something else), and through a model's
encode on rotated images: a code that reads the pose off the image scores high only when the
applied rotation is composed with the data's own angle in the convention of the warp."""

import numpy as np
import pytest
import torch

from dualcontrast.data import Dataset
from dualcontrast.evaluation.metrics import pose_features, rotation_probe, rotation_scores
from dualcontrast.models.base import Codes


def circle(n, seed=0):
    a = np.random.default_rng(seed).uniform(-np.pi, np.pi, n)
    return np.stack([np.cos(a), np.sin(a)], 1)


def test_perfect_useless_duplicated_and_partial_codes():
    pose = circle(1000)
    rng = np.random.default_rng(1)
    perfect = rotation_scores(pose.copy(), pose)
    assert perfect["s_z"] > 0.99 and perfect["r2_pose_z"] > 0.99
    useless = rotation_scores(rng.standard_normal((1000, 5)), pose)
    assert useless["s_z"] < 0.05 and useless["r2_pose_z"] < 0.05
    duplicated = rotation_scores(np.hstack([pose, pose]), pose)
    assert duplicated["s_z"] > 0.99 and duplicated["r2_pose_z"] > 0.99
    # z holds the pose and as much again of something else: it knows the pose, but is not only it.
    partial = rotation_scores(np.hstack([pose, rng.standard_normal((1000, 2)) * 0.7]), pose)
    assert partial["s_z"] < 0.6 and partial["r2_pose_z"] > 0.9


def test_pose_features():
    from dualcontrast.geometry import random_rotation_3d, rotation_matrix_2d

    angle = torch.tensor([0.0, np.pi / 2])
    assert np.allclose(pose_features(rotation_matrix_2d(angle).numpy()), [[1, 0], [0, 1]], atol=1e-7)
    assert pose_features(random_rotation_3d(4).numpy()).shape == (4, 9)


class Centroid(torch.nn.Module):
    """z = the (x, y) centroid of the image, in the warp's normalised coordinates: the pose of a
    single off-centre blob. ``random``: z ignores the image."""

    def __init__(self, random=False):
        super().__init__()
        self.random = random

    def autocast(self):
        return torch.autocast("cpu", enabled=False)

    def embed_codes(self, x):
        if self.random:
            return Codes(None, None, torch.randn(len(x), 2), None)
        size = x.shape[-1]
        t = (2 * torch.arange(size, dtype=x.dtype) + 1) / size - 1
        w = x[:, 0] / x[:, 0].sum((1, 2), keepdim=True)
        return Codes(None, None, torch.stack([(w.sum(1) * t).sum(1), (w.sum(2) * t).sum(1)], 1), None)


def blobs(n, angles_deg):
    """Images of one blob at radius 0.5, at ``angles_deg`` (x right, y down: the warp's convention)."""
    size = 32
    t = (2 * np.arange(size) + 1) / size - 1
    y, x = np.meshgrid(t, t, indexing="ij")
    a = np.radians(angles_deg)[:, None, None]
    img = np.exp(-((x - 0.5 * np.cos(a)) ** 2 + (y - 0.5 * np.sin(a)) ** 2) / 0.01)
    return img[:, None].astype(np.float32)


@pytest.mark.parametrize("own_angle", [False, True])
def test_probe_through_encode_on_rotated_images(own_angle):
    n = 400
    native = np.random.default_rng(2).uniform(-180, 180, n) if own_angle else np.zeros(n)
    data = Dataset(x=blobs(n, native), factors={"angle": native} if own_angle else {})
    good = rotation_probe(Centroid(), data, n=n, max_angle=180.0)
    assert good["s_z"] > 0.9 and good["r2_pose_z"] > 0.9
    bad = rotation_probe(Centroid(random=True), data, n=n, max_angle=180.0)
    assert bad["s_z"] < 0.1 and bad["r2_pose_z"] < 0.1
    if own_angle:  # the own angle subtracted instead of added: the pose no longer matches
        flipped = Dataset(x=data.x, factors={"angle": -native})
        assert rotation_probe(Centroid(), flipped, n=n, max_angle=180.0)["s_z"] < 0.5
