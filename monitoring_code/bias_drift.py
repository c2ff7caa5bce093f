"""Bias drift: per segment of each protected attribute, the gaps between segments against the baseline.

For a facet value d of a protected attribute (in the churn example: seniors) and the rest a:

- DPPL (Clarify's difference in positive proportions in predicted labels) = q_a - q_d, where q is the
  share of rows the model predicts positive (score >= ``prediction_threshold``);
- DI (disparate impact) = q_d / q_a;
- with labels, RD (recall difference) = recall_a - recall_d and FPRD (false-positive-rate difference)
  = FPR_a - FPR_d.

A metric drifts when it moved from the served version's baseline by more than its tolerance *and*
the move is significant: a two-sided z test whose standard error adds the binomial variances of the
window and of the baseline (delta method for log DI), so neither sampling noise in a small segment
nor in the baseline raises an alarm. Segments smaller than the configured minimum are not judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from monitor_config import BiasSettings

Violation = dict[str, Any]
DESCRIPTIONS = {
    "DPPL": "Difference in positive proportions in predicted labels (rest - facet)",
    "DI": "Disparate impact (facet / rest share predicted positive)",
    "RD": "Recall difference (rest - facet)",
    "FPRD": "False positive rate difference (rest - facet)",
}


@dataclass
class SegmentCounts:
    """Counts of one facet value (d) and the rest (a) of one protected attribute."""

    n: list[int] = field(default_factory=lambda: [0, 0])  # [a, d] rows
    predicted: list[int] = field(default_factory=lambda: [0, 0])  # predicted positive
    tp: list[int] = field(default_factory=lambda: [0, 0])
    fn: list[int] = field(default_factory=lambda: [0, 0])
    fp: list[int] = field(default_factory=lambda: [0, 0])
    tn: list[int] = field(default_factory=lambda: [0, 0])

    def to_json(self) -> dict[str, list[int]]:
        return {"n": self.n, "predicted": self.predicted, "tp": self.tp, "fn": self.fn, "fp": self.fp, "tn": self.tn}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SegmentCounts:
        return cls(
            **{key: [int(data[key][0]), int(data[key][1])] for key in ("n", "predicted", "tp", "fn", "fp", "tn")}
        )


def facet_values(allowed: tuple[float, ...]) -> tuple[float, ...]:
    """The segments compared with the rest: the second value of a binary attribute, else every value."""
    return allowed[1:] if len(allowed) == 2 else allowed


def count_predictions(
    counts: dict[tuple[str, float], SegmentCounts],
    attribute: str,
    allowed: tuple[float, ...],
    values: NDArray[np.float64],
    predicted: NDArray[np.bool_],
) -> None:
    """Add rows (attribute values, predicted positive) to the counts; rows without a valid value are skipped."""
    known = ~np.isnan(values)
    for facet in facet_values(allowed):
        segment = counts.setdefault((attribute, facet), SegmentCounts())
        is_d = values == facet
        for side, mask in ((0, known & ~is_d), (1, is_d)):
            segment.n[side] += int(mask.sum())
            segment.predicted[side] += int((mask & predicted).sum())


def count_labels(
    counts: dict[tuple[str, float], SegmentCounts],
    attribute: str,
    allowed: tuple[float, ...],
    values: NDArray[np.float64],
    predicted: NDArray[np.bool_],
    labels: NDArray[np.float64],
) -> None:
    known = ~np.isnan(values)
    positive = labels == 1
    for facet in facet_values(allowed):
        segment = counts.setdefault((attribute, facet), SegmentCounts())
        is_d = values == facet
        for side, mask in ((0, known & ~is_d), (1, is_d)):
            segment.tp[side] += int((mask & positive & predicted).sum())
            segment.fn[side] += int((mask & positive & ~predicted).sum())
            segment.fp[side] += int((mask & ~positive & predicted).sum())
            segment.tn[side] += int((mask & ~positive & ~predicted).sum())


def _rate(k: int, n: int) -> float:
    return k / n if n else math.nan


def _variance(k: int, n: int) -> float:
    """Binomial variance of k/n, with half a success added each side so 0 and n keep a variance."""
    if n == 0:
        return math.inf
    p = (k + 0.5) / (n + 1)
    return p * (1 - p) / n


def metric_values(counts: SegmentCounts) -> dict[str, tuple[float, float]]:
    """{metric: (value, variance)} of the counts; NaN where a segment is empty."""
    out: dict[str, tuple[float, float]] = {}
    qa, qd = _rate(counts.predicted[0], counts.n[0]), _rate(counts.predicted[1], counts.n[1])
    var_qa, var_qd = _variance(counts.predicted[0], counts.n[0]), _variance(counts.predicted[1], counts.n[1])
    out["DPPL"] = (qa - qd, var_qa + var_qd)
    if qa > 0 and qd > 0:
        # variance of log DI by the delta method
        pa = (counts.predicted[0] + 0.5) / (counts.n[0] + 1)
        pd_ = (counts.predicted[1] + 0.5) / (counts.n[1] + 1)
        log_var = (1 - pd_) / (pd_ * max(counts.n[1], 1)) + (1 - pa) / (pa * max(counts.n[0], 1))
        out["DI"] = (qd / qa, log_var)
    else:
        out["DI"] = (math.nan, math.inf)
    positives = [counts.tp[s] + counts.fn[s] for s in (0, 1)]
    negatives = [counts.fp[s] + counts.tn[s] for s in (0, 1)]
    ra, rd = _rate(counts.tp[0], positives[0]), _rate(counts.tp[1], positives[1])
    out["RD"] = (ra - rd, _variance(counts.tp[0], positives[0]) + _variance(counts.tp[1], positives[1]))
    fa, fd = _rate(counts.fp[0], negatives[0]), _rate(counts.fp[1], negatives[1])
    out["FPRD"] = (fa - fd, _variance(counts.fp[0], negatives[0]) + _variance(counts.fp[1], negatives[1]))
    return out


def analysis_json(counts: dict[tuple[str, float], SegmentCounts], label: str) -> dict[str, Any]:
    """Clarify's analysis.json layout (post-training bias metrics per facet), plus the counts behind them."""
    facets: dict[str, list[dict[str, Any]]] = {}
    for (attribute, facet), segment in sorted(counts.items()):
        values = metric_values(segment)
        facets.setdefault(attribute, []).append(
            {
                "value_or_threshold": f"{facet:g}",
                "metrics": [
                    {"name": name, "description": DESCRIPTIONS[name], "value": _json_number(values[name][0])}
                    for name in ("DPPL", "DI", "RD", "FPRD")
                ],
                "counts": segment.to_json(),
            }
        )
    return {
        "version": "1.0",
        "post_training_bias_metrics": {"label": label, "label_value_or_threshold": "1", "facets": facets},
    }


def _json_number(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def baseline_counts(analysis: dict[str, Any]) -> dict[tuple[str, float], SegmentCounts]:
    counts = {}
    facets = analysis.get("post_training_bias_metrics", {}).get("facets", {})
    for attribute, entries in facets.items():
        for entry in entries:
            counts[(attribute, float(entry["value_or_threshold"]))] = SegmentCounts.from_json(entry["counts"])
    return counts


@dataclass(frozen=True)
class BiasResult:
    attribute: str
    facet: float
    metric: str
    current: float
    baseline: float
    p_value: float
    judged: bool  # enough records in both segments to judge
    violation: bool


def compare(
    current: dict[tuple[str, float], SegmentCounts],
    baseline: dict[tuple[str, float], SegmentCounts],
    settings: BiasSettings,
) -> tuple[list[BiasResult], list[Violation]]:
    results: list[BiasResult] = []
    found: list[Violation] = []
    tolerances = {
        "DPPL": settings.max_dppl_change,
        "DI": math.log(settings.max_di_ratio),
        "RD": settings.max_recall_gap_change,
        "FPRD": settings.max_fpr_gap_change,
    }
    for key, segment in sorted(current.items()):
        if key not in baseline:
            continue
        attribute, facet = key
        now, then = metric_values(segment), metric_values(baseline[key])
        positives = [segment.tp[s] + segment.fn[s] for s in (0, 1)]
        negatives = [segment.fp[s] + segment.tn[s] for s in (0, 1)]
        enough = {
            "DPPL": min(segment.n) >= settings.min_segment_records,
            "DI": min(segment.n) >= settings.min_segment_records,
            "RD": min(positives) >= settings.min_segment_labelled,
            "FPRD": min(negatives) >= settings.min_segment_labelled,
        }
        for metric in ("DPPL", "DI", "RD", "FPRD"):
            (value, variance), (base, base_variance) = now[metric], then[metric]
            if not (math.isfinite(value) and math.isfinite(base)):
                results.append(BiasResult(attribute, facet, metric, value, base, math.nan, False, False))
                continue
            change = math.log(value / base) if metric == "DI" else value - base
            if metric == "DI" and not (value > 0 and base > 0):
                continue
            z = abs(change) / math.sqrt(variance + base_variance) if variance + base_variance > 0 else math.inf
            p_value = float(2 * stats.norm.sf(z))
            violation = enough[metric] and abs(change) > tolerances[metric] and p_value < settings.alpha
            results.append(BiasResult(attribute, facet, metric, value, base, p_value, enough[metric], violation))
            if violation:
                if metric == "DI":
                    moved = f"changed by a factor of {value / base:.3f} (allowed 1/{settings.max_di_ratio} to {settings.max_di_ratio})"
                else:
                    moved = f"moved by {value - base:+.4f} (allowed ±{tolerances[metric]})"
                found.append(
                    {
                        "feature_name": attribute,
                        "facet": attribute,
                        "facet_value": f"{facet:g}",
                        "metric_name": metric,
                        "constraint_check_type": "bias_drift_check",
                        "description": (
                            f"{metric} for {attribute} = {facet:g} is {value:.4f}, baseline {base:.4f}: {moved}, "
                            f"p = {p_value:.2g} < {settings.alpha} ({segment.n[1]} rows in the segment, {segment.n[0]} in the rest)"
                        ),
                        "value": round(value, 6),
                        "threshold": settings.max_di_ratio if metric == "DI" else tolerances[metric],
                    }
                )
    return results, found
