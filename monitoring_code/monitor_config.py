"""Monitoring thresholds: one frozen settings object, its defaults and why, and a strict JSON loader.

Every check follows one rule against false alarms: a violation needs a difference that matters
(an effect size above the threshold) *and*, where sampling noise can produce such a difference, one
that is statistically significant (a p-value below the check's alpha), and only on enough records.
With large windows every trivial shift becomes "significant"; with small windows noise exceeds any
threshold; the conjunction plus a minimum sample size bounds both (docs/decisions/0010).

The defaults:

- ``drift_threshold`` 0.1: Model Monitor's default ``comparison_threshold`` for its distribution
  distance (the largest gap between the two cumulative distributions, i.e. the two-sample
  Kolmogorov-Smirnov statistic), and the same value for the L-infinity distance of category shares.
- ``drift_alpha`` 0.01: Model Monitor's "Robust" comparison also requires the KS test to reject at
  99 % confidence.
- ``min_records`` 500: below it a KS distance of 0.1 is within noise of a baseline sample (at 500
  rows the null distance exceeds 0.1 with probability ~2e-4 per feature).
- integrity fractions: a rate is a violation when it is above the allowed rate *and* a one-sided
  binomial test says it is significantly above it (``integrity_alpha``); 0.1 % of records broken
  upstream is tolerated, more is not; missing values are compared with the baseline's own share.
- model quality: drops against the served version's registered evaluation (AUC and accuracy 0.05,
  precision, recall and F1 0.10, log loss +0.10), evaluated from 1,000 labelled records, where the
  standard error of AUC is about 0.015, so 0.05 is more than three standard errors.
- bias: changes of the segment gaps against the baseline, each also tested (delta-method z test on the
  variances of the window and of the baseline, ``bias.alpha`` 0.001 for the four metrics per segment)
  and only with 300 or more records per segment.
- attribution: nDCG of the feature ranking below 0.90 (Clarify's default) on a 2,000-row SHAP
  sample.
- challenger: a 95 % interval (bootstrap percentile, or DeLong) of the AUC difference; better or
  worse only when the interval excludes 0, with at least 200 labelled records per variant.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from monitoring_env import ConfigurationError

RETRAIN_CATEGORIES = ("data_drift", "model_quality", "bias_drift", "attribution_drift")
MODEL_QUALITY_METRICS = ("auc", "accuracy", "precision", "recall", "f1")


@dataclass(frozen=True)
class ModelQualitySettings:
    min_labelled: int = 1000
    # Largest allowed drop below the served version's registered evaluation, per metric.
    max_drop: dict[str, float] = field(
        default_factory=lambda: {"auc": 0.05, "accuracy": 0.05, "precision": 0.1, "recall": 0.1, "f1": 0.1}
    )
    max_log_loss_increase: float = 0.1
    # Absolute floors (null = none); the infrastructure can set min auc to the training pipeline's AUC gate.
    minimum: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(MODEL_QUALITY_METRICS))
    max_log_loss: float | None = None


@dataclass(frozen=True)
class BiasSettings:
    protected: tuple[str, ...] | None = None  # None: the schema's protected attributes
    min_segment_records: int = 300
    min_segment_labelled: int = 100  # positives (for recall) or negatives (for FPR) per segment
    max_dppl_change: float = 0.1
    max_di_ratio: float = 1.25  # DI now / DI at baseline outside [1/1.25, 1.25]: the four-fifths rule on the change
    max_recall_gap_change: float = 0.1
    max_fpr_gap_change: float = 0.1
    # Four metrics per segment are tested, on a noisy baseline as well as a noisy window: 0.001 keeps the
    # family-wise false-alarm rate near 0.4 % per segment (Bonferroni), where 0.01 measured about 1 in 50 runs.
    alpha: float = 0.001


@dataclass(frozen=True)
class AttributionSettings:
    sample_size: int = 2000
    min_records: int = 500
    min_ndcg: float = 0.9


@dataclass(frozen=True)
class ChallengerSettings:
    method: Literal["bootstrap", "delong"] = "bootstrap"
    alpha: float = 0.05
    min_labelled: int = 200
    resamples: int = 1000
    max_records: int = 20000  # per variant, for the bootstrap only (a seeded subsample beyond it)
    seed: int = 0


@dataclass(frozen=True)
class MonitorConfig:
    min_records: int = 500
    drift_threshold: float = 0.1
    categorical_drift_threshold: float = 0.1
    drift_alpha: float = 0.01
    drift_sample_size: int = 200_000
    max_missing_fraction: float = 0.01  # above the baseline's own share of missing values
    max_type_error_fraction: float = 0.001
    max_out_of_range_fraction: float = 0.001
    max_malformed_fraction: float = 0.001
    integrity_alpha: float = 0.01
    prediction_threshold: float = 0.5
    retrain_on: tuple[str, ...] = ("data_drift", "model_quality", "attribution_drift")
    model_quality: ModelQualitySettings = field(default_factory=ModelQualitySettings)
    bias: BiasSettings = field(default_factory=BiasSettings)
    attribution: AttributionSettings = field(default_factory=AttributionSettings)
    challenger: ChallengerSettings = field(default_factory=ChallengerSettings)

    def to_json(self) -> dict[str, Any]:
        plain: dict[str, Any] = _plain(dataclasses.asdict(self))
        return plain


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


# --- loading and validation -----------------------------------------------------------------------


def _fail(path: str, value: Any, rule: str) -> ConfigurationError:
    return ConfigurationError(f"monitoring config: {path} = {json.dumps(value)}: {rule}")


def _number(path: str, value: Any, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, value, "must be " + ("a whole number" if integer else "a number"))
    if integer and not float(value).is_integer():
        raise _fail(path, value, "must be a whole number")
    if not math.isfinite(value):
        raise _fail(path, value, "must be finite")
    return value


def _fraction(path: str, value: Any, *, low_open: bool = False) -> float:
    number = _number(path, value)
    if not (0 < number <= 1 if low_open else 0 <= number <= 1):
        raise _fail(path, value, "must be in (0, 1]" if low_open else "must be between 0 and 1")
    return float(number)


def _alpha(path: str, value: Any) -> float:
    number = _number(path, value)
    if not 0 < number <= 0.5:
        raise _fail(path, value, "is a significance level: use a value in (0, 0.5], e.g. 0.01")
    return float(number)


def _count(path: str, value: Any, minimum: int = 1) -> int:
    number = int(_number(path, value, integer=True))
    if number < minimum:
        raise _fail(path, value, f"must be at least {minimum}")
    return number


def _object(path: str, value: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, value, "must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigurationError(
            f"monitoring config: unknown key {path + '.' if path else ''}{unknown[0]}; allowed: {', '.join(sorted(allowed))}"
        )
    return value


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _metric_map(path: str, value: Any, *, nullable: bool) -> dict[str, Any]:
    data = _object(path, value, set(MODEL_QUALITY_METRICS))
    out: dict[str, Any] = {}
    for name, item in data.items():
        if item is None and nullable:
            out[name] = None
        else:
            out[name] = _fraction(f"{path}.{name}", item)
    return out


def _model_quality(data: Any) -> ModelQualitySettings:
    data = _object("model_quality", data, _fields(ModelQualitySettings))
    default = ModelQualitySettings()
    kwargs: dict[str, Any] = {}
    if "min_labelled" in data:
        kwargs["min_labelled"] = _count("model_quality.min_labelled", data["min_labelled"], minimum=10)
    if "max_drop" in data:
        kwargs["max_drop"] = {
            **default.max_drop,
            **_metric_map("model_quality.max_drop", data["max_drop"], nullable=False),
        }
    if "max_log_loss_increase" in data:
        value = _number("model_quality.max_log_loss_increase", data["max_log_loss_increase"])
        if value <= 0:
            raise _fail("model_quality.max_log_loss_increase", value, "must be above 0")
        kwargs["max_log_loss_increase"] = float(value)
    if "minimum" in data:
        kwargs["minimum"] = {**default.minimum, **_metric_map("model_quality.minimum", data["minimum"], nullable=True)}
    if "max_log_loss" in data and data["max_log_loss"] is not None:
        value = _number("model_quality.max_log_loss", data["max_log_loss"])
        if value <= 0:
            raise _fail("model_quality.max_log_loss", value, "must be above 0 (or null for none)")
        kwargs["max_log_loss"] = float(value)
    return ModelQualitySettings(**kwargs)


def _bias(data: Any) -> BiasSettings:
    data = _object("bias", data, _fields(BiasSettings))
    kwargs: dict[str, Any] = {}
    if data.get("protected") is not None:
        protected = data["protected"]
        if not isinstance(protected, list) or not all(isinstance(item, str) and item for item in protected):
            raise _fail("bias.protected", protected, "must be a list of feature names (or null for the schema's)")
        kwargs["protected"] = tuple(protected)
    for name in ("min_segment_records", "min_segment_labelled"):
        if name in data:
            kwargs[name] = _count(f"bias.{name}", data[name], minimum=10)
    for name in ("max_dppl_change", "max_recall_gap_change", "max_fpr_gap_change"):
        if name in data:
            kwargs[name] = _fraction(f"bias.{name}", data[name], low_open=True)
    if "max_di_ratio" in data:
        value = _number("bias.max_di_ratio", data["max_di_ratio"])
        if value <= 1:
            raise _fail("bias.max_di_ratio", value, "must be above 1 (e.g. 1.25: DI may change by a factor of 1.25)")
        kwargs["max_di_ratio"] = float(value)
    if "alpha" in data:
        kwargs["alpha"] = _alpha("bias.alpha", data["alpha"])
    return BiasSettings(**kwargs)


def _attribution(data: Any) -> AttributionSettings:
    data = _object("attribution", data, _fields(AttributionSettings))
    kwargs: dict[str, Any] = {}
    if "sample_size" in data:
        kwargs["sample_size"] = _count("attribution.sample_size", data["sample_size"], minimum=50)
    if "min_records" in data:
        kwargs["min_records"] = _count("attribution.min_records", data["min_records"], minimum=10)
    if "min_ndcg" in data:
        kwargs["min_ndcg"] = _fraction("attribution.min_ndcg", data["min_ndcg"], low_open=True)
    return AttributionSettings(**kwargs)


def _challenger(data: Any) -> ChallengerSettings:
    data = _object("challenger", data, _fields(ChallengerSettings))
    kwargs: dict[str, Any] = {}
    if "method" in data:
        if data["method"] not in ("bootstrap", "delong"):
            raise _fail("challenger.method", data["method"], 'use "bootstrap" or "delong"')
        kwargs["method"] = data["method"]
    if "alpha" in data:
        kwargs["alpha"] = _alpha("challenger.alpha", data["alpha"])
    if "min_labelled" in data:
        kwargs["min_labelled"] = _count("challenger.min_labelled", data["min_labelled"], minimum=20)
    if "resamples" in data:
        kwargs["resamples"] = _count("challenger.resamples", data["resamples"], minimum=100)
    if "max_records" in data:
        kwargs["max_records"] = _count("challenger.max_records", data["max_records"], minimum=100)
    if "seed" in data:
        kwargs["seed"] = _count("challenger.seed", data["seed"], minimum=0)
    return ChallengerSettings(**kwargs)


def parse_config(data: Any) -> MonitorConfig:
    """The settings in ``data`` (a JSON object) over the defaults; every mistake names the key."""
    data = _object("", data, _fields(MonitorConfig))
    kwargs: dict[str, Any] = {}
    for name in ("min_records", "drift_sample_size"):
        if name in data:
            kwargs[name] = _count(name, data[name], minimum=10 if name == "min_records" else 1000)
    for name in ("drift_threshold", "categorical_drift_threshold"):
        if name in data:
            kwargs[name] = _fraction(name, data[name], low_open=True)
    for name in ("drift_alpha", "integrity_alpha"):
        if name in data:
            kwargs[name] = _alpha(name, data[name])
    for name in (
        "max_missing_fraction",
        "max_type_error_fraction",
        "max_out_of_range_fraction",
        "max_malformed_fraction",
    ):
        if name in data:
            kwargs[name] = _fraction(name, data[name])
    if "prediction_threshold" in data:
        value = _number("prediction_threshold", data["prediction_threshold"])
        if not 0 < value < 1:
            raise _fail(
                "prediction_threshold", value, "is the score at or above which a prediction is positive: use (0, 1)"
            )
        kwargs["prediction_threshold"] = float(value)
    if "retrain_on" in data:
        kwargs["retrain_on"] = _retrain_on(data["retrain_on"])
    if "model_quality" in data:
        kwargs["model_quality"] = _model_quality(data["model_quality"])
    if "bias" in data:
        kwargs["bias"] = _bias(data["bias"])
    if "attribution" in data:
        kwargs["attribution"] = _attribution(data["attribution"])
    if "challenger" in data:
        kwargs["challenger"] = _challenger(data["challenger"])
    return MonitorConfig(**kwargs)


def _retrain_on(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail("retrain_on", value, f"must be a list drawn from {', '.join(RETRAIN_CATEGORIES)}")
    if "data_integrity" in value:
        raise _fail(
            "retrain_on", value, "cannot hold data_integrity: broken input data is fixed upstream, never retrained on"
        )
    unknown = [item for item in value if item not in RETRAIN_CATEGORIES]
    if unknown:
        raise _fail("retrain_on", value, f"unknown category {unknown[0]!r}; use {', '.join(RETRAIN_CATEGORIES)}")
    return tuple(dict.fromkeys(value))


def load_config(path: Path | None) -> MonitorConfig:
    """The config file at ``path`` (defaults when ``path`` is None)."""
    if path is None:
        return MonitorConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"monitoring config {path}: cannot be read ({error.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(
            f"monitoring config {path}: not valid JSON at line {error.lineno} column {error.colno} ({error.msg})"
        ) from None
    return parse_config(data)
