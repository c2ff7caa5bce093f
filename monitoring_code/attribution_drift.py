"""Attribution drift: mean absolute SHAP value per feature on captured data against the baseline.

XGBoost computes exact TreeSHAP itself (``predict(..., pred_contribs=True)``), in log-odds. The
global attribution of a feature is its mean absolute SHAP value over a sample of rows; the drift
check is Clarify's: the nDCG of the window's feature ranking, with the baseline's attributions as
relevance (scikit-learn's ``ndcg_score``), below ``min_ndcg`` (0.90) is a violation.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from numpy.typing import NDArray
from sklearn.metrics import ndcg_score

from monitoring_env import MODEL_FILE, DataError

Violation = dict[str, Any]


def load_model(folder: Path) -> xgb.Booster:
    """``xgboost-model`` from a folder, or from the model.tar.gz in it (read in memory, nothing extracted)."""
    direct = folder / MODEL_FILE
    if direct.is_file():
        return xgb.Booster(model_file=bytearray(direct.read_bytes()))
    # model.tar.gz first: the folder may hold other archives or the variant's baseline files too.
    archives = sorted(folder.glob("*.tar.gz"), key=lambda path: (path.name != "model.tar.gz", path.name))
    if not archives:
        raise DataError(f"no {MODEL_FILE} and no model.tar.gz in {folder}; give the job the model the variant serves")
    with tarfile.open(archives[0]) as archive:
        member = next((m for m in archive.getmembers() if Path(m.name).name == MODEL_FILE and m.isfile()), None)
        content = archive.extractfile(member) if member is not None else None
        if content is None:
            raise DataError(f"{archives[0]} holds no {MODEL_FILE} (found {archive.getnames()[:5]})")
        return xgb.Booster(model_file=bytearray(content.read()))


def check_features(booster: xgb.Booster, names: tuple[str, ...], where: str) -> None:
    if booster.feature_names and tuple(booster.feature_names) != names:
        raise DataError(
            f"{where}: the model expects features {list(booster.feature_names)}; the schema says {list(names)}. "
            "Monitor a model trained on this schema"
        )


def mean_abs_shap(booster: xgb.Booster, rows: NDArray[np.float64], names: tuple[str, ...]) -> dict[str, float]:
    """Mean |SHAP| per feature over ``rows`` (NaN = missing, as XGBoost treats it)."""
    contributions = booster.predict(xgb.DMatrix(rows.astype(np.float32), feature_names=list(names)), pred_contribs=True)
    means = np.abs(contributions[:, : len(names)]).mean(axis=0)
    return {name: float(value) for name, value in zip(names, means, strict=True)}


def ranking(values: dict[str, float]) -> list[str]:
    return sorted(values, key=lambda name: (-values[name], name))


def ndcg(baseline: dict[str, float], current: dict[str, float]) -> float:
    """nDCG of the current ranking with the baseline attributions as relevance (1.0 = same order)."""
    names = list(baseline)
    return float(ndcg_score([[baseline[n] for n in names]], [[current.get(n, 0.0) for n in names]]))


def analysis_json(values: dict[str, float], rows: int) -> dict[str, Any]:
    """Clarify's explainability analysis layout (global SHAP values under label0) with the ranking."""
    return {
        "version": "1.0",
        "explanations": {
            "kernel_shap": {
                "label0": {
                    "global_shap_values": {name: round(value, 8) for name, value in values.items()},
                    "method": "xgboost TreeSHAP (pred_contribs), mean |SHAP| in log-odds",
                    "rows": rows,
                    "ranking": ranking(values),
                }
            }
        },
    }


def baseline_values(analysis: dict[str, Any]) -> dict[str, float]:
    values = analysis["explanations"]["kernel_shap"]["label0"]["global_shap_values"]
    return {str(name): float(value) for name, value in values.items()}


def compare(
    baseline: dict[str, float], current: dict[str, float], *, min_ndcg: float
) -> tuple[float, list[Violation], list[dict[str, Any]]]:
    """(nDCG, violations, per-feature changes with ranks)."""
    score = ndcg(baseline, current)
    before, after = ranking(baseline), ranking(current)
    changes = [
        {
            "feature": name,
            "baseline": baseline[name],
            "current": current.get(name, 0.0),
            "baseline_rank": before.index(name) + 1,
            "current_rank": after.index(name) + 1 if name in after else None,
        }
        for name in before
    ]
    found: list[Violation] = []
    if score < min_ndcg:
        moved = [
            f"{c['feature']} {c['baseline_rank']}->{c['current_rank']}"
            for c in changes
            if c["baseline_rank"] != c["current_rank"]
        ]
        found.append(
            {
                "feature_name": "",
                "label": "label0",
                "metric_name": "shap",
                "constraint_check_type": "feature_attribution_drift_check",
                "description": (
                    f"nDCG of the feature attribution ranking {score:.4f} is below {min_ndcg}; rank changes: "
                    + ", ".join(moved[:6])
                ),
                "value": round(score, 6),
                "threshold": min_ndcg,
            }
        )
    return score, found, changes
