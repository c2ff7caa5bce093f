"""Model quality, bias drift, attribution drift and the champion/challenger comparison, unit by unit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xgboost as xgb
from numpy.typing import NDArray
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score

import attribution_drift
import bias_drift
import challenger
import model_quality
from churn_data import generate_customers
from feature_schema import load_schema
from monitor_config import BiasSettings, ChallengerSettings, ModelQualitySettings

NAMES = load_schema().model_features
RNG = np.random.default_rng(12)


def scored(n: int, separation: float, seed: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Labels and scores whose AUC grows with ``separation``."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.float64)
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + separation * labels - 1)))
    return scores, labels


# --- model quality --------------------------------------------------------------------------------


def test_quality_metrics_are_scikit_learns() -> None:
    scores, labels = scored(2000, 1.5, 1)
    values = model_quality.quality_metrics(scores, labels, 0.5)
    predicted = scores >= 0.5
    assert values == pytest.approx(
        {
            "auc": roc_auc_score(labels, scores),
            "accuracy": accuracy_score(labels, predicted),
            "precision": precision_score(labels, predicted),
            "recall": recall_score(labels, predicted),
            "f1": f1_score(labels, predicted),
            "log_loss": log_loss(labels, scores),
        },
        abs=1e-9,
    )
    assert math.isnan(model_quality.quality_metrics(scores, np.ones(2000), 0.5)["auc"])


def test_quality_violations_against_the_registered_evaluation_and_floors() -> None:
    baseline = {"auc": 0.85, "accuracy": 0.80, "precision": 0.6, "recall": 0.5, "f1": 0.55, "log_loss": 0.40}
    settings = ModelQualitySettings(
        minimum={"auc": 0.82, "accuracy": None, "precision": None, "recall": None, "f1": None}
    )
    fine = {"auc": 0.83, "accuracy": 0.78, "precision": 0.55, "recall": 0.45, "f1": 0.5, "log_loss": 0.45}
    assert model_quality.violations(fine, baseline, settings) == []
    worse = {**fine, "auc": 0.79, "log_loss": 0.55}
    found = {
        (v["metric_name"], v["constraint_check_type"]) for v in model_quality.violations(worse, baseline, settings)
    }
    assert found == {("auc", "baseline_drop_check"), ("auc", "LessThanThreshold"), ("log_loss", "baseline_drop_check")}


def test_quality_constraints_are_model_monitors_with_the_stricter_threshold() -> None:
    settings = ModelQualitySettings(
        minimum={"auc": 0.82, "accuracy": None, "precision": None, "recall": None, "f1": None}
    )
    document = model_quality.constraints_json({"auc": 0.85, "f1": 0.55, "log_loss": 0.4}, settings)
    constraints = document["binary_classification_constraints"]
    assert constraints["auc"] == {"threshold": 0.82, "comparison_operator": "LessThanThreshold"}  # floor above 0.80
    assert constraints["f1"] == {"threshold": 0.45, "comparison_operator": "LessThanThreshold"}
    assert constraints["log_loss"] == {"threshold": 0.5, "comparison_operator": "GreaterThanThreshold"}
    assert "accuracy" not in constraints


# --- bias -----------------------------------------------------------------------------------------


def test_bias_metrics_from_counts() -> None:
    counts = bias_drift.SegmentCounts(
        n=[800, 200], predicted=[160, 80], tp=[100, 50], fn=[50, 10], fp=[60, 30], tn=[590, 110]
    )
    values = bias_drift.metric_values(counts)
    assert values["DPPL"][0] == pytest.approx(0.2 - 0.4)
    assert values["DI"][0] == pytest.approx(0.4 / 0.2)
    assert values["RD"][0] == pytest.approx(100 / 150 - 50 / 60)
    assert values["FPRD"][0] == pytest.approx(60 / 650 - 30 / 140)
    document = bias_drift.analysis_json({("group", 1.0): counts}, "label")
    (facet,) = document["post_training_bias_metrics"]["facets"]["group"]
    assert facet["value_or_threshold"] == "1"
    assert {m["name"] for m in facet["metrics"]} == {"DPPL", "DI", "RD", "FPRD"}
    assert bias_drift.baseline_counts(document) == {("group", 1.0): counts}


def segments(n: tuple[int, int], rates: tuple[float, float]) -> bias_drift.SegmentCounts:
    predicted = [round(n[0] * rates[0]), round(n[1] * rates[1])]
    return bias_drift.SegmentCounts(n=list(n), predicted=predicted)


def test_a_gap_that_moved_far_and_significantly_is_a_violation() -> None:
    baseline = {("group", 1.0): segments((20_000, 4_000), (0.25, 0.35))}
    moved = {("group", 1.0): segments((3_000, 600), (0.25, 0.60))}
    results, found = bias_drift.compare(moved, baseline, BiasSettings())
    assert {v["metric_name"] for v in found} == {"DPPL", "DI"}
    assert all(v["constraint_check_type"] == "bias_drift_check" for v in found)
    di = next(v for v in found if v["metric_name"] == "DI")
    assert di["threshold"] == 1.25
    assert not any(r.judged for r in results if r.metric in ("RD", "FPRD"))  # no labels: not judged


def test_the_same_move_in_a_small_segment_is_not_judged_and_noise_is_not_significant() -> None:
    baseline = {("group", 1.0): segments((20_000, 4_000), (0.25, 0.35))}
    small = {("group", 1.0): segments((3_000, 100), (0.25, 0.60))}  # below min_segment_records
    assert bias_drift.compare(small, baseline, BiasSettings())[1] == []
    # rare positives: 9 of 300 against 2 % makes DI 1.5 (beyond 1.25), which is within noise
    baseline = {("group", 1.0): segments((20_000, 4_000), (0.02, 0.02))}
    noisy = {("group", 1.0): segments((3_000, 300), (0.02, 0.03))}
    results, found = bias_drift.compare(noisy, baseline, BiasSettings())
    di = next(r for r in results if r.metric == "DI")
    assert di.judged
    assert di.current / di.baseline == pytest.approx(1.5)
    assert di.p_value > 0.1
    assert found == []


# --- attribution ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    data = generate_customers(4000, seed=3)
    return xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(data[list(NAMES)].to_numpy(np.float32), label=data["churned"], feature_names=list(NAMES)),
        30,
    )


def test_mean_abs_shap_is_xgboosts_exact_treeshap(booster) -> None:
    rows = generate_customers(300, seed=4)[list(NAMES)].to_numpy(np.float64)
    values = attribution_drift.mean_abs_shap(booster, rows, NAMES)
    contributions = booster.predict(xgb.DMatrix(rows.astype(np.float32), feature_names=list(NAMES)), pred_contribs=True)
    margins = booster.predict(xgb.DMatrix(rows.astype(np.float32), feature_names=list(NAMES)), output_margin=True)
    assert np.allclose(contributions.sum(axis=1), margins, atol=1e-4)  # SHAP values add up to the prediction
    assert list(values.values()) == pytest.approx(np.abs(contributions[:, :-1]).mean(axis=0).tolist(), rel=1e-6)
    document = attribution_drift.analysis_json(values, 300)
    assert attribution_drift.baseline_values(document) == pytest.approx(values, rel=1e-6)
    assert document["explanations"]["kernel_shap"]["label0"]["ranking"][0] == max(values, key=values.__getitem__)


def test_ndcg_is_one_for_the_same_ranking_and_falls_when_the_top_features_swap() -> None:
    baseline = {"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.05}
    assert attribution_drift.ndcg(baseline, {"a": 0.6, "b": 0.2, "c": 0.1, "d": 0.0}) == pytest.approx(1.0)
    reversed_ = {"a": 0.05, "b": 0.1, "c": 0.3, "d": 0.5}
    score, found, changes = attribution_drift.compare(baseline, reversed_, min_ndcg=0.9)
    assert score < 0.9
    (violation,) = found
    assert violation["constraint_check_type"] == "feature_attribution_drift_check"
    assert "a 1->4" in violation["description"]
    assert changes[0] == {"feature": "a", "baseline": 0.5, "current": 0.05, "baseline_rank": 1, "current_rank": 4}


# --- champion vs challenger -----------------------------------------------------------------------


def labelled(n: int, separation: float, seed: int, prefix: str) -> challenger.Labelled:
    scores, labels = scored(n, separation, seed)
    return challenger.Labelled(scores, labels, np.array([f"{prefix}{i}" for i in range(n)]))


def test_batched_auc_is_scikit_learns() -> None:
    scores = RNG.random((5, 300)).round(2)  # ties included
    labels = (RNG.random((5, 300)) < 0.4).astype(float)
    expected = [roc_auc_score(labels[i], scores[i]) for i in range(5)]
    assert challenger.auc(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_delong_and_bootstrap_agree_on_the_interval() -> None:
    a, b = labelled(3000, 1.0, 1, "a"), labelled(3000, 1.3, 2, "b")
    difference, low, high = challenger.delong_interval(a, b, paired=False, confidence=0.95)
    point, boot_low, boot_high = challenger.bootstrap_interval(a, b, False, ChallengerSettings(resamples=2000))
    assert point == pytest.approx(difference, abs=1e-12)
    assert (boot_high - boot_low) == pytest.approx(high - low, rel=0.15)
    assert boot_low == pytest.approx(low, abs=0.01)


def test_verdicts_better_worse_and_not_yet_significant() -> None:
    settings = ChallengerSettings(resamples=500)
    champion = labelled(3000, 1.0, 1, "a")
    better = challenger.compare("Champion", champion, "Challenger", labelled(3000, 2.0, 2, "b"), settings)
    assert (better["verdict"], better["verdict_code"]) == ("better", 1)
    assert better["interval"][0] > 0
    worse = challenger.compare("Champion", champion, "Challenger", labelled(3000, 0.3, 3, "b"), settings)
    assert (worse["verdict"], worse["verdict_code"]) == ("worse", -1)
    same = challenger.compare("Champion", champion, "Challenger", labelled(3000, 1.0, 4, "b"), settings)
    assert (same["verdict"], same["verdict_code"]) == ("not yet significant", 0)
    few = challenger.compare("Champion", champion, "Challenger", labelled(50, 3.0, 5, "b"), settings)
    assert few["verdict_code"] is None
    assert few["verdict"].startswith("no verdict: each variant needs 200 labelled records")
    delong = challenger.compare(
        "Champion", champion, "Challenger", labelled(3000, 2.0, 2, "b"), ChallengerSettings(method="delong")
    )
    assert delong["verdict"] == "better"
    assert delong["method"] == "delong"


def test_a_shadow_variant_scoring_the_same_requests_is_compared_pairwise() -> None:
    champion = labelled(2000, 1.0, 1, "r")
    # the shadow scored the same requests (same ids, same labels) with slightly better scores
    shadow_scores = np.clip(champion.scores + 0.05 * (champion.labels - 0.5), 0, 1)
    shadow = challenger.Labelled(shadow_scores, champion.labels, champion.ids)
    for method in ("bootstrap", "delong"):
        result = challenger.compare("Champion", champion, "Shadow", shadow, ChallengerSettings(method=method))
        assert result["paired"] is True
        assert result["labelled_records"]["shared"] == 2000
        # pairing removes the shared noise: a small but consistent gain is significant
        assert result["verdict"] == "better", result
    unpaired = challenger.compare(
        "Champion",
        champion,
        "Shadow",
        challenger.Labelled(shadow.scores, shadow.labels, np.array([f"s{i}" for i in range(2000)])),
        ChallengerSettings(),
    )
    assert unpaired["paired"] is False
