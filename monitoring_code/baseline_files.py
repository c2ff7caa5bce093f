"""The layout of baseline.py's output, shared by the writer (baseline.py) and the reader (monitor.py)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_quality import BaselineFeatures
from monitoring_env import DataError

DATA_QUALITY_STATISTICS = "data_quality/statistics.json"
DATA_QUALITY_CONSTRAINTS = "data_quality/constraints.json"
MODEL_QUALITY_STATISTICS = "model_quality/statistics.json"
MODEL_QUALITY_CONSTRAINTS = "model_quality/constraints.json"
BIAS_ANALYSIS = "bias/analysis.json"
BIAS_CONFIG = "bias/analysis_config.json"
ATTRIBUTION_ANALYSIS = "attribution/analysis.json"
ATTRIBUTION_CONFIG = "attribution/analysis_config.json"
SAMPLE = "baseline_sample.csv"
MANIFEST = "manifest.json"
EVALUATION = "evaluation.json"  # the served version's registered evaluation, next to its baseline
SCORE_COLUMN = "prediction_score"
# A folder holding one of these is a baseline folder (monitor.py ignores a variant folder holding neither).
BASELINE_MARKERS = ("data_quality", SAMPLE)


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{what}: {path} is missing; run baseline.py for the model version this variant serves"
        ) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"{what}: {path} is not valid JSON ({str(error)[:120]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{what}: {path} holds {type(data).__name__}, not a JSON object")
    return data


@dataclass(frozen=True)
class Baseline:
    """One model version's baselines, as monitor.py uses them."""

    folder: Path
    features: BaselineFeatures
    quality: dict[str, float]  # registered evaluation metrics (empty when none)
    bias: dict[str, Any] | None
    attribution: dict[str, Any] | None


def read_baseline(folder: Path, model_features: tuple[str, ...]) -> Baseline:
    """Read baseline.py's output in ``folder``; a wrong or missing file names itself and the fix."""
    from model_quality import registered_metrics

    what = f"baseline {folder.name}"
    statistics = read_json(folder / DATA_QUALITY_STATISTICS, what)
    items = int(statistics.get("dataset", {}).get("item_count", 0)) or 1
    missing_share = {}
    for feature in statistics.get("features", []):
        common = feature.get("numerical_statistics", {}).get("common", {})
        missing_share[str(feature.get("name"))] = float(common.get("num_missing", 0)) / items
    sample_path = folder / SAMPLE
    try:
        sample = pd.read_csv(sample_path, dtype=np.float64)
    except FileNotFoundError:
        raise DataError(f"{what}: {sample_path} is missing; run baseline.py for this model version") from None
    except ValueError as error:
        raise DataError(f"{what}: {sample_path} is not a numeric CSV with a header ({str(error)[:120]})") from None
    missing = [name for name in (*model_features, SCORE_COLUMN) if name not in sample.columns]
    if missing:
        raise DataError(
            f"{what}: {sample_path} lacks column(s) {', '.join(missing)}; it was made for another feature schema. "
            "Rerun baseline.py with the schema the model was trained on"
        )
    features = BaselineFeatures(
        names=model_features,
        sample=sample[[*model_features, SCORE_COLUMN]].to_numpy(dtype=np.float64),
        missing_share=missing_share,
    )
    evaluation_path = folder / EVALUATION
    quality_path = evaluation_path if evaluation_path.is_file() else folder / MODEL_QUALITY_STATISTICS
    quality = registered_metrics(read_json(quality_path, what)) if quality_path.is_file() else {}
    bias = read_json(folder / BIAS_ANALYSIS, what) if (folder / BIAS_ANALYSIS).is_file() else None
    attribution = read_json(folder / ATTRIBUTION_ANALYSIS, what) if (folder / ATTRIBUTION_ANALYSIS).is_file() else None
    return Baseline(folder, features, quality, bias, attribution)


def finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
