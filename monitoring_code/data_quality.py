"""Data quality: parse captured rows with integrity counts, stream statistics, compare with the baseline.

Integrity (per the feature schema, never stopping the run): rows with too few or too many values,
missing values, values that are not numbers (or not whole numbers for integral features) and
values outside the schema's range or allowed values are counted per feature; only valid values
enter the statistics and the drift comparison, so broken records show up as integrity violations,
not as drift.

Statistics stream: counts, sums and extremes are exact; distributions come from a uniform random
sample of at most ``drift_sample_size`` rows kept with the bottom-k method (each row gets a random
key; the k smallest keys are kept), so any window runs in bounded memory.

Drift (scipy.stats): numeric features use the two-sample Kolmogorov-Smirnov statistic, the largest
gap between the two empirical CDFs, which is Model Monitor's distribution distance;
features with allowed values (categories) use the L-infinity distance between category shares with a
chi-square test of the contingency table. A feature drifts when the distance exceeds the threshold
*and* the test rejects at ``drift_alpha`` *and* the window holds ``min_records`` valid values.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from feature_schema import Column, FeatureSchema
from monitor_config import MonitorConfig

KLL_K = 2048  # Model Monitor's KLL parameters
KLL_C = 0.64
HISTOGRAM_BUCKETS = 10  # Model Monitor materializes 10 buckets

Violation = dict[str, Any]


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    integral: bool
    minimum: float | None
    maximum: float | None
    allowed: tuple[float, ...] | None

    @property
    def categorical(self) -> bool:
        return self.allowed is not None

    @property
    def inferred_type(self) -> str:
        return "Integral" if self.integral else "Fractional"

    @classmethod
    def of(cls, column: Column) -> FeatureSpec:
        return cls(column.name, column.type == "integral", column.minimum, column.maximum, column.allowed)


def feature_specs(schema: FeatureSchema) -> tuple[FeatureSpec, ...]:
    by_name = {column.name: column for column in schema.features}
    return tuple(FeatureSpec.of(by_name[name]) for name in schema.model_features)


# --- parsing rows with integrity counts -----------------------------------------------------------


@dataclass
class ParsedRows:
    values: NDArray[np.float64]  # rows with the right column count x features; NaN where not valid
    kept: NDArray[np.bool_]  # per input row: right column count (so it is a row of ``values``)
    short: int
    long: int
    missing: NDArray[np.int64]  # per feature
    type_errors: NDArray[np.int64]
    out_of_range: NDArray[np.int64]


def _parse_text_columns(text: str, width: int) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_]]:
    """Values, missing mask and type-error mask of comma-separated rows that each have ``width`` fields."""
    options: dict[str, Any] = {"header": None, "names": list(range(width)), "quoting": 3, "skip_blank_lines": False}
    try:  # the common case: every field is a number or empty
        values = pd.read_csv(
            io.StringIO(text), dtype=np.float64, na_values=[""], keep_default_na=False, skipinitialspace=True, **options
        ).to_numpy(dtype=np.float64)
        missing = np.isnan(values)
        return values, missing, np.zeros_like(missing)
    except ValueError:  # at least one field is not a number: find which
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, **options)
    values = np.empty(frame.shape, dtype=np.float64)
    missing = np.zeros(frame.shape, dtype=bool)
    wrong = np.zeros(frame.shape, dtype=bool)
    for index in range(width):
        texts = frame[index].str.strip()
        blank = (texts == "") | (texts.str.lower() == "nan")
        numbers = pd.to_numeric(texts.where(~blank), errors="coerce").to_numpy(dtype=np.float64)
        values[:, index] = numbers
        missing[:, index] = blank.to_numpy()
        wrong[:, index] = np.isnan(numbers) & ~missing[:, index]
    return values, missing, wrong


def parse_rows(rows: Sequence[str], specs: Sequence[FeatureSpec]) -> ParsedRows:
    """Comma-separated rows -> valid values per feature (NaN otherwise) and what was wrong, counted."""
    width = len(specs)
    fields = np.fromiter((row.count(",") for row in rows), dtype=np.int64, count=len(rows)) + 1
    kept = fields == width
    short = int((fields < width).sum())
    long = int((fields > width).sum())
    count = int(kept.sum())
    if count == 0:
        empty = np.zeros(width, dtype=np.int64)
        return ParsedRows(np.empty((0, width)), kept, short, long, empty, empty.copy(), empty.copy())
    good = rows if count == len(rows) else list(compress(rows, kept))
    values, missing, wrong = _parse_text_columns("\n".join(good), width)
    return validate(values, specs, kept=kept, short=short, long=long, missing=missing, wrong=wrong)


def validate(
    values: NDArray[np.float64],
    specs: Sequence[FeatureSpec],
    *,
    kept: NDArray[np.bool_] | None = None,
    short: int = 0,
    long: int = 0,
    missing: NDArray[np.bool_] | None = None,
    wrong: NDArray[np.bool_] | None = None,
) -> ParsedRows:
    """Check parsed values against the schema (in place): infinite, fractional for integral features,
    outside the allowed values or the range become NaN and are counted per feature."""
    missing = np.isnan(values) if missing is None else missing
    wrong = np.zeros_like(missing) if wrong is None else wrong
    infinite = np.isinf(values)
    wrong |= infinite
    values[infinite] = np.nan
    out_of_range = np.zeros_like(missing)
    for index, spec in enumerate(specs):
        column = values[:, index]
        present = ~np.isnan(column)
        if spec.integral:
            fractional = present & (column != np.floor(np.where(present, column, 0.0)))
            wrong[:, index] |= fractional
            column[fractional] = np.nan
            present &= ~fractional
        bad = np.zeros_like(present)
        if spec.allowed is not None:
            bad |= present & ~np.isin(column, np.asarray(spec.allowed, dtype=np.float64))
        if spec.minimum is not None:
            bad |= present & (column < spec.minimum)
        if spec.maximum is not None:
            bad |= present & (column > spec.maximum)
        out_of_range[:, index] = bad
        column[bad] = np.nan
    values[wrong] = np.nan
    return ParsedRows(
        values=values,
        kept=np.ones(len(values), dtype=bool) if kept is None else kept,
        short=short,
        long=long,
        missing=missing.sum(axis=0).astype(np.int64),
        type_errors=wrong.sum(axis=0).astype(np.int64),
        out_of_range=out_of_range.sum(axis=0).astype(np.int64),
    )


# --- streaming statistics -------------------------------------------------------------------------


@dataclass
class BottomKSample:
    """A uniform random sample of at most ``size`` rows of a stream (the rows with the smallest keys)."""

    size: int
    width: int
    rng: np.random.Generator
    keys: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    rows: NDArray[np.float64] = field(init=False)

    def __post_init__(self) -> None:
        self.rows = np.empty((0, self.width))

    def add(self, rows: NDArray[np.float64]) -> None:
        if not len(rows):
            return
        keys = np.concatenate([self.keys, self.rng.random(len(rows))])
        merged = np.concatenate([self.rows, rows])
        if len(keys) > self.size:
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            keys, merged = keys[keep], merged[keep]
        self.keys, self.rows = keys, merged


@dataclass
class FeatureStatistics:
    """Exact running statistics of one window (or the baseline), per feature, plus a row sample."""

    specs: tuple[FeatureSpec, ...]
    sample_size: int
    seed: int = 0
    rows: int = 0  # rows with the right column count
    short: int = 0
    long: int = 0
    missing: NDArray[np.int64] = field(init=False)
    type_errors: NDArray[np.int64] = field(init=False)
    out_of_range: NDArray[np.int64] = field(init=False)
    present: NDArray[np.int64] = field(init=False)
    total: NDArray[np.float64] = field(init=False)
    total_squares: NDArray[np.float64] = field(init=False)
    low: NDArray[np.float64] = field(init=False)
    high: NDArray[np.float64] = field(init=False)
    sample: BottomKSample = field(init=False)  # columns: the features, then the score

    def __post_init__(self) -> None:
        width = len(self.specs)
        self.missing = np.zeros(width, dtype=np.int64)
        self.type_errors = np.zeros(width, dtype=np.int64)
        self.out_of_range = np.zeros(width, dtype=np.int64)
        self.present = np.zeros(width, dtype=np.int64)
        self.total = np.zeros(width)
        self.total_squares = np.zeros(width)
        self.low = np.full(width, np.inf)
        self.high = np.full(width, -np.inf)
        self.sample = BottomKSample(self.sample_size, width + 1, np.random.default_rng(self.seed))

    def add(self, parsed: ParsedRows, scores: NDArray[np.float64]) -> None:
        """Add parsed rows; ``scores`` are those rows' scores (NaN when unknown)."""
        values = parsed.values
        self.rows += len(values)
        self.short += parsed.short
        self.long += parsed.long
        self.missing += parsed.missing
        self.type_errors += parsed.type_errors
        self.out_of_range += parsed.out_of_range
        if not len(values):
            return
        present = ~np.isnan(values)
        self.present += present.sum(axis=0)
        filled = np.where(present, values, 0.0)
        self.total += filled.sum(axis=0)
        self.total_squares += (filled * filled).sum(axis=0)
        self.low = np.fmin(self.low, np.nanmin(np.where(present, values, np.inf), axis=0))
        self.high = np.fmax(self.high, np.nanmax(np.where(present, values, -np.inf), axis=0))
        self.sample.add(np.column_stack([values, scores]))

    def column(self, index: int) -> NDArray[np.float64]:
        """The sampled valid values of feature ``index`` (the score is index ``len(specs)``)."""
        column = self.sample.rows[:, index]
        valid: NDArray[np.float64] = column[~np.isnan(column)]
        return valid

    def mean(self, index: int) -> float:
        return float(self.total[index] / self.present[index]) if self.present[index] else math.nan

    def std(self, index: int) -> float:
        n = self.present[index]
        if n < 2:
            return math.nan
        variance = (self.total_squares[index] - self.total[index] ** 2 / n) / (n - 1)
        return float(math.sqrt(max(variance, 0.0)))


def kll_sketch(values: NDArray[np.float64], count: int) -> list[list[float]]:
    """A valid KLL state for ``count`` values from a uniform sample of them: one level of items, each
    standing for 2^level values, so Model Monitor's readers weigh them as a compacted sketch would."""
    if count <= 0 or not len(values):
        return []
    capacity = min(KLL_K, len(values))  # at most k items, and no more than the sample holds
    level = math.ceil(math.log2(count / capacity)) if count > capacity else 0
    items = max(1, min(len(values), round(count / 2**level)))
    chosen = np.sort(
        values[np.linspace(0, len(values) - 1, items).round().astype(int)] if items < len(values) else values
    )
    return [[] for _ in range(level)] + [[float(v) for v in chosen]]


def statistics_json(statistics: FeatureStatistics) -> dict[str, Any]:
    """Model Monitor's statistics.json of these statistics."""
    features = []
    for index, spec in enumerate(statistics.specs):
        present = int(statistics.present[index])
        sample = statistics.column(index)
        buckets: list[dict[str, float]] = []
        if present:
            low, high = float(statistics.low[index]), float(statistics.high[index])
            edges = np.linspace(low, high, HISTOGRAM_BUCKETS + 1) if high > low else np.array([low, high])
            counts, _ = np.histogram(sample, bins=edges) if len(sample) else (np.zeros(len(edges) - 1), edges)
            scale = present / max(len(sample), 1)
            buckets = [
                {"lower_bound": float(a), "upper_bound": float(b), "count": float(round(c * scale, 3))}
                for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
            ]
        numeric: dict[str, Any] = {
            "common": {"num_present": present, "num_missing": int(statistics.rows - present)},
        }
        if present:
            numeric.update(
                {
                    "mean": statistics.mean(index),
                    "sum": float(statistics.total[index]),
                    "std_dev": _finite_or_zero(statistics.std(index)),
                    "min": float(statistics.low[index]),
                    "max": float(statistics.high[index]),
                    "distribution": {
                        "kll": {
                            "buckets": buckets,
                            "sketch": {
                                "parameters": {"c": KLL_C, "k": float(KLL_K)},
                                "data": kll_sketch(sample, present),
                            },
                        }
                    },
                }
            )
        features.append({"name": spec.name, "inferred_type": spec.inferred_type, "numerical_statistics": numeric})
    return {"version": 0.0, "dataset": {"item_count": int(statistics.rows)}, "features": features}


def _finite_or_zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def constraints_json(statistics: FeatureStatistics, config: MonitorConfig) -> dict[str, Any]:
    """Model Monitor's constraints.json suggested from baseline statistics, with our thresholds."""
    features = []
    for index, spec in enumerate(statistics.specs):
        present = int(statistics.present[index])
        entry: dict[str, Any] = {
            "name": spec.name,
            "inferred_type": spec.inferred_type,
            "completeness": round(present / statistics.rows, 6) if statistics.rows else 1.0,
            "num_constraints": {"is_non_negative": bool(present and statistics.low[index] >= 0)},
        }
        features.append(entry)
    return {
        "version": 0.0,
        "features": features,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 1.0,
            "domain_content_threshold": 1.0,
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_threshold": config.drift_threshold,
                "comparison_method": "Robust",
                "categorical_comparison_threshold": config.categorical_drift_threshold,
                "categorical_drift_method": "LInfinity",
            },
        },
    }


# --- comparing with the baseline ------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineFeatures:
    """What the drift checks need from baseline.py's output: a value sample and missing shares."""

    names: tuple[str, ...]
    sample: NDArray[np.float64]  # rows x (features + score); NaN where missing
    missing_share: dict[str, float]

    def column(self, index: int) -> NDArray[np.float64]:
        column = self.sample[:, index]
        valid: NDArray[np.float64] = column[~np.isnan(column)]
        return valid


@dataclass(frozen=True)
class Drift:
    feature: str
    method: str  # "ks" or "linf"
    distance: float
    p_value: float
    current: int
    baseline: int
    violation: bool


def categorical_drift(
    current: NDArray[np.float64], baseline: NDArray[np.float64], categories: Sequence[float]
) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """(L-infinity distance of the shares, chi-square p-value, {category: (baseline share, current share)})."""
    levels = np.asarray(categories, dtype=np.float64)
    now = np.array([(current == level).sum() for level in levels], dtype=np.float64)
    then = np.array([(baseline == level).sum() for level in levels], dtype=np.float64)
    shares_now, shares_then = now / max(now.sum(), 1), then / max(then.sum(), 1)
    distance = float(np.abs(shares_now - shares_then).max())
    used = (now + then) > 0
    if used.sum() < 2 or now.sum() == 0 or then.sum() == 0:
        p_value = 1.0
    else:
        p_value = float(stats.chi2_contingency(np.vstack([now[used], then[used]]), correction=False).pvalue)
    shares = {f"{level:g}": (float(b), float(c)) for level, b, c in zip(levels, shares_then, shares_now, strict=True)}
    return distance, p_value, shares


def drift(
    current: FeatureStatistics, baseline: BaselineFeatures, config: MonitorConfig
) -> tuple[list[Drift], list[Violation]]:
    """Per-feature drift of the window against the baseline, and the violations it amounts to."""
    results, violations = [], []
    for index, spec in enumerate(current.specs):
        now, then = current.column(index), baseline.column(index)
        if len(now) == 0 or len(then) == 0:
            continue
        if spec.categorical:
            assert spec.allowed is not None
            distance, p_value, _ = categorical_drift(now, then, spec.allowed)
            method, threshold = "linf", config.categorical_drift_threshold
        else:
            test = stats.ks_2samp(now, then)
            distance, p_value = float(test.statistic), float(test.pvalue)
            method, threshold = "ks", config.drift_threshold
        valid = int(current.present[index])
        violation = distance > threshold and p_value < config.drift_alpha and valid >= config.min_records
        results.append(Drift(spec.name, method, distance, p_value, valid, len(then), violation))
        if violation:
            kind = "L-infinity distance of category shares" if method == "linf" else "Kolmogorov-Smirnov distance"
            violations.append(
                {
                    "feature_name": spec.name,
                    "constraint_check_type": "baseline_drift_check",
                    "description": (
                        f"{kind} {distance:.4f} exceeds the threshold {threshold} "
                        f"(p = {p_value:.2g} < {config.drift_alpha}; {valid} values against a baseline sample of {len(then)})"
                    ),
                    "metric_name": f"feature_baseline_drift_{spec.name}",
                    "value": round(distance, 6),
                    "threshold": threshold,
                }
            )
    return results, violations


def _rate_violation(count: int, total: int, allowed: float, alpha: float) -> tuple[bool, float]:
    """(violation, p-value): the observed rate is above ``allowed`` and significantly so (binomial test)."""
    if total == 0 or count == 0 or count / total <= allowed:
        return False, 1.0
    if allowed <= 0:
        return True, 0.0
    p_value = float(stats.binomtest(count, total, allowed, alternative="greater").pvalue)
    return p_value < alpha, p_value


def integrity(
    current: FeatureStatistics, malformed: int, baseline_missing: dict[str, float], config: MonitorConfig
) -> list[Violation]:
    """Integrity violations of the window: broken records, missing, wrongly typed, out-of-range values."""
    violations: list[Violation] = []
    records = current.rows + current.short + current.long + malformed
    record_checks = (
        ("malformed_record_check", malformed, "lines are not usable capture records (see summary.json for reasons)"),
        ("missing_column_check", current.short, f"rows have fewer than {len(current.specs)} values"),
        ("extra_column_check", current.long, f"rows have more than {len(current.specs)} values"),
    )
    for check, count, what in record_checks:
        bad, p_value = _rate_violation(count, records, config.max_malformed_fraction, config.integrity_alpha)
        if bad:
            violations.append(
                {
                    "feature_name": "*",
                    "constraint_check_type": check,
                    "description": f"{count} of {records} {what} ({count / records:.2%} > {config.max_malformed_fraction:.2%}, p = {p_value:.2g})",
                    "value": round(count / records, 6),
                    "threshold": config.max_malformed_fraction,
                }
            )
    rows = current.rows
    for index, spec in enumerate(current.specs):
        base = baseline_missing.get(spec.name, 0.0)
        allowed_missing = min(1.0, base + config.max_missing_fraction)
        checks = (
            ("completeness_check", int(current.missing[index]), allowed_missing, "values are missing", f"baseline {base:.2%} + {config.max_missing_fraction:.2%}"),
            ("data_type_check", int(current.type_errors[index]), config.max_type_error_fraction, "values are not " + ("whole numbers" if spec.integral else "numbers") + (" (or not numbers at all)" if spec.integral else ""), None),
            (
                "categorical_values_check" if spec.categorical else "range_check",
                int(current.out_of_range[index]),
                config.max_out_of_range_fraction,
                _range_text(spec),
                None,
            ),
        )  # fmt: skip
        for check, count, allowed, what, basis in checks:
            bad, p_value = _rate_violation(count, rows, allowed, config.integrity_alpha)
            if bad:
                violations.append(
                    {
                        "feature_name": spec.name,
                        "constraint_check_type": check,
                        "description": (
                            f"{count} of {rows} {spec.name} {what} ({count / rows:.2%} > {allowed:.2%}"
                            + (f" = {basis}" if basis else "")
                            + f", p = {p_value:.2g})"
                        ),
                        "value": round(count / rows, 6),
                        "threshold": allowed,
                    }
                )
    return violations


def _range_text(spec: FeatureSpec) -> str:
    if spec.allowed is not None:
        return "values are not one of " + ", ".join(f"{v:g}" for v in spec.allowed)
    bounds = []
    if spec.minimum is not None:
        bounds.append(f">= {spec.minimum:g}")
    if spec.maximum is not None:
        bounds.append(f"<= {spec.maximum:g}")
    return (
        "values are outside the schema's range (" + " and ".join(bounds) + ")" if bounds else "values are out of range"
    )
