"""The local offline store make run builds training sets from: what it holds, and the check that catches leakage."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churn_data import generate_customers
from feature_schema import load_schema
from scripts.local_feature_store import check_point_in_time, write_local_feature_store
from training_set import IS_DELETED, WRITE_TIME

SCHEMA = load_schema()


def test_the_offline_store_holds_later_records_and_duplicates_beside_each_customers_record(tmp_path: Path) -> None:
    customers = generate_customers(3000, seed=5)
    store = write_local_feature_store(customers, SCHEMA, tmp_path, seed=5)
    offline = pd.concat(pd.read_parquet(p) for p in sorted(store.offline_store.glob("*.parquet")))
    assert len(offline) == store.records == 3000 + store.later_records + store.duplicate_writes
    assert store.later_records > 200
    assert store.duplicate_writes > 20
    assert not offline[IS_DELETED].any()
    assert str(offline[WRITE_TIME].dtype).startswith("datetime64")
    labels = pd.read_csv(store.labels_dir / "labels.csv", dtype=str)
    assert list(labels.columns) == [SCHEMA.record_identifier.name, "label_time", SCHEMA.label.name]
    assert len(labels) == 3000
    # Every later record is after its customer's label time: using it would leak the future.
    label_time = pd.to_datetime(labels.set_index(SCHEMA.record_identifier.name)["label_time"], utc=True)
    events = pd.to_datetime(offline[SCHEMA.event_time.name], utc=True)
    after = events.to_numpy() > label_time.loc[offline[SCHEMA.record_identifier.name]].to_numpy()
    assert int(after.sum()) == store.later_records


def test_the_check_finds_rows_with_features_from_another_time() -> None:
    customers = generate_customers(500, seed=6)
    assert check_point_in_time(customers.sample(frac=1.0, random_state=1), customers, SCHEMA) == 0
    leaked = customers.copy()
    feature = next(column.name for column in SCHEMA.features if column.allowed is None)
    leaked.loc[leaked.index[:7], feature] += 1
    assert check_point_in_time(leaked, customers, SCHEMA) == 7
    assert check_point_in_time(customers.iloc[:400], customers, SCHEMA) == 100
