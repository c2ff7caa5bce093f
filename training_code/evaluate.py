"""Processing step: score the held-out test split and write the evaluation the pipeline reads.

Inputs: the training job's ``model.tar.gz`` (or a bare ``xgboost-model``) under
``/opt/ml/processing/input/model`` and ``test/`` under ``/opt/ml/processing/input/test``.

Outputs under ``/opt/ml/processing/output/evaluation``:

- ``evaluation.json``: SageMaker's model-quality format (``binary_classification_metrics``: auc,
  accuracy, precision, recall, f1, log_loss, confusion matrix, ROC and precision-recall curves).
  The pipeline's AUC condition reads ``binary_classification_metrics.auc.value`` and the Model
  Registry attaches the file as the version's model quality statistics;
- ``evaluation.html``: a report people can read, with ``roc.png``, ``precision_recall.png`` and
  ``feature_importance.png``.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in a processing job
import matplotlib.pyplot as plt
import numpy as np
import xgboost as xgb
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from churn_data import read_training_channel, require_both_classes
from feature_schema import load_schema
from training_env import MODEL_FILE, DataError, processing_dir, run_job

CURVE_POINTS = 101


def load_model(model_input: Path) -> xgb.Booster:
    """Load ``xgboost-model`` the way the serving container does, from a folder or model.tar.gz."""
    direct = model_input / MODEL_FILE
    if direct.exists():
        return xgb.Booster(model_file=str(direct))
    archives = sorted(model_input.glob("*.tar.gz"))
    if not archives:
        raise DataError(f"no {MODEL_FILE} and no model.tar.gz in {model_input}")
    with tarfile.open(archives[0]) as archive:
        member = next((m for m in archive.getmembers() if Path(m.name).name == MODEL_FILE and m.isfile()), None)
        if member is None:
            raise DataError(f"{archives[0].name} holds no {MODEL_FILE} (found {archive.getnames()[:5]})")
        # Read the one member in memory: nothing is written, whatever paths the archive holds.
        content = archive.extractfile(member)
        assert content is not None  # a regular file always has content
        return xgb.Booster(model_file=bytearray(content.read()))


def _metric(value: float) -> dict[str, Any]:
    return {"value": value, "standard_deviation": "NaN"}


def _curve(x: NDArray[Any], y: NDArray[Any]) -> tuple[list[float], list[float]]:
    """Thin a curve to at most CURVE_POINTS points so the JSON stays small."""
    if len(x) > CURVE_POINTS:
        keep = np.unique(np.linspace(0, len(x) - 1, CURVE_POINTS).round().astype(int))
        x, y = x[keep], y[keep]
    return [round(float(v), 6) for v in x], [round(float(v), 6) for v in y]


def evaluate(
    booster: xgb.Booster, features: NDArray[Any], labels: NDArray[Any], threshold: float = 0.5
) -> dict[str, Any]:
    scores = booster.inplace_predict(features)
    predicted = (scores >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, predicted, labels=[0, 1]).ravel())
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    roc_x, roc_y = _curve(fpr, tpr)
    pr_recall, pr_precision = _curve(recall[::-1], precision[::-1])
    return {
        "binary_classification_metrics": {
            "auc": _metric(float(roc_auc_score(labels, scores))),
            "accuracy": _metric(float(accuracy_score(labels, predicted))),
            "precision": _metric(float(precision_score(labels, predicted, zero_division=0))),
            "recall": _metric(float(recall_score(labels, predicted, zero_division=0))),
            "f1": _metric(float(f1_score(labels, predicted, zero_division=0))),
            "log_loss": _metric(float(log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1]))),
            "confusion_matrix": {"0": {"0": tn, "1": fp}, "1": {"0": fn, "1": tp}},
            "receiver_operating_characteristic_curve": {"false_positive_rates": roc_x, "true_positive_rates": roc_y},
            "precision_recall_curve": {"recalls": pr_recall, "precisions": pr_precision},
        },
        "threshold": threshold,
        "rows": len(labels),
        "positive_rate": round(float(labels.mean()), 6),
    }


def _plot(path: Path, draw: Any) -> str:
    figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
    draw(axes)
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
    return base64.b64encode(path.read_bytes()).decode()


def write_report(report: dict[str, Any], booster: xgb.Booster, output: Path) -> Path:
    metrics = report["binary_classification_metrics"]
    roc = metrics["receiver_operating_characteristic_curve"]
    pr = metrics["precision_recall_curve"]
    gain = booster.get_score(importance_type="gain")
    names = sorted(gain, key=gain.__getitem__)

    def roc_plot(ax: Any) -> None:
        ax.plot(roc["false_positive_rates"], roc["true_positive_rates"], label=f"AUC {metrics['auc']['value']:.3f}")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve")
        ax.legend(loc="lower right")

    def pr_plot(ax: Any) -> None:
        ax.plot(pr["recalls"], pr["precisions"])
        ax.axhline(report["positive_rate"], linestyle="--", color="grey", label="churn rate")
        ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall curve")
        ax.legend(loc="upper right")

    def importance_plot(ax: Any) -> None:
        ax.barh(names, [gain[n] for n in names])
        ax.set(xlabel="Total gain", title="Feature importance")

    images = {
        "roc.png": _plot(output / "roc.png", roc_plot),
        "precision_recall.png": _plot(output / "precision_recall.png", pr_plot),
        "feature_importance.png": _plot(output / "feature_importance.png", importance_plot),
    }
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{metrics[name]['value']:.4f}</td></tr>"
        for name in ("auc", "accuracy", "precision", "recall", "f1", "log_loss")
    )
    matrix = metrics["confusion_matrix"]
    figures = "".join(f'<img alt="{name}" src="data:image/png;base64,{data}">' for name, data in images.items())
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Churn model evaluation</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 10px}img{margin:1em 1em 0 0}</style></head><body>"
        f"<h1>Churn model evaluation</h1><p>{report['rows']} test rows, churn rate {report['positive_rate']:.3f}, "
        f"threshold {report['threshold']}.</p><table><tr><th>Metric</th><th>Value</th></tr>{rows}</table>"
        "<h2>Confusion matrix</h2><table><tr><th></th><th>predicted 0</th><th>predicted 1</th></tr>"
        f"<tr><th>actual 0</th><td>{matrix['0']['0']}</td><td>{matrix['0']['1']}</td></tr>"
        f"<tr><th>actual 1</th><td>{matrix['1']['0']}</td><td>{matrix['1']['1']}</td></tr></table>"
        f"<div>{figures}</div></body></html>"
    )
    path = output / "evaluation.html"
    path.write_text(page)
    return path


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=None, help="default: /opt/ml/processing/input/model")
    parser.add_argument("--test-dir", type=Path, default=None, help="default: /opt/ml/processing/input/test")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: /opt/ml/processing/output/evaluation")
    parser.add_argument("--threshold", type=float, default=0.5, help="score at or above which a customer churns")
    args = parser.parse_args(list(argv))
    schema = load_schema()
    booster = load_model(args.model_dir or processing_dir("input", "model"))
    test = read_training_channel(args.test_dir or processing_dir("input", "test"), schema, channel="test")
    require_both_classes(test.labels, channel="test")
    if booster.feature_names and list(booster.feature_names) != list(schema.model_features):
        raise DataError(
            f"the model expects features {booster.feature_names}; the schema says {list(schema.model_features)}"
        )
    output = args.output_dir or processing_dir("output", "evaluation")
    output.mkdir(parents=True, exist_ok=True)
    report = evaluate(booster, test.features, test.labels, args.threshold)
    (output / "evaluation.json").write_text(json.dumps(report, indent=2))
    page = write_report(report, booster, output)
    metrics = report["binary_classification_metrics"]
    print(
        "test: "
        + ", ".join(f"{name} {metrics[name]['value']:.4f}" for name in ("auc", "accuracy", "precision", "recall", "f1"))
        + f"; report: {page}",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(run_job(main))
