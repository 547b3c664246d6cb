"""benchmarks/sweep.py: which validation row the per-variant tables read for a run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def sweep(benchmark_scripts):
    (module,) = benchmark_scripts("sweep")
    return module


CURVE = [{"epoch": "4", "d_c_c": "0.80"}, {"epoch": "8", "d_c_c": "0.90"}, {"epoch": "12", "d_c_c": "0.85"}]


def test_the_row_of_the_kept_epoch_even_where_another_scores_higher(sweep):
    # A run kept by a combined score (train.select) need not keep its best D(c|c).
    assert sweep.kept_validation_row({"best_epoch": 12, "curve": CURVE})["epoch"] == "12"


def test_files_without_a_kept_epoch_read_the_best_validation_d_c_c(sweep):
    assert sweep.kept_validation_row({"curve": CURVE})["epoch"] == "8"
    assert sweep.kept_validation_row({"best_epoch": None, "curve": CURVE})["epoch"] == "8"
