"""Every ready-made config in configs/ is valid (no unknown keys, right types)."""

from pathlib import Path

import pytest

from dualcontrast.config import build_config, load_yaml

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


def test_there_are_configs():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_config_is_valid(path):
    cfg = build_config(load_yaml(path))
    assert cfg.model.name
