"""Fourier shell correlation, AUC-FSC and resolution."""

from __future__ import annotations

import numpy as np
import pytest

from dualcontrast.evaluation.fsc import FSCCurve, auc_fsc, fsc, resolution_at, shell_index, soft_sphere_mask


def _smooth(rng, n=24):
    from scipy import ndimage

    return ndimage.gaussian_filter(rng.standard_normal((n, n, n)), 1.5)


def _slow_fsc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shell-by-shell loop straight from the paper's formula."""
    n = a.shape[0]
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    out = []
    for s in range(n // 2 + 1):
        num = pa = pb = 0.0
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    f = np.fft.fftfreq(n)[[i, j, k]] * n
                    if round(float(np.sqrt((f**2).sum()))) == s:
                        num += (fa[i, j, k] * np.conj(fb[i, j, k])).real
                        pa += abs(fa[i, j, k]) ** 2
                        pb += abs(fb[i, j, k]) ** 2
        out.append(num / np.sqrt(pa * pb))
    return np.array(out)


def test_matches_the_formula():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((8, 8, 8)), rng.standard_normal((8, 8, 8))
    np.testing.assert_allclose(fsc(a, b + a).fsc, _slow_fsc(a, b + a), atol=1e-10)


def test_self_is_one_and_sign_scale():
    a = _smooth(np.random.default_rng(1))
    curve = fsc(a, a)
    np.testing.assert_allclose(curve.fsc, 1.0, atol=1e-9)
    assert auc_fsc(curve) == pytest.approx(1.0)
    np.testing.assert_allclose(fsc(a, 3.0 * a).fsc, 1.0, atol=1e-9)
    np.testing.assert_allclose(fsc(a, -a).fsc, -1.0, atol=1e-9)


def test_independent_noise_is_near_zero():
    rng = np.random.default_rng(2)
    curve = fsc(rng.standard_normal((32,) * 3), rng.standard_normal((32,) * 3))
    # Beyond the few lowest shells, pure-noise FSC scatters with std ~ 1/sqrt(voxels per shell).
    far = curve.n_voxels > 50
    assert np.all(np.abs(curve.fsc[far]) < 4.0 / np.sqrt(curve.n_voxels[far]))
    # Shell 0 is the single DC term (FSC +-1), worth up to 1/32 of area on its own; the rest
    # averages out.
    assert abs(auc_fsc(curve)) < 0.1


def test_shells_cover_the_nyquist_sphere():
    shells = shell_index(16)
    curve = fsc(np.ones((16,) * 3), np.ones((16,) * 3))
    assert curve.freq[0] == 0.0 and curve.freq[-1] == 1.0
    assert curve.n_voxels.sum() == (shells >= 0).sum()
    assert (shells == 0).sum() == 1


def test_lowpassed_copy_and_resolution():
    n = 32
    rng = np.random.default_rng(3)
    a, other = rng.standard_normal((2, n, n, n))
    keep = (shell_index(n) >= 0) & (shell_index(n) <= 8)  # up to half Nyquist
    # Same as a up to half Nyquist, independent above it.
    b = np.fft.ifftn(np.fft.fftn(a) * keep + np.fft.fftn(other) * ~keep).real
    curve = fsc(a, b, voxel_size=1.0)
    assert np.all(curve.fsc[:9] > 0.999)
    assert np.all(np.abs(curve.fsc[9:]) < 4.0 / np.sqrt(curve.n_voxels[9:]))
    # Trapezoid over the step from 1 (s = 0.5) to ~0 (s = 0.5625), plus noise above.
    assert auc_fsc(curve) == pytest.approx(0.5 + 0.5 / 16, abs=0.02)
    # Crossing between shell 8 (s = 0.5) and 9 (s = 0.5625), interpolated; 2 * voxel / s.
    assert 2 / 0.5625 <= resolution_at(curve, 0.5) <= 2 / 0.5


def test_resolution_interpolates_and_caps_at_nyquist():
    freq = np.linspace(0, 1, 11)
    values = np.clip(1.0 - freq, 0, 1)
    curve = FSCCurve(freq, values, np.ones(11, dtype=int), voxel_size=1.5)
    assert resolution_at(curve, 0.5) == pytest.approx(2 * 1.5 / 0.5)
    assert resolution_at(curve, 0.143) == pytest.approx(2 * 1.5 / 0.857)
    flat = FSCCurve(freq, np.ones(11), np.ones(11, dtype=int), voxel_size=1.5)
    assert resolution_at(flat, 0.143) == pytest.approx(3.0)
    np.testing.assert_allclose(curve.spatial_frequency[-1], 1 / 3.0)
    f, v = curve
    assert f is curve.freq and v is curve.fsc


def test_mask_and_bad_shapes():
    mask = soft_sphere_mask(16)
    assert mask.shape == (16,) * 3 and mask.max() == pytest.approx(1.0) and mask[0, 0, 0] == 0.0
    a = _smooth(np.random.default_rng(4), 16)
    np.testing.assert_allclose(fsc(a, a, mask=mask).fsc, 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="shape"):
        fsc(np.zeros((8, 8, 8)), np.zeros((8, 8, 9)))
    with pytest.raises(ValueError, match="cubic"):
        fsc(np.zeros((8, 8, 9)), np.zeros((8, 8, 9)))
