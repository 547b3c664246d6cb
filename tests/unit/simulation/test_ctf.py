"""The 2D CTF of particle images (data.ctf): sign, zeros where the formula puts them, astigmatism,
consistency with the simulator's radial CTF; the projection option; CTF columns of STAR files."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from dualcontrast.data.base import Dataset, DataSplits
from dualcontrast.data.ctf import (
    CTF_FACTORS,
    ctf_2d,
    ctf_factors,
    ctf_table,
    project_splits,
    star_ctf_factors,
)
from dualcontrast.errors import DataError
from dualcontrast.simulation.ctf import ctf_1d, electron_wavelength


def _params(**kw) -> torch.Tensor:
    f = ctf_factors(1, **kw)
    return torch.tensor([[f[k][0] for k in CTF_FACTORS]], dtype=torch.float32)


def first_zero(defocus_um: float, voltage: float = 300.0, amp: float = 0.1) -> float:
    """1/A where chi = pi with Cs = 0: pi lambda dz k^2 + asin(A) = pi."""
    lam = electron_wavelength(voltage)
    dz = -defocus_um * 1e4
    return math.sqrt((math.pi - math.asin(amp)) / (math.pi * lam * dz))


def test_sign_at_low_frequency_and_first_zero():
    pixel = 2.0
    k0 = first_zero(-2.0) * pixel  # cycles/pixel
    kx = torch.tensor([0.0, 0.5 * k0, k0 - 1e-3, k0, k0 + 1e-3])
    ky = torch.zeros_like(kx)
    tom = ctf_2d(_params(defocus_u_um=-2.0, cs_mm=0.0, pixel_size_a=pixel), kx, ky)[0]
    assert tom[0] == pytest.approx(0.1, abs=1e-6)  # +A at k = 0 (simulator's sign)
    assert tom[1] > 0 and tom[2] > 0 and tom[4] < 0
    assert abs(float(tom[3])) < 1e-3
    relion = ctf_2d(_params(defocus_u_um=-2.0, cs_mm=0.0, pixel_size_a=pixel, sign=-1.0), kx, ky)[0]
    assert torch.allclose(relion, -tom)


def test_astigmatism_puts_the_zeros_along_each_axis():
    pixel = 2.0
    ku, kv = first_zero(-1.5) * pixel, first_zero(-2.5) * pixel
    p = _params(defocus_u_um=-1.5, defocus_v_um=-2.5, angle_deg=90.0, cs_mm=0.0, pixel_size_a=pixel)
    # Angle 90 deg: defocus U along y, V along x.
    along_u = ctf_2d(p, torch.tensor([0.0]), torch.tensor([ku]))[0, 0]
    along_v = ctf_2d(p, torch.tensor([kv]), torch.tensor([0.0]))[0, 0]
    assert abs(float(along_u)) < 1e-3 and abs(float(along_v)) < 1e-3
    assert abs(float(ctf_2d(p, torch.tensor([ku]), torch.tensor([0.0]))[0, 0])) > 0.1


def test_radial_ctf_matches_the_simulator_formula():
    k = torch.linspace(0, 0.49, 50)
    got = ctf_2d(_params(defocus_u_um=-5.0, pixel_size_a=10.0), k * 0.6, k * 0.8)[0]
    want = ctf_1d(k.double() / 10.0, -5.0, 1.7, 300.0, 0.1).float()
    assert torch.allclose(got, want, atol=1e-5)


def test_two_optics_groups_in_one_batch():
    a = _params(defocus_u_um=-2.0, voltage_kv=300.0, pixel_size_a=2.0)
    b = _params(defocus_u_um=-2.0, voltage_kv=200.0, pixel_size_a=2.0)
    k = torch.linspace(0.01, 0.4, 20)
    both = ctf_2d(torch.cat([a, b, a]), k, torch.zeros_like(k))
    assert torch.allclose(both[0], both[2]) and not torch.allclose(both[0], both[1])


def test_project_sums_along_z_and_records_the_ctf():
    rng = np.random.default_rng(0)
    vols = rng.standard_normal((6, 1, 8, 8, 8)).astype(np.float32)
    data = Dataset(x=vols, factors={"content": np.arange(6) % 2})
    splits = project_splits(DataSplits(data.subset(np.arange(4)), data.subset(np.arange(4, 6)), "t"),
                            None, {"voxel_size": 2.0, "defocus_um": -3.0})  # fmt: skip
    assert splits.train.sample_shape == (1, 8, 8)
    np.testing.assert_allclose(splits.test.batch(np.arange(2)), vols[4:].sum(axis=2), rtol=1e-5)
    table = ctf_table(splits.train)
    assert table.shape == (4, 8)
    assert table[0, 0] == -3.0 and table[0, 6] == 20.0 and table[0, 4] == 1.7 and table[0, 7] == 1.0
    with pytest.raises(DataError, match="3D volumes"):
        project_splits(splits)


def test_star_columns_become_relion_sign_ctf_factors():
    particles = pd.DataFrame({"rlnDefocusU": [20000.0, 25000.0], "rlnDefocusV": [18000.0, 25000.0],
                              "rlnDefocusAngle": [30.0, 0.0]})  # fmt: skip
    f = star_ctf_factors(particles, {"voltage_kv": 200.0, "cs_mm": 2.7}, np.array([1.1, 1.1]))
    np.testing.assert_allclose(f["ctf_defocus_u"], [-2.0, -2.5])
    np.testing.assert_allclose(f["ctf_defocus_v"], [-1.8, -2.5])
    assert f["ctf_sign"][0] == -1.0 and f["ctf_voltage"][0] == 200.0 and f["ctf_amplitude_contrast"][0] == 0.1
    assert star_ctf_factors(pd.DataFrame({"rlnImageName": ["1@a.mrcs"]}), {}, np.array([1.0])) == {}
