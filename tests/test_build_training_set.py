"""The training-set step (training_code/build_training_set.py): one code path, DuckDB locally, Athena in the job.

The offline store and the reference semantics are the ones proven in ``tests/test_training_set.py``.
The Athena engine is driven through botocore's Stubber (the query text it sends is asserted to be
the proven one) and moto's S3 (where Athena leaves the result file); "Athena" itself is played by
DuckDB running the Athena text transpiled by sqlglot, so the job's end-to-end result is compared
with the slow, obvious reference.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
import sqlglot
from botocore.stub import Stubber
from moto import mock_aws

from build_training_set import (
    REPORT_FILE,
    TRAINING_SET_FILE,
    AthenaEngine,
    DuckDbEngine,
    TrainingSetQuery,
    dataset_of,
    label_columns,
    parse_args,
    read_labels,
    run,
)
from churn_data import read_raw
from feature_schema import load_schema
from tests.test_training_set import OFFLINE, day, entity, iso, record, reference
from training_env import ConfigurationError, DataError
from training_set import CUTOFF_COLUMN, LABEL_TIME_COLUMN, labels_query, point_in_time_query

SCHEMA = load_schema()
DATABASE = "churn_dev_features"
QUERY = TrainingSetQuery(f"{DATABASE}.customers_v1", f"{DATABASE}.labels", "current")
HEADER = ",".join(label_columns(SCHEMA))


def write_offline_store(directory: Path, offline: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(offline)
    for column in ("write_time", "api_invocation_time"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame.to_parquet(directory / "part-0.parquet", index=False)
    return directory


def write_labels(directory: Path, entities: list[dict[str, Any]], name: str = "labels.csv") -> Path:
    """Label files as a labelling job would deliver them: one row per customer and label time."""
    directory.mkdir(parents=True, exist_ok=True)
    unique = {(e["customer_id"], e[CUTOFF_COLUMN]): e["churned"] for e in entities}
    with (directory / name).open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(label_columns(SCHEMA))
        for (customer, moment), label in unique.items():
            out.writerow([customer, moment, label])
    return directory


def job_args(tmp_path: Path, labels_dir: Path, *extra: str, engine: str = "duckdb") -> argparse.Namespace:
    args = [
        "--engine",
        engine,
        "--labels-uri",
        f"s3://churn-dev-raw/labels/{labels_dir.name}/",
        "--labels-root",
        "s3://churn-dev-raw/labels/",
        "--database",
        DATABASE,
        "--feature-table",
        "customers_v1",
        "--labels-dir",
        str(labels_dir),
        "--output-dir",
        str(tmp_path / "out" / "training_set"),
        "--report-dir",
        str(tmp_path / "out" / "report"),
        *extra,
    ]
    if engine == "duckdb":
        args += ["--offline-store-dir", str(tmp_path / "offline")]
    else:
        args += ["--workgroup", "churn-dev-features", "--region", "eu-west-1"]
    return parse_args(args)


def tenures(training_set: pd.DataFrame) -> dict[tuple[str, str], float]:
    return {
        (str(row.customer_id), str(getattr(row, LABEL_TIME_COLUMN))): float(str(row.tenure))
        for row in training_set.itertuples()
    }


def random_history() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(23)  # noqa: S311  (test data)
    offline = []
    for index in range(300):
        customer = f"c{rng.randrange(30)}"
        event = rng.randrange(0, 90)
        written = event + rng.choice([0.1, 0.2, rng.uniform(0, 30)]) + index * 1e-4
        offline.append(record(customer, event, written, index % 1000, deleted=rng.random() < 0.05))
    entities = [entity(f"c{rng.randrange(35)}", rng.randrange(0, 100), rng.randrange(2)) for _ in range(200)]
    return offline, entities


def expected_rows(offline: list[dict[str, Any]], entities: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {key: value for key, value in reference(offline, entities).items() if value is not None}


def test_duckdb_engine_builds_what_the_reference_says(tmp_path: Path) -> None:
    offline, entities = random_history()
    write_offline_store(tmp_path / "offline", offline)
    labels = write_labels(tmp_path / "current", entities)
    built = run(job_args(tmp_path, labels))
    expected = expected_rows(offline, entities)
    assert tenures(built.frame) == expected
    written = pd.read_csv(tmp_path / "out" / "training_set" / TRAINING_SET_FILE, dtype=str)
    assert tenures(written) == expected
    report = json.loads((tmp_path / "out" / "report" / REPORT_FILE).read_text())
    labelled = len({(e["customer_id"], e[CUTOFF_COLUMN]) for e in entities})
    assert report["rows"] == {
        "labels": labelled,
        "returned": labelled,
        "with_features": len(expected),
        "without_features": labelled - len(expected),
    }
    assert report["query"] == QUERY.sql(SCHEMA, "duckdb")
    assert report["labels_uri"] == "s3://churn-dev-raw/labels/current/"
    (label_file,) = report["label_files"]
    assert label_file["rows"] == labelled
    assert len(label_file["sha256"]) == 64


def in_range(row: dict[str, Any]) -> dict[str, Any]:
    """An offline-store row whose features pass the schema's ranges (the fixtures mark writes by value)."""
    row = dict(row)
    for column in SCHEMA.features:
        if column.allowed is not None:
            row[column.name] = float(column.allowed[-1])
        elif column.maximum is not None:
            row[column.name] = min(row[column.name], column.maximum)
    return row


def test_the_training_set_is_what_preprocessing_reads(tmp_path: Path) -> None:
    write_offline_store(tmp_path / "offline", [in_range(row) for row in OFFLINE])
    labels = write_labels(tmp_path / "current", [entity("a", 45, 1), entity("b", 17), entity("zz", 30)])
    run(job_args(tmp_path, labels))
    raw = read_raw(tmp_path / "out" / "training_set", SCHEMA)  # preprocess.py's validating reader
    assert list(raw.columns) == list(SCHEMA.raw_columns)
    assert sorted(raw["customer_id"]) == ["a", "b"]  # zz has no record: counted, not trained on
    assert raw.set_index("customer_id").loc["a", "churned"] == 1
    assert raw.set_index("customer_id").loc["a", "event_time"] == iso(day(31))  # as of the label, not later


# --- the Athena engine, through the job's own code path -----------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def play_athena(tmp_path: Path, sql: str, labels_dir: Path) -> bytes:
    """What Athena would write: the Athena text, parsed as Trino SQL and run on DuckDB over the same data."""
    local_sql = sqlglot.transpile(sql, read="athena", write="duckdb")[0]
    workdir = tmp_path / "athena"
    workdir.mkdir()
    engine = DuckDbEngine(tmp_path / "offline", labels_dir, QUERY.dataset, QUERY.feature_table, QUERY.labels_table)
    return engine.run(local_sql, workdir).result_file.read_bytes()


def athena_engine(stubbed_sql: str, *, states: list[str], reason: str = "") -> tuple[AthenaEngine, Stubber]:
    athena = boto3.client("athena", region_name="eu-west-1")
    stubber = Stubber(athena)
    stubber.add_response(
        "start_query_execution",
        {"QueryExecutionId": "q-1"},
        {
            "QueryString": stubbed_sql,
            "QueryExecutionContext": {"Catalog": "AwsDataCatalog", "Database": DATABASE},
            "WorkGroup": "churn-dev-features",
        },
    )
    for state in states:
        status: dict[str, Any] = {"State": state}
        if reason:
            status["StateChangeReason"] = reason
        stubber.add_response(
            "get_query_execution",
            {
                "QueryExecution": {
                    "QueryExecutionId": "q-1",
                    "Status": status,
                    "ResultConfiguration": {"OutputLocation": "s3://churn-dev-processed/athena-results/q-1.csv"},
                    "Statistics": {"DataScannedInBytes": 1234},
                }
            },
            {"QueryExecutionId": "q-1"},
        )
    stubber.activate()
    s3 = boto3.client("s3", region_name="eu-west-1")
    engine = AthenaEngine(athena, s3, "churn-dev-features", DATABASE, sleep=lambda _: None)
    return engine, stubber


def test_the_job_sends_the_proven_query_to_athena_and_builds_the_reference(tmp_path: Path, aws: None) -> None:
    offline, entities = random_history()
    write_offline_store(tmp_path / "offline", offline)
    labels = write_labels(tmp_path / "current", entities)
    proven = point_in_time_query(
        SCHEMA,
        feature_table=QUERY.feature_table,
        entity_query=labels_query(SCHEMA, labels_table=QUERY.labels_table, dataset="current"),
        dialect="athena",
    )
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="churn-dev-processed", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(
        Bucket="churn-dev-processed", Key="athena-results/q-1.csv", Body=play_athena(tmp_path, proven, labels)
    )
    engine, stubber = athena_engine(proven, states=["QUEUED", "RUNNING", "SUCCEEDED"])
    built = run(job_args(tmp_path, labels, engine="athena"), engine=engine)
    stubber.assert_no_pending_responses()  # the exact query text was sent, then polled to the end
    assert tenures(built.frame) == expected_rows(offline, entities)
    assert built.report["query_execution_id"] == "q-1"
    assert built.report["query_result_location"] == "s3://churn-dev-processed/athena-results/q-1.csv"
    assert built.report["data_scanned_bytes"] == 1234
    assert built.report["query"] == proven


def test_a_failed_athena_query_fails_the_job_with_athenas_reason(tmp_path: Path, aws: None) -> None:
    labels = write_labels(tmp_path / "current", [entity("a", 45, 1)])
    engine, _ = athena_engine(
        QUERY.sql(SCHEMA, "athena"), states=["FAILED"], reason="TABLE_NOT_FOUND: Table churn_dev_features.labels"
    )
    with pytest.raises(ConfigurationError, match="Athena query q-1 FAILED: TABLE_NOT_FOUND"):
        run(job_args(tmp_path, labels, engine="athena"), engine=engine)


def test_a_query_that_runs_too_long_is_stopped(tmp_path: Path, aws: None) -> None:
    labels = write_labels(tmp_path / "current", [entity("a", 45, 1)])
    engine, stubber = athena_engine(QUERY.sql(SCHEMA, "athena"), states=["RUNNING", "RUNNING"])
    stubber.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-1"})
    ticks = iter([0.0, 10.0, 5000.0, 5000.0])
    engine.clock = lambda: next(ticks)
    with pytest.raises(ConfigurationError, match=r"still RUNNING after 3000 s; stopped it"):
        run(job_args(tmp_path, labels, engine="athena"), engine=engine)
    stubber.assert_no_pending_responses()


def test_labels_that_change_while_the_query_runs_fail_the_job(tmp_path: Path) -> None:
    write_offline_store(tmp_path / "offline", OFFLINE)
    labels = write_labels(tmp_path / "current", [entity("a", 45, 1)])

    class MoreLabels(DuckDbEngine):
        def run(self, sql: str, workdir: Path) -> Any:
            write_labels(self.labels_dir, [entity("b", 17)], name="late.csv")  # lands after validation
            return super().run(sql, workdir)

    engine = MoreLabels(tmp_path / "offline", labels, "current", QUERY.feature_table, QUERY.labels_table)
    with pytest.raises(DataError, match="returned 2 rows for 1 validated labels"):
        run(job_args(tmp_path, labels), engine=engine)


# --- labels ------------------------------------------------------------------------------------------


def labels_folder(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    folder = tmp_path / "current"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("label_time,customer_id,churned\n2026-01-01T00:00:00Z,a,1\n", "header is 'label_time,customer_id,churned'"),
        ("customer_id,churned\na,1\n", "header is 'customer_id,churned'"),
        ("", r"header is '\(empty file\)'"),
        (f"{HEADER}\na,2026-01-01 00:00:00,1\n", "line 2: label_time = '2026-01-01 00:00:00' is not an ISO 8601"),
        (f"{HEADER}\na,2026-01-01T00:00:00,1\n", "is not an ISO 8601 time with a zone"),
        (f"{HEADER}\na,2026-01-01T00:00:00Z,2\n", "line 2: churned = '2'; it must be 0 or 1"),
        (f"{HEADER}\na,2026-13-01T00:00:00Z,1\n", "label_time = '2026-13-01T00:00:00Z' is not an ISO 8601"),
        (f"{HEADER}\na,2026-01-01T00:00:00Z,yes\n", "churned = 'yes'"),
        (f"{HEADER}\n,2026-01-01T00:00:00Z,1\n", "customer_id = '' is empty"),
        (f"{HEADER}\na,2026-01-01T00:00:00Z\n", "line 2 has 2 fields; expected 3"),
        (
            f"{HEADER}\na,2026-01-01T00:00:00Z,1\nb,2026-01-01T00:00:00Z,0\na,2026-01-01T01:00:00+01:00,0\n",
            r"line 4: customer_id 'a' at 2026-01-01T01:00:00\+01:00 is labelled twice \(first at labels.csv line 2\)",
        ),
        (f"{HEADER}\n", "have a header but no rows"),
    ],
)
def test_bad_labels_are_refused_with_the_reason(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(DataError, match=problem):
        read_labels(labels_folder(tmp_path, text), SCHEMA)


def test_label_files_athena_would_misread_are_refused(tmp_path: Path) -> None:
    folder = labels_folder(tmp_path, f"{HEADER}\na,2026-01-01T00:00:00Z,1\n")
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes.txt is not a .csv or .csv.gz file"):
        read_labels(folder, SCHEMA)
    (folder / "notes.txt").unlink()
    (folder / "old").mkdir()
    (folder / "old" / "labels.csv").write_text(f"{HEADER}\n")
    with pytest.raises(DataError, match=r"old/labels\.csv is in a sub-folder"):
        read_labels(folder, SCHEMA)


def test_markers_are_ignored_and_gzip_files_read(tmp_path: Path) -> None:
    folder = labels_folder(tmp_path, f"{HEADER}\na,2026-01-01T00:00:00Z,1\n")
    (folder / "_SUCCESS").write_text("")
    (folder / "more.csv.gz").write_bytes(gzip.compress(f'{HEADER}\n"b",2026-02-01T00:00:00.5+02:00,0\n'.encode()))
    labels = read_labels(folder, SCHEMA)
    assert labels.rows == 2
    assert [f.name for f in labels.files] == ["labels.csv", "more.csv.gz"]
    assert list(labels.frame.iloc[1]) == ["b", "2026-02-01T00:00:00.5+02:00", "0"]


@pytest.mark.parametrize(
    ("uri", "root", "problem"),
    [
        ("s3://raw/other/current/", "s3://raw/labels/", "not a dataset folder directly under s3://raw/labels/"),
        ("s3://raw/labels/a/b/", "s3://raw/labels/", "not a dataset folder directly under"),
        ("s3://raw/labels/it's/", None, 'not a dataset name: "it\'s"'),
    ],
)
def test_labels_uris_are_checked(uri: str, root: str | None, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        dataset_of(uri, root)


def test_dataset_of_a_good_uri() -> None:
    assert dataset_of("s3://raw/labels/2026-05/", "s3://raw/labels/") == "2026-05"
    assert dataset_of("s3://raw/labels/current", "s3://raw/labels") == "current"


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--engine", "athena"], "needs --workgroup"),
        (["--engine", "duckdb"], "needs --offline-store-dir"),
        (["--engine", "duckdb", "--offline-store-dir", "x", "--database", 'a"b'], "--database: not a table"),
        (["--engine", "duckdb", "--offline-store-dir", "x", "--max-wait-seconds", "5"], "between 60 and 86400"),
    ],
)
def test_bad_job_settings_are_refused(extra: list[str], problem: str) -> None:
    base = ["--labels-uri", "s3://r/labels/x/", "--database", "db", "--feature-table", "t"]
    with pytest.raises(ConfigurationError, match=problem):
        parse_args([*base, *extra])
