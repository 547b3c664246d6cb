"""VITAE and DisCo end to end through the CLI (own file: each run takes seconds)."""

from __future__ import annotations

import json

from dualcontrast.cli.main import main as cli_main

TINY = [
    "--set", "data.params.n_train_per_cell=20",
    "--set", "data.params.n_test_per_cell=10",
    "--set", "data.params.size=16",
    "--set", "eval.projection=pca",
    "--set", "train.progress=false",
    "-q",
]  # fmt: skip


def train(model: str, epochs: int, out, *extra: str) -> int:
    return cli_main(["train", "--model", model, "--epochs", str(epochs), *TINY, *extra, "-o", str(out)])


def phases(run) -> list[float]:
    rows = (run / "log.csv").read_text().splitlines()
    col = rows[0].split(",").index("phase")
    return [float(r.split(",")[col]) for r in rows[1:]]


def test_vitae_end_to_end(tmp_path):
    out = tmp_path / "run"
    assert train("vitae", 2, out) == 0
    scores = json.loads((out / "metrics.json").read_text())["scores"]
    assert {"d_c_c", "d_c_z", "d_z_z", "d_z_c", "sap_c", "ari_c"} <= set(scores)
    assert (out / "figures" / "transfer_grid.png").exists()


def test_disco_end_to_end(tmp_path):
    out = tmp_path / "run"
    assert train("disco", 2, out, "--set", "model.params.generator_epochs=1") == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["model"] == "disco" and {"d_c_c", "d_c_z", "d_z_z", "d_z_c"} <= set(doc["scores"])
    assert not (out / "figures" / "transfer_grid.png").exists()
    assert phases(out) == [1.0, 2.0]


def test_disco_on_a_finished_vae2_run(tmp_path):
    gen = tmp_path / "vae2"
    assert train("vae2", 1, gen, "--no-eval") == 0
    out = tmp_path / "disco"
    assert train("disco", 1, out, "--set", f"model.params.generator_run={gen}") == 0
    assert phases(out) == [2.0]  # no generator phase: the vae2 run's decoder is the generator
    assert (out / "metrics.json").exists()
