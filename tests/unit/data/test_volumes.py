"""Subtomogram loaders: round trips through mrcfile / starfile / h5py / pickle, laziness, bad inputs."""

from __future__ import annotations

import pickle

import h5py
import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from dualcontrast.data import volumes as vol
from dualcontrast.data.base import CONTENT, TRANSFORM
from dualcontrast.data.loading import load_path
from dualcontrast.errors import DataError


@pytest.fixture
def stack() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((5, 8, 8, 8)).astype(np.float32)


def _all(data) -> np.ndarray:
    return data.batch(np.arange(len(data)))


def _write_mrc(path, data, voxel=10.0):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel
    return path


# --------------------------------------------------------------------------- MRC


def test_mrc_volume_stack_round_trip(tmp_path, stack):
    path = _write_mrc(tmp_path / "v.mrcs", stack)
    with mrcfile.open(path) as mrc:
        assert mrc.header.ispg == 401  # mrcfile marks 4D data as a volume stack
    data = vol.load_mrc(path)
    assert data.x.shape == (5, 1, 8, 8, 8) and not data.in_memory
    np.testing.assert_array_equal(_all(data)[:, 0], stack)
    np.testing.assert_array_equal(data.batch(np.array([4, 0, 4])), stack[[4, 0, 4]][:, None])
    np.testing.assert_array_equal(data.x[-1], stack[-1][None])
    # Lazy arrays pickle as a path and offsets, and read the same in the copy.
    copy = pickle.loads(pickle.dumps(data.x))
    np.testing.assert_array_equal(copy[np.array([1, 3])], stack[[1, 3]][:, None])
    assert len(pickle.dumps(data.x)) < 2000


def test_mrc_image_stack_and_integer_modes(tmp_path):
    images = np.arange(4 * 6 * 7, dtype=np.int16).reshape(4, 6, 7)
    data = vol.load_mrc(_write_mrc(tmp_path / "i.mrcs", images))
    assert data.x.shape == (4, 1, 6, 7)
    np.testing.assert_array_equal(_all(data)[:, 0], images.astype(np.float32))  # densities, not rescaled


def test_mrc_volumes_concatenated_along_z(tmp_path, stack):
    with mrcfile.new(tmp_path / "cat.mrc") as mrc:
        mrc.set_data(stack.reshape(40, 8, 8))
        mrc.header.ispg = 1
    data = vol.load_mrc(tmp_path / "cat.mrc")
    np.testing.assert_array_equal(_all(data)[:, 0], stack)


def test_mrc_axis_order_other_than_xyz_is_refused(tmp_path, stack):
    # Read as if standard, a (y, x, z) file would be silently transposed in every volume.
    path = _write_mrc(tmp_path / "v.mrcs", stack)
    with mrcfile.open(path, mode="r+") as mrc:
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 2, 1, 3
    with pytest.raises(DataError, match=r"mapc/mapr/maps = \(2, 1, 3\)"):
        vol.load_mrc(path)


def test_mrc_anisotropic_voxels_are_refused(tmp_path, stack):
    path = _write_mrc(tmp_path / "v.mrcs", stack)
    with mrcfile.open(path, mode="r+") as mrc:
        mrc.voxel_size = (10.0, 10.0, 12.0)
    with pytest.raises(DataError, match="anisotropic voxels"):
        vol.load_mrc(path)
    # An image stack's z cell spans the stack: only x and y must agree.
    images = _write_mrc(tmp_path / "i.mrcs", stack[0])
    with mrcfile.open(images, mode="r+") as mrc:
        mrc.voxel_size = (10.0, 10.0, 1.0)
    assert vol.load_mrc(images).x.shape == (8, 1, 8, 8)


def test_single_volume_is_not_a_data_set(tmp_path, stack):
    with pytest.raises(DataError, match="single volume"):
        vol.load_mrc(_write_mrc(tmp_path / "one.mrc", stack[0]))


def test_non_cubic_volume_stack(tmp_path):
    with pytest.raises(DataError, match="cubic"):
        vol.load_mrc(_write_mrc(tmp_path / "nc.mrcs", np.zeros((3, 8, 8, 6), np.float32)))
    with mrcfile.new(tmp_path / "nc.mrc") as mrc:
        mrc.set_data(np.zeros((12, 8, 8), np.float32))
        mrc.header.ispg = 1
    with pytest.raises(DataError, match="cubic"):
        vol.load_mrc(tmp_path / "nc.mrc")


def test_corrupt_and_truncated_mrc(tmp_path, stack):
    path = _write_mrc(tmp_path / "bad.mrcs", stack)
    raw = bytearray(path.read_bytes())
    raw[208:212] = b"XXXX"  # the MAP identifier
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"bad\.mrcs.*not a valid MRC"):
        vol.load_mrc(path)
    good = _write_mrc(tmp_path / "short.mrcs", stack)
    good.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        vol.load_mrc(good)
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match=r"junk\.mrc"):
        vol.load_mrc(junk)


def test_nan_is_caught_at_load_and_when_read(tmp_path, stack, monkeypatch):
    stack[3, 1, 2, 3] = np.nan
    with pytest.warns(RuntimeWarning, match="NaN"):  # mrcfile warns when writing it
        path = _write_mrc(tmp_path / "nan.mrcs", stack)
    with pytest.raises(DataError, match="sample 3"):
        vol.load_mrc(path)
    monkeypatch.setattr(vol, "FINITE_CHECK_BYTES", 0)  # too big to scan: checked per batch
    data = vol.load_mrc(path)
    data.batch(np.array([0, 1]))
    with pytest.raises(DataError, match="sample 3"):
        data.batch(np.array([2, 3]))


# --------------------------------------------------------------------------- folders


def test_mrc_folder(tmp_path, stack):
    folder = tmp_path / "subtomos"
    folder.mkdir()
    for i, v in enumerate(stack):
        _write_mrc(folder / f"p{i:02d}.mrc", v)
    (folder / "notes.txt").write_text("ignored")
    data = vol.load_mrc_folder(folder)
    np.testing.assert_array_equal(_all(data)[:, 0], stack)
    assert isinstance(load_path(folder).x, vol.MrcSamples)
    _write_mrc(folder / "p99.mrc", np.zeros((6, 6, 6), np.float32))
    with pytest.raises(DataError, match=r"p99\.mrc"):
        vol.load_mrc_folder(folder)
    (folder / "p99.mrc").unlink()
    _write_mrc(folder / "p98.mrc", np.zeros((8, 8, 6), np.float32))
    with pytest.raises(DataError, match=r"p98\.mrc.*cubic"):
        vol.load_mrc_folder(folder)


# --------------------------------------------------------------------------- STAR


def _particles_star(path, names, **columns):
    table = pd.DataFrame({"rlnImageName": names, **columns})
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [10.0]})
    starfile.write({"optics": optics, "particles": table}, path)
    return path


def test_star_stack_and_files_round_trip(tmp_path, stack):
    (tmp_path / "Extract").mkdir()
    _write_mrc(tmp_path / "Extract" / "stack.mrcs", stack[:3])
    for i in (3, 4):
        _write_mrc(tmp_path / "Extract" / f"sub{i}.mrc", stack[i])
    names = ["000002@Extract/stack.mrcs", "1@Extract/stack.mrcs", "3@Extract/stack.mrcs",
             "Extract/sub3.mrc", "Extract/sub4.mrc"]  # fmt: skip
    star = _particles_star(tmp_path / "particles.star", names, dcIdentity=[0, 0, 1, 1, 2], dcState=[1, 0, 1, 0, 1],
                           dcShiftX=[0.5, 0, 0, 0, 0], rlnClassNumber=[5, 5, 6, 6, 7])  # fmt: skip
    data = vol.load_star(star)
    np.testing.assert_array_equal(_all(data)[:, 0], stack[[1, 0, 2, 3, 4]])
    np.testing.assert_array_equal(data.factors[CONTENT], [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(data.factors[TRANSFORM], [1, 0, 1, 0, 1])
    assert data.factors["shift_x"][0] == 0.5
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(data.x))[np.array([4])][0, 0], stack[4])
    # Without _dcIdentity, RELION classes stand in for content.
    star2 = _particles_star(tmp_path / "classes.star", names, rlnClassNumber=[5, 5, 6, 6, 7])
    np.testing.assert_array_equal(vol.load_star(star2).factors[CONTENT], [5, 5, 6, 6, 7])


def test_star_paths_relative_to_a_project_folder(tmp_path, stack):
    (tmp_path / "Extract").mkdir()
    (tmp_path / "Refine3D" / "job001").mkdir(parents=True)
    _write_mrc(tmp_path / "Extract" / "stack.mrcs", stack)
    star = _particles_star(tmp_path / "Refine3D" / "job001" / "run_data.star", ["1@Extract/stack.mrcs"] * 2)
    assert vol.load_star(star).x.shape == (2, 1, 8, 8, 8)


def test_star_bad_inputs(tmp_path, stack):
    _write_mrc(tmp_path / "stack.mrcs", stack)
    star = _particles_star(tmp_path / "p.star", ["1@stack.mrcs", "2@missing.mrcs"])
    with pytest.raises(DataError, match=r"p\.star.*row 2.*missing\.mrcs"):
        vol.load_star(star)
    star = _particles_star(tmp_path / "q.star", ["1@stack.mrcs", "9@stack.mrcs"])
    with pytest.raises(DataError, match=r"row 2.*entry 9.*holds 5"):
        vol.load_star(star)
    star = _particles_star(tmp_path / "r.star", ["stack.mrcs"])
    with pytest.raises(DataError, match="name one entry"):
        vol.load_star(star)
    no_names = tmp_path / "s.star"
    starfile.write({"particles": pd.DataFrame({"rlnCoordinateX": [1.0]})}, no_names)
    with pytest.raises(DataError, match="rlnImageName"):
        vol.load_star(no_names)
    _write_mrc(tmp_path / "other.mrcs", np.zeros((2, 6, 6, 6), np.float32))
    star = _particles_star(tmp_path / "t.star", ["1@stack.mrcs", "1@other.mrcs"])
    with pytest.raises(DataError, match="row 2"):
        vol.load_star(star)


# --------------------------------------------------------------------------- HDF5


def test_h5_round_trip_with_labels(tmp_path, stack):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("volumes", data=stack)
        f.create_dataset("identity", data=np.array([0, 1, 1, 2, 2]))
        f.create_dataset("state", data=np.array([3, 2, 1, 0, 0]))
        f.create_dataset("angle", data=np.linspace(0, 1, 5))
        f.create_dataset("names", data=np.array([b"a"] * 5))
        f.create_group("table")
    data = vol.load_h5(path)
    assert data.x.shape == (5, 1, 8, 8, 8) and not data.in_memory
    np.testing.assert_array_equal(_all(data)[:, 0], stack)
    np.testing.assert_array_equal(data.batch(np.array([4, 1, 2])), stack[[4, 1, 2]][:, None])
    np.testing.assert_array_equal(data.factors[CONTENT], [0, 1, 1, 2, 2])
    np.testing.assert_array_equal(data.factors[TRANSFORM], [3, 2, 1, 0, 0])
    assert set(data.factors) == {CONTENT, TRANSFORM, "angle"}
    copy = pickle.loads(pickle.dumps(data.x))
    np.testing.assert_array_equal(copy[np.array([0, 4])], stack[[0, 4]][:, None])


def test_h5_images_and_only_dataset(tmp_path):
    images = np.random.default_rng(1).standard_normal((6, 5, 7)).astype(np.float32)
    with h5py.File(tmp_path / "i.h5", "w") as f:
        f.create_dataset("stuff", data=images)
    data = vol.load_h5(tmp_path / "i.h5")
    assert data.x.shape == (6, 1, 5, 7)
    np.testing.assert_array_equal(_all(data)[:, 0], images)


def test_h5_bad_inputs(tmp_path, stack):
    with h5py.File(tmp_path / "nc.h5", "w") as f:
        f.create_dataset("volumes", data=np.zeros((2, 8, 8, 6), np.float32))
    with pytest.raises(DataError, match="cubic"):
        vol.load_h5(tmp_path / "nc.h5")
    stack[1, 0, 0, 0] = np.inf
    with h5py.File(tmp_path / "inf.h5", "w") as f:
        f.create_dataset("volumes", data=stack)
    with pytest.raises(DataError, match="sample 1"):
        vol.load_h5(tmp_path / "inf.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match=r"junk\.h5"):
        vol.load_h5(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f.create_dataset("a", data=np.zeros((2, 8, 8, 8)))
        f.create_dataset("b", data=np.zeros((2, 8, 8, 8)))
    with pytest.raises(DataError, match="which dataset"):
        vol.load_h5(tmp_path / "two.h5")


# --------------------------------------------------------------------------- pickle / npy


@pytest.mark.parametrize("form", ["array", "dict", "tuple", "list", "tensor"])
def test_pickle_forms(tmp_path, stack, form):
    content, state = np.array([0, 0, 1, 1, 2]), np.array([1, 0, 1, 0, 1])
    obj = {
        "array": stack,
        "dict": {"subtomograms": stack, "identity": content, "state": state},
        "tuple": (stack, content, state),
        "list": list(stack),
        "tensor": torch.as_tensor(stack),
    }[form]
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(obj))
    data = load_path(path)
    assert data.x.shape == (5, 1, 8, 8, 8)
    np.testing.assert_array_equal(_all(data)[:, 0], stack)
    if form in ("dict", "tuple"):
        np.testing.assert_array_equal(data.factors[CONTENT], content)
        np.testing.assert_array_equal(data.factors[TRANSFORM], state)


def test_pickle_bad_inputs(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=r"bad\.pkl.*unpickle"):
        vol.load_pickle(bad)
    nc = tmp_path / "nc.pkl"
    nc.write_bytes(pickle.dumps(np.zeros((3, 8, 8, 6), np.float32)))
    with pytest.raises(DataError, match="cubic"):
        vol.load_pickle(nc)
    nan = tmp_path / "nan.pkl"
    arr = np.zeros((3, 8, 8, 8), np.float32)
    arr[2, 0, 0, 0] = np.nan
    nan.write_bytes(pickle.dumps(arr))
    with pytest.raises(DataError, match="sample 2"):
        vol.load_pickle(nan)
    ragged = tmp_path / "ragged.pkl"
    ragged.write_bytes(pickle.dumps([np.zeros((8, 8, 8)), np.zeros((6, 6, 6))]))
    with pytest.raises(DataError, match="not one array"):
        vol.load_pickle(ragged)
    keys = tmp_path / "keys.pkl"
    keys.write_bytes(pickle.dumps({"foo": np.zeros((2, 8, 8, 8))}))
    with pytest.raises(DataError, match="no samples"):
        vol.load_pickle(keys)


def test_npy_volumes_through_the_dispatcher(tmp_path, stack):
    np.save(tmp_path / "v.npy", stack)
    np.testing.assert_array_equal(_all(load_path(tmp_path / "v.npy"))[:, 0], stack)
