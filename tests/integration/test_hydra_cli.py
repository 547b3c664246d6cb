"""`dualcontrast train --model hydra` end to end: projected built-in subtomograms (data.project) and a
RELION particle stack (.mrcs + STAR with CTF columns and optics), into an ordinary run directory."""

import json
import subprocess
import sys

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

TINY = [
    "--set", "data.params.n_per_state=3", "--set", "data.params.box=12", "--set", "data.params.voxel_size=2.5",
    "--set", "data.params.progress=false", "--set", "model.params.directions=12",
    "--set", "model.params.refine_levels=1", "--set", "model.params.infer_steps=1",
    "--set", "train.progress=false", "--epochs", "2", "--batch-size", "8", "--lr", "0.01",
]  # fmt: skip


def train(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dualcontrast.cli.main", "train", "--model", "hydra", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_train_hydra_on_projected_phantoms(tmp_path):
    out = tmp_path / "run"
    done = train("--data", "phantoms3d", "--set", "data.project=true", "--set", "model.params.pose_search_epochs=1",
                 "--set", "eval.projection=none", *TINY, "-o", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "hydra" and "projected along z" in metrics["data"]["source"]
    assert "d_c_c" in json.dumps(metrics["scores"])
    for name in ("hydra_classes.png", "hydra_class_probabilities.png", "transfer_grid.png"):
        assert (out / "figures" / name).exists()
    emb = np.load(out / "embeddings.npz")
    assert emb["train_c_mu"].shape[1] == 3 and np.allclose(emb["train_c_mu"].sum(1), 1, atol=1e-5)
    assert emb["test_z_mu"].shape[1] == 4 and "train_ctf_defocus_u" in emb


def test_hydra_refuses_volumes_with_one_line(tmp_path):
    done = train("--data", "phantoms3d", *TINY, "-o", str(tmp_path / "run"))
    assert done.returncode == 2
    assert "data.project=true" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_train_hydra_on_a_relion_particle_stack(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    with mrcfile.new(tmp_path / "particles.mrcs") as mrc:
        mrc.set_data(rng.standard_normal((n, 12, 12)).astype(np.float32))
        mrc.voxel_size = 4.0
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7],
                           "rlnAmplitudeContrast": [0.1], "rlnImagePixelSize": [4.0], "rlnImageSize": [12]})  # fmt: skip
    particles = pd.DataFrame({
        "rlnImageName": [f"{i + 1}@particles.mrcs" for i in range(n)], "rlnOpticsGroup": [1] * n,
        "rlnMicrographName": ["mic.mrc"] * n, "rlnDefocusU": rng.uniform(15000, 25000, n),
        "rlnDefocusV": rng.uniform(15000, 25000, n), "rlnDefocusAngle": rng.uniform(0, 180, n),
    })  # fmt: skip
    starfile.write({"optics": optics, "particles": particles}, tmp_path / "particles.star")
    out = tmp_path / "run"
    done = train("--data", str(tmp_path / "particles.star"), "--set", "model.params.pose_search_epochs=1",
                 "--set", "eval.projection=none", *TINY, "-o", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    emb = np.load(out / "embeddings.npz")
    assert np.all(emb["train_ctf_sign"] == -1.0) and np.all(emb["train_ctf_voltage"] == 300.0)
