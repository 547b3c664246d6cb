"""SimCLR, Harmony and SpatialVAE end to end through ``dualcontrast train`` (tiny built-in data)."""

from __future__ import annotations

import json

import pytest

NAMES = ["simclr", "simclr-gen", "harmony", "spatial-vae"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", NAMES)
def test_cli_train_writes_metrics(name, tmp_path):
    from dualcontrast.cli.main import main

    out = tmp_path / name
    args = ["train", "--model", name, "--epochs", "1", "-q", "-o", str(out)]
    for s in (
        "data.max_samples=200",
        "data.params.n_train_per_cell=20",
        "data.params.n_test_per_cell=10",
        "eval.projection=pca",
        "eval.figures=false",  # matplotlib dominates the run time; unit/models/ tests the grid
        "train.progress=false",
    ):
        args += ["--set", s]
    if name == "spatial-vae":
        args += ["--set", "model.params.hidden=64"]
    assert main(args) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["model"] == name
    assert {"d_c_c", "d_c_z", "d_z_z", "d_z_c"} <= set(doc["scores"])
