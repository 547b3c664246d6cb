"""The cryo-ET workflow end to end on tiny data: simulate -> train (3D) -> evaluate -> analyze."""

import json

import mrcfile
import numpy as np
import starfile

from dualcontrast.cli.main import main

# 16^3 boxes at 2 nm per voxel hold the phantoms (~26 nm) and keep everything quick.
SMALL = ["--set", "data.params.box=16", "--set", "data.params.voxel_size=2.0", "--set", "data.params.n_per_state=8",
         "--set", "data.params.progress=false"]
MODEL = ["--set", "model.content_dim=6", "--set", "model.transform_dim=6", "--set", "model.decoder=conv",
         "--set", "eval.projection=pca", "--set", "train.progress=false", "--batch-size", "16"]


def test_simulate_writes_volumes_ground_truth_and_maps(tmp_path):
    out = tmp_path / "sim.h5"
    assert main(["simulate", "-o", str(out), "--n-per-map", "3", "--box", "16", "--voxel-size", "2",
                 "--states", "2"]) == 0
    maps = np.load(tmp_path / "sim_maps.npz")
    assert maps["maps"].shape == (6, 16, 16, 16)
    assert (tmp_path / "sim_groundtruth.csv").exists()
    from dualcontrast.data import load_path

    data = load_path(out)
    assert data.x.shape == (18, 1, 16, 16, 16)
    assert sorted(np.unique(data.factors["content"])) == [0, 1, 2]
    # Refuses to overwrite without --overwrite, naming the file.
    assert main(["simulate", "-o", str(out), "--n-per-map", "3", "--box", "16", "--voxel-size", "2"]) == 2


def test_simulate_mrcs_with_star(tmp_path):
    out = tmp_path / "sim.mrcs"
    assert main(["simulate", "-o", str(out), "--n-per-map", "2", "--box", "16", "--voxel-size", "2",
                 "--states", "1", "--tilt-range", "-60", "60"]) == 0
    with mrcfile.open(out) as m:
        assert m.data.shape == (6, 16, 16, 16)
    star = starfile.read(tmp_path / "sim.star")
    assert len(star["particles"]) == 6


def test_train_and_analyze_subtomograms(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--config", "configs/subtomo.yaml", "--epochs", "1", "-o", str(run), *SMALL, *MODEL]) == 0
    scores = json.loads((run / "metrics.json").read_text())["scores"]
    assert {"d_c_c", "d_c_z", "within_content"} <= set(scores)
    assert main(["analyze", str(run), "--k", "2", "--k-z", "2", "--projection", "pca", "--max-particles", "12",
                 "--iterations", "1", "--rotations", "100"]) == 0
    doc = json.loads((run / "analysis" / "analysis.json").read_text())
    assert doc["content_clusters"]["k"] == 2 and "ari" in doc["content_clusters"]
    assert doc["content_clusters"]["method"] == "spectral, l2" and "eigengap" in doc["content_clusters"]
    assert "ari" in doc["conformation_clusters"]
    structures = doc["structures"]
    clusters = np.load(run / "analysis" / "clusters.npz")
    # One structure per non-empty cluster (a GMM component of an untrained model may stay empty).
    expected = {f"{level}_{c}" for level in ("content_cluster", "conformation_cluster")
                for c in np.unique(clusters[level])}
    assert set(structures) == expected
    for name, entry in structures.items():
        assert 0.0 < entry["truth"]["auc_fsc"] <= 1.0
        with mrcfile.open(run / "analysis" / "averages" / f"{name}.mrc") as m:
            assert float(m.voxel_size.x) == 20.0  # the data's 2 nm, not a default
        star = starfile.read(run / "analysis" / "star" / f"{name}.star")
        assert len(star["particles"]) == entry["n_particles"]
        optics = star["optics"].iloc[0]
        assert (optics["rlnImagePixelSize"], optics["rlnSphericalAberration"]) == (20.0, 1.7)
        # One 3D .mrc per particle, named relative to the run directory (RELION's project dir here).
        first = star["particles"]["rlnImageName"].iloc[0]
        assert first.startswith("analysis/particles/") and first.endswith(".mrc")
        with mrcfile.open(run / first) as m:
            assert m.data.shape == (16, 16, 16) and float(m.voxel_size.x) == 20.0
    assert "mean" in doc["auc_fsc_summary"]
    # analyze refreshes the report with the FSC and the ChimeraX file that opens every average.
    cxc = (run / "analysis" / "chimerax.cxc").read_text()
    assert all(f"averages/{name}.mrc" in cxc for name in structures)
    assert 'id="fsc"' in (run / "report.html").read_text() and cxc in (run / "report.html").read_text()


def test_analyze_takes_the_papers_gmm_clustering(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--config", "configs/subtomo.yaml", "--epochs", "1", "-o", str(run), *SMALL, *MODEL]) == 0
    assert main(["analyze", str(run), "--cluster-method", "gmm", "--cluster-space", "pca", "--cluster-dims", "3",
                 "--k-max", "3", "--projection", "none", "--no-average"]) == 0
    clusters = json.loads((run / "analysis" / "analysis.json").read_text())["content_clusters"]
    assert clusters["method"] == "gmm, pca 3" and set(clusters["bic"]) == {"1", "2", "3"}
