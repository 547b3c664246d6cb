"""dualcontrast.workflow without training: config sources and their order, absolute data paths,
what a resume may change, and the summary in words."""

import pytest

from dualcontrast.config import Config
from dualcontrast.errors import ConfigError
from dualcontrast.workflow import (
    ConfigSources,
    absolute_data_paths,
    describe_scores,
    resolve_config,
    resume_changes,
    run_summary,
)


def test_sources_apply_in_order(tmp_path):
    layer = tmp_path / "a.yaml"
    layer.write_text("train:\n  epochs: 3\n  lr: 0.5\n  seed: 4\n")
    cfg = resolve_config(
        data="shapes2d",
        config_files=[layer],
        settings={"train": {"lr": 0.25, "seed": 5}},
        overrides=["train.seed=6"],
        base={"train": {"epochs": 1, "batch_size": 7}, "data": {"name": "phantoms3d"}},
    )
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.train.lr, cfg.train.seed) == (7, 3, 0.25, 6)
    assert cfg.data.name == "shapes2d"  # --data above the base (a resumed run's config)
    assert ConfigSources(overrides=("train.seed=6",)).resolve().train.seed == 6


def test_relative_data_paths_become_absolute_and_are_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config()
    cfg.data.path, cfg.data.labels = "x.npz", str(tmp_path / "labels.npy")
    assert absolute_data_paths(cfg) == {"data.path": "x.npz"}
    assert cfg.data.path == str(tmp_path / "x.npz")


def test_resume_may_extend_the_schedule_only():
    saved = Config()
    longer = Config()
    longer.train.epochs, longer.eval.projection, longer.train.device = 40, "pca", "cpu"
    assert resume_changes(saved, longer) == {
        "eval.projection": ("auto", "pca"),
        "train.device": ("auto", "cpu"),
        "train.epochs": (20, 40),
    }
    for section, key, value in [("train", "lr", 1.0), ("loss", "gamma_c", 2.0), ("model", "arch", "conv")]:
        changed = Config()
        setattr(getattr(changed, section), key, value)
        with pytest.raises(ConfigError, match=rf"cannot change {section}\.{key}"):
            resume_changes(saved, changed)
    other = Config()
    other.model.params = {"hidden": 3}
    with pytest.raises(ConfigError, match=r"model\.params"):
        resume_changes(saved, other)


def test_resume_accepts_a_setting_as_given_or_as_the_trainer_resolved_it():
    """A run resolved ``model.output: auto`` to sigmoid: resuming with either value changes nothing;
    linear (neither) is refused, and without the run's record so is auto."""
    saved = Config()
    saved.model.output = "sigmoid"
    as_given = {"model.output": "auto"}
    for value in ("auto", "sigmoid"):
        again = Config()
        again.model.output = value
        assert resume_changes(saved, again, as_given) == {}
    other = Config()
    other.model.output = "linear"
    with pytest.raises(ConfigError, match=r"model\.output"):
        resume_changes(saved, other, as_given)
    with pytest.raises(ConfigError, match=r"model\.output \(run has 'sigmoid', now 'auto'\)"):
        resume_changes(saved, Config())


def test_scores_in_words():
    lines = describe_scores({"d_c_c": 0.951, "d_c_z": 0.21, "within_content": {"0": {"d_z_z": 1.0}}})
    assert lines == [
        "D(c|c), accuracy of the content code c predicting the content class: 0.95 (higher is better)",
        "D(c|z), accuracy of the transformation code z predicting the content class, which z should not "
        "know: 0.21 (lower is better)",
    ]


def test_summary_flags_scores_on_small_classes(tmp_path):
    from dualcontrast.rundir import RunDir

    run = RunDir.create(tmp_path / "run")
    (run.root / "report.html").write_text("<html></html>")
    metrics = {"scores": {"d_c_c": 0.9}, "small_sample_warning": {"min_per_class": 20, "classes": {"test/content": {"3": 4}}}}
    text = run_summary(run, metrics)
    assert "fewer than 20 samples (test/content)" in text and "report.html" in text
    assert "caution" not in run_summary(run, {"scores": {"d_c_c": 0.9}})


def test_config_yaml_holds_the_resolved_model_output(tmp_path):
    """model.output: auto is resolved by the trainer; config.yaml says what the model was built with."""
    from dualcontrast.config import load_config, read_meta
    from dualcontrast.workflow import train_run

    cfg = resolve_config(data="shapes2d", settings={
        "data": {"params": {"n_train_per_cell": 2, "n_test_per_cell": 1}},
        "train": {"epochs": 1, "batch_size": 20, "device": "cpu", "progress": False},
    })  # fmt: skip
    assert cfg.model.output == "auto"
    result = train_run(cfg, tmp_path / "run", evaluate=False)
    saved = result.run.config
    assert load_config(saved).model.output == "sigmoid"  # shapes2d lies in [0, 1]
    assert read_meta(saved)["model_as_given"] == {"model.output": "auto"}
