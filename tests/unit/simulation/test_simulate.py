"""Subtomogram simulator: poses, CTF, missing wedge, SNR, reproducibility, model -> map, writers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from dualcontrast import geometry
from dualcontrast.data import simulated
from dualcontrast.data.base import CONTENT, TRANSFORM
from dualcontrast.data.loading import BUILTIN_DATASETS
from dualcontrast.errors import ConfigError, DataError
from dualcontrast.geometry import euler_zyz_to_matrix
from dualcontrast.simulation import ctf, maps
from dualcontrast.simulation import simulate as sim
from dualcontrast.simulation.phantoms import Blobs, render


def _blob_map(n: int = 20, offset=(3.0, 0.0, 0.0)) -> np.ndarray:
    """A blob off the centre by ``offset`` (x, y, z) voxels, plus a smaller one, at 1 nm voxels."""
    blobs = Blobs(np.array([offset, (0.0, -2.0, 1.0)]), np.array([1.3, 1.0]), np.array([30.0, 8.0]))
    return render(blobs, n, 1.0)


def _maps(n: int = 16):
    return {("a", "s0"): _blob_map(n, (2.0, 0.0, 0.0)), ("a", "s1"): _blob_map(n, (2.5, 0.0, 0.0)),
            ("b", "s0"): _blob_map(n, (0.0, 2.0, 1.0))}  # fmt: skip


# --------------------------------------------------------------------------- poses


def test_rotations_are_uniform_on_so3():
    q, shifts = sim.draw_poses(4000, 2.0, seed=3)
    r = sim.rotations_from_table({"quat_w": q[:, 0], "quat_x": q[:, 1], "quat_y": q[:, 2], "quat_z": q[:, 3]})
    # A fixed axis is sent to a direction uniform on the sphere: z uniform in [-1, 1], azimuth uniform.
    axis = r @ np.array([0.0, 0.0, 1.0])
    assert stats.kstest(axis[:, 2], stats.uniform(-1, 2).cdf).pvalue > 1e-3
    assert (
        stats.kstest(np.arctan2(axis[:, 1], axis[:, 0]), stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3
    )
    # Haar measure: the rotation angle has CDF (theta - sin theta) / pi.
    angle = np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1) / 2, -1, 1))
    assert stats.kstest(angle, lambda t: (t - np.sin(t)) / np.pi).pvalue > 1e-3
    assert np.all(np.abs(shifts) <= 2.0) and np.all(q[:, 0] >= 0)


def test_euler_angles_match_the_quaternions():
    q, _ = sim.draw_poses(200, 0.0, seed=0)
    r = sim.rotations_from_table({"quat_w": q[:, 0], "quat_x": q[:, 1], "quat_y": q[:, 2], "quat_z": q[:, 3]})
    angles = geometry.matrix_to_euler_zyz(r)
    np.testing.assert_allclose(euler_zyz_to_matrix(torch.as_tensor(angles)).numpy(), r, atol=1e-9)
    # Poles (b = 0 or pi), where a and g are not separable.
    poles = torch.tensor([[0.4, 0.0, 0.3], [0.4, math.pi, 0.3], [-2.0, 0.0, 1.0]], dtype=torch.float64)
    rp = euler_zyz_to_matrix(poles).numpy()
    np.testing.assert_allclose(
        euler_zyz_to_matrix(torch.as_tensor(geometry.matrix_to_euler_zyz(rp))).numpy(), rp, atol=1e-9
    )


def test_copies_follow_the_table_pose_convention():
    """Copy i satisfies x(R p + t) = map(p): an off-centre blob ends up at R offset + t."""
    n = 20
    offset = np.array([4.0, 0.0, 0.0])
    one = Blobs(offset[None], np.array([1.2]), np.array([20.0]))
    density = render(one, n, 1.0)
    vols, table = sim.simulate_subtomograms({("x", "0"): density}, 12, snr=None, ctf=False, max_shift=2.5,
                                            seed=5, progress=False)  # fmt: skip
    r = sim.rotations_from_table(table)
    t = np.stack([table["shift_x"], table["shift_y"], table["shift_z"]], -1)
    grid = np.arange(n) - (n - 1) / 2.0
    for v, ri, ti in zip(vols[:, 0], r, t, strict=True):
        mass = v.sum()
        com = [(v.sum(axis=(0, 1)) * grid).sum() / mass, (v.sum(axis=(0, 2)) * grid).sum() / mass,
               (v.sum(axis=(1, 2)) * grid).sum() / mass]  # fmt: skip
        np.testing.assert_allclose(com, ri @ offset + ti, atol=0.15)


def test_batching_and_seed_reproducibility():
    maps = _maps()
    a, ta = sim.simulate_subtomograms(maps, 4, snr=0.5, seed=7, batch_size=5, progress=False)
    b, tb = sim.simulate_subtomograms(maps, 4, snr=0.5, seed=7, batch_size=64, progress=False)
    c, _ = sim.simulate_subtomograms(maps, 4, snr=0.5, seed=8, progress=False)
    np.testing.assert_array_equal(a, b)
    for key in ta:
        np.testing.assert_array_equal(ta[key], tb[key])
    assert not np.allclose(a, c)
    assert a.shape == (12, 1, 16, 16, 16) and a.dtype == np.float32


def test_table_labels():
    _, table = sim.simulate_subtomograms(_maps(), 3, snr=None, progress=False)
    np.testing.assert_array_equal(table["identity"], [0] * 6 + [1] * 3)
    np.testing.assert_array_equal(table["state"], [0, 0, 0, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(table["identity_state"], np.repeat([0, 1, 2], 3))
    assert list(table["identity_name"][[0, 8]]) == ["a", "b"] and table["source"][3] == "a/s1"


# --------------------------------------------------------------------------- CTF


def test_electron_wavelength():
    assert ctf.electron_wavelength(300) == pytest.approx(0.019687, rel=1e-4)
    assert ctf.electron_wavelength(200) == pytest.approx(0.025079, rel=1e-4)
    assert ctf.electron_wavelength(100) == pytest.approx(0.037014, rel=1e-4)


def _zero_k(n: int, defocus_um: float, cs_mm: float, kv: float, amp: float) -> float:
    """k (1/A) of the n-th CTF zero: chi(k) = n pi, solved as a quadratic in k^2."""
    lam = ctf.electron_wavelength(kv)
    dz, cs = -defocus_um * 1e4, cs_mm * 1e7
    phase = math.asin(amp) / math.pi
    u = (lam * dz - math.sqrt((lam * dz) ** 2 - 2 * cs * lam**3 * (n - phase))) / (cs * lam**3)
    return math.sqrt(u)


@pytest.mark.parametrize(("defocus", "cs", "kv", "amp"), [(-5.0, 1.7, 300, 0.1), (-2.0, 2.7, 200, 0.07)])
def test_ctf_zeros_where_the_formula_puts_them(defocus, cs, kv, amp):
    for n in (1, 2, 3):
        k0 = _zero_k(n, defocus, cs, kv, amp)
        ks = np.array([0.99 * k0, k0, 1.01 * k0])
        values = ctf.ctf_1d(ks, defocus, cs, kv, amp)
        assert abs(values[1]) < 1e-9
        assert values[0] * values[2] < 0
    assert ctf.ctf_1d(np.array([0.0]), defocus, cs, kv, amp)[0] == pytest.approx(amp)


def test_simulated_copies_carry_the_ctf_and_its_zeros():
    """A copy with identity pose has Fourier transform CTF x input; it vanishes at the CTF zeros."""
    n, voxel = 32, 1.0
    rng = np.random.default_rng(0)
    density = torch.as_tensor(rng.standard_normal((1, 1, n, n, n)).astype(np.float32))
    table = {"quat_w": np.ones(1), "quat_x": np.zeros(1), "quat_y": np.zeros(1), "quat_z": np.zeros(1),
             "shift_x": np.zeros(1), "shift_y": np.zeros(1), "shift_z": np.zeros(1),
             "defocus_um": np.array([-5.0]), "identity_state": np.zeros(1, dtype=np.int64)}  # fmt: skip
    params = sim.SimulationParams(box=n, voxel_size=voxel)
    out = sim.render_copies(density, table, np.array([0]), params)[0, 0].numpy()
    transfer = np.fft.rfftn(out) / np.fft.rfftn(density[0, 0].numpy())
    kz, ky, kx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), np.fft.rfftfreq(n), indexing="ij")
    radius = np.sqrt(kx**2 + ky**2 + kz**2)
    k = radius / (voxel * 10)  # 1/A
    inside = radius < 0.5
    expected = ctf.ctf_1d(k, -5.0, 1.7, 300.0, 0.1)
    np.testing.assert_allclose(transfer.real[inside], expected[inside], atol=1e-4)
    assert np.abs(transfer[~inside]).max() < 1e-4
    near_zero = inside & (np.abs(k - _zero_k(1, -5.0, 1.7, 300.0, 0.1)) < 2e-4)
    assert near_zero.any() and np.abs(transfer[near_zero]).max() < 0.05


def test_missing_wedge_mask_and_copies():
    n = 16
    mask = ctf.missing_wedge_mask(n, (-60.0, 60.0)).numpy()
    assert mask[0, 0, 0] and mask[0, 3, 0] and mask[0, 0, 5]  # DC, the tilt (y) axis, kx axis
    assert not mask[5, 0, 0] and not mask[5, 2, 1]  # along kz (beam): missing
    assert mask[1, 0, 5]  # kz/kx = 0.2 < tan 60
    # Asymmetric ranges: theta = atan(-kz/kx); kz = -kx -> +45 degrees.
    asym = ctf.missing_wedge_mask(n, (-10.0, 50.0)).numpy()
    assert asym[n - 3, 0, 3] and not asym[3, 0, 3]
    vols, _ = sim.simulate_subtomograms({("w", "0"): _blob_map(n)}, 3, snr=None, tilt_range=(-45, 45),
                                        progress=False)  # fmt: skip
    f = np.fft.rfftn(vols[:, 0], axes=(1, 2, 3))
    assert np.abs(f[:, 3:6, :, 0]).max() < 1e-4  # kx = 0, kz != 0: inside the wedge
    with pytest.raises(ConfigError, match="tilt range"):
        ctf.missing_wedge_mask(n, (30.0, -30.0))


# --------------------------------------------------------------------------- noise


@pytest.mark.parametrize("mode", ["global", "per_particle"])
def test_snr_is_achieved(mode):
    maps = _maps()
    clean, _ = sim.simulate_subtomograms(maps, 6, snr=None, seed=2, progress=False)
    noisy, table = sim.simulate_subtomograms(maps, 6, snr=0.1, snr_mode=mode, seed=2, progress=False)
    noise = (noisy - clean).reshape(len(clean), -1)
    signal_var = clean.reshape(len(clean), -1).var(axis=1)
    np.testing.assert_allclose(table["signal_var"], signal_var, rtol=1e-4)
    if mode == "per_particle":
        np.testing.assert_allclose(signal_var / noise.var(axis=1), 0.1, rtol=0.1)
    else:
        assert signal_var.mean() / noise.var(axis=1).mean() == pytest.approx(0.1, rel=0.1)
        assert np.ptp(table["noise_sigma"]) == 0
    assert abs(noise.mean()) < 0.05 * noise.std()


def test_bad_settings_are_refused():
    maps = _maps()
    for bad in ({"snr": -1.0}, {"snr_mode": "local"}, {"max_shift": 9.0}, {"amplitude_contrast": 1.5},
                {"tilt_range": (-95, 60)}, {"box": 32}):  # fmt: skip
        with pytest.raises(ConfigError):
            sim.simulate_subtomograms(maps, 1, progress=False, **bad)
    with pytest.raises(ConfigError, match="cubic"):
        sim.simulate_subtomograms({("a", "0"): np.zeros((8, 8, 9), np.float32)}, 1, progress=False)
    with pytest.raises(ConfigError, match="one box"):
        sim.simulate_subtomograms(
            {("a", "0"): np.zeros((8,) * 3), ("b", "0"): np.zeros((9,) * 3)}, 1, progress=False
        )


# --------------------------------------------------------------------------- maps from files

_PDB = """\
CRYST1   10.000   10.000   10.000  90.00  90.00  90.00 P 1           1
ATOM      1  N   GLY A   1      -8.000   0.000   0.000  1.00 10.00           N
ATOM      2  CA  GLY A   1       0.000   0.000   0.000  1.00 10.00           C
ATOM      3  C   GLY A   1       0.000  12.000   0.000  1.00 10.00           C
ATOM      4  O   GLY A   1      30.000   0.000   0.000  1.00 10.00           O
ATOM      5  SD  MET A   2       0.000   0.000 -20.000  1.00 10.00           S
END
"""


def test_map_from_model_pdb_and_mmcif(tmp_path):
    import gemmi

    pdb = tmp_path / "tiny.pdb"
    pdb.write_text(_PDB)
    a = maps.map_from_model(pdb, box=24, voxel_size=0.5)
    assert a.shape == (24, 24, 24) and a.dtype == np.float32 and a.max() > 0
    # The mass centre sits at the box centre (atoms weighted by mass, density by electrons: close).
    grid = np.arange(24) - 11.5
    com = np.array([(a.sum(axis=(0, 1)) * grid).sum(), (a.sum(axis=(0, 2)) * grid).sum(),
                    (a.sum(axis=(1, 2)) * grid).sum()]) / a.sum()  # fmt: skip
    assert np.all(np.abs(com) < 1.5)
    # The sulphur 20 A below along z dominates its z slab: density on the z axis (first array axis).
    centre_line = a[:, 11:13, 11:13].sum(axis=(1, 2))
    assert np.argmax(centre_line) < 11
    cif = tmp_path / "tiny.cif"
    gemmi.read_structure(str(pdb)).make_mmcif_document().write_file(str(cif))
    np.testing.assert_allclose(maps.map_from_model(cif, box=24, voxel_size=0.5), a, rtol=1e-4, atol=1e-6)


def test_map_from_model_errors(tmp_path):
    bad = tmp_path / "bad.pdb"
    bad.write_text("this is not a structure\n")
    with pytest.raises(DataError, match=r"bad\.pdb"):
        maps.map_from_model(bad)
    with pytest.raises(DataError, match="no such"):
        maps.map_from_model(tmp_path / "missing.cif")
    big = tmp_path / "big.pdb"
    big.write_text(_PDB.replace("30.000   0.000   0.000", "900.000  0.000   0.000"))
    with pytest.raises(DataError, match="spans"):
        maps.map_from_model(big, box=16, voxel_size=1.0)


def test_load_maps_resamples_mrc(tmp_path):
    import mrcfile

    coarse = _blob_map(16, (0.0, 0.0, 0.0))
    path = tmp_path / "blob.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(coarse)
        mrc.voxel_size = 20.0  # 2 nm
    (m,) = maps.load_maps([path], box=32, voxel_size=1.0)
    assert (m.identity, m.state, m.density.shape) == ("blob", "0", (32, 32, 32))
    # Values are kept, voxels are 8x smaller: 8x the voxel sum.
    assert m.density.sum() == pytest.approx(8 * coarse.sum(), rel=0.05)
    pdb = tmp_path / "tiny.pdb"
    pdb.write_text(_PDB)
    grouped = maps.load_maps({("p", "open"): pdb, ("p", "closed"): path}, box=32, voxel_size=1.0)
    assert [(g.identity, g.state) for g in grouped] == [("p", "open"), ("p", "closed")]
    with pytest.raises(DataError, match="unknown map format"):
        maps.load_maps([tmp_path / "x.txt"])


# --------------------------------------------------------------------------- writers and data set


def test_simulate_to_file_round_trips(tmp_path):
    from dualcontrast.data.volumes import load_h5, load_star
    from dualcontrast.io.star import poses_from_star

    maps = _maps()
    expected, table = sim.simulate_subtomograms(maps, 2, snr=0.2, seed=4, progress=False)
    h5 = tmp_path / "sim.h5"
    simulated.simulate_to_file(h5, maps, 2, snr=0.2, seed=4, progress=False)
    data = load_h5(h5)
    np.testing.assert_array_equal(data.batch(np.arange(len(data))), expected)
    np.testing.assert_array_equal(data.factors[CONTENT], table["identity"])
    np.testing.assert_array_equal(data.factors[TRANSFORM], table["state"])
    assert (tmp_path / "sim_groundtruth.csv").exists()

    stack = tmp_path / "stack.mrcs"
    simulated.simulate_to_file(stack, maps, 2, snr=0.2, seed=4, progress=False)
    particles = load_star(tmp_path / "stack.star")
    np.testing.assert_array_equal(particles.batch(np.arange(len(particles))), expected)
    np.testing.assert_array_equal(particles.factors[CONTENT], table["identity"])
    np.testing.assert_array_equal(particles.factors["identity_state"], table["identity_state"])
    import starfile

    rows = starfile.read(tmp_path / "stack.star")["particles"]
    r, t = poses_from_star(rows[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(),
                           rows[["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy() / 10.0,
                           box=16)  # fmt: skip
    np.testing.assert_allclose(r, sim.rotations_from_table(table), atol=1e-5)
    np.testing.assert_allclose(t, np.stack([table[f"shift_{c}"] for c in "xyz"], -1), atol=1e-5)
    with pytest.raises(DataError, match="already exists"):
        simulated.simulate_to_file(h5, maps, 2, progress=False)
    with pytest.raises(ConfigError, match="format"):
        simulated.simulate_to_file(tmp_path / "x.npy", maps, 2, progress=False)


def test_phantoms3d_builtin():
    assert "phantoms3d" in BUILTIN_DATASETS
    splits = BUILTIN_DATASETS.get("phantoms3d")(n_per_state=2, box=16, voxel_size=2.0, test_fraction=0.25,
                                                progress=False)  # fmt: skip
    assert len(splits.train) + len(splits.test) == 24
    assert splits.sample_shape == (1, 16, 16, 16)
    both = np.concatenate([splits.train.factors[CONTENT], splits.test.factors[CONTENT]])
    assert sorted(set(both)) == [0, 1, 2]
    train = splits.train.factors
    np.testing.assert_array_equal(train["identity_state"], train[CONTENT] * 4 + train[TRANSFORM])
