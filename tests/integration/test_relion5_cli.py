"""A RELION 5 particle set (54 subtomograms, one 3D .mrc each, 7 A voxels, Cs 1.7, in a RELION
project layout) goes through `train` and `analyze`; the per-cluster STAR files keep every block,
row and column of the input with the cluster columns added, and the averages say 7 A."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from dualcontrast.cli.main import main
from dualcontrast.io.mrc import write_volume
from dualcontrast.simulation.phantoms import phantom_maps
from dualcontrast.simulation.simulate import simulate_subtomograms

MODEL = ["--set", "model.content_dim=4", "--set", "model.transform_dim=4", "--set", "model.decoder=conv",
         "--set", "eval.projection=pca", "--set", "train.progress=false", "--batch-size", "16"]


@pytest.fixture
def relion5_project(tmp_path):
    """Extract/job010/particles.star as RELION 5 writes it (general, optics, particles) + subtomograms."""
    # The phantoms (~20 nm) only fit a 16^3 box at 2 nm per voxel; the files then call the voxels
    # 7 A, as the point here is what the outputs say, not the molecules' true size.
    maps = phantom_maps(box=16, voxel_size=2.0, n_states=2)
    vols, _ = simulate_subtomograms(maps, 9, voxel_size=2.0, snr=1.0, seed=0, progress=False)
    n = len(vols)
    assert n >= 50
    names = [f"Extract/job010/Subtomograms/TS_{i % 3 + 1:02d}/{i // 3 + 1}_data.mrc" for i in range(n)]
    for name, v in zip(names, vols, strict=True):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        write_volume(tmp_path / name, v.reshape(16, 16, 16), 7.0)
        write_volume(tmp_path / name.replace("_data.mrc", "_weights.mrc"), np.ones((16, 16, 16)), 7.0)
    rng = np.random.default_rng(0)
    optics = pd.DataFrame({
        "rlnOpticsGroup": [1], "rlnOpticsGroupName": ["optics1"], "rlnSphericalAberration": [1.7],
        "rlnVoltage": [300.0], "rlnTomoTiltSeriesPixelSize": [1.75], "rlnCtfDataAreCtfPremultiplied": [1],
        "rlnImageDimensionality": [3], "rlnTomoSubtomogramBinning": [4.0], "rlnImagePixelSize": [7.0],
        "rlnImageSize": [16], "rlnAmplitudeContrast": [0.1],
    })  # fmt: skip
    particles = pd.DataFrame({
        "rlnTomoName": [f"TS_{i % 3 + 1:02d}" for i in range(n)],
        "rlnTomoParticleId": [i // 3 + 1 for i in range(n)],
        **{f"rlnCenteredCoordinate{a}Angst": rng.uniform(-2000, 2000, n).round(3) for a in "XYZ"},
        **{f"rlnTomoSubtomogram{a}": rng.uniform(-180, 180, n).round(2) for a in ("Rot", "Tilt", "Psi")},
        "rlnOpticsGroup": np.ones(n, int),
        "rlnImageName": names,
        "rlnCtfImage": [s.replace("_data.mrc", "_weights.mrc") for s in names],
        "rlnTomoParticleName": [f"TS_{i % 3 + 1:02d}/{i // 3 + 1}" for i in range(n)],
    })  # fmt: skip
    star = tmp_path / "Extract" / "job010" / "particles.star"
    starfile.write({"general": {"rlnTomoSubTomosAre2DStacks": 0}, "optics": optics, "particles": particles}, star)
    return star


def test_relion5_set_trains_analyzes_and_exports_with_all_columns(relion5_project, tmp_path):
    star = relion5_project
    original = starfile.read(star, always_dict=True)
    run = tmp_path / "run"
    assert main(["train", "--config", "configs/subtomo.yaml", "--data", str(star), "--epochs", "1",
                 "-o", str(run), *MODEL]) == 0  # fmt: skip
    assert main(["analyze", str(run), "--k", "2", "--k-z", "2", "--projection", "none", "--max-particles", "60",
                 "--iterations", "1", "--rotations", "50"]) == 0  # fmt: skip
    doc = json.loads((run / "analysis" / "analysis.json").read_text())
    assert not (run / "analysis" / "particles").exists()  # the input's images are referenced, not copied
    total = 0
    for name, entry in doc["structures"].items():
        with mrcfile.open(run / "analysis" / "averages" / f"{name}.mrc") as m:
            assert float(m.voxel_size.x) == pytest.approx(7.0)
        blocks = starfile.read(run / "analysis" / "star" / f"{name}.star", always_dict=True)
        assert list(blocks) == ["general", "optics", "particles"]
        assert blocks["general"] == original["general"]
        pd.testing.assert_frame_equal(blocks["optics"], original["optics"])
        rows = blocks["particles"]
        assert len(rows) == entry["n_particles"]
        assert set(original["particles"].columns) <= set(rows.columns)
        assert {"rlnClassNumber", "dcContentCluster", "dcSampleId"} <= set(rows.columns)
        # Every particle aligned: the pose goes to dc* columns, as the input has rlnTomoSubtomogram* frames.
        assert {"dcAngleRot", "dcAngleTilt", "dcAnglePsi", "dcOriginXAngst"} <= set(rows.columns)
        assert "rlnAngleRot" not in rows.columns
        source = original["particles"].iloc[rows["dcSampleId"].to_numpy()].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows[source.columns], source)
        if name.startswith("content_cluster"):
            total += len(rows)
            assert set(rows["rlnClassNumber"]) == {int(name.rsplit("_", 1)[1]) + 1}
    assert total == len(original["particles"])
    # For another RELION project, image names are rewritten relative to it (and still find the files).
    other = tmp_path / "other_project"
    other.mkdir()
    assert main(["analyze", str(run), "--k", "2", "--k-z", "1", "--projection", "none", "--max-particles", "30",
                 "--iterations", "1", "--rotations", "50", "--relion-project", str(other)]) == 0  # fmt: skip
    first = next(iter(json.loads((run / "analysis" / "analysis.json").read_text())["structures"]))
    rows = starfile.read(run / "analysis" / "star" / f"{first}.star")["particles"]
    for column in ("rlnImageName", "rlnCtfImage"):
        for name, sample in zip(rows[column], rows["dcSampleId"], strict=True):
            assert name.startswith("../")
            assert (other / name).resolve() == (tmp_path / original["particles"][column].iloc[sample]).resolve()
