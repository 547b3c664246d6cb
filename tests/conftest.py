"""Shared fixtures and marker handling.

- ``gpu`` tests are skipped when no CUDA device is present.
- ``tiny_splits``: a few hundred samples of the built-in data set (fast everywhere).
- ``mnist_path``: the shared MNIST file; tests using it skip with a reason where it is absent
  (e.g. in a user's clone).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist.npz"

TINY_DATA = {"n_train_per_cell": 20, "n_test_per_cell": 10}

# The tests run tiny tensors, where a second intra-op thread costs more in synchronisation than
# it gains, and is 10-50x slower whenever another process shares the cores.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a busy 2-core machine two threads contend and run ~5x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_splits():
    from dualcontrast.data import load_data

    return load_data(name="shapes2d", params=TINY_DATA)


@pytest.fixture
def mnist_path() -> Path:
    if not MNIST.exists():
        pytest.skip(f"shared MNIST file not found at {MNIST} (only present in the development workspace)")
    return MNIST
