"""registry.Registry: names map to factories, duplicates and unknown names are refused (the latter
with the known names), and the registries of models, transforms and built-in data sets hold
what the package ships."""

import pytest

from dualcontrast.errors import ConfigError
from dualcontrast.registry import Registry


def test_register_get_and_list():
    reg: Registry[type] = Registry("widget")

    @reg.register("b")
    class B: ...

    reg.register("a")(int)
    assert reg.get("b") is B and reg.get("a") is int
    assert reg.names() == ["a", "b"] == list(reg)
    assert "a" in reg and "c" not in reg


def test_duplicates_and_unknown_names_are_refused():
    reg: Registry[type] = Registry("widget")
    reg.register("a")(int)
    with pytest.raises(ValueError, match="widget 'a' registered twice"):
        reg.register("a")(float)
    with pytest.raises(ConfigError, match=r"unknown widget 'z'; known: a"):
        reg.get("z")
    with pytest.raises(ConfigError, match=r"known: \(none\)"):
        Registry("empty").get("x")


def test_the_package_registries():
    from dualcontrast.data import BUILTIN_DATASETS
    from dualcontrast.models import MODELS
    from dualcontrast.transforms import TRANSFORMS

    assert {"dualcontrast", "vae2", "simclr", "simclr-gen", "harmony", "spatial-vae", "vitae", "disco"} <= set(MODELS)
    assert {"shapes2d", "phantoms3d"} <= set(BUILTIN_DATASETS)
    assert "rotation" in TRANSFORMS
