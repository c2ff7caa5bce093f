"""Model quality: captured scores joined with ground truth, against thresholds and the registered evaluation.

Metrics are scikit-learn's, in the format of evaluate.py and Model Monitor's model-quality
statistics (``binary_classification_metrics.<metric>.value``), so the served version's registered
evaluation and a window's result compare field by field.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from monitor_config import MODEL_QUALITY_METRICS, ModelQualitySettings

METRICS = (*MODEL_QUALITY_METRICS, "log_loss")
Violation = dict[str, Any]


def quality_metrics(scores: NDArray[np.float64], labels: NDArray[np.float64], threshold: float) -> dict[str, float]:
    """AUC (NaN with one class), accuracy, precision, recall, F1 and log loss of scores against labels."""
    predicted = (scores >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    return {
        "auc": float(roc_auc_score(labels, scores)) if both else math.nan,
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "log_loss": float(log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1])),
    }


def statistics_json(
    scores: NDArray[np.float64], labels: NDArray[np.float64], threshold: float, baseline: dict[str, float] | None = None
) -> dict[str, Any]:
    """Model Monitor's model-quality statistics (evaluate.py's layout) of a labelled window."""
    values = quality_metrics(scores, labels, threshold)
    predicted = (scores >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, predicted, labels=[0, 1]).ravel())
    metrics: dict[str, Any] = {
        name: {"value": value if math.isfinite(value) else "NaN", "standard_deviation": "NaN"}
        for name, value in values.items()
    }
    metrics["confusion_matrix"] = {"0": {"0": tn, "1": fp}, "1": {"0": fn, "1": tp}}
    document: dict[str, Any] = {
        "version": 0.0,
        "dataset": {"item_count": len(labels), "positive_rate": round(float(labels.mean()), 6) if len(labels) else 0.0},
        "binary_classification_metrics": metrics,
        "threshold": threshold,
    }
    if baseline is not None:
        document["baseline"] = baseline
    return document


def registered_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """The metric values of an evaluation.json / model-quality statistics.json document."""
    metrics = evaluation.get("binary_classification_metrics", {})
    values: dict[str, float] = {}
    for name in METRICS:
        value = metrics.get(name, {}).get("value") if isinstance(metrics.get(name), dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            values[name] = float(value)
    return values


def constraints_json(baseline: dict[str, float], settings: ModelQualitySettings) -> dict[str, Any]:
    """Model Monitor's model-quality constraints: each metric may not fall below baseline - allowed drop
    (or its absolute floor, whichever is higher); log loss may not rise above baseline + allowed increase."""
    constraints: dict[str, Any] = {}
    for name in MODEL_QUALITY_METRICS:
        floors = []
        if name in baseline and name in settings.max_drop:
            floors.append(baseline[name] - settings.max_drop[name])
        if settings.minimum.get(name) is not None:
            floors.append(float(settings.minimum[name]))  # type: ignore[arg-type]
        if floors:
            constraints[name] = {"threshold": round(max(floors), 6), "comparison_operator": "LessThanThreshold"}
    ceilings = []
    if "log_loss" in baseline:
        ceilings.append(baseline["log_loss"] + settings.max_log_loss_increase)
    if settings.max_log_loss is not None:
        ceilings.append(settings.max_log_loss)
    if ceilings:
        constraints["log_loss"] = {"threshold": round(min(ceilings), 6), "comparison_operator": "GreaterThanThreshold"}
    return {"version": 0.0, "binary_classification_constraints": constraints}


def violations(values: dict[str, float], baseline: dict[str, float], settings: ModelQualitySettings) -> list[Violation]:
    """Metrics below their absolute floors or too far below the served version's registered evaluation."""
    found: list[Violation] = []

    def add(metric: str, check: str, threshold: float, description: str) -> None:
        found.append(
            {
                "feature_name": "",
                "metric_name": metric,
                "constraint_check_type": check,
                "description": description,
                "value": round(values[metric], 6),
                "threshold": round(threshold, 6),
            }
        )

    for name in MODEL_QUALITY_METRICS:
        value = values.get(name, math.nan)
        if not math.isfinite(value):
            continue
        floor = settings.minimum.get(name)
        if floor is not None and value < floor:
            add(name, "LessThanThreshold", floor, f"Metric {name} with {value:.4f} was LessThanThreshold {floor}")
        if name in baseline and name in settings.max_drop:
            limit = baseline[name] - settings.max_drop[name]
            if value < limit:
                add(
                    name,
                    "baseline_drop_check",
                    limit,
                    f"Metric {name} {value:.4f} is more than {settings.max_drop[name]} below the served version's "
                    f"registered {baseline[name]:.4f}",
                )
    loss = values.get("log_loss", math.nan)
    if math.isfinite(loss):
        if settings.max_log_loss is not None and loss > settings.max_log_loss:
            add(
                "log_loss",
                "GreaterThanThreshold",
                settings.max_log_loss,
                f"Metric log_loss with {loss:.4f} was GreaterThanThreshold {settings.max_log_loss}",
            )
        if "log_loss" in baseline and loss > baseline["log_loss"] + settings.max_log_loss_increase:
            add(
                "log_loss",
                "baseline_drop_check",
                baseline["log_loss"] + settings.max_log_loss_increase,
                f"Metric log_loss {loss:.4f} is more than {settings.max_log_loss_increase} above the served "
                f"version's registered {baseline['log_loss']:.4f}",
            )
    return found
