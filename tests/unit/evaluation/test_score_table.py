"""Raw next to standardised D-scores (the reference evaluator fits raw codes), D(state|c) next
to D(state|z) for every categorical factor, and the one table of score meanings that the run
summary and report.html both read."""

import numpy as np
import pytest

from dualcontrast.evaluation.metrics import SCORES, d_score, disentanglement_metrics, flat_scores, score_info


def labelled(n, seed):
    rng = np.random.default_rng(seed)
    content, state = rng.integers(0, 4, n), rng.integers(0, 3, n)
    c = np.eye(4)[content] + 0.3 * rng.standard_normal((n, 4))
    z = np.eye(3)[state] + 0.3 * rng.standard_normal((n, 3))
    return {"c_mu": c, "z_mu": z, "content": content, "transform": state,
            "identity_state": content * 3 + state, "angle": rng.uniform(-180, 180, n),
            "particle": np.arange(n)}  # fmt: skip


@pytest.fixture(scope="module")
def m():
    return disentanglement_metrics(labelled(400, 0), labelled(200, 1))


def test_raw_scores_sit_next_to_the_standardised_ones(m):
    for key in ("d_c_c", "d_c_z", "sap_c", "d_z_z", "d_z_c", "sap_z"):
        assert f"{key}_raw" in m
    train, test = labelled(400, 0), labelled(200, 1)
    for d in (train, test):
        del d["identity_state"]
    off = disentanglement_metrics(train, test, standardize=False)
    assert off["d_c_c"] == off["d_c_c_raw"] == pytest.approx(m["d_c_c_raw"])


def test_raw_codes_on_a_tiny_scale_are_what_the_penalised_reference_fit_misses():
    tr, te = labelled(400, 0), labelled(200, 1)
    small = 1e-4
    std = d_score(tr["c_mu"] * small, tr["content"], te["c_mu"] * small, te["content"])
    raw = d_score(tr["c_mu"] * small, tr["content"], te["c_mu"] * small, te["content"], standardize=False)
    assert std > 0.9 and raw < 0.5  # the L2 penalty swamps weights that tiny codes need


def test_every_categorical_state_is_predicted_from_c_and_from_z(m):
    assert m["d_z_z"] > 0.9 and m["d_z_c"] < 0.5  # D(state|z) next to D(state|c)
    assert {"d_identity_state_c", "d_identity_state_z", "sap_identity_state"} <= set(m)
    assert not any("angle" in k or "particle" in k for k in m)  # measurements and ids are no states


def test_one_table_names_every_score_a_run_reports(m):
    for key in [*flat_scores(m), "s_z", "r2_pose_z", "z_use"]:
        info = score_info(key.split("@")[0])
        assert info is not None and info.better in ("higher", "lower"), key
    assert "raw" in score_info("d_c_c_raw").words and score_info("d_c_c_raw").better == "higher"
    assert score_info("d_identity_state_c").words.startswith("D(identity_state|c)")
    assert score_info("no_such_score") is None
    assert SCORES["d_z_c"].words.startswith("D(state|c)") and SCORES["d_z_z"].words.startswith("D(state|z)")


def test_summary_and_report_speak_the_same_words(tmp_path):
    import json

    from dualcontrast.report import write_report
    from dualcontrast.workflow import describe_scores

    scores = {"d_c_c": 0.9, "d_z_c": 0.3, "s_z": 0.7, "d_c_c_raw": 0.8,
              "within_content": {"0": {"d_z_z": 0.6, "d_z_c": 0.2}}}  # fmt: skip
    lines = describe_scores(scores)
    assert lines[0].startswith(SCORES["d_c_c"].words) and any(SCORES["s_z"].words in s for s in lines)
    assert "inside each content class, D(state|z) / D(state|c): 0: 0.60 / 0.20" in lines
    (tmp_path / "metrics.json").write_text(json.dumps({"scores": scores, "checkpoint": "best (epoch 3)"}))
    page = write_report(tmp_path).read_text()
    for key in ("d_c_c", "d_z_c", "s_z", "d_c_c_raw"):
        assert score_info(key).text().replace("'", "&#x27;") in page
    assert "best (epoch 3) checkpoint" in page
