"""benchmarks/restart_scores.py: the label-free scores of content codes, and how often a score keeps
the seed that validation D(c|c) keeps over all subsets of seeds."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def scores(benchmark_scripts):
    (module,) = benchmark_scripts("restart_scores")
    return module


def run(val, test=None, labels=None, **kw):
    base = {"val_loss": 1.0, "c_neg": 0.5, "kl_c": 0.1, "mean_abs_cos": 0.5, "silhouette": 0.5}
    return {"val_d_c_c": val, "test_d_c_c": val if test is None else test,
            "labels": np.zeros(6, int) if labels is None else labels, **base, **kw}  # fmt: skip


def test_groups_are_ranges_or_lists(scores):
    assert scores.parse_group("base:2-5") == ("base", [2, 3, 4, 5])
    assert scores.parse_group("hinge-pivot-z-neg-0.3:0,3") == ("hinge-pivot-z-neg-0.3", [0, 3])
    with pytest.raises(SystemExit, match="--group"):
        scores.parse_group("2-5")


def test_cluster_scores_tell_separated_codes_from_noise(scores):
    rng = np.random.default_rng(0)
    centres = np.linalg.qr(rng.normal(size=(10, 10)))[0][:5] * 10  # orthogonal, spread over every dimension
    classes = np.repeat(np.arange(5), 40)
    clean = centres[classes] + rng.normal(0, 0.1, (200, 10))
    noise = rng.normal(0, 1, (200, 10))
    cos_clean, sil_clean, labels = scores.cluster_scores(clean, 5)
    cos_noise, sil_noise, _ = scores.cluster_scores(noise, 5)
    assert sil_clean > 0.9 > 0.2 > sil_noise
    assert cos_clean == pytest.approx(0.2, abs=0.03)  # one pair in five from the same class, |cos| ~1; others ~0
    assert cos_noise == pytest.approx(np.mean(np.abs(rng.normal(0, 1, 100000))) / np.sqrt(10), abs=0.03)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(classes, labels) == pytest.approx(1.0)


def test_agreement_is_the_mean_rand_index_with_the_others(scores):
    a = np.array([0, 0, 1, 1, 2, 2])
    runs = {0: run(0.9, labels=a), 1: run(0.9, labels=a[::-1].copy()), 2: run(0.9, labels=np.array([0, 1, 0, 1, 0, 1]))}
    got = scores.agreement(runs, (0, 1, 2))
    assert got[0] == pytest.approx(got[1]) and got[0] > got[2]
    assert got[0] == pytest.approx((1.0 + got[2] * 2 - got[2]) / 2)  # ARI(0, 1) is 1: relabelled copies


def test_choices_count_hits_and_kept_test_scores_over_all_subsets(scores):
    # seed 1 is best on validation; the loss prefers seed 0, the content-negative term seed 1
    runs = {0: run(0.90, 0.91, val_loss=0.5, c_neg=0.3), 1: run(0.95, 0.96, val_loss=0.9, c_neg=0.2),
            2: run(0.80, 0.81, val_loss=0.7, c_neg=0.4)}  # fmt: skip
    got = scores.choices(runs, 2)
    assert got["subsets"] == 3
    assert got["labels"] == {"hit": 1.0, "test_d_c_c": pytest.approx((0.96 + 0.91 + 0.96) / 3)}
    assert got["c_neg"]["hit"] == 1.0
    # subsets {0,1}: loss keeps 0 (miss); {0,2}: 0 (hit); {1,2}: 2 (miss)
    assert got["val_loss"] == {"hit": pytest.approx(1 / 3), "test_d_c_c": pytest.approx((0.91 + 0.91 + 0.81) / 3)}
    assert got["random"]["test_d_c_c"] == pytest.approx((0.91 + 0.96 + 0.81) / 3)
    assert "agreement" not in got  # two restarts agree with each other equally: no choice
    assert "agreement" in scores.choices(runs, 3)
