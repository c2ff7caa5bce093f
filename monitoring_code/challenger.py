"""Champion vs challenger: the AUC difference with an interval, and a verdict a promotion can rest on.

Two methods (``challenger.method``):

- ``bootstrap`` (default): scipy.stats.bootstrap, percentile interval of AUC(challenger) - AUC(champion),
  resampling each variant's labelled records on their own (A/B traffic is disjoint) or the shared
  records together when the variants scored the same requests (a shadow variant). Beyond
  ``max_records`` per variant a seeded subsample is used, which widens the interval (fewer verdicts,
  never more).
- ``delong``: DeLong's variance of the AUC from its structural components (the fast algorithm of
  Sun and Xu, 2014), with the covariance for paired records; a normal interval. Exact at any size.

Verdict: better (+1) when the whole interval is above 0, worse (-1) when below, otherwise
"not yet significant" (0); with fewer than ``min_labelled`` records (or one class) per variant,
no verdict is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from monitor_config import ChallengerSettings

VERDICTS = {1: "better", -1: "worse", 0: "not yet significant"}


@dataclass(frozen=True)
class Labelled:
    """A variant's labelled records: scores, labels (0/1) and the ids they were matched on."""

    scores: NDArray[np.float64]
    labels: NDArray[np.float64]
    ids: NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.labels)

    def usable(self, minimum: int) -> bool:
        return len(self) >= minimum and 0 < self.labels.sum() < len(self)


def auc(scores: NDArray[np.float64], labels: NDArray[np.float64]) -> NDArray[np.float64]:
    """AUC along the last axis from mid-ranks (the Mann-Whitney statistic); works on batches."""
    ranks = stats.rankdata(scores, axis=-1)
    positives = labels.sum(axis=-1)
    negatives = labels.shape[-1] - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        result = ((ranks * labels).sum(axis=-1) - positives * (positives + 1) / 2) / (positives * negatives)
    return np.asarray(result, dtype=np.float64)


def _components(
    scores: NDArray[np.float64], labels: NDArray[np.float64]
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """DeLong's structural components: (AUC, V10 per positive, V01 per negative)."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    m, n = len(positive), len(negative)
    all_ranks = stats.rankdata(np.concatenate([positive, negative]))
    v10 = (all_ranks[:m] - stats.rankdata(positive)) / n
    v01 = 1 - (all_ranks[m:] - stats.rankdata(negative)) / m
    return float(v10.mean()), v10, v01


def delong_interval(
    champion: Labelled, challenger: Labelled, paired: bool, confidence: float
) -> tuple[float, float, float]:
    """(difference, low, high) of AUC(challenger) - AUC(champion) with DeLong's variance."""
    if paired:
        labels = champion.labels
        a, a10, a01 = _components(champion.scores, labels)
        b, b10, b01 = _components(challenger.scores, labels)
        s10 = np.cov(np.vstack([a10, b10]))
        s01 = np.cov(np.vstack([a01, b01]))
        m, n = len(a10), len(a01)
        variance = float((s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n)
    else:
        a, a10, a01 = _components(champion.scores, champion.labels)
        b, b10, b01 = _components(challenger.scores, challenger.labels)
        variance = float(
            np.var(a10, ddof=1) / len(a10)
            + np.var(a01, ddof=1) / len(a01)
            + np.var(b10, ddof=1) / len(b10)
            + np.var(b01, ddof=1) / len(b01)
        )
    difference = b - a
    half = float(stats.norm.ppf(0.5 + confidence / 2)) * math.sqrt(max(variance, 0.0))
    return difference, difference - half, difference + half


def _subsample(data: Labelled, limit: int, rng: np.random.Generator) -> Labelled:
    if len(data) <= limit:
        return data
    keep = np.sort(rng.choice(len(data), size=limit, replace=False))
    return Labelled(data.scores[keep], data.labels[keep], data.ids[keep])


def bootstrap_interval(
    champion: Labelled, challenger: Labelled, paired: bool, settings: ChallengerSettings
) -> tuple[float, float, float]:
    rng = np.random.default_rng(settings.seed)
    confidence = 1 - settings.alpha
    if paired:
        labels, a_scores, b_scores = champion.labels, champion.scores, challenger.scores
        if len(labels) > settings.max_records:
            keep = np.sort(rng.choice(len(labels), size=settings.max_records, replace=False))
            labels, a_scores, b_scores = labels[keep], a_scores[keep], b_scores[keep]

        def paired_difference(index: NDArray[np.intp], axis: int = -1) -> NDArray[np.float64]:
            chosen = labels[index]
            return auc(b_scores[index], chosen) - auc(a_scores[index], chosen)

        data: tuple[NDArray[Any], ...] = (np.arange(len(labels)),)
        statistic: Any = paired_difference
        point = float(auc(b_scores, labels) - auc(a_scores, labels))
    else:
        a, b = _subsample(champion, settings.max_records, rng), _subsample(challenger, settings.max_records, rng)

        def difference(a_index: NDArray[np.intp], b_index: NDArray[np.intp], axis: int = -1) -> NDArray[np.float64]:
            return auc(b.scores[b_index], b.labels[b_index]) - auc(a.scores[a_index], a.labels[a_index])

        data = (np.arange(len(a)), np.arange(len(b)))
        statistic = difference
        point = float(auc(b.scores, b.labels) - auc(a.scores, a.labels))
    result = stats.bootstrap(
        data,
        statistic,
        n_resamples=settings.resamples,
        batch=max(1, 2_000_000 // max(len(d) for d in data)),
        vectorized=True,
        paired=False,
        confidence_level=confidence,
        method="percentile",
        rng=rng,
    )
    low, high = result.confidence_interval
    return point, float(low), float(high)


def pair(champion: Labelled, challenger: Labelled) -> tuple[Labelled, Labelled] | None:
    """The two variants on their shared records when most of the challenger's records were also scored by
    the champion (a shadow variant sees the same requests); None for disjoint (A/B) traffic."""
    shared, a_index, b_index = np.intersect1d(champion.ids, challenger.ids, assume_unique=False, return_indices=True)
    if len(shared) < 0.5 * len(challenger):
        return None
    return (
        Labelled(champion.scores[a_index], champion.labels[a_index], shared),
        Labelled(challenger.scores[b_index], challenger.labels[b_index], shared),
    )


def compare(
    champion_name: str, champion: Labelled, challenger_name: str, challenger: Labelled, settings: ChallengerSettings
) -> dict[str, Any]:
    """The comparison record of summary.json (see CONTRACT.md)."""
    record: dict[str, Any] = {
        "champion": champion_name,
        "challenger": challenger_name,
        "metric": "auc",
        "labelled_records": {champion_name: len(champion), challenger_name: len(challenger)},
        "method": settings.method,
        "confidence": 1 - settings.alpha,
    }
    if not (champion.usable(settings.min_labelled) and challenger.usable(settings.min_labelled)):
        record.update(
            verdict=f"no verdict: each variant needs {settings.min_labelled} labelled records with both classes",
            verdict_code=None,
            paired=False,
        )
        return record
    paired = pair(champion, challenger)
    a, b = paired if paired else (champion, challenger)
    if paired and not a.usable(settings.min_labelled):
        paired, a, b = None, champion, challenger
    if settings.method == "delong":
        difference, low, high = delong_interval(a, b, paired is not None, 1 - settings.alpha)
    else:
        difference, low, high = bootstrap_interval(a, b, paired is not None, settings)
    code = 1 if low > 0 else -1 if high < 0 else 0
    record.update(
        champion_value=round(float(auc(a.scores, a.labels)), 6),
        challenger_value=round(float(auc(b.scores, b.labels)), 6),
        difference=round(difference, 6),
        interval=[round(low, 6), round(high, 6)],
        paired=paired is not None,
        verdict=VERDICTS[code],
        verdict_code=code,
    )
    if paired is not None:
        record["labelled_records"]["shared"] = len(a)
    return record
