"""Subtomogram averaging, map alignment, MRC / figure writers and the RELION STAR writer."""

from __future__ import annotations

import math

import mrcfile
import numpy as np
import pytest
import starfile
import torch
from scipy import ndimage

from dualcontrast import geometry
from dualcontrast.analysis import averaging as avg
from dualcontrast.data.base import Dataset
from dualcontrast.errors import DataError
from dualcontrast.evaluation.fsc import auc_fsc, fsc
from dualcontrast.geometry import random_rotation_3d
from dualcontrast.io.star import export_particles, poses_from_star, relion_pose, write_particles_star
from dualcontrast.simulation.phantoms import Blobs, render
from dualcontrast.simulation.simulate import fourier_shift, rotations_from_table, simulate_subtomograms
from dualcontrast.transforms.geometry import warp


def _asymmetric_map(n: int = 24) -> np.ndarray:
    """Seven blobs of different sizes at random places: no rotational symmetry to confuse poses."""
    rng = np.random.default_rng(11)
    centres = rng.uniform(-4.5, 4.5, (7, 3))
    centres -= centres.mean(0)
    return render(Blobs(centres, rng.uniform(0.9, 1.6, 7), rng.uniform(5, 20, 7)), n, 1.0)


def _poses(table) -> tuple[np.ndarray, np.ndarray]:
    return rotations_from_table(table), np.stack([table[f"shift_{c}"] for c in "xyz"], -1)


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return _asymmetric_map()


@pytest.fixture(scope="module")
def particles(truth):
    """50 rotated, shifted copies at SNR 0.5 (no CTF) with their true poses."""
    return simulate_subtomograms(
        {("x", "0"): truth}, 50, snr=0.5, ctf=False, max_shift=2.0, seed=3, progress=False
    )


# --------------------------------------------------------------------------- rotation sets and pieces


def test_so3_grid_is_spread_and_valid():
    grid = geometry.so3_grid(500).numpy()
    np.testing.assert_allclose(
        grid @ np.swapaxes(grid, 1, 2), np.broadcast_to(np.eye(3), grid.shape), atol=1e-9
    )
    np.testing.assert_allclose(np.linalg.det(grid), 1.0, atol=1e-9)
    probes = random_rotation_3d(300, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).numpy()
    nearest = np.array([geometry.rotation_angle(np.broadcast_to(p, grid.shape), grid).min() for p in probes])
    spacing = math.degrees(geometry.grid_spacing(500))
    assert np.median(nearest) < spacing and nearest.max() < 2.0 * spacing


def test_local_rotations_lie_in_the_ball():
    local = geometry.local_rotations(math.radians(10)).numpy()
    angles = geometry.rotation_angle(np.broadcast_to(np.eye(3), local.shape), local)
    assert angles.max() <= 10.0 + 1e-6 and angles.min() == pytest.approx(0.0, abs=1e-6) and len(local) > 20


def test_best_shift_is_sub_voxel_accurate(truth):
    shifts = torch.tensor([[1.3, -0.6, 2.2], [-2.7, 0.25, 0.0]], dtype=torch.float64)
    ref = torch.as_tensor(truth)[None].expand(2, -1, -1, -1)
    moved = fourier_shift(ref, shifts)
    found = avg._best_shift(moved, ref, avg._shift_window(24, 4.0, "cpu"))
    np.testing.assert_allclose(found.numpy(), shifts.numpy(), atol=0.1)


# --------------------------------------------------------------------------- averaging


def test_average_recovers_a_known_map(truth, particles):
    """Reference-free averaging of 50 noisy copies gets >= 90% of the AUC-FSC that the true poses give.

    The bar is relative to the oracle average (particles put back with their TRUE poses), so it
    measures the alignment alone, not the noise or interpolation that no alignment can remove.
    """
    volumes, table = particles
    r_true, t_true = _poses(table)
    oracle = avg._unwarp(torch.as_tensor(volumes[:, 0]), torch.as_tensor(r_true).float(),
                         torch.as_tensor(t_true).float()).mean(0).numpy()  # fmt: skip
    result = avg.average_subtomograms(volumes, n_iter=3, progress=False)
    assert result.average.shape == (24, 24, 24) and len(result.history) == 3
    aligned, r_map, _, score = avg.align_maps(result.average, truth)
    ours, best = fsc(aligned, truth), fsc(oracle, truth)
    assert auc_fsc(ours) >= 0.9 * auc_fsc(best)
    assert np.all(ours.fsc[ours.freq <= 0.5] > 0.8)
    assert score > 0.9
    # The average sits in its own frame: particle i ~ warp(truth, R_i R_map).
    errors = geometry.rotation_angle(result.rotations @ r_map, r_true)
    assert np.median(errors) < 8.0


def test_poses_against_the_true_reference(truth, particles):
    volumes, table = particles
    r_true, t_true = _poses(table)
    result = avg.average_subtomograms(volumes, reference=truth, n_iter=1, progress=False)
    assert np.median(geometry.rotation_angle(result.rotations, r_true)) < 5.0
    assert np.median(np.linalg.norm(result.shifts - t_true, axis=1)) < 0.5
    assert result.scores.shape == (50,) and np.all(result.scores > 0.3)


def test_subset_of_a_dataset(truth, particles):
    volumes, _ = particles
    data = Dataset(x=volumes, normalize="per_sample")
    result = avg.average_subtomograms(
        data, indices=np.arange(10, 30), reference=truth, n_iter=1, progress=False
    )
    assert result.rotations.shape == (20, 3, 3) and result.shifts.shape == (20, 3)
    with pytest.raises(DataError, match="reference"):
        avg.average_subtomograms(volumes, reference=np.zeros((8, 8, 8)), n_iter=1, progress=False)


def test_ctf_corrected_average_is_closer_to_the_map(truth):
    volumes, _ = simulate_subtomograms({("x", "0"): truth}, 30, snr=2.0, seed=1, progress=False)
    result = avg.average_subtomograms(
        volumes, reference=truth, n_iter=1, ctf=avg.CTFParams(-5.0), progress=False
    )
    assert auc_fsc(fsc(result.average, truth)) > auc_fsc(fsc(result.raw_average, truth)) + 0.05


def test_align_maps_finds_a_known_pose(truth):
    moved, table = simulate_subtomograms({("x", "0"): truth}, 2, snr=None, ctf=False, max_shift=2.0, seed=9,
                                         progress=False)  # fmt: skip
    r_true, t_true = _poses(table)
    for i in range(2):
        aligned, r, t, score = avg.align_maps(moved[i, 0], truth)
        assert geometry.rotation_angle(r[None], r_true[i][None])[0] < 3.0
        np.testing.assert_allclose(t, t_true[i], atol=0.3)
        assert score > 0.95 and auc_fsc(fsc(aligned, truth)) > 0.85


# --------------------------------------------------------------------------- writers


def test_write_mrc_and_slices(tmp_path, truth):
    path = avg.write_mrc(tmp_path / "avg.mrc", truth, voxel_size=1.5)
    with mrcfile.open(path) as mrc:
        np.testing.assert_array_equal(mrc.data, truth)
        assert float(mrc.voxel_size.x) == pytest.approx(15.0)
    with pytest.raises(DataError, match="already exists"):
        avg.write_mrc(path, truth)
    png = avg.save_central_slices(truth, tmp_path / "avg.png", title="cluster 0")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(DataError, match="already exists"):
        avg.save_central_slices(truth, png)


def _relion_matrix(rot: float, tilt: float, psi: float) -> np.ndarray:
    """RELION's Euler_angles2matrix, written from its documented formula (degrees)."""
    a, b, g = np.radians([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    return np.array([
        [cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb],
        [-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb],
        [sb * ca, sb * sa, cb],
    ])  # fmt: skip


def test_star_poses_follow_relion_conventions(tmp_path):
    """A particle made our way equals the one RELION's model predicts from the written STAR row."""
    n = 20
    ref = _asymmetric_map(n)
    r = random_rotation_3d(3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([[1.5, -2.0, 0.5], [0.0, 1.0, -1.25], [2.0, 0.0, 0.0]], dtype=torch.float64)
    ours = warp(torch.as_tensor(ref, dtype=torch.float64).expand(3, 1, n, n, n), r, t)[:, 0].numpy()
    star = write_particles_star(tmp_path / "p.star", [f"{i + 1}@p.mrcs" for i in range(3)], rotations=r.numpy(),
                                shifts=t.numpy(), voxel_size=1.0, box=n, class_numbers=[1, 2, 2])  # fmt: skip
    blocks = starfile.read(star)
    rows = blocks["particles"]
    assert blocks["optics"]["rlnImagePixelSize"][0] == pytest.approx(10.0)
    assert list(rows["rlnClassNumber"]) == [1, 2, 2]
    centre = np.full(3, n // 2)  # RELION rotates about n // 2
    zz, yy, xx = np.meshgrid(*[np.arange(n)] * 3, indexing="ij")
    p = np.stack([xx, yy, zz], -1).reshape(-1, 3).astype(float)
    for i, row in rows.iterrows():
        a = _relion_matrix(row["rlnAngleRot"], row["rlnAngleTilt"], row["rlnAnglePsi"])
        np.testing.assert_allclose(a, r[i].numpy(), atol=1e-6)  # A rotates the reference into the particle
        origin = np.array([row["rlnOriginXAngst"], row["rlnOriginYAngst"], row["rlnOriginZAngst"]]) / 10.0
        # RELION: rotate about n // 2, then shift by -origin: particle(p) = ref(A^T (p + o - c) + c).
        q = (p + origin - centre) @ a + centre
        relion = ndimage.map_coordinates(ref, [q[:, 2], q[:, 1], q[:, 0]], order=1).reshape(n, n, n)
        inner = (slice(3, -3),) * 3
        np.testing.assert_allclose(relion[inner], ours[i][inner], atol=0.02 * ref.max())


def test_relion_pose_round_trip_and_errors(tmp_path):
    r = random_rotation_3d(20, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).numpy()
    t = np.random.default_rng(0).uniform(-3, 3, (20, 3))
    for box in (16, 17):
        angles, origin = relion_pose(r, t, box)
        r2, t2 = poses_from_star(angles, origin, box)
        np.testing.assert_allclose(r2, r, atol=1e-9)
        np.testing.assert_allclose(t2, t, atol=1e-9)
    with pytest.raises(DataError, match="rows"):
        write_particles_star(tmp_path / "x.star", ["1@a.mrcs"] * 2, rotations=r[:3], box=16)
    write_particles_star(tmp_path / "y.star", ["a.mrc"], box=16)
    with pytest.raises(DataError, match="already exists"):
        write_particles_star(tmp_path / "y.star", ["a.mrc"], box=16)


def test_export_particles_round_trips_through_load_star(tmp_path, particles):
    from dualcontrast.data.volumes import load_star

    volumes, table = particles
    r, t = _poses(table)
    keep = np.array([7, 2, 30])
    star = export_particles(tmp_path / "cluster3.star", volumes, indices=keep, rotations=r[keep], shifts=t[keep],
                            voxel_size=1.0, class_number=4, extra_columns={"dcIdentity": np.zeros(3, int)})  # fmt: skip
    data = load_star(star)
    np.testing.assert_array_equal(data.batch(np.arange(3)), volumes[keep])
    rows = starfile.read(star)["particles"]
    assert list(rows["rlnClassNumber"]) == [4, 4, 4] and rows["rlnImageName"].iloc[0] == "cluster3_particles/000001.mrc"
    angles = rows[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()
    origins = rows[["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy() / 10.0
    r2, t2 = poses_from_star(angles, origins, box=24)
    np.testing.assert_allclose(r2, r[keep], atol=1e-5)
    np.testing.assert_allclose(t2, t[keep], atol=1e-5)
    with pytest.raises(DataError, match="already exists"):
        export_particles(tmp_path / "cluster3.star", volumes, indices=keep)
