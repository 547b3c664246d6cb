"""benchmarks/probe_dims.py: D(c|c) of a run's content codes on their first principal components."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def probe_dims(benchmark_scripts):
    (module,) = benchmark_scripts("probe_dims")
    return module


def fake_run(path: Path, class_axis_scale: float) -> Path:
    """A run directory whose 6-dim c holds the class on axis 0 only: classes ``class_axis_scale``
    apart there (spread 0.05), beside five noise axes of spreads 3, 2.5, 2, 1.5, 1."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 600), ("test", 300)):
        y = rng.integers(0, 3, n)
        c = rng.normal(size=(n, 6)) * np.array([0.05, 3, 2.5, 2, 1.5, 1])
        c[:, 0] += class_axis_scale * (y - 1)
        arrays |= {f"{split}_c_mu": c, f"{split}_content": y}
    path.mkdir()
    np.savez(path / "embeddings.npz", **arrays)
    protocol = {"max_fit_samples": None, "seed": 0, "standardize": True}
    (path / "metrics.json").write_text(json.dumps({"checkpoint": "last", "protocol": protocol}))
    return path


def test_a_class_on_the_widest_axis_survives_the_projection(probe_dims, tmp_path):
    row = probe_dims.content_scores(fake_run(tmp_path / "wide", class_axis_scale=10.0), [2, 6])
    assert row["d"] == 6 and row["full"] > 0.95 and row[2] > 0.95
    assert 6 not in row  # a width of all the dimensions is the full score


def test_a_class_on_a_narrow_axis_is_lost_by_the_projection(probe_dims, tmp_path):
    row = probe_dims.content_scores(fake_run(tmp_path / "narrow", class_axis_scale=0.5), [2])
    assert row["full"] > 0.95  # standardised, the narrow axis still separates the classes
    assert row[2] < 0.5  # the first two principal axes are noise: chance is 1/3


def test_the_neighbour_vote_reads_a_class_the_linear_probe_cannot(probe_dims):
    # Class 1 on a ring around class 0: no line separates them, ten neighbours do.
    rng = np.random.default_rng(0)
    angles = rng.uniform(0, 2 * np.pi, 800)
    y = rng.integers(0, 2, 800)
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1) * (1 + 3 * y)[:, None] + rng.normal(
        0, 0.2, (800, 2)
    )
    probe = {"max_fit_samples": None, "seed": 0, "standardize": True}
    assert probe_dims.knn_score(x[:500], y[:500], x[500:], y[500:], **probe) > 0.95
    assert probe_dims.d_score(x[:500], y[:500], x[500:], y[500:], **probe) < 0.7


def test_batch_neighbours_share_the_label_in_a_perfect_code_and_by_chance_in_a_useless_one(probe_dims):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 1000)
    perfect = np.eye(4)[y] + rng.normal(0, 0.05, (1000, 4))  # one axis per class
    assert probe_dims.batch_neighbour_agreement(perfect, y) > 0.99
    useless = rng.normal(size=(1000, 4))
    assert abs(probe_dims.batch_neighbour_agreement(useless, y) - 0.25) < 0.03


def test_effective_rank_counts_the_directions_and_ignores_duplicated_dimensions(probe_dims):
    rng = np.random.default_rng(0)
    iso = rng.normal(size=(5000, 6))
    assert 5.8 < probe_dims.effective_rank(iso) <= 6.0
    assert probe_dims.effective_rank(np.concatenate([iso, iso], axis=1)) == pytest.approx(
        probe_dims.effective_rank(iso)
    )
    line = rng.normal(size=(500, 1)) * np.ones((1, 6))
    assert probe_dims.effective_rank(line) == pytest.approx(1.0, abs=1e-6)


def test_batch_neighbour_state_counts_state_matches_among_same_label_neighbours(probe_dims):
    # 2 labels x 3 states; the code holds the label only, so same-label neighbours share the state
    # by chance (1/3); a code that also holds the state gives 1.
    rng = np.random.default_rng(0)
    y, state = rng.integers(0, 2, 1200), rng.integers(0, 3, 1200)
    label_only = np.eye(2)[y] + rng.normal(0, 0.05, (1200, 2))
    assert abs(probe_dims.batch_neighbour_state(label_only, y, state) - 1 / 3) < 0.03
    both = np.concatenate([np.eye(2)[y], 0.5 * np.eye(3)[state]], axis=1) + rng.normal(0, 0.01, (1200, 5))
    assert probe_dims.batch_neighbour_state(both, y, state) > 0.99
