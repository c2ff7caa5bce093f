"""Processing step: one monitoring run over one window of an endpoint's captured traffic, every variant.

Reads the window's data capture (SageMaker's JSON lines under ``<endpoint>/<variant>/yyyy/mm/dd/hh/``),
optionally the capture of the window one label delay back (``--labelled-capture``), the ground truth
that has arrived, and per variant the baselines of the model version it serves. Data quality,
integrity, attribution and the prediction-only bias metrics (DPPL, DI) judge the window's capture;
model quality, the label-based bias metrics (recall and false-positive-rate gaps) and the challenger
comparison judge the ground truth matched against the labelled capture, or against the window's
capture when the run has none. It writes under ``--output``:

- ``<Variant>/statistics.json`` and ``<Variant>/constraint_violations.json`` (Model Monitor's formats),
  and, when evaluated, ``model_quality.json``, ``bias.json`` and ``attribution.json``;
- ``report.html``: one page with the plots;
- ``metrics.json``: the CloudWatch metrics the pipeline publishes (Model Monitor's names);
- ``summary.json``: the verdict and the action it calls for (retrain, notify), see CONTRACT.md.

Checks: data integrity and drift per feature, model quality against the served version's registered
evaluation, bias drift of the protected attributes' segments, attribution (SHAP) drift, and every
challenger against the champion. A violation is a result, not a failure: the job exits 0; it exits 2
only when its inputs or settings are unusable.

    python3 monitor.py --capture capture/ --labelled-capture labelled/capture/ \\
        --ground-truth labelled/ground-truth/ --baselines baselines/ --models models/ \\
        --endpoint churn-prod --window-start 2026-12-01T10:00:00Z --window-end 2026-12-01T11:00:00Z \\
        --output report/
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

import attribution_drift
import bias_drift
import challenger
import model_quality
from baseline_files import BASELINE_MARKERS, Baseline, read_baseline
from capture_format import (
    CaptureChunk,
    GroundTruth,
    Malformed,
    holds_capture,
    parse_time,
    read_capture,
    read_ground_truth,
)
from data_quality import FeatureStatistics, drift, feature_specs, integrity, parse_rows, statistics_json
from feature_schema import FeatureSchema, load_schema
from monitor_config import MonitorConfig, load_config
from monitor_report import write_report
from monitoring_env import PROCESSING, ConfigurationError, DataError, JobArgumentParser, run_job

DEFAULT_NAMESPACE = "MLPlatform/ModelMonitoring"
DEFAULT_CONFIG = PROCESSING / "input" / "config" / "monitoring.json"
CATEGORIES = ("data_drift", "data_integrity", "model_quality", "bias_drift", "attribution_drift")
Violation = dict[str, Any]


# --- accumulating one window ----------------------------------------------------------------------


@dataclass
class LabelledRows:
    """A variant's captured rows that have a usable label: score, label, protected values, join id."""

    width: int  # columns of ``protected``: one per protected attribute
    scores: list[NDArray[np.float64]] = field(default_factory=list)
    labels: list[NDArray[np.float64]] = field(default_factory=list)
    protected: list[NDArray[np.float64]] = field(default_factory=list)
    ids: list[NDArray[np.str_]] = field(default_factory=list)
    unusable: int = 0  # ground-truth entries of captured rows that are not a usable label

    def add(
        self,
        scores: NDArray[np.float64],
        labels: NDArray[np.float64],
        protected: NDArray[np.float64],
        ids: NDArray[np.str_],
    ) -> None:
        self.scores.append(scores)
        self.labels.append(labels)
        self.protected.append(protected)
        self.ids.append(ids)

    def arrays(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.str_]]:
        if not self.labels:
            return np.empty(0), np.empty(0), np.empty((0, self.width)), np.empty(0, dtype=str)
        return (
            np.concatenate(self.scores),
            np.concatenate(self.labels),
            np.concatenate(self.protected),
            np.concatenate(self.ids),
        )


@dataclass
class VariantWindow:
    """Everything the passes over the capture collect for one variant, in bounded memory: statistics,
    integrity and prediction counts of the window's capture, and the labelled rows (of the labelled
    capture when the run has one, else of the window's capture)."""

    name: str
    statistics: FeatureStatistics
    labelled_rows: LabelledRows
    malformed: Malformed = field(default_factory=Malformed)
    predictions: dict[tuple[str, float], bias_drift.SegmentCounts] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return self.statistics.rows + self.statistics.short + self.statistics.long

    def labelled(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.str_]]:
        return self.labelled_rows.arrays()


def _new_window(name: str, schema: FeatureSchema, config: MonitorConfig, width: int) -> VariantWindow:
    seed = sum(map(ord, name))  # stable per variant
    statistics = FeatureStatistics(feature_specs(schema), config.drift_sample_size, seed=seed)
    return VariantWindow(name, statistics, LabelledRows(width))


def _scores(texts: list[str]) -> NDArray[np.float64]:
    """Scores as numbers; NaN where a score is not a number in [0, 1]."""
    try:
        values = np.array(texts, dtype=np.float64)
    except ValueError:
        values = pd.to_numeric(pd.Series(texts, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    values[(values < 0) | (values > 1) | ~np.isfinite(values)] = np.nan
    return values


def _label_values(
    texts: list[str | None], positions: NDArray[np.int64], sizes: NDArray[np.int64]
) -> tuple[NDArray[np.float64], int]:
    """The label of each row from its request's ground-truth text (NaN when none) and how many texts
    were unusable (not a label value, or not one label per row of a multi-row request)."""
    labels = np.full(len(texts), np.nan)
    unusable = 0
    for index, text in enumerate(texts):
        if text is None:
            continue
        if sizes[index] == 1:
            value = text.strip()
        else:
            parts = text.replace(",", "\n").split()
            value = parts[positions[index]] if len(parts) == sizes[index] else ""
        if value in ("0", "1", "0.0", "1.0"):
            labels[index] = float(value)
        else:
            unusable += 1
    return labels, unusable


def _labels(chunk: CaptureChunk, keep: NDArray[np.bool_], truth: GroundTruth) -> tuple[NDArray[np.float64], int]:
    """The label of each kept row (NaN when none) and how many ground-truth entries were unusable."""
    lookup = truth.labels.get
    texts = [lookup(chunk.ids[i]) for i in np.flatnonzero(keep)]
    return _label_values(texts, np.asarray(chunk.positions)[keep], np.asarray(chunk.sizes)[keep])


def accumulate(
    capture: Path, truth: GroundTruth, schema: FeatureSchema, config: MonitorConfig, *, chunk_rows: int = 50_000
) -> tuple[dict[str, VariantWindow], set[str]]:
    """One streaming pass over the window's capture: per-variant statistics and segment counts, and the
    rows ``truth`` labels (an empty ``GroundTruth`` when the labels are matched in a labelled capture)."""
    specs = feature_specs(schema)
    names = schema.model_features
    protected = protected_attributes(schema, config)
    protected_index = [names.index(name) for name, _ in protected]
    malformed: dict[str, Malformed] = {}
    windows: dict[str, VariantWindow] = {}
    matched: set[str] = set()
    for chunk in read_capture(capture, names, chunk_rows=chunk_rows, malformed=malformed):
        window = windows.get(chunk.variant)
        if window is None:
            window = windows[chunk.variant] = _new_window(chunk.variant, schema, config, len(protected))
        scores = _scores(chunk.scores)
        bad_score = np.isnan(scores)
        if bad_score.any():
            first = int(np.flatnonzero(bad_score)[0])
            where = f"{chunk.variant}, request {chunk.ids[first]}"
            window.malformed.add("the score is not a number in [0, 1]", where, int(bad_score.sum()))
        usable = ~bad_score
        rows = chunk.rows if usable.all() else [row for row, ok in zip(chunk.rows, usable, strict=True) if ok]
        parsed = parse_rows(rows, specs)
        keep = np.zeros(len(chunk), dtype=bool)
        keep[np.flatnonzero(usable)[parsed.kept]] = True
        kept_scores = scores[keep]
        window.statistics.add(parsed, kept_scores)
        predicted = kept_scores >= config.prediction_threshold
        for (name, allowed), index in zip(protected, protected_index, strict=True):
            bias_drift.count_predictions(window.predictions, name, allowed, parsed.values[:, index], predicted)
        if truth.labels:
            labels, unusable = _labels(chunk, keep, truth)
            window.labelled_rows.unusable += unusable
            has = ~np.isnan(labels)
            if has.any():
                ids = np.asarray(chunk.ids, dtype=str)[keep][has]
                matched.update(ids.tolist())
                window.labelled_rows.add(kept_scores[has], labels[has], parsed.values[has][:, protected_index], ids)
    for variant, bad in malformed.items():
        window = windows.get(variant)
        if window is None:
            window = windows[variant] = _new_window(variant, schema, config, len(protected))
        window.malformed.counts.update(bad.counts)
        window.malformed.examples = (bad.examples + window.malformed.examples)[:5]
    return windows, matched


@dataclass
class LabelledCapture:
    """What the pass over the labelled capture found: each variant's labelled rows, and counts."""

    rows: dict[str, LabelledRows]
    matched: set[str]  # ground-truth ids matched to a captured row
    records: int = 0  # captured rows read, labelled or not
    malformed: int = 0  # unusable lines and labelled rows: counted here, judged in their own window


def accumulate_labelled(
    capture: Path, truth: GroundTruth, schema: FeatureSchema, config: MonitorConfig, *, chunk_rows: int = 50_000
) -> LabelledCapture:
    """One streaming pass over the labelled capture (the window one label delay back): per variant, the
    rows ``truth`` labels. Only labelled rows are parsed; this capture's data quality was judged by the
    run of its own window, so its broken records are counted here, not judged again."""
    specs = feature_specs(schema)
    names = schema.model_features
    protected = protected_attributes(schema, config)
    protected_index = [names.index(name) for name, _ in protected]
    malformed: dict[str, Malformed] = {}
    found = LabelledCapture(rows={}, matched=set())
    lookup = truth.labels.get
    for chunk in read_capture(capture, names, chunk_rows=chunk_rows, malformed=malformed):
        rows = found.rows.get(chunk.variant)
        if rows is None:
            rows = found.rows[chunk.variant] = LabelledRows(len(protected))
        found.records += len(chunk)
        texts = [lookup(i) for i in chunk.ids]
        selected = np.flatnonzero([text is not None for text in texts])
        if not len(selected):
            continue
        scores = _scores([chunk.scores[i] for i in selected])
        usable = ~np.isnan(scores)
        found.malformed += int((~usable).sum())
        selected, scores = selected[usable], scores[usable]
        parsed = parse_rows([chunk.rows[i] for i in selected], specs)
        found.malformed += parsed.short + parsed.long
        selected, scores = selected[parsed.kept], scores[parsed.kept]
        labels, unusable = _label_values(
            [texts[i] for i in selected], np.asarray(chunk.positions)[selected], np.asarray(chunk.sizes)[selected]
        )
        rows.unusable += unusable
        has = ~np.isnan(labels)
        if has.any():
            ids = np.asarray(chunk.ids, dtype=str)[selected][has]
            found.matched.update(ids.tolist())
            rows.add(scores[has], labels[has], parsed.values[has][:, protected_index], ids)
    for variant, bad in malformed.items():
        found.rows.setdefault(variant, LabelledRows(len(protected)))
        found.malformed += bad.total
    return found


def protected_attributes(schema: FeatureSchema, config: MonitorConfig) -> list[tuple[str, tuple[float, ...]]]:
    """(name, allowed values) of the protected attributes: the config's list, else the schema's."""
    names = config.bias.protected if config.bias.protected is not None else schema.protected_attributes
    out = []
    for name in names:
        if name not in schema.model_features:
            raise ConfigurationError(
                f"monitoring config: bias.protected names {name!r}, which is not a model feature "
                f"({', '.join(schema.model_features)})"
            )
        allowed = schema.column(name).allowed
        if not allowed or len(allowed) < 2:
            raise ConfigurationError(
                f"monitoring config: bias.protected names {name!r}, which has no allowed values in the feature "
                "schema; a protected attribute needs its segments as allowed values (e.g. [0, 1])"
            )
        out.append((name, tuple(allowed)))
    return out


# --- judging one variant --------------------------------------------------------------------------


@dataclass
class VariantResult:
    name: str
    records: int
    statistics: dict[str, Any]
    violations: dict[str, list[Violation]] = field(default_factory=lambda: {c: [] for c in CATEGORIES})
    checks: dict[str, str] = field(default_factory=dict)
    drift: list[Any] = field(default_factory=list)
    quality: dict[str, float] = field(default_factory=dict)
    quality_baseline: dict[str, float] = field(default_factory=dict)
    labelled: int = 0
    bias: list[bias_drift.BiasResult] = field(default_factory=list)
    attribution: dict[str, float] = field(default_factory=dict)
    attribution_baseline: dict[str, float] = field(default_factory=dict)
    ndcg: float | None = None
    malformed: dict[str, Any] = field(default_factory=dict)
    # what the report plots: sampled values of the window and of the baseline (features + score)
    sample: NDArray[np.float64] = field(default_factory=lambda: np.empty((0, 0)))
    baseline_sample: NDArray[np.float64] | None = None


def judge_variant(
    window: VariantWindow,
    baseline: Baseline | None,
    model_folder: Path | None,
    schema: FeatureSchema,
    config: MonitorConfig,
) -> VariantResult:
    names = schema.model_features
    statistics = window.statistics
    result = VariantResult(
        name=window.name,
        records=window.records,
        statistics=statistics_json(statistics),
        malformed={
            "total": window.malformed.total,
            "reasons": dict(window.malformed.counts),
            "examples": window.malformed.examples,
        },
        sample=statistics.sample.rows,
        baseline_sample=baseline.features.sample if baseline else None,
    )
    missing_share = baseline.features.missing_share if baseline else {}
    result.violations["data_integrity"] = _tag(
        integrity(statistics, window.malformed.total, missing_share, config), "DataQuality"
    )
    result.checks["data_integrity"] = (
        "evaluated" if window.records + window.malformed.total else "skipped: no captured records"
    )
    if baseline is None:
        for check in ("data_drift", "model_quality", "bias_drift", "attribution_drift"):
            result.checks[check] = "skipped: no baseline for this variant (see --baselines)"
        return result

    # data drift
    if statistics.rows < config.min_records:
        result.checks["data_drift"] = f"skipped: {statistics.rows} records; needs {config.min_records} (min_records)"
    else:
        result.drift, found = drift(statistics, baseline.features, config)
        result.violations["data_drift"] = _tag(found, "DataQuality")
        result.checks["data_drift"] = "evaluated"

    # model quality
    scores, labels, protected_values, _ = window.labelled()
    result.labelled = len(labels)
    result.quality_baseline = baseline.quality
    if len(labels) < config.model_quality.min_labelled:
        result.checks["model_quality"] = (
            f"skipped: {len(labels)} labelled records; needs {config.model_quality.min_labelled} (model_quality.min_labelled)"
        )
    elif len(np.unique(labels)) < 2:
        result.checks["model_quality"] = f"skipped: all {len(labels)} labels are {labels[0]:g}; AUC needs both classes"
    else:
        result.quality = model_quality.quality_metrics(scores, labels, config.prediction_threshold)
        result.violations["model_quality"] = _tag(
            model_quality.violations(result.quality, baseline.quality, config.model_quality), "ModelQuality"
        )
        result.checks["model_quality"] = "evaluated" + (
            "" if baseline.quality else " (no registered evaluation: absolute floors only)"
        )

    # bias drift
    protected = protected_attributes(schema, config)
    if not protected:
        result.checks["bias_drift"] = "skipped: no protected attributes (schema or bias.protected)"
    elif baseline.bias is None:
        result.checks["bias_drift"] = "skipped: the baseline has no bias/analysis.json"
    else:
        counts = {
            key: bias_drift.SegmentCounts(n=list(c.n), predicted=list(c.predicted))
            for key, c in window.predictions.items()
        }
        predicted = scores >= config.prediction_threshold
        for index, (name, allowed) in enumerate(protected):
            bias_drift.count_labels(counts, name, allowed, protected_values[:, index], predicted, labels)
        result.bias, found = bias_drift.compare(counts, bias_drift.baseline_counts(baseline.bias), config.bias)
        result.violations["bias_drift"] = _tag(found, "ModelBias")
        judged = sum(r.judged for r in result.bias)
        result.checks["bias_drift"] = (
            "evaluated"
            if judged
            else f"skipped: segments below bias.min_segment_records ({config.bias.min_segment_records})"
        )

    # attribution drift
    rows = statistics.sample.rows[: config.attribution.sample_size, : len(names)]
    if baseline.attribution is None:
        result.checks["attribution_drift"] = "skipped: the baseline has no attribution/analysis.json"
    elif model_folder is None:
        result.checks["attribution_drift"] = "skipped: no model for this variant (see --models)"
    elif statistics.rows < config.attribution.min_records:
        result.checks["attribution_drift"] = (
            f"skipped: {statistics.rows} records; needs {config.attribution.min_records} (attribution.min_records)"
        )
    else:
        booster = attribution_drift.load_model(model_folder)
        attribution_drift.check_features(booster, names, f"model of {window.name}")
        result.attribution = attribution_drift.mean_abs_shap(booster, rows, names)
        result.attribution_baseline = attribution_drift.baseline_values(baseline.attribution)
        result.ndcg, found, _ = attribution_drift.compare(
            result.attribution_baseline, result.attribution, min_ndcg=config.attribution.min_ndcg
        )
        result.violations["attribution_drift"] = _tag(found, "ModelExplainability")
        result.checks["attribution_drift"] = f"evaluated on {len(rows)} rows"
    return result


def _tag(violations: list[Violation], monitoring_type: str) -> list[Violation]:
    return [{**v, "monitoring_type": monitoring_type} for v in violations]


# --- the run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInputs:
    capture: Path
    ground_truth: Path | None
    baselines: Path
    models: Path | None
    output: Path
    endpoint: str
    window_start: str
    window_end: str
    champion: str = "Champion"
    namespace: str = DEFAULT_NAMESPACE
    # The capture of the window one label delay back, whose labels have arrived: model quality, the
    # label-based bias metrics and the challenger comparison match the ground truth against it. None,
    # a missing or an empty folder: the ground truth is matched against ``capture``.
    labelled_capture: Path | None = None


def _subfolders(root: Path | None) -> dict[str, Path]:
    if root is None or not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir()}


def _baseline_folders(root: Path) -> dict[str, Path]:
    """The ``<Variant>/`` folders of ``root`` that hold baseline.py's output. Other files next to it (the
    model, the resolver's ``package.json``) are ignored, and so is a folder with none of its files (a
    variant's model alone, when baselines and models share a folder)."""
    return {
        name: folder
        for name, folder in _subfolders(root).items()
        if any((folder / marker).exists() for marker in BASELINE_MARKERS)
    }


def run(inputs: RunInputs, config: MonitorConfig, schema: FeatureSchema | None = None) -> dict[str, Any]:
    """The whole run; returns summary.json's content (and writes every output)."""
    started = time.perf_counter()
    schema = schema or load_schema()
    names = schema.model_features
    if not inputs.baselines.is_dir():
        raise DataError(
            f"baselines folder {inputs.baselines} does not exist; give the job one <Variant>/ folder per variant"
        )
    truth = read_ground_truth(inputs.ground_truth)
    width = len(protected_attributes(schema, config))
    labelled_capture = inputs.labelled_capture if holds_capture(inputs.labelled_capture) else None
    # The window's capture: data quality, integrity, attribution, predictions (and the labels when the
    # run has no labelled capture).
    windows, matched = accumulate(
        inputs.capture, truth if labelled_capture is None else GroundTruth({}), schema, config
    )
    seconds = {"read": time.perf_counter() - started}
    if labelled_capture is None:
        labels = {
            "matched_in": "capture",
            "records": sum(window.records for window in windows.values()),
            "note": (
                "no --labelled-capture given"
                if inputs.labelled_capture is None
                else f"--labelled-capture {inputs.labelled_capture} is missing or holds no capture files"
            )
            + ": the ground truth is matched against the window's capture",
        }
    else:
        found = (
            accumulate_labelled(labelled_capture, truth, schema, config)
            if truth.labels
            else LabelledCapture(rows={}, matched=set(), records=0)
        )
        for name, rows in found.rows.items():
            if name not in windows:  # served then, not now: its labelled rows are still judged
                windows[name] = _new_window(name, schema, config, width)
            windows[name].labelled_rows = rows
        matched = found.matched
        labels = {"matched_in": "labelled_capture", "records": found.records, "malformed": found.malformed}
        if not truth.labels:
            labels["note"] = "no ground truth: the labelled capture was not read"
    seconds["read_labelled"] = time.perf_counter() - started - sum(seconds.values())
    baseline_folders = _baseline_folders(inputs.baselines)
    model_folders = _subfolders(inputs.models)
    for name in baseline_folders:  # a variant that served nothing in the window still reports zeros
        if name not in windows:
            windows[name] = _new_window(name, schema, config, width)
    results = {}
    for name in sorted(windows):
        baseline = read_baseline(baseline_folders[name], names) if name in baseline_folders else None
        results[name] = judge_variant(windows[name], baseline, model_folders.get(name), schema, config)

    seconds["judge"] = time.perf_counter() - started - sum(seconds.values())
    comparisons = []
    if inputs.champion in windows:
        champion_data = _labelled(windows[inputs.champion])
        for name in sorted(windows):
            if name != inputs.champion:
                comparisons.append(
                    challenger.compare(
                        inputs.champion, champion_data, name, _labelled(windows[name]), config.challenger
                    )
                )

    unusable = sum(window.labelled_rows.unusable for window in windows.values())
    summary = _summary(inputs, config, results, comparisons, truth, matched, unusable)
    summary["labels"] = labels
    output = inputs.output
    output.mkdir(parents=True, exist_ok=True)
    for name, result in results.items():
        folder = output / name
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "statistics.json", result.statistics, compact=True)  # KLL sketches are long lists
        all_violations = [v for category in CATEGORIES for v in result.violations[category]]
        _write(folder / "constraint_violations.json", {"violations": all_violations})
        if result.quality:
            _write(folder / "model_quality.json", _quality_document(windows[name], config, result))
        if result.bias:
            _write(folder / "bias.json", _bias_document(result))
        if result.attribution:
            _write(
                folder / "attribution.json",
                attribution_drift.analysis_json(
                    result.attribution, min(config.attribution.sample_size, windows[name].statistics.rows)
                ),
            )
    _write(output / "metrics.json", metrics_document(inputs, results, comparisons, summary))
    seconds["compare"] = time.perf_counter() - started - sum(seconds.values())
    write_report(output / "report.html", summary, results, comparisons, names)
    seconds["report"] = time.perf_counter() - started - sum(seconds.values())
    seconds["total"] = time.perf_counter() - started
    summary["seconds"] = {name: round(value, 3) for name, value in seconds.items()}
    _write(output / "summary.json", summary)
    return summary


def _labelled(window: VariantWindow) -> challenger.Labelled:
    scores, labels, _, ids = window.labelled()
    return challenger.Labelled(scores, labels, ids)


def _write(path: Path, document: dict[str, Any], *, compact: bool = False) -> None:
    text = json.dumps(document, indent=None if compact else 2, allow_nan=False, default=_json_default)
    path.write_text(text, encoding="utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _quality_document(window: VariantWindow, config: MonitorConfig, result: VariantResult) -> dict[str, Any]:
    scores, labels, _, _ = window.labelled()
    return model_quality.statistics_json(scores, labels, config.prediction_threshold, result.quality_baseline or None)


def _bias_document(result: VariantResult) -> dict[str, Any]:
    facets: dict[str, list[dict[str, Any]]] = {}
    for item in result.bias:
        entries = facets.setdefault(item.attribute, [])
        entry = next((e for e in entries if e["value_or_threshold"] == f"{item.facet:g}"), None)
        if entry is None:
            entry = {"value_or_threshold": f"{item.facet:g}", "metrics": []}
            entries.append(entry)
        entry["metrics"].append(
            {
                "name": item.metric,
                "description": bias_drift.DESCRIPTIONS[item.metric],
                "value": _finite(item.current),
                "baseline": _finite(item.baseline),
                "p_value": _finite(item.p_value),
                "judged": item.judged,
                "violation": item.violation,
            }
        )
    return {"version": "1.0", "post_training_bias_metrics": {"label_value_or_threshold": "1", "facets": facets}}


def _finite(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


def _summary(
    inputs: RunInputs,
    config: MonitorConfig,
    results: dict[str, VariantResult],
    comparisons: list[dict[str, Any]],
    truth: GroundTruth,
    matched: set[str],
    unusable_labels: int,
) -> dict[str, Any]:
    variants: dict[str, Any] = {}
    retrain_reasons: list[str] = []
    integrity_reasons: list[str] = []
    notify_reasons: list[str] = []
    for name, result in results.items():
        counts = {category: len(result.violations[category]) for category in CATEGORIES}
        retrain_categories = [c for c in config.retrain_on if counts[c]]
        variants[name] = {
            "records": result.records,
            "labelled_records": result.labelled,
            "malformed_records": result.malformed["total"],
            "violations": counts,
            "drifted_features": [v["feature_name"] for v in result.violations["data_drift"]],
            "checks": result.checks,
            "retrain_categories": retrain_categories,
        }
        if result.malformed["total"]:
            variants[name]["malformed"] = result.malformed
        details = ", ".join(f"{counts[c]} {c.replace('_', ' ')}" for c in CATEGORIES if counts[c])
        if counts["data_integrity"]:
            checks = sorted({v["constraint_check_type"] for v in result.violations["data_integrity"]})
            integrity_reasons.append(
                f"{name}: {counts['data_integrity']} data integrity violation(s) ({', '.join(checks)})"
            )
        if retrain_categories:
            retrain_reasons.append(
                f"{name}: " + ", ".join(f"{counts[c]} {c.replace('_', ' ')}" for c in retrain_categories)
            )
        if details:
            notify_reasons.append(f"{name}: {details}")
    retrain = bool(retrain_reasons) and not integrity_reasons
    if retrain:
        retrain_reason = "; ".join(retrain_reasons)
    elif retrain_reasons:
        retrain_reason = (
            "withheld: " + "; ".join(integrity_reasons) + ". Never retrain on broken data: fix the data upstream, "
            "then the next run decides (would have retrained for " + "; ".join(retrain_reasons) + ")"
        )
    else:
        retrain_reason = "no violation of a category in retrain_on (" + ", ".join(config.retrain_on) + ")"
    for comparison in comparisons:
        if comparison.get("verdict_code") in (1, -1):
            notify_reasons.append(
                f"{comparison['challenger']} is significantly {comparison['verdict']} than {comparison['champion']} "
                f"(AUC difference {comparison['difference']:+.4f}, interval {comparison['interval']}); promotion is a human decision"
            )
    actions = []
    if notify_reasons:
        actions.append({"action": "notify", "reason": "; ".join(notify_reasons)})
    if retrain:
        actions.append({"action": "retrain", "reason": retrain_reason})
    any_records = any(r.records for r in results.values())
    violations = any(len(v) for r in results.values() for v in r.violations.values())
    return {
        "endpoint": inputs.endpoint,
        "window": {"start": inputs.window_start, "end": inputs.window_end},
        "status": "violations" if violations else ("ok" if any_records else "no_data"),
        "retrain_recommended": retrain,
        "retrain_reason": retrain_reason,
        "notify": bool(notify_reasons),
        "actions": actions,
        "variants": variants,
        "comparisons": comparisons,
        "ground_truth": {
            "records": truth.records,
            "duplicates": truth.duplicates,
            "malformed": truth.malformed.total,
            "unmatched": len(set(truth.labels) - matched),
            "unusable": unusable_labels,
        },
        "outputs": {"report": "report.html", "metrics": "metrics.json"},
    }


def metrics_document(
    inputs: RunInputs, results: dict[str, VariantResult], comparisons: list[dict[str, Any]], summary: dict[str, Any]
) -> dict[str, Any]:
    """metrics.json: what PublishMetrics sends to CloudWatch (non-finite values are left out)."""
    metrics: list[dict[str, Any]] = []

    def add(
        name: str, value: float, variant: str | None, monitoring_type: str, unit: str = "None", **extra: str
    ) -> None:
        if value is None or not math.isfinite(value):
            return
        dimensions = {"Endpoint": inputs.endpoint}
        if variant is not None:
            dimensions["Variant"] = variant
        dimensions["MonitoringType"] = monitoring_type
        dimensions.update(extra)
        metrics.append({"name": name, "value": float(value), "unit": unit, "dimensions": dimensions})

    for name, result in results.items():
        counts = {category: len(result.violations[category]) for category in CATEGORIES}
        add("records_analyzed", result.records, name, "DataQuality", "Count")
        add("data_drift_violations", counts["data_drift"], name, "DataQuality", "Count")
        add("data_integrity_violations", counts["data_integrity"], name, "DataQuality", "Count")
        add("bias_drift_violations", counts["bias_drift"], name, "ModelBias", "Count")
        add("attribution_drift_violations", counts["attribution_drift"], name, "ModelExplainability", "Count")
        add("labelled_records", result.labelled, name, "ModelQuality", "Count")
        for item in result.drift:
            add(f"feature_baseline_drift_{item.feature}", item.distance, name, "DataQuality")
        if result.records:
            for feature in result.statistics["features"]:
                common = feature["numerical_statistics"]["common"]
                total = common["num_present"] + common["num_missing"]
                if total:
                    add(f"feature_non_null_{feature['name']}", common["num_present"] / total, name, "DataQuality")
        if result.quality:
            add("model_quality_violations", counts["model_quality"], name, "ModelQuality", "Count")
            for metric, value in result.quality.items():
                add(metric, value, name, "ModelQuality")
        for item in result.bias:
            add(
                f"bias_metric_{item.metric}",
                item.current,
                name,
                "ModelBias",
                Facet=item.attribute,
                FacetValue=f"{item.facet:g}",
            )
        for feature, value in result.attribution.items():
            add(f"feature_attribution_{feature}", value, name, "ModelExplainability")
        if result.ndcg is not None:
            add("attribution_ndcg", result.ndcg, name, "ModelExplainability")
    for comparison in comparisons:
        variant = comparison["challenger"]
        add("challenger_labelled_records", comparison["labelled_records"][variant], variant, "Comparison", "Count")
        if comparison.get("verdict_code") is not None:
            add("challenger_auc_difference", comparison["difference"], variant, "Comparison")
            add("challenger_verdict", comparison["verdict_code"], variant, "Comparison")
    add("retrain_recommended", 1.0 if summary["retrain_recommended"] else 0.0, None, "Summary", "Count")
    return {"namespace": inputs.namespace, "timestamp": inputs.window_end, "metrics": metrics}


# --- command line ---------------------------------------------------------------------------------


def _iso(text: str, flag: str) -> str:
    try:
        moment = parse_time(text)
    except ValueError:
        raise ConfigurationError(f"{flag} {text!r} is not an ISO 8601 time (e.g. 2026-12-01T10:00:00Z)") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = JobArgumentParser(
        prog="monitor.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    inputs = PROCESSING / "input"
    parser.add_argument(
        "--capture", type=Path, default=inputs / "capture", help="data-capture files (default: %(default)s)"
    )
    parser.add_argument(
        "--labelled-capture",
        type=Path,
        default=inputs / "labelled" / "capture",
        help="data-capture files of the window one label delay back, whose labels have arrived: model quality, "
        "label-based bias metrics and the challenger comparison are judged on them; a missing or empty folder "
        "means none, and the ground truth is matched against --capture (default: %(default)s)",
    )
    parser.add_argument(
        "--ground-truth",
        type=Path,
        default=inputs / "labelled" / "ground-truth",
        help="Model Monitor ground truth; a missing or empty folder means no labels (default: %(default)s)",
    )
    parser.add_argument(
        "--baselines",
        type=Path,
        default=inputs / "baselines",
        help="<Variant>/ baseline folders (default: %(default)s)",
    )
    parser.add_argument(
        "--models", type=Path, default=inputs / "models", help="<Variant>/model.tar.gz (default: %(default)s)"
    )
    parser.add_argument(
        "--config", type=Path, default=None, help=f"thresholds JSON (default: {DEFAULT_CONFIG} if present)"
    )
    parser.add_argument("--endpoint", help="the endpoint's name (metric dimension)")
    parser.add_argument("--window-start", help="ISO 8601 start of the window (report header)")
    parser.add_argument("--window-end", help="ISO 8601 end of the window (report header, metric timestamp)")
    parser.add_argument("--champion-variant", default="Champion", help="the variant challengers are compared with")
    parser.add_argument("--metric-namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--output", type=Path, default=PROCESSING / "output", help="default: %(default)s")
    parser.add_argument("--failure-file", type=Path, default=None, help="default: /opt/ml/output/message")
    parser.add_argument("--print-default-config", action="store_true", help="print the default thresholds and exit")
    args = parser.parse_args(list(argv))
    if not args.print_default_config:
        missing = [
            flag
            for flag, value in (
                ("--endpoint", args.endpoint),
                ("--window-start", args.window_start),
                ("--window-end", args.window_end),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                f"monitor.py needs {', '.join(missing)} (the endpoint and the window this run covers)"
            )
    return args


def main(argv: Sequence[str]) -> None:
    args = parse_args(argv)
    if args.print_default_config:
        print(json.dumps(MonitorConfig().to_json(), indent=2))
        return
    config_path = args.config if args.config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    config = load_config(config_path)
    start, end = _iso(args.window_start, "--window-start"), _iso(args.window_end, "--window-end")
    if parse_time(end) <= parse_time(start):
        raise ConfigurationError(f"--window-end {end} must be after --window-start {start}")
    inputs = RunInputs(
        capture=args.capture,
        ground_truth=args.ground_truth,
        baselines=args.baselines,
        models=args.models,
        output=args.output,
        endpoint=args.endpoint,
        window_start=start,
        window_end=end,
        champion=args.champion_variant,
        namespace=args.metric_namespace,
        labelled_capture=args.labelled_capture,
    )
    summary = run(inputs, config)
    print(format_summary(summary, args.output), flush=True)


def format_summary(summary: dict[str, Any], output: Path) -> str:
    """A few lines for the job log and the local runner."""
    lines = [
        f"monitoring {summary['endpoint']} {summary['window']['start']} - {summary['window']['end']}: {summary['status']}"
    ]
    for name, variant in summary["variants"].items():
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in variant["violations"].items())
        drifted = f" (drifted: {', '.join(variant['drifted_features'])})" if variant["drifted_features"] else ""
        lines.append(
            f"  {name}: {variant['records']} records, {variant['labelled_records']} labelled; {counts}{drifted}"
        )
        skipped = [
            check.replace("_", " ") for check, status in variant["checks"].items() if status.startswith("skipped")
        ]
        if skipped:
            lines.append(f"    not judged (see summary.json): {', '.join(skipped)}")
    for comparison in summary["comparisons"]:
        if comparison.get("verdict_code") is None:
            lines.append(f"  {comparison['challenger']} vs {comparison['champion']}: {comparison['verdict']}")
        else:
            lines.append(
                f"  {comparison['challenger']} vs {comparison['champion']}: AUC {comparison['difference']:+.4f} "
                f"{comparison['interval']}, {comparison['verdict']}"
            )
    labels = summary["labels"]
    where = "the labelled capture" if labels["matched_in"] == "labelled_capture" else "the window's capture"
    lines.append(
        f"  labels: {summary['ground_truth']['records']} ground-truth records matched against {where} "
        f"({labels['records']} records)" + (f"; {labels['note']}" if "note" in labels else "")
    )
    lines.append(f"  retrain: {'yes' if summary['retrain_recommended'] else 'no'} ({summary['retrain_reason']})")
    lines.append(f"  report: {output / 'report.html'}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(run_job(main))
