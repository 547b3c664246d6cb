"""The benchmark harness: suite expansion, the table from run directories, resumability, end to end."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from dualcontrast.benchmark.report import collect_records, summarize, write_report
from dualcontrast.benchmark.runner import plan_suite, run_suite
from dualcontrast.benchmark.suites import BUDGETS, SUITES, Suite, scale_epochs
from dualcontrast.errors import ConfigError, RunDirError


def _sets(argv) -> dict[str, str]:
    """``--set key=value`` pairs of a planned command line."""
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    return dict(p.split("=", 1) for p in pairs)


# --------------------------------------------------------------------------- planning


def test_table1_expands_to_every_method_dataset_seed(tmp_path):
    suite = SUITES["table1"]
    runs = plan_suite(suite, BUDGETS["cpu-hour"], tmp_path)
    assert len(suite.methods) == 13
    assert len(runs) == 13 * 3 * 3
    assert len({r.key for r in runs}) == len(runs)
    unsupported = [r for r in runs if r.argv is None]
    assert {(r.method, r.dataset) for r in unsupported} == {
        ("vitae", "phantoms3d"),
        ("hydra", "mnist"),
        ("hydra", "shapes2d"),
    }
    assert len(unsupported) == 9 and all(r.unsupported for r in unsupported)
    hydra = next(r for r in runs if r.key == "phantoms3d/hydra/seed0")
    assert _sets(hydra.argv)["data.project"] == "true" and _sets(hydra.argv)["train.epochs"] == "6"
    # Seed-major: every seed-0 run comes before any seed-1 run.
    seeds = [r.seed for r in runs]
    assert seeds == sorted(seeds)
    run = next(r for r in runs if r.key == "phantoms3d/spatial-vae/seed2")
    assert run.path == tmp_path / "phantoms3d" / "spatial-vae" / "seed2"
    argv = list(run.argv)
    assert argv[:1] == ["train"]
    assert argv[argv.index("--model") + 1] == "spatial-vae"
    assert argv[argv.index("--seed") + 1] == "2"
    assert argv[argv.index("-o") + 1] == str(run.path)
    assert Path(argv[argv.index("--config") + 1]).name == "subtomo.yaml"
    sets = _sets(argv)
    assert sets["train.epochs"] == "6" and sets["model.params.hidden"] == "32"


def test_same_budget_for_every_method_of_a_dataset(tmp_path):
    runs = plan_suite(SUITES["table1"], BUDGETS["cpu-hour"], tmp_path, seeds=[0])
    for dataset in ("mnist", "shapes2d", "phantoms3d"):
        budgets = {
            (s.get("train.epochs"), s.get("data.max_samples"), s.get("data.params.n_per_state"))
            for r in runs
            if r.dataset == dataset and r.argv
            for s in [_sets(r.argv)]
        }
        assert len(budgets) == 1, (dataset, budgets)


def test_filters_and_unknown_names(tmp_path):
    runs = plan_suite(
        SUITES["table1"],
        BUDGETS["full"],
        tmp_path,
        methods="vae2,dualcontrast",
        datasets=["shapes2d"],
        seeds=[1],
        device="cuda",
        overrides=["train.amp=true"],
    )
    assert [r.key for r in runs] == ["shapes2d/dualcontrast/seed1", "shapes2d/vae2/seed1"]  # suite order
    argv = list(runs[0].argv)
    assert argv[argv.index("--device") + 1] == "cuda"
    assert _sets(argv)["train.amp"] == "true" and _sets(argv)["train.epochs"] == "200"
    with pytest.raises(ConfigError, match="not in suite"):
        plan_suite(SUITES["table1"], BUDGETS["full"], tmp_path, seeds=[0, 7])
    with pytest.raises(ConfigError, match="unknown method"):
        plan_suite(SUITES["table1"], BUDGETS["full"], tmp_path, methods="dualcontrast,betavae")


def test_epoch_scale_and_minimum_epochs(tmp_path):
    half = scale_epochs(BUDGETS["cpu-hour"], 0.5)
    assert half.datasets["phantoms3d"]["train"]["epochs"] == 3
    assert half.datasets["mnist"]["train"]["epochs"] == 2
    assert scale_epochs(BUDGETS["tiny"], 0.1).datasets["shapes2d"]["train"]["epochs"] == 1  # at least 1
    assert BUDGETS["cpu-hour"].datasets["mnist"]["train"]["epochs"] == 4  # the preset itself unchanged
    tiny = plan_suite(SUITES["table1"], BUDGETS["tiny"], tmp_path, datasets="shapes2d", seeds=[0])
    epochs = {r.method: _sets(r.argv)["train.epochs"] for r in tiny if r.argv}
    assert epochs["disco"] == "2" and epochs["dualcontrast"] == "1"  # DisCo needs a generator phase
    with pytest.raises(ConfigError):
        scale_epochs(BUDGETS["tiny"], 0)


# --------------------------------------------------------------------------- the table


SMALL = Suite(
    "small",
    "a test suite",
    methods=("dualcontrast", "simclr", "vitae"),
    datasets=("mnist", "phantoms3d"),
    seeds=(0, 1, 2),
    unsupported={("vitae", "phantoms3d"): "2D only here"},
)


def _fake_run(path: Path, scores: dict, *, wall: float = 10.0) -> None:
    path.mkdir(parents=True)
    doc = {"scores": scores, "data": {"n_train": 80, "n_test": 20}}
    (path / "metrics.json").write_text(json.dumps(doc))
    (path / "benchmark.json").write_text(
        json.dumps({"status": "done", "wall_s": wall, "device_name": "test cpu"})
    )


def _within(d_zz: dict[str, float]) -> dict:
    return {k: {"d_z_z": v, "d_z_c": 0.25, "sap_z": abs(v - 0.25)} for k, v in d_zz.items()}


def test_table_mean_std_missing_failed_unsupported(tmp_path):
    work = tmp_path / "runs"
    for seed, d_cc in enumerate((0.5, 0.6, 0.7)):
        _fake_run(
            work / "mnist" / "dualcontrast" / f"seed{seed}",
            {"d_c_c": d_cc, "d_c_z": 0.2, "sap_c": d_cc - 0.2},
        )
    for seed in (0, 1):  # seed 2 missing
        _fake_run(
            work / "mnist" / "simclr" / f"seed{seed}", {"d_c_c": 0.4, "d_c_z": 0.3, "sap_c": 0.1 + seed}
        )
    failed = work / "mnist" / "vitae" / "seed0"
    failed.mkdir(parents=True)
    (failed / "benchmark.json").write_text(json.dumps({"status": "failed", "error": "ValueError: boom"}))
    # phantoms3d: identity 1 has the highest D(z|z) -> its scores fill the z columns.
    for seed in (0, 1):
        within = _within({"0": 0.3, "1": 0.8 + 0.1 * seed, "2": 0.4})
        scores = {"d_c_c": 0.9, "d_c_z": 0.5, "sap_c": 0.4, "d_z_z": 0.99, "within_content": within}
        _fake_run(work / "phantoms3d" / "dualcontrast" / f"seed{seed}", scores)

    runs = plan_suite(SMALL, BUDGETS["tiny"], work)
    paths = write_report(runs, SMALL, BUDGETS["tiny"], tmp_path / "out" / "t.md", figure=False)
    md = paths["table"].read_text()
    assert "0.600 ± 0.100 (3) [paper 0.89]" in md  # D(c|c) of DualContrast on MNIST
    assert "0.400 ± 0.000 (2) [paper 0.58]" in md  # SimCLR with two seeds
    assert "failed" in md and "ValueError: boom" in md
    assert "2D only here" in md
    mnist_part, phantoms_part = md.split("## phantoms3d")
    vitae_3d = next(line for line in phantoms_part.splitlines() if line.startswith("| VITAE"))
    assert vitae_3d.count("| - ") == 9  # 7 metrics, seeds, time
    assert next(x for x in mnist_part.splitlines() if x.startswith("| VITAE")).count("failed") == 4
    assert "within identity 1 (spike)" in md
    assert "0.850 ± 0.071 (2) [paper 0.86]" in md  # D(z|z) of identity 1: mean of 0.8, 0.9
    assert "**Reduced table**" in md
    assert "DualContrast does not have the highest SAP(c) on mnist" in md  # SimCLR: 0.1, 1.1

    rows = list(csv.DictReader(paths["csv"].open()))
    cell = next(
        r for r in rows if (r["dataset"], r["method"], r["metric"]) == ("mnist", "dualcontrast", "d_c_c")
    )
    assert (cell["mean"], cell["std"], cell["n"], cell["paper"]) == ("0.6000", "0.1000", "3", "0.89")
    zz = next(
        r
        for r in rows
        if (r["dataset"], r["metric"]) == ("phantoms3d", "d_z_z") and r["method"] == "dualcontrast"
    )
    assert zz["transform_identity"] == "1"
    vitae = next(r for r in rows if (r["dataset"], r["method"]) == ("phantoms3d", "vitae"))
    assert vitae["status"] == "unsupported" and vitae["n"] == "0"
    runs_csv = list(csv.DictReader(paths["runs_csv"].open()))
    assert len(runs_csv) == len(runs)


def test_sap_sentence_says_who_leads_and_whether_clearly():
    from dualcontrast.benchmark.report import MethodRow, Stat, sap_sentence
    from dualcontrast.benchmark.suites import DATASETS

    def row(method, mean, std):
        return MethodRow(method, "done", stats={"sap_c": Stat(mean, std, 3)})

    clear = sap_sentence([row("dualcontrast", 0.5, 0.01), row("simclr", 0.4, 0.02)], DATASETS["mnist"])
    assert "DualContrast has the highest SAP(c) here, 0.100 above SimCLR" in clear
    assert "not a clear" not in clear and "Paper's Table 1: highest SAP(c) DualContrast w/o L_con(c)" in clear
    noisy = sap_sentence([row("dualcontrast", 0.5, 0.2), row("simclr", 0.4, 0.02)], DATASETS["shapes2d"])
    assert "not a clear difference" in noisy and "Paper" not in noisy
    behind = sap_sentence([row("simclr", 0.4, 0.0), row("dualcontrast", 0.3, 0.0)], DATASETS["phantoms3d"])
    assert (
        "**DualContrast does not have the highest SAP(c) on phantoms3d**: rank 2 of 2, 0.100 below" in behind
    )


def test_summarize():
    s = summarize([1.0, 2.0, 4.0])
    assert s.n == 3 and s.mean == pytest.approx(7 / 3)
    assert s.std == pytest.approx(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) ** 0.5 / 2**0.5)
    assert summarize([0.5]).std == 0.0
    assert summarize([]) is None


# --------------------------------------------------------------------------- running


def test_finished_runs_are_skipped(tmp_path, monkeypatch):
    import dualcontrast.benchmark.runner as bench

    runs = plan_suite(
        SUITES["table1"], BUDGETS["tiny"], tmp_path, datasets="shapes2d", methods="vae2,simclr", seeds=[0]
    )
    _fake_run(runs[0].path, {"d_c_c": 0.5})
    trained = []

    def fake_train(run, **kwargs):
        trained.append(run.key)
        return {"status": "done", "wall_s": 1.0}

    monkeypatch.setattr(bench, "train_planned", fake_train)
    counts = run_suite(runs, progress=False)
    assert trained == [runs[1].key]
    assert counts == {"trained": 1, "failed": 0, "skipped": 1, "unsupported": 0}
    trained.clear()
    run_suite(runs, force=True, progress=False)
    assert trained == [r.key for r in runs]


def test_existing_dir_flags(tmp_path):
    from dualcontrast.benchmark.runner import existing_dir_flags

    run = tmp_path / "run"
    assert existing_dir_flags(run) == []
    run.mkdir()
    assert existing_dir_flags(run) == []
    (run / "benchmark.json").write_text("{}")  # a failed attempt: no checkpoint to continue
    assert existing_dir_flags(run) == ["--overwrite"]
    (run / "config.yaml").write_text("{}")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    assert existing_dir_flags(run) == ["--resume"]
    assert existing_dir_flags(run, force=True) == ["--overwrite"]


def test_eta_uses_the_mean_time_of_each_dataset(tmp_path):
    from dualcontrast.benchmark.runner import _clock, _eta

    runs = plan_suite(SUITES["table1"], BUDGETS["tiny"], tmp_path, methods="vae2", seeds=[0, 1])
    left = [r for r in runs if r.seed == 1]  # mnist, shapes2d, phantoms3d
    # shapes2d has no finished run yet: it counts at the mean of every finished run.
    assert _eta(left, {"mnist": [10.0, 20.0], "phantoms3d": [100.0]}) == pytest.approx(15 + 130 / 3 + 100)
    assert _clock(_eta(left, {})) == "?"
    assert _clock(3725.4) == "1:02:05"


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    """2 methods x 2 seeds x 1 epoch on tiny shapes2d through the command line."""
    from dualcontrast.cli.main import main

    root = tmp_path_factory.mktemp("bench")
    argv = ["benchmark", "--budget", "tiny", "--datasets", "shapes2d", "--methods", "dualcontrast,simclr",
            "--seeds", "0,1", "--workdir", str(root / "runs"), "-o", str(root / "out" / "table1.md"), "-q"]  # fmt: skip
    assert main(argv) == 0
    return root, argv


def test_end_to_end_tiny_suite(tiny_suite):
    root, _ = tiny_suite
    out = root / "out"
    md = (out / "table1.md").read_text()
    assert (out / "table1.csv").exists() and (out / "table1_runs.csv").exists()
    assert (out / "table1_transfer_grids.png").stat().st_size > 10_000
    shapes = md.split("## shapes2d")[1].split("## phantoms3d")[0]
    line = next(x for x in shapes.splitlines() if x.startswith("| DualContrast |"))
    assert line.count("(2)") == 7  # every metric over both seeds
    assert "budget `tiny`" in md
    for method in ("dualcontrast", "simclr"):
        for seed in (0, 1):
            run = root / "runs" / "shapes2d" / method / f"seed{seed}"
            side = json.loads((run / "benchmark.json").read_text())
            assert side["status"] == "done" and side["wall_s"] > 0
            assert (run / "figures" / "transfer_grid.png").exists() == (method == "dualcontrast")
    records = collect_records(plan_suite(SUITES["table1"], BUDGETS["tiny"], root / "runs"))
    assert sum(r.status == "done" for r in records) == 4


def test_rerun_keeps_finished_runs_and_resumes_interrupted(tiny_suite):
    from dualcontrast.cli.main import main

    root, argv = tiny_suite
    runs = root / "runs" / "shapes2d"
    kept = runs / "simclr" / "seed0" / "metrics.json"
    stamp = kept.stat().st_mtime_ns
    interrupted = runs / "dualcontrast" / "seed1"
    (interrupted / "metrics.json").unlink()  # as if killed after its last checkpoint
    assert main([*argv, "--no-figure"]) == 0
    assert kept.stat().st_mtime_ns == stamp
    assert (interrupted / "metrics.json").exists()
    side = json.loads((interrupted / "benchmark.json").read_text())
    assert "--resume" in side["command"]
    with open(interrupted / "log.csv") as f:
        assert len(f.readlines()) == 2  # header + the one epoch: nothing retrained


def test_run_made_with_other_settings_is_refused(tiny_suite):
    runs = plan_suite(
        SUITES["table1"],
        scale_epochs(BUDGETS["tiny"], 3),
        tiny_suite[0] / "runs",
        datasets="shapes2d",
        methods="simclr",
        seeds=[0],
    )
    with pytest.raises(RunDirError, match=r"train\.epochs"):
        run_suite(runs, progress=False)


def test_missing_mnist_fails_before_training(tmp_path):
    from dualcontrast.benchmark.runner import preflight

    runs = plan_suite(
        SUITES["table1"],
        BUDGETS["tiny"],
        tmp_path,
        datasets="mnist",
        methods="vae2",
        mnist=str(tmp_path / "no.npz"),
    )
    with pytest.raises(ConfigError, match=r"no\.npz"):
        preflight(runs)
    assert not os.listdir(tmp_path)


def test_hand_written_notes_end_the_table_and_survive_rerendering(tmp_path):
    work = tmp_path / "runs"
    _fake_run(work / "mnist" / "dualcontrast" / "seed0", {"d_c_c": 0.9, "d_c_z": 0.3, "sap_c": 0.6})
    runs = plan_suite(SMALL, BUDGETS["tiny"], work)
    out = tmp_path / "out" / "t.md"
    out.parent.mkdir()
    assert (
        "## Notes" not in write_report(runs, SMALL, BUDGETS["tiny"], out, figure=False)["table"].read_text()
    )
    (tmp_path / "out" / "t_notes.md").write_text("SimCLR leads on MNIST because of the budget.\n")
    for _ in range(2):
        md = write_report(runs, SMALL, BUDGETS["tiny"], out, figure=False)["table"].read_text()
        assert md.count("## Notes") == 1
        assert md.rstrip().endswith("SimCLR leads on MNIST because of the budget.")
