"""The Python API (dualcontrast.api) and the array layouts the data layer accepts.

- ``Dataset(x=...)`` takes every layout a data file may hold, through the loaders' rules;
- ``Run``: embed (any layout, paths, log-variances), decode, transfer grid orientation;
- ``DualContrast``: a scikit-learn estimator (clone, get/set_params, not-fitted error) whose
  run directory the CLI can read back;
- bad input: one-line DualContrastError naming the argument; ``import dualcontrast`` stays
  torch-free.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import dualcontrast
from dualcontrast.data import Dataset, load_data
from dualcontrast.errors import ConfigError, DataError, DualContrastError, RunDirError

FAST = {"eval.projection": "pca", "eval.figures": False}


@pytest.fixture(scope="module")
def images():
    """120 grey 28x28 images as (N, H, W) uint8, with their shape classes."""
    data = load_data(name="shapes2d", params={"n_train_per_cell": 6, "n_test_per_cell": 1}).train
    return (data.x[:, 0] * 255).round().astype(np.uint8), data.factors["content"]


@pytest.fixture(scope="module")
def fitted(images, tmp_path_factory):
    x, y = images
    est = dualcontrast.DualContrast(
        epochs=1, batch_size=40, content_dim=4, transform_dim=3, progress=False, config=FAST,
        run_dir=tmp_path_factory.mktemp("api") / "run",
    )  # fmt: skip
    return est.fit(x, y)


# --------------------------------------------------------------------------- data layer


@pytest.mark.parametrize(
    ("shape", "dtype", "sample_shape"),
    [
        ((4, 20, 20), np.uint8, (1, 20, 20)),
        ((4, 20, 20, 1), np.float64, (1, 20, 20)),
        ((4, 20, 20, 3), np.uint8, (3, 20, 20)),
        ((4, 20, 20, 4), np.float32, (3, 20, 20)),
        ((4, 3, 20, 20), np.uint16, (3, 20, 20)),
        ((4, 12, 12, 12), np.float32, (1, 12, 12, 12)),
    ],
)
def test_dataset_takes_every_layout_a_file_may_hold(shape, dtype, sample_shape):
    raw = np.full(shape, np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 0.5, dtype=dtype)
    data = Dataset(x=raw)
    assert data.sample_shape == sample_shape and data.x.dtype == np.float32
    # Integers are scaled to [0, 1] exactly as the file loaders do.
    assert data.x.max() == (1.0 if np.issubdtype(dtype, np.integer) else 0.5)


def test_dataset_keeps_a_float32_stack_in_layout_without_copy():
    x = np.zeros((5, 1, 16, 16), np.float32)
    assert Dataset(x=x).x is x


def test_dataset_refuses_what_the_loader_refuses():
    with pytest.raises(DataError, match="not an image or volume stack"):
        Dataset(x=np.zeros((5, 28), np.float32))
    with pytest.raises(DataError, match="cannot tell whether"):
        Dataset(x=np.zeros((5, 3, 4, 3), np.uint8))


# --------------------------------------------------------------------------- Run


def test_embed_gives_the_same_codes_for_every_layout_and_a_path(fitted, images, tmp_path):
    x, _ = images
    run = fitted.run_
    c, z = run.embed(x)
    assert c.shape == (len(x), 4) and z.shape == (len(x), 3)
    np.save(tmp_path / "x.npy", x)
    for same in (x / 255.0, x[..., None], x[:, None], tmp_path / "x.npy", str(tmp_path / "x.npy")):
        c2, z2 = run.embed(same)
        np.testing.assert_allclose(c2, c, atol=1e-5)
        np.testing.assert_allclose(z2, z, atol=1e-5)
    c3, z3, c_logvar, z_logvar = run.embed(x[:7], logvar=True)
    np.testing.assert_allclose(z3, z[:7], atol=1e-5)
    assert c_logvar.shape == (7, 4) and z_logvar.shape == (7, 3)
    np.testing.assert_allclose(c3, c[:7], atol=1e-5)


def test_transfer_takes_content_from_the_first_and_transformation_from_the_second(fitted, images):
    x, _ = images
    run = fitted.run_
    grid = run.transfer(x[:4], x[10:13])
    assert grid.shape == (3, 4, 1, 28, 28)
    c, _ = run.embed(x[:4])
    _, z = run.embed(x[10:13])
    np.testing.assert_allclose(grid[2, 1], run.decode(c[1:2], z[2:3])[0], atol=1e-5)
    assert not np.allclose(grid[0, 0], grid[0, 1])  # columns differ in content


def test_load_run_reads_config_metrics_and_model(fitted, images):
    run = dualcontrast.load_run(fitted.run_dir_, device="cpu")
    assert run.config.model.content_dim == 4 and run.config.train.epochs == 1
    assert {"d_c_c", "d_c_z"} <= set(run.metrics["scores"])  # y was given: scores exist
    assert run.decode(*run.embed(images[0][:3])).shape == (3, 1, 28, 28)


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and isinstance(error.value, DualContrastError)
    return text


def test_bad_input_is_one_line_naming_the_argument(fitted):
    run = fitted.run_
    with pytest.raises(DataError) as e:
        run.embed(np.zeros((3, 32, 32), np.float32))
    assert "(1, 32, 32)" in one_line(e) and "(1, 28, 28)" in one_line(e)
    with pytest.raises(DataError) as e:
        run.transfer(np.zeros((3, 28)), np.zeros((3, 28, 28)))
    assert one_line(e).startswith("content_images:")
    bad = np.zeros((3, 28, 28), np.float32)
    bad[1, 3, 3] = np.nan
    with pytest.raises(DataError) as e:
        run.embed(bad)
    assert "sample 1" in one_line(e)
    with pytest.raises(DataError) as e:
        run.decode(np.zeros((2, 5)), np.zeros((2, 3)))
    assert "(N, 4)" in one_line(e)
    with pytest.raises(DataError) as e:
        run.decode(np.zeros((2, 4)), np.zeros((3, 3)))
    one_line(e)
    with pytest.raises(DataError) as e:
        run.embed(fitted.run_dir_ / "missing.npy")
    assert "no such file" in one_line(e)
    with pytest.raises(RunDirError) as e:
        dualcontrast.load_run(fitted.run_dir_ / "nope")
    one_line(e)


# --------------------------------------------------------------------------- estimator


def test_estimator_follows_sklearn_conventions(fitted):
    est = dualcontrast.DualContrast(epochs=3, config={"loss": {"gamma_c": 0.02}})
    twin = clone(est)  # clone itself checks that __init__ stores each argument unchanged
    assert twin.get_params() == est.get_params()
    assert twin.set_params(epochs=5).epochs == 5
    with pytest.raises(NotFittedError):
        est.transform(np.zeros((2, 28, 28)))
    assert clone(fitted).get_params() == fitted.get_params()
    assert not hasattr(clone(fitted), "run_")


def test_estimator_run_is_a_run_directory_the_cli_reads(fitted, images):
    from dualcontrast.cli.main import main

    assert main(["evaluate", str(fitted.run_dir_), "--device", "cpu"]) == 0
    c, z = fitted.transform(images[0][:5])
    assert c.shape == (5, 4) and z.shape == (5, 3)


def test_estimator_refuses_bad_input_before_writing(fitted, images, tmp_path):
    x, y = images
    before = (fitted.run_dir_ / "config.yaml").read_text()
    with pytest.raises(RunDirError):  # an existing run is kept unless overwrite=True
        dualcontrast.DualContrast(epochs=1, batch_size=40, run_dir=fitted.run_dir_, config=FAST).fit(x)
    assert (fitted.run_dir_ / "config.yaml").read_text() == before
    with pytest.raises(DataError) as e:
        dualcontrast.DualContrast(run_dir=tmp_path / "a").fit(x, y[:3])
    assert one_line(e).startswith("y:")
    with pytest.raises(DataError) as e:
        dualcontrast.DualContrast(run_dir=tmp_path / "b").fit(np.zeros((4, 5)))
    assert one_line(e).startswith("X:")
    with pytest.raises(ConfigError) as e:
        dualcontrast.DualContrast(run_dir=tmp_path / "c", config={"train.epochz": 2}).fit(x)
    assert "train.epochz" in one_line(e)
    assert not any(tmp_path.iterdir())


def test_config_mapping_takes_nested_and_dotted_keys():
    est = dualcontrast.DualContrast(epochs=4, config={"loss": {"gamma_c": 0.5}, "loss.gamma_z": 0.25})
    cfg = est._resolved_config()
    assert (cfg.loss.gamma_c, cfg.loss.gamma_z, cfg.train.epochs) == (0.5, 0.25, 4)
    # Arguments left None keep what config says.
    assert dualcontrast.DualContrast(config={"train.epochs": 7})._resolved_config().train.epochs == 7


def test_import_dualcontrast_stays_free_of_torch():
    code = "import sys, dualcontrast; assert 'torch' not in sys.modules; assert 'load_run' in dir(dualcontrast)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_estimator_fits_a_file_and_records_it_in_the_config(images, tmp_path):
    x, y = images
    path = tmp_path / "stack.npz"
    np.savez(path, x=x[..., None], y=y)  # channels-last uint8, labels as the loader reads them
    est = dualcontrast.DualContrast(
        epochs=1, batch_size=40, content_dim=4, transform_dim=3, progress=False, evaluate=False,
        run_dir=tmp_path / "run",
    ).fit(path)  # fmt: skip
    assert est.run_.config.data.path == str(path)
    assert not (tmp_path / "run" / "data.npz").exists()  # the file itself is the record
    c, z = est.transform(path)
    assert c.shape == (len(x), 4) and z.shape == (len(x), 3)
    with pytest.raises(DataError) as e:
        dualcontrast.DualContrast(run_dir=tmp_path / "other").fit(path, y)
    assert "labels (y)" in one_line(e)
