"""The ready-made configs: each is valid (no unknown keys, right types), they live in the package
(configs/ at the repository root is a link to them) and pyproject.toml ships every one of them."""

import fnmatch
from pathlib import Path

import pytest
import tomllib

from dualcontrast.benchmark.suites import DATASETS, find_config_file
from dualcontrast.config import CONFIGS_DIR, build_config, load_yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(CONFIGS_DIR.rglob("*.yaml"))


def test_there_are_configs():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS_DIR)))
def test_config_is_valid(path):
    cfg = build_config(load_yaml(path))
    assert cfg.model.name


def test_repository_configs_are_the_package_configs():
    assert (REPO / "configs").resolve() == CONFIGS_DIR.resolve()


def test_package_data_ships_every_config():
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dualcontrast"]
    files = [p.relative_to(CONFIGS_DIR.parent).as_posix() for p in CONFIGS_DIR.rglob("*") if p.is_file()]
    assert files
    # fnmatch's * also crosses "/", so match segment by segment as setuptools does.
    def shipped(f: str) -> bool:
        return any(
            len(g.split("/")) == len(f.split("/"))
            and all(fnmatch.fnmatch(a, b) for a, b in zip(f.split("/"), g.split("/"), strict=True))
            for g in globs
        )

    assert [f for f in files if not shipped(f)] == []


def test_benchmark_finds_its_configs_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spec in DATASETS.values():
        for name in spec.config_files:
            assert find_config_file(name).parent == CONFIGS_DIR.resolve()
