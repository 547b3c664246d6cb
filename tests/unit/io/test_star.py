"""STAR / MRC interoperability (dualcontrast.io): RELION 5 and Warp fixtures are read with their
voxel size, optics and image paths; per-cluster subsets written back keep every block, row and
column (read again with starfile / mrcfile); RELION's ZYZ angle convention round-trips."""

from __future__ import annotations

import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from dualcontrast import geometry
from dualcontrast.data.volumes import load_star
from dualcontrast.errors import DataError
from dualcontrast.io import mrc as io_mrc
from dualcontrast.io import star as io_star

DATA = Path(__file__).resolve().parents[2] / "data"


def _write_images(root: Path, names, voxel: float, box: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    vols = rng.standard_normal((len(names), box, box, box)).astype(np.float32)
    for name, v in zip(names, vols, strict=True):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        io_mrc.write_volume(root / name, v, voxel)
    return vols


@pytest.fixture
def relion5(tmp_path) -> tuple[Path, np.ndarray]:
    """A RELION 5 project: Extract/job010/particles.star (hand-written) + its 3D subtomograms."""
    star = tmp_path / "Extract" / "job010" / "particles.star"
    star.parent.mkdir(parents=True)
    shutil.copy(DATA / "relion5_particles.star", star)
    names = starfile.read(star)["particles"]["rlnImageName"]
    return star, _write_images(tmp_path, names, 7.0)


@pytest.fixture
def warp(tmp_path) -> tuple[Path, np.ndarray]:
    star = tmp_path / "warp" / "subtomos.star"
    star.parent.mkdir()
    shutil.copy(DATA / "warp_subtomos.star", star)
    names = starfile.read(star)["rlnImageName"]
    return star, _write_images(star.parent, names, 7.0)


def test_relion5_particles_read_with_optics_and_project_paths(relion5):
    star, vols = relion5
    ps = io_star.read_particle_set(star)
    assert ps.flavour == "relion5"
    np.testing.assert_allclose(ps.voxel_size, 7.0)
    assert ps.acquisition() == {"voltage_kv": 200.0, "cs_mm": 1.7, "amplitude_contrast": 0.07}
    data = load_star(star)  # image names resolve from the project folder two levels up
    np.testing.assert_array_equal(data.batch(np.arange(3))[:, 0], vols)


def test_optimisation_set_is_followed_and_tomograms_star_refused(relion5, tmp_path):
    star, _ = relion5
    opt = tmp_path / "Refine3D" / "job011" / "optimisation_set.star"
    opt.parent.mkdir(parents=True)
    shutil.copy(DATA / "relion5_optimisation_set.star", opt)
    assert io_star.read_particle_set(opt).path.resolve() == star.resolve()
    assert len(load_star(opt)) == 3
    with pytest.raises(DataError, match=r"tomograms.*particles\.star"):
        io_star.read_particle_set(DATA / "relion5_tomograms.star")


def test_relion5_2d_stacks_and_unextracted_particles_refused(relion5, tmp_path):
    star, _ = relion5
    blocks = io_star.read_blocks(star)
    blocks["general"] = {"rlnTomoSubTomosAre2DStacks": 1}
    io_star.write_blocks(tmp_path / "stacks.star", blocks)
    with pytest.raises(DataError, match="2D tilt-image stacks"):
        io_star.read_particle_set(tmp_path / "stacks.star")
    blocks["particles"] = blocks["particles"].drop(columns=["rlnImageName"])
    io_star.write_blocks(tmp_path / "picked.star", {"particles": blocks["particles"]})
    with pytest.raises(DataError, match="extract 3D subtomograms"):
        io_star.read_particle_set(tmp_path / "picked.star")


def test_voxel_size_disagreeing_with_mrc_header_is_an_error(relion5, tmp_path):
    star, vols = relion5
    io_mrc.write_volume(
        tmp_path / "Extract/job010/Subtomograms/TS_01/2_data.mrc", vols[1], 10.0, overwrite=True
    )
    with pytest.raises(DataError, match=r"row 2: voxel size 7 A in the STAR file but 10 A in the header"):
        load_star(star)


def test_warp_star_reads_pixel_size_from_detector_and_magnification(warp):
    star, vols = warp
    ps = io_star.read_particle_set(star)
    assert ps.flavour == "warp" and ps.optics is None
    np.testing.assert_allclose(ps.voxel_size, 7.0)
    np.testing.assert_array_equal(load_star(star).batch(np.arange(2))[:, 0], vols)


@pytest.mark.parametrize("fixture", ["relion5", "warp"])
def test_subset_round_trip_keeps_every_block_row_and_column(fixture, request, tmp_path):
    star, _ = request.getfixturevalue(fixture)
    ps = io_star.read_particle_set(star)
    rows = np.array([1, 0])
    added = {"rlnClassNumber": np.array([3, 3]), "dcContentCluster": np.array([2, 2])}
    out = io_star.write_blocks(tmp_path / "cluster.star", io_star.subset_blocks(ps, rows, added))
    back = starfile.read(out, always_dict=True)
    assert list(back) == list(ps.blocks)
    table, original = back[ps.key], ps.particles.iloc[rows].reset_index(drop=True)
    assert set(original.columns) <= set(table.columns)
    for column in original.columns:
        if column not in added:
            expected = original[column]
            if expected.dtype.kind == "f":
                np.testing.assert_allclose(
                    table[column].to_numpy(float), expected.to_numpy(float), err_msg=column
                )
            else:
                assert list(table[column].astype(str)) == list(expected.astype(str)), column
    assert list(table["rlnClassNumber"]) == [3, 3] and list(table["dcContentCluster"]) == [2, 2]
    if ps.optics is not None:
        pd.testing.assert_frame_equal(back["optics"], ps.optics)
    assert io_star.read_particle_set(out).flavour == ps.flavour


def test_relion_angles_match_the_documented_matrix_and_round_trip():
    rng = np.random.default_rng(1)
    angles = np.stack([rng.uniform(-180, 180, 50), rng.uniform(1, 179, 50), rng.uniform(-180, 180, 50)], -1)
    a = geometry.relion_matrix(angles)
    # RELION's Euler_angles2matrix, written out element by element (Heymann et al. 2005).
    rot, tilt, psi = np.radians(angles.T)
    ca, sa, cb, sb, cg, sg = np.cos(rot), np.sin(rot), np.cos(tilt), np.sin(tilt), np.cos(psi), np.sin(psi)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    expected = np.stack([
        np.stack([cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb], -1),
        np.stack([-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb], -1),
        np.stack([sc, ss, cb], -1),
    ], -2)  # fmt: skip
    np.testing.assert_allclose(a, expected, atol=1e-12)
    np.testing.assert_allclose(geometry.relion_angles(a), angles, atol=1e-8)
    np.testing.assert_allclose(a @ np.swapaxes(a, -1, -2), np.broadcast_to(np.eye(3), a.shape), atol=1e-12)
    lock = geometry.relion_matrix(
        np.array([[30.0, 0.0, 20.0], [30.0, 180.0, 20.0], [-170.0, 180.0 - 1e-8, 50.0]])
    )
    np.testing.assert_allclose(geometry.relion_matrix(geometry.relion_angles(lock)), lock, atol=1e-9)


def test_written_volume_headers(tmp_path):
    v = np.random.default_rng(2).standard_normal((16, 16, 16)).astype(np.float32)
    io_mrc.write_volume(tmp_path / "a.mrc", v, 7.0)
    with mrcfile.open(tmp_path / "a.mrc") as m:
        assert float(m.voxel_size.x) == pytest.approx(7.0) and float(m.voxel_size.z) == pytest.approx(7.0)
        assert tuple(float(o) for o in m.header.origin.item()) == (0.0, 0.0, 0.0)
        assert m.header.dmax == pytest.approx(v.max()) and m.header.dmean == pytest.approx(v.mean(), abs=1e-5)
        assert m.header.rms == pytest.approx(v.std(), rel=1e-4)
        assert int(m.header.ispg) == 1
    assert io_mrc.read_voxel_size(tmp_path / "a.mrc") == pytest.approx(7.0)
    with pytest.raises(DataError, match="already exists"):
        io_mrc.write_volume(tmp_path / "a.mrc", v, 7.0)


def test_relion4_voxel_size_from_tilt_series_pixel_and_binning(tmp_path):
    optics = pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnTomoTiltSeriesPixelSize": [1.75, 2.0],
                           "rlnTomoSubtomogramBinning": [4.0, 2.0]})  # fmt: skip
    particles = pd.DataFrame({"rlnTomoName": ["TS_01"] * 3, "rlnCoordinateX": [10.0, 20.0, 30.0],
                              "rlnImageName": ["a.mrc", "b.mrc", "c.mrc"], "rlnOpticsGroup": [1, 2, 1]})  # fmt: skip
    io_star.write_blocks(tmp_path / "r4.star", {"optics": optics, "particles": particles})
    ps = io_star.read_particle_set(tmp_path / "r4.star")
    assert ps.flavour == "relion4"
    np.testing.assert_allclose(ps.voxel_size, [7.0, 4.0, 7.0])
    particles["rlnOpticsGroup"] = [1, 3, 1]
    io_star.write_blocks(tmp_path / "bad.star", {"optics": optics, "particles": particles})
    with pytest.raises(DataError, match=r"optics group\(s\) \[3\]"):
        io_star.read_particle_set(tmp_path / "bad.star")


def test_input_voxel_size_from_star_mrc_header_h5_or_none(relion5, warp, tmp_path):
    import h5py

    from dualcontrast.analysis.pipeline import input_voxel_size

    assert input_voxel_size(relion5[0]) == pytest.approx(0.7)  # nm
    assert input_voxel_size(warp[0]) == pytest.approx(0.7)
    bare = tmp_path / "bare.star"  # no pixel size in the STAR file: the first image's header
    io_star.write_blocks(
        bare, {"particles": pd.DataFrame({"rlnImageName": ["warp/subtomo/TS_01/TS_01_000001_7.00A.mrc"]})}
    )
    assert input_voxel_size(bare) == pytest.approx(0.7)
    io_mrc.write_volume(tmp_path / "stack.mrc", np.zeros((4, 4, 4)), 3.5)
    assert input_voxel_size(tmp_path / "stack.mrc") == pytest.approx(0.35)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.attrs["voxel_size_nm"] = 1.2
    assert input_voxel_size(tmp_path / "d.h5") == pytest.approx(1.2)
    assert input_voxel_size(tmp_path / "x.npy") is None
