"""Import the scripts under benchmarks/ (not a package: they import each other by file name)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


@pytest.fixture(scope="module")
def benchmark_scripts():
    """``benchmark_scripts("z_checks", ...)`` -> the modules, importable while the test module runs."""
    sys.path.insert(0, str(BENCHMARKS))

    def load(*names: str) -> tuple[ModuleType, ...]:
        return tuple(importlib.import_module(name) for name in names)

    try:
        yield load
    finally:
        sys.path.remove(str(BENCHMARKS))
