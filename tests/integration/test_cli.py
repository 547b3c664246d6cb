"""The command line end to end on tiny data, and every bad input the issue lists."""

import json

import numpy as np
import pytest
import yaml

from dualcontrast.cli.main import build_parser, main

TINY = ["--set", "data.params.n_train_per_cell=20", "--set", "data.params.n_test_per_cell=10",
        "--set", "eval.projection=pca", "--set", "train.progress=false", "--batch-size", "50"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--epochs", "2", "-o", str(run), *TINY]) == 0
    return run


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for command in ("train", "embed", "evaluate"):
        assert command in out


def test_train_writes_a_complete_run_directory(trained_run):
    for name in ("config.yaml", "checkpoints/last.pt", "log.csv", "embeddings.npz", "metrics.json",
                 "figures/transfer_grid.png", "figures/loss.png", "figures/projection_c.png",
                 "figures/projection_z.png"):
        assert (trained_run / name).exists(), name
    cfg = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert cfg["meta"]["command"].startswith("dualcontrast train")
    assert cfg["data"]["name"] == "shapes2d" and cfg["train"]["epochs"] == 2
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert {"d_c_c", "d_c_z", "sap_c", "d_z_z", "d_z_c", "sap_z", "ari_c"} <= set(metrics["scores"])
    assert "d_score" in metrics["protocol"]
    emb = np.load(trained_run / "embeddings.npz")
    # data.val_fraction 0.1 of the 400 training samples are the validation set.
    assert emb["train_c_mu"].shape == (360, 10) and emb["val_c_mu"].shape == (40, 10)
    assert emb["test_z_logvar"].shape == (200, 10)
    assert set(np.unique(emb["test_content"])) == set(range(5))


def test_evaluate_rewrites_metrics(trained_run, capsys):
    (trained_run / "metrics.json").unlink()
    assert main(["evaluate", str(trained_run), "--no-figures"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((trained_run / "metrics.json").read_text())["scores"]


def test_embed_other_data(trained_run, tmp_path):
    stack = np.random.default_rng(0).random((7, 28, 28)).astype(np.float32)
    np.save(tmp_path / "new.npy", stack)
    out = tmp_path / "codes.npz"
    assert main(["embed", str(trained_run), "--data", str(tmp_path / "new.npy"), "-o", str(out)]) == 0
    codes = np.load(out)
    assert codes["c_mu"].shape == (7, 10) and codes["z_mu"].shape == (7, 10)


def test_embed_rejects_data_of_another_shape(trained_run, tmp_path, capsys):
    np.save(tmp_path / "big.npy", np.zeros((3, 32, 32), np.float32))
    assert main(["embed", str(trained_run), "--data", str(tmp_path / "big.npy")]) == 2
    assert "big.npy" in capsys.readouterr().err


def test_resume_extends_a_run(tmp_path):
    run = tmp_path / "r"
    assert main(["train", "--epochs", "1", "-o", str(run), "--no-eval", *TINY]) == 0
    assert main(["train", "--resume", "-o", str(run), "--epochs", "2", "--no-eval"]) == 0
    lines = (run / "log.csv").read_text().strip().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]


def test_existing_run_is_not_overwritten(trained_run, capsys):
    before = (trained_run / "log.csv").read_text()
    assert main(["train", "--epochs", "1", "-o", str(trained_run), *TINY]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (trained_run / "log.csv").read_text() == before


def bad_inputs(tmp_path):
    """(name, files to make, extra CLI args, text the error must contain)."""
    rng = np.random.default_rng(0)
    nan = rng.random((20, 28, 28)).astype(np.float32)
    nan[3, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "rank.npy", np.zeros((10,), np.float32))
    np.save(tmp_path / "noncubic.npy", np.zeros((4, 1, 8, 8, 9), np.float32))
    (tmp_path / "empty.npz").write_bytes(b"")
    good = tmp_path / "good.npz"
    np.savez(good, x=rng.random((20, 28, 28)).astype(np.float32))
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[:300])
    np.save(tmp_path / "labels.npy", np.zeros(7, dtype=int))
    np.save(tmp_path / "stack.npy", rng.random((20, 28, 28)).astype(np.float32))
    (tmp_path / "badkey.yaml").write_text("train:\n  epochz: 3\n")
    return [
        ("nan", ["--data", str(tmp_path / "nan.npy")], ["nan.npy", "NaN"]),
        ("rank", ["--data", str(tmp_path / "rank.npy")], ["rank.npy"]),
        ("noncubic", ["--data", str(tmp_path / "noncubic.npy")], ["noncubic.npy", "cubic"]),
        ("empty", ["--data", str(tmp_path / "empty.npz")], ["empty.npz", "empty"]),
        ("truncated", ["--data", str(tmp_path / "truncated.npz")], ["truncated.npz"]),
        ("labels", ["--data", str(tmp_path / "stack.npy"), "--labels", str(tmp_path / "labels.npy")],
         ["labels.npy", "7 labels", "20 samples"]),
        ("missing", ["--data", str(tmp_path / "missing.npz")], ["missing.npz"]),
        ("unknown dataset", ["--data", "nosuchset"], ["nosuchset", "shapes2d"]),
        ("unknown model", ["--model", "nosuchmodel"], ["unknown model 'nosuchmodel'"]),
        ("unknown key", ["--set", "train.epochz=3"], ["train.epochz", "epochs"]),
        ("unknown key in file", ["--config", str(tmp_path / "badkey.yaml")], ["train.epochz"]),
    ]


def test_each_bad_input_is_a_clear_error_and_destroys_nothing(tmp_path, capsys):
    run = tmp_path / "existing"
    run.mkdir()
    (run / "config.yaml").write_text("precious: true\n")
    for name, args, expected in bad_inputs(tmp_path):
        code = main(["train", "--epochs", "1", "-o", str(run), "--overwrite", *args, *TINY])
        err = capsys.readouterr().err
        assert code == 2, name
        for text in expected:
            assert text in err, (name, text, err)
        assert (run / "config.yaml").read_text() == "precious: true\n", name
        assert sorted(p.name for p in run.iterdir()) == ["config.yaml"], name
