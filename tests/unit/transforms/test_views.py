"""Pair views (transforms/views.py): no simple statistic tells the two views, or a view from an
embedding input, apart under the symmetric default or the anchored pairing, while the paper's
pairing is told apart.

The probe is what a network could use as a shortcut: per-sample mean, std, fraction of exact
zeros, energy in the corners (outside the inscribed circle / sphere), energy in the outer shell
of the mask, and high-frequency energy (mean squared finite difference), fed to a standardised
logistic regression scored by 5-fold cross-validation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dualcontrast.data import load_data
from dualcontrast.transforms import build_transform
from dualcontrast.transforms.views import (
    PairViews,
    ViewSettings,
    gaussian_lowpass,
    interpolation_filter,
    soft_mask,
)


def statistics(x: torch.Tensor) -> np.ndarray:
    """``(N, C, *spatial) -> (N, 6)`` the shortcut features named in the module docstring."""
    spatial = tuple(x.shape[2:])
    flat = x.flatten(1)
    corners = soft_mask(spatial, 1.0, 0.0, x) == 0
    shell = (soft_mask(spatial, 0.95, 0.15, x) > 0) & (soft_mask(spatial, 0.8, 0.0, x) == 0)
    hf = sum((x.diff(dim=d) ** 2).flatten(1).mean(1) for d in range(2, x.dim()))
    feats = [
        flat.mean(1),
        flat.std(1),
        (flat == 0).float().mean(1),
        (x**2 * corners).flatten(1).sum(1) / corners.sum(),
        (x**2 * shell).flatten(1).sum(1) / shell.sum(),
        hf,
    ]
    return torch.stack(feats, 1).numpy()


def probe_accuracy(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cross-validated accuracy of telling batch ``a`` from batch ``b`` by :func:`statistics`."""
    feats = np.concatenate([statistics(a), statistics(b)])
    labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(cross_val_score(clf, feats, labels, cv=5).mean())


@pytest.fixture(scope="module")
def particles2d() -> torch.Tensor:
    splits = load_data(name="shapes2d", params={"n_train_per_cell": 20, "n_test_per_cell": 1, "noise": 0.1})
    return torch.as_tensor(np.asarray(splits.train.x[:400]), dtype=torch.float32)


@pytest.fixture(scope="module")
def particles3d() -> torch.Tensor:
    splits = load_data(name="phantoms3d", params={"n_per_state": 34, "box": 24, "voxel_size": 1.5, "progress": False})
    x = torch.as_tensor(np.asarray(splits.train.x[:300]), dtype=torch.float32)
    return (x - x.mean(dim=(1, 2, 3, 4), keepdim=True)) / x.std(dim=(1, 2, 3, 4), keepdim=True)


def _probes(x: torch.Tensor, pairing: str, intensities: bool) -> tuple[float, float]:
    torch.manual_seed(0)
    views = PairViews(ViewSettings(pairing=pairing), intensities=intensities)
    t = build_transform({"name": "rotation", "max_angle": 90.0 if x.dim() == 4 else 180.0})
    a, b = views.pair(x, t)
    return probe_accuracy(a, b), probe_accuracy(views.prepare(x), b)


@pytest.mark.parametrize("pairing", ["symmetric", "anchored"])
@pytest.mark.parametrize("dims", [2, 3])
def test_finished_views_leave_no_shortcut(dims, pairing, particles2d, particles3d):
    x, intensities = (particles2d, True) if dims == 2 else (particles3d, False)
    a_vs_b, input_vs_view = _probes(x, pairing, intensities)
    assert a_vs_b <= 0.55, f"views a vs b told apart: {a_vs_b:.3f}"
    assert input_vs_view <= 0.55, f"embedding input vs view told apart: {input_vs_view:.3f}"


@pytest.mark.parametrize("dims", [2, 3])
def test_paper_pairing_is_told_apart(dims, particles2d, particles3d):
    x, intensities = (particles2d, True) if dims == 2 else (particles3d, False)
    a_vs_b, _ = _probes(x, "paper", intensities)
    assert a_vs_b > 0.9


@pytest.mark.parametrize("pairing", ["paper", "anchored"])
def test_asymmetric_pairings_keep_x_in_its_loaded_pose(pairing):
    """The paper's pairing is the published one, (x, T(x)) with nothing finished; the anchored
    one is x as an embedding input sees it against a finished T(x) of the same draw."""
    torch.manual_seed(0)
    x = torch.rand(4, 1, 16, 16)
    views = PairViews(ViewSettings(pairing=pairing))
    t = build_transform("rotation")
    torch.manual_seed(1)
    a, b = views.pair(x, t)
    torch.manual_seed(1)
    tx = t(x)
    if pairing == "paper":
        assert torch.equal(a, x) and torch.equal(b, tx) and torch.equal(views.prepare(x), x)
    else:
        assert torch.equal(a, views.prepare(x)) and torch.equal(b, views.finish(tx))


def test_finish_renormalises_inside_the_mask():
    x = 5 + 3 * torch.randn(6, 1, 12, 12, 12)
    views = PairViews(ViewSettings(lowpass=None))
    y = views.finish(x)
    m = soft_mask((12, 12, 12), 0.95, 0.15, x)
    inside = (m == 1).expand_as(y)
    assert (y[(m == 0).expand_as(y)] == 0).all()
    assert y[inside].reshape(6, -1).mean(1).abs().max() < 0.1
    assert y[inside].reshape(6, -1).std(1).sub(1).abs().max() < 0.1


def test_intensities_stay_in_unit_range():
    x = torch.rand(3, 1, 20, 20)
    y = PairViews(intensities=True).prepare(x)
    assert y.min() >= 0 and y.max() <= 1


def test_soft_mask_profile():
    m = soft_mask((21, 21), 0.9, 0.2, torch.zeros(()))[0, 0]
    assert m[10, 10] == 1 and m[0, 0] == 0
    assert ((m >= 0) & (m <= 1)).all()
    # Radially non-increasing along a row from the centre.
    assert (m[10, 10:].diff() <= 1e-6).all()


def test_lowpass_gain_is_half_at_cutoff():
    n = 64
    t = torch.arange(n, dtype=torch.float64)
    f = 0.25  # cycles per pixel: half of Nyquist
    wave = torch.cos(2 * torch.pi * f * t)[None, None, None, :].expand(1, 1, n, n)
    out = gaussian_lowpass(wave, 0.5)
    assert out.abs().max().item() == pytest.approx(0.5, rel=1e-3)


def test_interpolation_filter_matches_resampled_power():
    """White noise shifted by random sub-pixel amounts has the power the filter predicts."""
    torch.manual_seed(0)
    x = torch.randn(200, 1, 32, 32, dtype=torch.float64)
    shift = build_transform({"name": "translation", "max_shift": 3.0})
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))  # away from zero padding
    resampled = shift(x)[inner].pow(2).mean()
    filtered = interpolation_filter(x)[inner].pow(2).mean()
    assert filtered.item() == pytest.approx(resampled.item(), rel=0.02)


def test_config_defaults_are_the_view_defaults():
    """config.ViewsConfig (torch-free, for YAML) and ViewSettings hold the same defaults."""
    from dualcontrast.config import ViewsConfig

    assert ViewSettings(**vars(ViewsConfig())) == ViewSettings()
