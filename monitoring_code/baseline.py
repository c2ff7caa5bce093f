"""Processing step of the training pipeline: every monitoring baseline of one model version.

Runs after Evaluate, in the XGBoost image (no Model Monitor analyzer, which AWS closed to new
customers). Reads the model, the baseline split (the training rows' features with a header, as
preprocess.py writes ``baseline/``), the held-out test split (label first, no header) and, when
given, evaluate.py's ``evaluation.json``; writes under ``--output``:

- ``data_quality/statistics.json``, ``data_quality/constraints.json``: Model Monitor's formats;
- ``model_quality/statistics.json``, ``model_quality/constraints.json``;
- ``bias/analysis.json`` (+ ``analysis_config.json``): segment gaps of the schema's protected attributes;
- ``attribution/analysis.json`` (+ ``analysis_config.json``): mean |SHAP| per feature, and the ranking;
- ``baseline_sample.csv``: a seeded uniform sample of the baseline rows with the model's score;
- ``manifest.json``: every file with its sha256.

The pipeline registers them with the model package (DriftCheckBaselines, ModelMetrics); monitor.py
finds them through the version each variant serves. See CONTRACT.md for the file formats.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from numpy.typing import NDArray

import attribution_drift
import bias_drift
import model_quality
from baseline_files import (
    ATTRIBUTION_ANALYSIS,
    ATTRIBUTION_CONFIG,
    BIAS_ANALYSIS,
    BIAS_CONFIG,
    DATA_QUALITY_CONSTRAINTS,
    DATA_QUALITY_STATISTICS,
    MANIFEST,
    MODEL_QUALITY_CONSTRAINTS,
    MODEL_QUALITY_STATISTICS,
    SAMPLE,
    SCORE_COLUMN,
    read_json,
)
from data_quality import FeatureStatistics, constraints_json, feature_specs, statistics_json, validate
from feature_schema import FeatureSchema, load_schema
from monitor import protected_attributes
from monitor_config import MonitorConfig, load_config
from monitoring_env import PROCESSING, ConfigurationError, DataError, JobArgumentParser, run_job

DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet")
READ_ROWS = 200_000


def data_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{what}: {folder} does not exist; give the step its input folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(DATA_SUFFIXES))
    if not files:
        raise DataError(f"{what}: no .csv, .csv.gz or .parquet file in {folder}")
    return files


def baseline_chunks(folder: Path, names: tuple[str, ...]) -> Iterator[NDArray[np.float64]]:
    """The baseline rows' model features (files with a header), in chunks of at most READ_ROWS rows."""
    for path in data_files(folder, "baseline data"):
        if path.name.endswith(".parquet"):
            frames: Any = [pd.read_parquet(path)]
        else:
            frames = pd.read_csv(path, chunksize=READ_ROWS, dtype=str, keep_default_na=False)
        for frame in frames:
            frame.columns = [str(c) for c in frame.columns]
            missing = [n for n in names if n not in frame.columns]
            if missing:
                raise DataError(
                    f"baseline data {path.name}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}. "
                    "The baseline split needs a header with the model's features (preprocess.py writes it)"
                )
            values = np.empty((len(frame), len(names)))
            for index, name in enumerate(names):
                column = frame[name]
                if column.dtype == object:
                    text = column.astype(str).str.strip()
                    numbers = pd.to_numeric(text.where(text != ""), errors="coerce")
                    bad = numbers.isna() & (text != "")
                    if bad.any():
                        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
                        raise DataError(
                            f"baseline data {path.name}: line {line}: {name} = {text[bad].iloc[0]!r} is not a number"
                        )
                    column = numbers
                values[:, index] = column.to_numpy(dtype=np.float64)
            yield values


def read_test(folder: Path, schema: FeatureSchema) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(features, labels) of the test split: CSV without header (label first) or Parquet by name."""
    columns = list(schema.training_columns)
    parts_x, parts_y = [], []
    for path in data_files(folder, "test data"):
        if path.name.endswith(".parquet"):
            frame = pd.read_parquet(path)
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise DataError(f"test data {path.name}: missing column(s) {', '.join(missing)}")
            frame = frame[columns]
        else:
            frame = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
            if frame.shape[1] != len(columns):
                raise DataError(
                    f"test data {path.name}: {frame.shape[1]} columns; expected {len(columns)} "
                    f"({', '.join(columns)}, no header) as preprocess.py writes them"
                )
            frame.columns = columns
            if any(str(value).strip() in columns for value in frame.iloc[0]) if len(frame) else False:
                raise DataError(
                    f"test data {path.name}: the first line is a header; test files have none (columns are "
                    f"{', '.join(columns)} in that order, as preprocess.py writes them)"
                )
        values = frame.apply(lambda c: pd.to_numeric(c.astype(str).str.strip().replace("", np.nan), errors="coerce"))
        bad_label = ~values[schema.label.name].isin(schema.label.allowed or (0, 1))
        if bad_label.any():
            line = int(np.flatnonzero(bad_label.to_numpy())[0]) + 1
            raise DataError(
                f"test data {path.name}: line {line}: label {schema.label.name} = "
                f"{frame[schema.label.name].iloc[line - 1]!r}; it must be "
                + " or ".join(f"{a:g}" for a in (schema.label.allowed or (0, 1)))
            )
        parts_x.append(values[list(schema.model_features)].to_numpy(dtype=np.float64))
        parts_y.append(values[schema.label.name].to_numpy(dtype=np.float64))
    features, labels = np.concatenate(parts_x), np.concatenate(parts_y)
    if len(np.unique(labels)) < 2:
        raise DataError(
            f"test data in {folder}: only one label value ({len(labels)} rows); the baselines need both classes"
        )
    return features, labels


def predict(booster: xgb.Booster, values: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(booster.inplace_predict(values.astype(np.float32)), dtype=np.float64)


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, allow_nan=False), encoding="utf-8")


def build(
    *,
    baseline_data: Path,
    model: Path,
    test_data: Path,
    evaluation: Path | None,
    output: Path,
    config: MonitorConfig,
    sample_size: int,
    seed: int,
    schema: FeatureSchema | None = None,
) -> dict[str, Any]:
    """Write every baseline under ``output``; returns the manifest."""
    schema = schema or load_schema()
    names = schema.model_features
    specs = feature_specs(schema)
    booster = attribution_drift.load_model(model)
    attribution_drift.check_features(booster, names, f"model in {model}")

    # data quality: exact statistics over every baseline row, and a uniform sample with scores
    statistics = FeatureStatistics(specs, sample_size, seed=seed)
    for values in baseline_chunks(baseline_data, names):
        parsed = validate(values, specs)
        statistics.add(parsed, predict(booster, parsed.values))
    if statistics.rows == 0:
        raise DataError(f"baseline data in {baseline_data}: the files hold no rows")
    _write(output / DATA_QUALITY_STATISTICS, statistics_json(statistics))
    _write(output / DATA_QUALITY_CONSTRAINTS, constraints_json(statistics, config))
    sample = pd.DataFrame(statistics.sample.rows, columns=[*names, SCORE_COLUMN])
    sample.to_csv(output / SAMPLE, index=False, float_format="%.10g")

    # model quality: the registered evaluation when given, else the test split's
    test_x, test_y = read_test(test_data, schema)
    test_scores = predict(booster, test_x)
    if evaluation is not None:
        document = read_json(_evaluation_file(evaluation), "evaluation")
        quality = model_quality.registered_metrics(document)
        if "auc" not in quality:
            raise DataError(
                f"evaluation {evaluation}: no binary_classification_metrics.auc.value; pass evaluate.py's evaluation.json"
            )
        statistics_document = {"version": 0.0, **document}
    else:
        statistics_document = model_quality.statistics_json(test_scores, test_y, config.prediction_threshold)
        quality = model_quality.registered_metrics(statistics_document)
    _write(output / MODEL_QUALITY_STATISTICS, statistics_document)
    _write(output / MODEL_QUALITY_CONSTRAINTS, model_quality.constraints_json(quality, config.model_quality))

    # bias: the protected attributes' segment gaps on the test split
    protected = protected_attributes(schema, config)
    counts: dict[tuple[str, float], bias_drift.SegmentCounts] = {}
    predicted = test_scores >= config.prediction_threshold
    for name, allowed in protected:
        column = validate(test_x.copy(), specs).values[:, names.index(name)]
        bias_drift.count_predictions(counts, name, allowed, column, predicted)
        bias_drift.count_labels(counts, name, allowed, column, predicted, test_y)
    _write(output / BIAS_ANALYSIS, bias_drift.analysis_json(counts, schema.label.name))
    _write(output / BIAS_CONFIG, _bias_config(schema, protected, config))

    # attribution: mean |SHAP| on a seeded sample of the test split
    rng = np.random.default_rng(seed)
    rows = test_x[
        np.sort(rng.choice(len(test_x), size=min(len(test_x), config.attribution.sample_size), replace=False))
    ]
    attribution = attribution_drift.mean_abs_shap(booster, rows, names)
    _write(output / ATTRIBUTION_ANALYSIS, attribution_drift.analysis_json(attribution, len(rows)))
    _write(output / ATTRIBUTION_CONFIG, _attribution_config(schema, statistics))

    files: dict[str, dict[str, Any]] = {}
    manifest: dict[str, Any] = {
        "created_by": "baseline.py",
        "model_features": list(names),
        "rows": {
            "baseline": statistics.rows,
            "baseline_sample": len(sample),
            "test": len(test_y),
            "attribution": len(rows),
        },
        "files": files,
    }
    for path in sorted(p for p in output.rglob("*") if p.is_file() and p.name != MANIFEST):
        content = path.read_bytes()
        files[path.relative_to(output).as_posix()] = {
            "sha256": hashlib.sha256(content).hexdigest(),
            "bytes": len(content),
        }
    _write(output / MANIFEST, manifest)
    return manifest


def _evaluation_file(path: Path) -> Path:
    if path.is_dir():
        candidate = path / "evaluation.json"
        if not candidate.is_file():
            raise DataError(f"evaluation: no evaluation.json in {path}")
        return candidate
    return path


def _bias_config(
    schema: FeatureSchema, protected: list[tuple[str, tuple[float, ...]]], config: MonitorConfig
) -> dict[str, Any]:
    return {
        "version": "1.0",
        "dataset_type": "text/csv",
        "headers": list(schema.training_columns),
        "label": schema.label.name,
        "label_values_or_threshold": [1],
        "facet": [
            {"name_or_index": name, "value_or_threshold": list(bias_drift.facet_values(allowed))}
            for name, allowed in protected
        ],
        "probability_threshold": config.prediction_threshold,
        "methods": {"post_training_bias": {"methods": ["DPPL", "DI", "RD"]}},
        "predictor": {"probability": 0},
    }


def _attribution_config(schema: FeatureSchema, statistics: FeatureStatistics) -> dict[str, Any]:
    medians = [
        float(np.median(statistics.column(i))) if len(statistics.column(i)) else 0.0
        for i in range(len(statistics.specs))
    ]
    return {
        "version": "1.0",
        "dataset_type": "text/csv",
        "headers": list(schema.model_features),
        "methods": {"shap": {"baseline": [medians], "num_samples": 100, "agg_method": "mean_abs", "use_logit": True}},
        "predictor": {"probability": 0},
    }


def main(argv: Sequence[str]) -> None:
    parser = JobArgumentParser(
        prog="baseline.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    inputs = PROCESSING / "input"
    parser.add_argument("--baseline-data", type=Path, default=inputs / "baseline", help="default: %(default)s")
    parser.add_argument("--model", type=Path, default=inputs / "model", help="default: %(default)s")
    parser.add_argument("--test-data", type=Path, default=inputs / "test", help="default: %(default)s")
    parser.add_argument("--evaluation", type=Path, default=None, help="evaluation.json or its folder (optional)")
    parser.add_argument("--output", type=Path, default=PROCESSING / "output", help="default: %(default)s")
    parser.add_argument("--config", type=Path, default=None, help="the monitoring config (thresholds, sample sizes)")
    parser.add_argument("--sample-size", type=int, default=100_000, help="rows of baseline_sample.csv (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--failure-file", type=Path, default=None, help="default: /opt/ml/output/message")
    args = parser.parse_args(list(argv))
    if not 1000 <= args.sample_size <= 5_000_000:
        raise ConfigurationError(f"--sample-size {args.sample_size} must be between 1000 and 5000000")
    config = load_config(args.config)
    manifest = build(
        baseline_data=args.baseline_data,
        model=args.model,
        test_data=args.test_data,
        evaluation=args.evaluation,
        output=args.output,
        config=config,
        sample_size=args.sample_size,
        seed=args.seed,
    )
    rows = manifest["rows"]
    print(
        f"baselines: {rows['baseline']} baseline rows (sample {rows['baseline_sample']}), {rows['test']} test rows, "
        f"SHAP on {rows['attribution']}; {len(manifest['files'])} files in {args.output}",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(run_job(main))
