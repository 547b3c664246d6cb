"""2D image loaders: every format round-trips, and every bad input fails naming its file."""

from __future__ import annotations

import gzip
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualcontrast.data.base import CONTENT, TRANSFORM, Dataset, DataSplits
from dualcontrast.data.images import (
    image_folder_classes,
    load_idx,
    load_image_folder,
    load_npy,
    load_npz,
)
from dualcontrast.data.loading import load_path
from dualcontrast.errors import DataError

MNIST_NPZ = Path(__file__).parents[3] / ".." / "shared" / "datasets" / "mnist.npz"


def _uint8_stack(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@contextmanager
def _raises_naming(path: Path, *words: str):
    """Expect a DataError whose message names ``path`` (in full) and holds ``words``."""
    with pytest.raises(DataError) as info:
        yield
    message = str(info.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, message


# --------------------------------------------------------------------------- .npz


def test_npz_mnist_layout_round_trips(tmp_path):
    x_train, x_test = _uint8_stack((6, 8, 8), 1), _uint8_stack((3, 8, 8), 2)
    y_train, y_test = np.array([0, 1, 2, 3, 4, 5], np.uint8), np.array([9, 8, 7], np.uint8)
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

    splits = load_npz(path)

    assert isinstance(splits, DataSplits) and splits.name == "digits"
    assert splits.train.x.shape == (6, 1, 8, 8) and splits.train.x.dtype == np.float32
    np.testing.assert_allclose(splits.train.x[:, 0], x_train / 255.0, rtol=1e-6)
    np.testing.assert_allclose(splits.test.x[:, 0], x_test / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(splits.train.labels(CONTENT), y_train)
    np.testing.assert_array_equal(splits.test.labels(CONTENT), y_test)


def test_npz_single_array_with_labels_transform_and_extra_factor(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 10, 10, 3)).astype(np.float64)
    path = tmp_path / "set.npz"
    np.savez(
        path,
        images=x,
        labels=np.array([1.0, 0, 1, 2, 0]),
        transform=np.array([3, 3, 1, 0, 2]),
        angle=np.linspace(0, 1, 5),
        note=np.zeros((2, 2)),
    )

    data = load_npz(path)

    assert isinstance(data, Dataset)
    assert data.x.shape == (5, 3, 10, 10) and data.x.dtype == np.float32
    np.testing.assert_allclose(data.x, x.transpose(0, 3, 1, 2), rtol=1e-6)
    np.testing.assert_array_equal(data.labels(CONTENT), [1, 0, 1, 2, 0])
    assert data.labels(CONTENT).dtype == np.int64
    np.testing.assert_array_equal(data.labels(TRANSFORM), [3, 3, 1, 0, 2])
    np.testing.assert_allclose(data.labels("angle"), np.linspace(0, 1, 5))
    assert "note" not in data.factors


def test_npz_positional_arrays(tmp_path):
    x = _uint8_stack((4, 6, 6))
    path = tmp_path / "pos.npz"
    np.savez(path, x, np.array([0, 1, 0, 1]))

    data = load_npz(path)

    np.testing.assert_allclose(data.x[:, 0], x / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.labels(CONTENT), [0, 1, 0, 1])


def test_npz_unknown_layout_lists_keys(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, pictures=np.zeros((2, 5, 5)), classes=np.zeros(2))
    with _raises_naming(path, "pictures", "classes"):
        load_npz(path)


def test_npz_labels_length_mismatch(tmp_path):
    path = tmp_path / "short.npz"
    np.savez(path, x=np.zeros((4, 6, 6), np.float32), y=np.arange(3))
    with _raises_naming(path, "3 labels", "4 samples"):
        load_npz(path)


def test_npz_mnist_layout_label_mismatch_and_one_sided_labels(tmp_path):
    path = tmp_path / "bad_mnist.npz"
    np.savez(
        path, x_train=np.zeros((4, 6, 6)), y_train=np.arange(5), x_test=np.zeros((2, 6, 6)), y_test=[0, 1]
    )
    with _raises_naming(path, "y_train", "5 labels"):
        load_npz(path)
    one_sided = tmp_path / "one_sided.npz"
    np.savez(one_sided, x_train=np.zeros((4, 6, 6)), y_train=np.arange(4), x_test=np.zeros((2, 6, 6)))
    with _raises_naming(one_sided, "y_test"):
        load_npz(one_sided)


def test_npz_nan_names_file_and_sample(tmp_path):
    x = np.zeros((4, 6, 6), np.float32)
    x[2, 1, 1] = np.inf
    path = tmp_path / "inf.npz"
    np.savez(path, x=x)
    with _raises_naming(path, "sample 2"):
        load_npz(path)


@pytest.mark.parametrize("content", [b"", b"not a zip archive at all"])
def test_npz_empty_or_garbage(tmp_path, content):
    path = tmp_path / "broken.npz"
    path.write_bytes(content)
    with _raises_naming(path):
        load_npz(path)


# --------------------------------------------------------------------------- .npy

# raw shape -> function giving the expected (N, C, ...) float array from the raw float array
NPY_LAYOUTS = {
    (3, 7, 9): lambda a: a[:, None],
    (3, 7, 9, 1): lambda a: a.transpose(0, 3, 1, 2),
    (3, 7, 9, 3): lambda a: a.transpose(0, 3, 1, 2),
    (3, 7, 9, 4): lambda a: a[..., :3].transpose(0, 3, 1, 2),
    (3, 1, 7, 9): lambda a: a,
    (3, 3, 7, 9): lambda a: a,
    (2, 6, 6, 6): lambda a: a[:, None],
    (2, 1, 6, 6, 6): lambda a: a,
}


@pytest.mark.parametrize("shape", list(NPY_LAYOUTS), ids=str)
@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "mmap"])
def test_npy_shape_rules_round_trip(tmp_path, shape, lazy):
    raw = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    path = tmp_path / "stack.npy"
    np.save(path, raw)
    expected = NPY_LAYOUTS[shape](raw)

    data = load_npy(path, mmap_threshold_bytes=0 if lazy else 2**30)

    assert data.x.shape == expected.shape
    assert data.in_memory is not lazy
    np.testing.assert_array_equal(data.batch(np.arange(len(data))), expected)
    np.testing.assert_array_equal(data.batch(np.array([1, 0])), expected[[1, 0]])
    np.testing.assert_array_equal(np.asarray(data.x[1]), expected[1])


def test_npy_uint8_scaled_in_memory_and_lazily(tmp_path):
    raw = _uint8_stack((4, 5, 5, 3))
    path = tmp_path / "rgb.npy"
    np.save(path, raw)
    expected = raw.transpose(0, 3, 1, 2).astype(np.float32) / 255
    for threshold in (2**30, 0):
        data = load_npy(path, mmap_threshold_bytes=threshold)
        np.testing.assert_allclose(data.batch(np.arange(4)), expected, rtol=1e-6)
        assert data.batch(np.arange(4)).max() <= 1.0


def test_npy_lazy_subset_stays_lazy(tmp_path):
    raw = np.arange(6 * 8 * 8, dtype=np.float32).reshape(6, 8, 8)
    path = tmp_path / "big.npy"
    np.save(path, raw)
    data = load_npy(path, mmap_threshold_bytes=0)
    part = data.subset(np.array([5, 2]))
    assert not part.in_memory
    np.testing.assert_array_equal(part.batch(np.array([0, 1])), raw[[5, 2]][:, None])


@pytest.mark.parametrize(
    "shape",
    [(5, 8), (2, 5, 8, 8), (2, 8, 9, 10), (2, 3, 8, 8, 8), (2, 1, 8, 8, 9), (1, 2, 3, 4, 5, 6), (2, 3, 8, 3)],
    ids=str,
)
def test_npy_bad_shape_names_file_and_shape(tmp_path, shape):
    path = tmp_path / "odd.npy"
    np.save(path, np.zeros(shape, np.float32))
    with _raises_naming(path, str(shape)):
        load_npy(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_npy_non_finite_names_file_and_sample(tmp_path, bad):
    raw = np.zeros((5, 6, 6), np.float32)
    raw[3, 2, 2] = bad
    path = tmp_path / "nan.npy"
    np.save(path, raw)
    with _raises_naming(path, "sample 3"):
        load_npy(path)
    # Memory-mapped stacks are checked as batches are read.
    lazy = load_npy(path, mmap_threshold_bytes=0)
    lazy.batch(np.array([0, 1, 4]))
    with _raises_naming(path, "sample 3"):
        lazy.batch(np.array([4, 3]))


def test_npy_empty_file_garbage_and_no_samples(tmp_path):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    with _raises_naming(empty, "empty"):
        load_npy(empty)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x00" * 100)
    with _raises_naming(garbage):
        load_npy(garbage)
    none = tmp_path / "none.npy"
    np.save(none, np.zeros((0, 6, 6), np.float32))
    with _raises_naming(none, "no samples"):
        load_npy(none)


def test_npy_non_numeric_dtype(tmp_path):
    path = tmp_path / "complex.npy"
    np.save(path, np.zeros((2, 6, 6), np.complex64))
    with _raises_naming(path, "complex64"):
        load_npy(path)


# --------------------------------------------------------------------------- IDX


def _idx_bytes(magic: int, array: np.ndarray) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path: Path, blob: bytes) -> Path:
    path.write_bytes(gzip.compress(blob) if path.name.endswith(".gz") else blob)
    return path


def _write_mnist_folder(folder: Path, suffix: str = "", sep: str = "-") -> dict[str, np.ndarray]:
    folder.mkdir(exist_ok=True)
    arrays = {
        "train-images": _uint8_stack((5, 4, 6), 1),
        "train-labels": np.array([3, 1, 4, 1, 5], np.uint8),
        "t10k-images": _uint8_stack((2, 4, 6), 2),
        "t10k-labels": np.array([9, 2], np.uint8),
    }
    for name, array in arrays.items():
        kind = "idx3" if "images" in name else "idx1"
        magic = 0x803 if "images" in name else 0x801
        _write(folder / f"{name}{sep}{kind}-ubyte{suffix}", _idx_bytes(magic, array))
    return arrays


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["plain", "gzip"])
def test_idx_folder_of_four_files(tmp_path, suffix):
    arrays = _write_mnist_folder(tmp_path / "mnist", suffix)

    splits = load_idx(tmp_path / "mnist")

    assert isinstance(splits, DataSplits) and splits.name == "mnist"
    assert splits.train.x.shape == (5, 1, 4, 6)
    np.testing.assert_allclose(splits.train.x[:, 0], arrays["train-images"] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(splits.test.x[:, 0], arrays["t10k-images"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(splits.train.labels(CONTENT), arrays["train-labels"])
    np.testing.assert_array_equal(splits.test.labels(CONTENT), arrays["t10k-labels"])


@pytest.mark.parametrize("sep", ["-", "."])
@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["plain", "gzip"])
def test_idx_single_images_file_finds_its_labels(tmp_path, sep, suffix):
    arrays = _write_mnist_folder(tmp_path, suffix, sep)

    data = load_idx(tmp_path / f"t10k-images{sep}idx3-ubyte{suffix}")

    assert isinstance(data, Dataset)
    np.testing.assert_allclose(data.x[:, 0], arrays["t10k-images"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.labels(CONTENT), arrays["t10k-labels"])


def test_idx_images_without_labels_file(tmp_path):
    path = _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(0x803, _uint8_stack((3, 5, 5))))
    data = load_idx(path)
    assert len(data) == 3 and CONTENT not in data.factors


def test_idx_truncated(tmp_path):
    blob = _idx_bytes(0x803, _uint8_stack((3, 5, 5)))
    for name, content in [("a-images-idx3-ubyte", blob[:-7]), ("b-images-idx3-ubyte", blob[:10])]:
        path = _write(tmp_path / name, content)
        with _raises_naming(path, "truncated"):
            load_idx(path)
    gz = _write(tmp_path / "c-images-idx3-ubyte.gz", blob[:-1])
    with _raises_naming(gz, "truncated"):
        load_idx(gz)


def test_idx_wrong_magic_and_empty(tmp_path):
    wrong = _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(0x801, np.arange(4)))
    with _raises_naming(wrong, "magic", "0x00000801"):
        load_idx(wrong)
    empty = _write(tmp_path / "t10k-images-idx3-ubyte", b"")
    with _raises_naming(empty, "empty"):
        load_idx(empty)


def test_idx_labels_count_mismatch_names_labels_file(tmp_path):
    images = _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(0x803, _uint8_stack((3, 5, 5))))
    labels = _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(0x801, np.arange(4)))
    with _raises_naming(labels, "4 labels", "3 images"):
        load_idx(images)


def test_idx_labels_file_with_images_magic(tmp_path):
    images = _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(0x803, _uint8_stack((3, 5, 5))))
    labels = _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(0x803, _uint8_stack((3, 5, 5))))
    with _raises_naming(labels, "magic"):
        load_idx(images)
    with _raises_naming(labels, "labels file"):
        load_idx(labels)


def test_idx_folder_with_two_train_files_is_refused(tmp_path):
    _write_mnist_folder(tmp_path)
    _write(tmp_path / "extra-train-images-idx3-ubyte", _idx_bytes(0x803, _uint8_stack((2, 4, 6))))
    with _raises_naming(tmp_path, "train"):
        load_idx(tmp_path)


# --------------------------------------------------------------------------- image folders


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_grey_folder_round_trips(tmp_path):
    images = [_uint8_stack((6, 7), s) for s in range(3)]
    for i, image in enumerate(images):
        _save(tmp_path / f"img{i}.png", image)
    (tmp_path / "readme.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"junk")

    data = load_image_folder(tmp_path)

    assert data.x.shape == (3, 1, 6, 7) and data.x.dtype == np.float32
    np.testing.assert_allclose(data.x[:, 0], np.stack(images) / 255.0, rtol=1e-6)
    assert data.factors == {}
    assert image_folder_classes(tmp_path) == []


def test_rgb_folder_with_rgba_and_grey_images(tmp_path):
    rgb = _uint8_stack((6, 7, 3), 1)
    rgba = _uint8_stack((6, 7, 4), 2)
    grey = _uint8_stack((6, 7), 3)
    _save(tmp_path / "a.png", rgb)
    _save(tmp_path / "b.png", rgba)
    _save(tmp_path / "c.bmp", grey)

    data = load_image_folder(tmp_path)

    assert data.x.shape == (3, 3, 6, 7)
    np.testing.assert_allclose(data.x[0], rgb.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(data.x[1], rgba[..., :3].transpose(2, 0, 1) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(data.x[2], np.stack([grey] * 3) / 255.0, rtol=1e-6)


def test_sixteen_bit_and_float_tiff_images(tmp_path):
    deep = (np.arange(30).reshape(5, 6) * 2000).astype(np.uint16)
    _save(tmp_path / "a.png", deep)
    floats = np.linspace(-1, 2, 30, dtype=np.float32).reshape(5, 6)
    _save(tmp_path / "b.tif", floats)

    data = load_image_folder(tmp_path)

    assert data.x.shape == (2, 1, 5, 6)
    np.testing.assert_allclose(data.x[0, 0], deep / 65535.0, rtol=1e-6)
    np.testing.assert_allclose(data.x[1, 0], floats)


def test_class_subfolders_become_content_labels(tmp_path):
    for seed, (cls, count) in enumerate([("zebra", 2), ("ant", 1), ("moth", 3)]):
        for i in range(count):
            _save(tmp_path / cls / f"{i}.png", _uint8_stack((5, 5), 10 * seed + i))
    (tmp_path / "empty_class").mkdir()

    data = load_image_folder(tmp_path)

    assert image_folder_classes(tmp_path) == ["ant", "moth", "zebra"]
    np.testing.assert_array_equal(data.labels(CONTENT), [0, 1, 1, 1, 2, 2])
    expected_first_zebra = np.asarray(Image.open(tmp_path / "zebra" / "0.png")) / 255.0
    np.testing.assert_allclose(data.x[4, 0], expected_first_zebra, rtol=1e-6)


def test_mismatched_sizes_name_file_and_both_sizes(tmp_path):
    _save(tmp_path / "a.png", _uint8_stack((6, 7)))
    odd = _save(tmp_path / "b.png", _uint8_stack((8, 7)))
    with _raises_naming(odd, "8x7", "6x7", "a.png"):
        load_image_folder(tmp_path)


def test_empty_folder_and_folder_without_images(tmp_path):
    with _raises_naming(tmp_path, "no images"):
        load_image_folder(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    with _raises_naming(tmp_path, "no images"):
        load_image_folder(tmp_path)


def test_unreadable_image_is_named(tmp_path):
    _save(tmp_path / "a.png", _uint8_stack((6, 7)))
    broken = tmp_path / "b.png"
    broken.write_bytes(b"\x89PNG but then nothing useful")
    with _raises_naming(broken, "cannot read"):
        load_image_folder(tmp_path)
    broken.write_bytes((tmp_path / "a.png").read_bytes()[:60])
    with _raises_naming(broken, "cannot read"):
        load_image_folder(tmp_path)


def test_nan_in_float_tiff_names_file(tmp_path):
    _save(tmp_path / "a.tif", np.zeros((5, 6), np.float32))
    values = np.zeros((5, 6), np.float32)
    values[1, 2] = np.nan
    bad = _save(tmp_path / "b.tif", values)
    with _raises_naming(bad, "NaN"):
        load_image_folder(tmp_path)


def test_images_at_top_and_in_subfolders_is_refused(tmp_path):
    _save(tmp_path / "a.png", _uint8_stack((5, 5)))
    _save(tmp_path / "cls" / "b.png", _uint8_stack((5, 5)))
    with _raises_naming(tmp_path, "sub-folder"):
        load_image_folder(tmp_path)


# --------------------------------------------------------------------------- dispatch


def test_load_path_dispatches_to_image_loaders(tmp_path):
    # load_path imports the volume loaders too; until they exist this check cannot run.
    pytest.importorskip("dualcontrast.data.volumes", reason="load_path needs data/volumes.py")
    npz = tmp_path / "d.npz"
    np.savez(npz, x=_uint8_stack((3, 6, 6)), y=[0, 1, 2])
    assert isinstance(load_path(npz), Dataset)
    npy = tmp_path / "d.npy"
    np.save(npy, _uint8_stack((3, 6, 6)))
    assert load_path(npy).x.shape == (3, 1, 6, 6)
    _write_mnist_folder(tmp_path / "idx", ".gz")
    assert isinstance(load_path(tmp_path / "idx"), DataSplits)
    assert len(load_path(tmp_path / "idx" / "train-images-idx3-ubyte.gz")) == 5
    _save(tmp_path / "pics" / "cat" / "1.png", _uint8_stack((5, 5)))
    _save(tmp_path / "pics" / "dog" / "1.png", _uint8_stack((5, 5)))
    np.testing.assert_array_equal(load_path(tmp_path / "pics").labels(CONTENT), [0, 1])


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_NPZ.exists(), reason=f"MNIST not found at {MNIST_NPZ}")
def test_real_mnist_npz():
    splits = load_npz(MNIST_NPZ.resolve())
    assert (len(splits.train), len(splits.test)) == (60000, 10000)
    assert splits.sample_shape == (1, 28, 28)
    assert set(np.unique(splits.train.labels(CONTENT))) == set(range(10))
    assert 0.0 <= splits.train.x.min() and splits.train.x.max() <= 1.0
