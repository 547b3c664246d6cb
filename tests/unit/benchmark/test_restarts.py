"""benchmarks/restarts.py: which seeds form a block and which one train.restarts keeps."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def restarts(benchmark_scripts):
    (module,) = benchmark_scripts("restarts")
    return module


def row(val, c_neg=0.5):
    return {"val": {"d_c_c": val, "c_neg": c_neg}, "test": {"d_c_c": val}}


def test_blocks_are_consecutive_and_complete(restarts):
    assert restarts.blocks([0, 1, 2, 3, 5], 2) == [[0, 1], [2, 3]]
    assert restarts.blocks([0, 1, 2, 3, 4, 5], 3) == [[0, 1, 2], [3, 4, 5]]
    assert restarts.blocks([1, 2], 2) == []  # a block starts at a multiple of N, as seed s, s + 1 ... of a run


def test_the_highest_validation_score_is_kept_and_ties_go_to_the_lower_seed(restarts):
    rows = {0: row(0.90), 1: row(0.95), 2: row(0.95)}
    assert restarts.choose(rows, [0, 1]) == 1
    assert restarts.choose(rows, [1, 2]) == 1
    by_c_neg = {0: row(0.90, 0.2), 1: row(0.95, 0.3)}
    assert restarts.choose(by_c_neg, [0, 1], "c_neg") == 0  # the label-free score: lower is better


def test_a_seed_in_two_inputs_is_refused(restarts, tmp_path):
    doc = {"args": {"seeds": [0]}, "variants": {"base": [row(0.9)]}}
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps(doc))
    with pytest.raises(SystemExit, match="seed 0"):
        restarts.seed_rows([tmp_path / "a.json", tmp_path / "b.json"], "base")


def test_an_early_choice_takes_the_best_score_so_far(restarts):
    curve = {0: {4: 0.80, 8: 0.95}, 1: {4: 0.90, 8: 0.91}, 2: {4: 0.90, 8: 0.99}}
    assert restarts.choose_early(curve, (0, 1), 4) == 1
    assert restarts.choose_early(curve, (0, 1), 8) == 0
    assert restarts.choose_early(curve, (1, 2), 4) == 1  # a tie goes to the lower seed
    assert restarts.choose_early({0: {4: 0.3}, 1: {4: 0.2}}, (0, 1), 4, "c_neg") == 1  # lower is better
