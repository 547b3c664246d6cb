"""The named variants of the benchmark scripts (benchmarks/z_checks.py, benchmarks/subtomo_quality.py,
benchmarks/shapes2d_state.py) resolve to valid configs, so a misspelt override fails here rather than after an hour of training."""

from __future__ import annotations

from pathlib import Path

import pytest

from dualcontrast.config import parse_override
from dualcontrast.errors import ConfigError
from dualcontrast.workflow import resolve_config

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs"


@pytest.fixture(scope="module")
def scripts(benchmark_scripts):
    return benchmark_scripts("z_checks", "subtomo_quality", "shapes2d_state")


def assert_overrides_land(name: str, config_files: list[Path], overrides: list[str]) -> None:
    resolved = resolve_config(config_files=config_files, overrides=overrides).to_dict()
    # A later override of a key replaces an earlier one (MNIST_CPU_SWAP resets gamma_z).
    expected: dict[str, dict] = {}
    for override in overrides:
        for section, values in parse_override(override).items():
            expected.setdefault(section, {}).update(values)
    for section, values in expected.items():
        assert {k: resolved[section][k] for k in values} == values, (name, section)


def test_every_mnist_screen_variant_resolves(scripts):
    z_checks, _, _ = scripts
    for name, (_, overrides) in z_checks.VARIANTS.items():
        assert_overrides_land(name, [CONFIGS / "mnist.yaml"], overrides)


def test_every_shapes2d_variant_resolves(scripts):
    *_, shapes2d_state = scripts
    for name, (_, overrides) in shapes2d_state.VARIANTS.items():
        assert_overrides_land(name, [], overrides)


def test_every_subtomogram_variant_resolves(scripts):
    _, subtomo_quality, _ = scripts
    for name, (method, overrides, layers) in subtomo_quality.VARIANTS.items():
        cfg = resolve_config(
            config_files=[CONFIGS / f for f in ["subtomo.yaml", *layers]],
            settings={"model": {"name": method}},
            overrides=overrides,
        )
        assert cfg.model.name == method, name


def test_a_misspelt_override_is_refused():
    with pytest.raises(ConfigError):
        resolve_config(config_files=[CONFIGS / "mnist.yaml"], overrides=["loss.w_z_negative=0.4"])


def test_the_four_dimensional_z_rows_are_what_they_say(scripts):
    z_checks, subtomo_quality, _ = scripts
    mnist = resolve_config(config_files=[CONFIGS / "mnist.yaml"], overrides=z_checks.MNIST_CPU_Z4)
    layered = resolve_config(config_files=[CONFIGS / "mnist.yaml", CONFIGS / "mnist_cpu.yaml"])
    # The screen's base row is configs/mnist_cpu.yaml, apart from the length and the selection.
    for section, key in [("model", "transform_dim"), ("views", "pairing"), ("loss", "cosine_scale"),
                         ("loss", "gamma_z"), ("loss", "w_swap"), ("loss", "w_z_pos"), ("loss", "w_z_neg")]:  # fmt: skip
        assert getattr(getattr(mnist, section), key) == getattr(getattr(layered, section), key), key
    _, overrides, _ = subtomo_quality.VARIANTS["dualcontrast-swap1-gz0.5-zuse-z4"]
    sub = resolve_config(config_files=[CONFIGS / "subtomo.yaml"], overrides=overrides)
    assert sub.model.transform_dim == 4
    # per_dim: weight 0.24 over 4 dims is configs/subtomo.yaml's z weight over its z size.
    base = resolve_config(config_files=[CONFIGS / "subtomo.yaml"])
    assert sub.loss.w_z_neg / 4 == pytest.approx(base.loss.w_z_neg / base.model.transform_dim)


@pytest.mark.parametrize("variant", ["z4-c16-matched", "z4-c32-matched"])
def test_the_matched_content_rows_keep_the_per_dim_weight_of_ten_dimensions(scripts, variant):
    z_checks, _, _ = scripts
    cfg = resolve_config(config_files=[CONFIGS / "mnist.yaml"], overrides=z_checks.VARIANTS[variant][1])
    base = resolve_config(config_files=[CONFIGS / "mnist.yaml"], overrides=z_checks.MNIST_CPU_Z4)
    assert cfg.model.content_dim > base.model.content_dim
    for key in ("w_c_neg", "w_c_pos"):
        per_dim = getattr(cfg.loss, key) / cfg.model.content_dim
        assert per_dim == pytest.approx(getattr(base.loss, key) / base.model.content_dim), key
