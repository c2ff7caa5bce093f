"""A local stand-in for the feature group's offline store and a labels dataset, for ``make run``.

The offline store is written the way Feature Store writes it (the schema's columns, event time as
ISO 8601 text, plus ``write_time``, ``api_invocation_time`` and ``is_deleted``) as Parquet files,
and it holds what a real one holds after a while:

- every customer's record as of its event time (the generator's row);
- for some customers a later record (changed features) with an event time *after* their label
  time: a training set that used it would leak the future;
- for some customers the same event written twice (a retried ingestion), the second write later.

The labels dataset has one label per customer, 30 days after its record: the churn the generator
drew for those features. A correct point-in-time training set is therefore exactly the generator's
rows, which :func:`check_point_in_time` verifies after the build.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# The offline store's columns and the labels' header come from the training code, as in the job.
TRAINING_CODE = Path(__file__).resolve().parent.parent / "training_code"
if str(TRAINING_CODE) not in sys.path:
    sys.path.append(str(TRAINING_CODE))

from build_training_set import label_columns
from feature_schema import FeatureSchema
from training_set import API_INVOCATION_TIME, IS_DELETED, WRITE_TIME

LABEL_DELAY = pd.Timedelta(days=30)
LATER_SHARE = 0.1
DUPLICATE_SHARE = 0.02
OFFLINE_FILES = 4


@dataclass(frozen=True)
class LocalFeatureStore:
    offline_store: Path
    labels_dir: Path
    records: int
    later_records: int
    duplicate_writes: int
    labels: int


def _iso(moments: pd.Series) -> pd.Series:  # type: ignore[type-arg]
    return moments.dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_local_feature_store(
    customers: pd.DataFrame, schema: FeatureSchema, directory: Path, *, seed: int = 7
) -> LocalFeatureStore:
    """Write ``customers`` (generator rows) as an offline store and a labels dataset under ``directory``."""
    rng = np.random.default_rng(seed + 1)
    identifier, event_time, label = schema.record_identifier.name, schema.event_time.name, schema.label.name
    features = [column.name for column in schema.features]
    events = pd.to_datetime(customers[event_time], utc=True, format="ISO8601")

    def records(rows: pd.DataFrame, moments: pd.Series, lag_seconds: np.ndarray) -> pd.DataFrame:  # type: ignore[type-arg]
        frame = rows[[identifier, *features]].copy()
        frame.insert(1, event_time, _iso(moments))
        written = moments + pd.to_timedelta(lag_seconds, unit="s")
        frame[WRITE_TIME] = written.to_numpy()
        frame[API_INVOCATION_TIME] = (written - pd.Timedelta(milliseconds=50)).to_numpy()
        frame[IS_DELETED] = False
        return frame

    current = records(customers, events, rng.uniform(1, 600, len(customers)))
    # Later records: the customer changed after the label time (counts went up by one).
    later_mask = rng.random(len(customers)) < LATER_SHARE
    later_rows = customers[later_mask].copy()
    for column in schema.features:
        if column.allowed is None and column.type == "integral":
            ceiling = column.maximum if column.maximum is not None else np.inf
            later_rows[column.name] = np.minimum(later_rows[column.name] + 1, ceiling)
    later_events = events[later_mask] + LABEL_DELAY + pd.Timedelta(days=5)
    later = records(later_rows, later_events, rng.uniform(1, 600, len(later_rows)))
    # Duplicates: the same event written again an hour later (identical values).
    duplicate_mask = rng.random(len(customers)) < DUPLICATE_SHARE
    duplicates = records(customers[duplicate_mask], events[duplicate_mask], np.full(int(duplicate_mask.sum()), 3600.0))

    offline = pd.concat([current, later, duplicates], ignore_index=True)
    offline = offline.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # arrival order is not event order
    store = directory / "offline-store"
    store.mkdir(parents=True, exist_ok=True)
    for index, part in enumerate(np.array_split(np.arange(len(offline)), OFFLINE_FILES)):
        offline.iloc[part].to_parquet(store / f"part-{index:05d}.parquet", index=False)

    labels_dir = directory / "labels" / "current"
    labels_dir.mkdir(parents=True, exist_ok=True)
    with (labels_dir / "labels.csv").open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(label_columns(schema))
        label_times = _iso(events + LABEL_DELAY)
        out.writerows(zip(customers[identifier], label_times, customers[label], strict=True))
    return LocalFeatureStore(
        offline_store=store,
        labels_dir=labels_dir,
        records=len(offline),
        later_records=len(later),
        duplicate_writes=len(duplicates),
        labels=len(customers),
    )


def check_point_in_time(training_set: pd.DataFrame, customers: pd.DataFrame, schema: FeatureSchema) -> int:
    """The rows of ``training_set`` whose features differ from the customer's record as of the label time."""
    identifier = schema.record_identifier.name
    features = [column.name for column in schema.features]
    built = training_set.set_index(identifier)[features].astype(float).sort_index()
    expected = customers.set_index(identifier)[features].astype(float).sort_index()
    if list(built.index) != list(expected.index):
        return abs(len(built) - len(expected)) or len(expected)
    return int((~np.isclose(built.to_numpy(), expected.to_numpy())).any(axis=1).sum())
