"""evaluate.py: SageMaker's model-quality JSON, the human report, and clear failures."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from numpy.typing import NDArray
from sklearn.metrics import f1_score, log_loss, roc_auc_score

from churn_data import generate_customers, write_training_file
from evaluate import main as evaluate_main
from feature_schema import load_schema
from training_env import run_job

SCHEMA = load_schema()


@pytest.fixture
def scored(sagemaker_root: Path) -> tuple[Path, xgb.Booster, NDArray[Any], NDArray[Any]]:
    train = generate_customers(3000, seed=21)
    test = generate_customers(1500, seed=22)
    names = list(SCHEMA.model_features)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "nthread": 1, "eval_metric": "auc"},
        xgb.DMatrix(train[names].to_numpy(np.float32), label=train["churned"], feature_names=names),
        num_boost_round=30,
    )
    model_input = sagemaker_root / "processing" / "input" / "model"
    model_input.mkdir(parents=True)
    (model_input / "xgboost-model").write_bytes(booster.save_raw("ubj"))
    with tarfile.open(model_input / "model.tar.gz", "w:gz") as archive:
        archive.add(model_input / "xgboost-model", arcname="xgboost-model")
    (model_input / "xgboost-model").unlink()  # evaluate must find it inside model.tar.gz, as in the pipeline
    write_training_file(test, sagemaker_root / "processing" / "input" / "test" / "test.csv", SCHEMA)
    return sagemaker_root, booster, test[names].to_numpy(np.float32), test["churned"].to_numpy()


def test_evaluation_json_is_model_quality_format_with_correct_values(scored) -> None:
    root, booster, features, labels = scored
    assert run_job(evaluate_main, []) == 0
    report = json.loads((root / "processing" / "output" / "evaluation" / "evaluation.json").read_text())
    metrics = report["binary_classification_metrics"]
    scores = booster.inplace_predict(features)
    assert metrics["auc"]["value"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    assert metrics["f1"]["value"] == pytest.approx(f1_score(labels, scores >= 0.5), abs=1e-9)
    assert metrics["log_loss"]["value"] == pytest.approx(log_loss(labels, scores), abs=1e-6)
    assert all(metrics[m]["standard_deviation"] == "NaN" for m in ("auc", "accuracy", "precision", "recall", "f1"))
    matrix = metrics["confusion_matrix"]
    assert sum(matrix[a][p] for a in "01" for p in "01") == len(labels)
    assert matrix["1"]["1"] == int(((scores >= 0.5) & (labels == 1)).sum())
    roc = metrics["receiver_operating_characteristic_curve"]
    assert len(roc["false_positive_rates"]) == len(roc["true_positive_rates"]) <= 101
    assert roc["false_positive_rates"][0] == 0.0
    assert roc["true_positive_rates"][-1] == 1.0


def test_report_has_curves_and_importance(scored) -> None:
    root, *_ = scored
    assert run_job(evaluate_main, []) == 0
    output = root / "processing" / "output" / "evaluation"
    for image in ("roc.png", "precision_recall.png", "feature_importance.png"):
        assert (output / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (output / "evaluation.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "Confusion matrix" in page


def test_a_model_trained_on_other_features_is_refused(scored) -> None:
    root, *_ = scored
    archive = root / "processing" / "input" / "model" / "model.tar.gz"
    other = xgb.train({"nthread": 1}, xgb.DMatrix(np.ones((4, 2)), label=[0, 1, 0, 1], feature_names=["a", "b"]), 2)
    (root / "xgboost-model").write_bytes(other.save_raw("ubj"))
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "xgboost-model", arcname="xgboost-model")
    assert run_job(evaluate_main, []) == 2
    assert "the model expects features ['a', 'b']" in (root / "output" / "failure").read_text()


def test_missing_model_is_named(scored) -> None:
    root, *_ = scored
    (root / "processing" / "input" / "model" / "model.tar.gz").unlink()
    assert run_job(evaluate_main, []) == 2
    assert "no xgboost-model and no model.tar.gz" in (root / "output" / "failure").read_text()
