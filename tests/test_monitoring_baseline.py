"""baseline.py: every baseline of one model version, in the formats the registry and both backends read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

import attribution_drift
from baseline import main as baseline_main
from monitoring_env import run_job
from tests.monitoring_support import NAMES, MonitoringSetup, monitoring_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> MonitoringSetup:
    return monitoring_setup(tmp_path_factory)


@pytest.fixture(scope="module")
def built(setup: MonitoringSetup) -> Path:
    return setup.monitored.baselines / "Champion"


def test_manifest_lists_every_file_with_its_hash(built) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    expected = {
        "data_quality/statistics.json",
        "data_quality/constraints.json",
        "model_quality/statistics.json",
        "model_quality/constraints.json",
        "bias/analysis.json",
        "bias/analysis_config.json",
        "attribution/analysis.json",
        "attribution/analysis_config.json",
        "baseline_sample.csv",
    }
    assert set(manifest["files"]) == expected
    for name, entry in manifest["files"].items():
        content = (built / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}
    assert manifest["model_features"] == NAMES
    assert manifest["rows"]["baseline"] == 20_000


def test_data_quality_statistics_describe_the_baseline_split(setup, built) -> None:
    frame = pd.read_csv(setup.baseline_data / "baseline.csv")
    statistics = json.loads((built / "data_quality" / "statistics.json").read_text())
    assert statistics["dataset"]["item_count"] == len(frame)
    for feature in statistics["features"]:
        column = frame[feature["name"]]
        numbers = feature["numerical_statistics"]
        assert numbers["mean"] == pytest.approx(column.mean())
        assert numbers["std_dev"] == pytest.approx(column.std())
        assert (numbers["min"], numbers["max"]) == (column.min(), column.max())
    constraints = json.loads((built / "data_quality" / "constraints.json").read_text())
    assert [f["name"] for f in constraints["features"]] == NAMES
    assert all(f["completeness"] == 1.0 for f in constraints["features"])


def test_the_sample_holds_baseline_rows_with_the_models_scores(setup, built) -> None:
    sample = pd.read_csv(built / "baseline_sample.csv")
    assert list(sample.columns) == [*NAMES, "prediction_score"]
    assert len(sample) == 20_000  # the whole split: it is smaller than the sample size
    booster = xgb.Booster(model_file=bytearray((setup.model_dir / "xgboost-model").read_bytes()))
    scores = booster.inplace_predict(sample[NAMES].to_numpy(np.float32))
    assert np.allclose(sample["prediction_score"], scores, atol=1e-6)
    baseline = pd.read_csv(setup.baseline_data / "baseline.csv")
    assert sorted(map(tuple, sample[NAMES].to_numpy())) == sorted(map(tuple, baseline.to_numpy(dtype=float)))


def test_model_quality_is_the_registered_evaluation_with_constraints(setup, built) -> None:
    evaluation = json.loads(setup.evaluation.read_text())["binary_classification_metrics"]
    statistics = json.loads((built / "model_quality" / "statistics.json").read_text())
    assert statistics["binary_classification_metrics"]["auc"] == evaluation["auc"]
    constraints = json.loads((built / "model_quality" / "constraints.json").read_text())[
        "binary_classification_constraints"
    ]
    assert constraints["auc"]["threshold"] == pytest.approx(evaluation["auc"]["value"] - 0.05, abs=1e-6)
    assert constraints["auc"]["comparison_operator"] == "LessThanThreshold"


def test_bias_baseline_counts_the_test_split_by_segment(setup, built) -> None:
    test = pd.read_csv(setup.test_data / "test.csv", header=None, names=["churned", *NAMES])
    booster = xgb.Booster(model_file=bytearray((setup.model_dir / "xgboost-model").read_bytes()))
    predicted = booster.inplace_predict(test[NAMES].to_numpy(np.float32)) >= 0.5
    analysis = json.loads((built / "bias" / "analysis.json").read_text())["post_training_bias_metrics"]
    (senior,) = analysis["facets"]["is_senior"]
    counts = senior["counts"]
    is_senior = test["is_senior"].to_numpy() == 1
    assert counts["n"] == [int((~is_senior).sum()), int(is_senior.sum())]
    assert counts["predicted"] == [int(predicted[~is_senior].sum()), int(predicted[is_senior].sum())]
    dppl = next(m for m in senior["metrics"] if m["name"] == "DPPL")["value"]
    assert dppl == pytest.approx(predicted[~is_senior].mean() - predicted[is_senior].mean(), abs=1e-6)
    config = json.loads((built / "bias" / "analysis_config.json").read_text())
    assert config["facet"] == [{"name_or_index": "is_senior", "value_or_threshold": [1]}]
    assert config["label"] == "churned"


def test_attribution_baseline_is_mean_abs_shap_on_the_test_split(setup, built) -> None:
    analysis = json.loads((built / "attribution" / "analysis.json").read_text())
    values = attribution_drift.baseline_values(analysis)
    assert list(values) == NAMES
    test = pd.read_csv(setup.test_data / "test.csv", header=None, names=["churned", *NAMES])
    booster = xgb.Booster(model_file=bytearray((setup.model_dir / "xgboost-model").read_bytes()))
    everything = attribution_drift.mean_abs_shap(booster, test[NAMES].to_numpy(np.float64), tuple(NAMES))
    assert attribution_drift.ranking(values)[:3] == attribution_drift.ranking(everything)[:3]
    assert attribution_drift.ndcg(everything, values) > 0.99


def test_bad_inputs_exit_2_naming_the_file_and_the_fix(setup, tmp_path) -> None:
    broken = tmp_path / "baseline"
    broken.mkdir()
    pd.read_csv(setup.baseline_data / "baseline.csv").drop(columns=[NAMES[2]]).to_csv(broken / "b.csv", index=False)
    failure = tmp_path / "message"
    arguments = [
        "--baseline-data", str(broken),
        "--model", str(setup.model_dir),
        "--test-data", str(setup.test_data),
        "--output", str(tmp_path / "out"),
        "--failure-file", str(failure),
    ]  # fmt: skip
    assert run_job(baseline_main, arguments) == 2
    assert f"baseline data b.csv: missing column(s) {NAMES[2]}" in failure.read_text()

    with_header = tmp_path / "test"
    with_header.mkdir()
    (with_header / "test.csv").write_text(
        "churned," + ",".join(NAMES) + "\n" + "1," + ",".join("1" * len(NAMES)) + "\n"
    )
    arguments[arguments.index("--baseline-data") + 1] = str(setup.baseline_data)
    arguments[arguments.index("--test-data") + 1] = str(with_header)
    assert run_job(baseline_main, arguments) == 2
    assert "test data test.csv: the first line is a header; test files have none" in failure.read_text()

    arguments[arguments.index("--test-data") + 1] = str(setup.test_data)
    arguments[arguments.index("--model") + 1] = str(tmp_path)
    assert run_job(baseline_main, arguments) == 2
    assert "no xgboost-model and no model.tar.gz in" in failure.read_text()

    assert run_job(baseline_main, [*arguments, "--sample-size", "10"]) == 2
    assert "--sample-size 10 must be between 1000 and 5000000" in failure.read_text()
