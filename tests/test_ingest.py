"""Feature ingestion: record validation, PutRecord with retries (botocore Stubber), reports and exits.

moto has no Feature Store runtime, so the client is a real botocore client with a Stubber: requests
are validated against the service model and answered with the responses and errors queued here.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from churn_data import generate_customers
from feature_schema import load_schema
from ingest import (
    FeatureStoreWriter,
    IngestionStoppedError,
    RejectedRecordError,
    SourceRecord,
    feature_record,
    ingest,
    main,
    parse_args,
    read_records,
    run,
)
from training_env import ConfigurationError, DataError, run_job

SCHEMA = load_schema()
GROUP = "churn-dev-customers-v1"
VALID = {
    "customer_id": "c-1",
    "event_time": "2026-03-31T00:00:00Z",
    "tenure": "12",
    "monthly_charges": "70.5",
    "total_charges": "845.2",
    "contract_months": "1",
    "support_tickets": "2",
    "payment_delay_days": "0",
    "num_products": "2",
    "has_internet": "1",
    "has_phone": "1",
    "is_senior": "0",
}


def client() -> Any:
    return boto3.client(
        "sagemaker-featurestore-runtime",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106  (never sent: the Stubber answers)
    )


def values(**changes: str | None) -> dict[str, str | None]:
    return {**VALID, **changes}


def as_dict(record: list[dict[str, str]]) -> dict[str, str]:
    return {item["FeatureName"]: item["ValueAsString"] for item in record}


# --- validation ------------------------------------------------------------------------------------


def test_a_valid_record_is_normalized_for_feature_store() -> None:
    record = as_dict(feature_record(values(tenure="12.0", monthly_charges="70.50"), SCHEMA))
    assert record["tenure"] == "12"  # integral features as whole numbers
    assert record["monthly_charges"] == "70.5"
    assert list(record)[:2] == ["customer_id", "event_time"]
    assert set(record) == {"customer_id", "event_time", *(c.name for c in SCHEMA.features)}


def test_a_missing_feature_value_is_left_out_not_invented() -> None:
    record = as_dict(feature_record(values(support_tickets=None), SCHEMA))
    assert "support_tickets" not in record
    assert len(record) == 11


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2026-03-31T00:00:00Z", "2026-03-31T00:00:00Z"),
        ("2026-03-31T02:00:00+02:00", "2026-03-31T00:00:00Z"),
        ("2026-03-31T00:00:00", "2026-03-31T00:00:00Z"),  # no zone: UTC, as preprocessing reads it
        ("2026-03-31 00:00:00.250Z", "2026-03-31T00:00:00.250Z"),
        ("2026-03-31", "2026-03-31T00:00:00Z"),
    ],
)
def test_event_times_are_stored_in_the_format_feature_store_accepts(given: str, stored: str) -> None:
    assert as_dict(feature_record(values(event_time=given), SCHEMA))["event_time"] == stored


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"customer_id": None}, "customer_id is empty"),
        ({"event_time": None}, "event_time is empty"),
        ({"event_time": "last tuesday"}, "event_time = 'last tuesday' is not an ISO 8601 time"),
        ({"event_time": "1969-12-31T23:59:59Z"}, "before 1970"),
        ({"tenure": "twelve"}, "tenure = 'twelve' is not a number"),
        ({"tenure": "12.5"}, "tenure = 12.5 is not a whole number"),
        ({"tenure": "-1"}, "tenure = -1 is below 0"),
        ({"monthly_charges": "inf"}, "monthly_charges = 'inf' is not a finite number"),
        ({"monthly_charges": "nan"}, "monthly_charges = 'nan' is not a finite number"),
        ({"contract_months": "61"}, "contract_months = 61 is above 60"),
        ({"has_internet": "2"}, "has_internet = 2 must be 0 or 1"),
    ],
)
def test_bad_records_are_rejected_with_the_reason(changes: dict[str, str | None], reason: str) -> None:
    with pytest.raises(RejectedRecordError) as raised:
        feature_record(values(**changes), SCHEMA)
    assert reason in str(raised.value)


def test_every_files_header_is_checked_before_the_first_record(tmp_path: Path) -> None:
    frame = generate_customers(5, seed=1)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.drop(columns=["tenure"]).to_parquet(tmp_path / "b.parquet", index=False)
    records = read_records(tmp_path, SCHEMA)
    with pytest.raises(DataError, match=r"b\.parquet: missing column\(s\) tenure"):
        next(records)


def test_csv_and_parquet_records_carry_their_file_and_line(tmp_path: Path) -> None:
    frame = generate_customers(3, seed=1)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "b.parquet", index=False)
    records = list(read_records(tmp_path, SCHEMA))
    assert [(r.source, r.line) for r in records] == [
        ("a.csv", 2),
        ("a.csv", 3),
        ("a.csv", 4),
        ("b.parquet", 2),
        ("b.parquet", 3),
        ("b.parquet", 4),
    ]
    assert as_dict(feature_record(records[0].values, SCHEMA)) == as_dict(feature_record(records[3].values, SCHEMA))


# --- writing with retries ------------------------------------------------------------------------------


def expected(record: list[dict[str, str]]) -> dict[str, Any]:
    return {"FeatureGroupName": GROUP, "Record": record}


def test_throttling_is_retried_with_growing_backoff() -> None:
    runtime = client()
    record = feature_record(VALID, SCHEMA)
    delays: list[float] = []
    with Stubber(runtime) as stub:
        for _ in range(3):
            stub.add_client_error("put_record", "ThrottlingException", "Rate exceeded", 400, expected(record))
        stub.add_response("put_record", {}, expected(record))
        writer = FeatureStoreWriter(runtime, GROUP, sleep=delays.append, base_delay=1.0, max_delay=100.0)
        assert writer.put(record) == 3
        stub.assert_no_pending_responses()
    # Full jitter: each delay is drawn below a cap that doubles (1, 2, 4 s).
    assert len(delays) == 3
    assert all(0 <= d <= cap for d, cap in zip(delays, (1.0, 2.0, 4.0), strict=True))


def test_a_record_still_throttled_after_the_last_attempt_is_rejected_not_lost() -> None:
    runtime = client()
    record = feature_record(VALID, SCHEMA)
    with Stubber(runtime) as stub:
        for _ in range(4):
            stub.add_client_error("put_record", "ServiceUnavailable", "busy", 503, expected(record))
        writer = FeatureStoreWriter(runtime, GROUP, max_attempts=4, sleep=lambda _s: None)
        with pytest.raises(RejectedRecordError, match="ServiceUnavailable after 4 attempts"):
            writer.put(record)
        stub.assert_no_pending_responses()


def test_a_record_feature_store_refuses_is_rejected_with_its_message() -> None:
    runtime = client()
    record = feature_record(VALID, SCHEMA)
    with Stubber(runtime) as stub:
        stub.add_client_error(
            "put_record",
            "ValidationError",
            "EventTime is too far in the future",
            400,
            {"FeatureGroupName": GROUP, "Record": ANY},
        )
        with pytest.raises(RejectedRecordError, match="refused the record: EventTime is too far in the future"):
            FeatureStoreWriter(runtime, GROUP).put(record)


def test_access_errors_stop_ingestion_at_once() -> None:
    runtime = client()
    with Stubber(runtime) as stub:
        stub.add_client_error(
            "put_record",
            "AccessForbidden",
            "not authorized to perform PutRecord",
            403,
            {"FeatureGroupName": GROUP, "Record": ANY},
        )
        with pytest.raises(IngestionStoppedError, match="AccessForbidden from PutRecord on churn-dev-customers-v1"):
            FeatureStoreWriter(runtime, GROUP, sleep=lambda _s: None).put(feature_record(VALID, SCHEMA))


def source(index: int, **changes: str | None) -> SourceRecord:
    return SourceRecord("batch.csv", index + 2, values(customer_id=f"c-{index}", **changes))


def test_ingest_counts_every_record_and_reports_each_reject() -> None:
    runtime = client()
    items = [source(0), source(1, tenure="x"), source(2), source(3), source(4)]
    rejected: list[tuple[int, str]] = []
    with Stubber(runtime) as stub:
        stub.add_response("put_record", {}, expected(feature_record(items[0].values, SCHEMA)))
        stub.add_client_error(
            "put_record", "ThrottlingException", "slow down", 400, {"FeatureGroupName": GROUP, "Record": ANY}
        )
        stub.add_response("put_record", {}, expected(feature_record(items[2].values, SCHEMA)))
        stub.add_client_error(
            "put_record", "ValidationError", "bad record", 400, {"FeatureGroupName": GROUP, "Record": ANY}
        )
        stub.add_response("put_record", {}, expected(feature_record(items[4].values, SCHEMA)))
        writer = FeatureStoreWriter(runtime, GROUP, sleep=lambda _s: None)
        report = ingest(items, SCHEMA, writer, lambda item, why: rejected.append((item.line, why)), max_workers=1)
        stub.assert_no_pending_responses()
    assert (report.read, report.written, report.rejected, report.retries) == (5, 3, 2, 1)
    assert sorted(rejected) == [
        (3, "tenure = 'x' is not a number"),
        (5, "Feature Store refused the record: bad record"),
    ]
    assert report.reasons == Counter({"tenure: is not a number": 1, "Feature Store refused the record: bad record": 1})


class FlakyFeatureStore:
    """A thread-safe stand-in for the runtime that throttles at random and records what it stores."""

    def __init__(self, throttle_rate: float, seed: int = 3) -> None:
        self.stored: Counter[str] = Counter()
        self.calls = 0
        self._rng = random.Random(seed)  # noqa: S311  (test data)
        self._lock = threading.Lock()
        self._rate = throttle_rate

    def put_record(self, FeatureGroupName: str, Record: list[dict[str, str]]) -> dict[str, Any]:  # noqa: N803
        with self._lock:
            self.calls += 1
            if self._rng.random() < self._rate:
                raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "PutRecord")
            self.stored[Record[0]["ValueAsString"]] += 1
        return {}


def test_concurrent_ingestion_writes_each_record_exactly_once_under_throttling() -> None:
    store = FlakyFeatureStore(throttle_rate=0.3)
    items = [source(i) for i in range(2000)]
    writer = FeatureStoreWriter(store, GROUP, max_attempts=20, sleep=lambda _s: None)
    report = ingest(items, SCHEMA, writer, lambda *_: pytest.fail("nothing should be rejected"), max_workers=8)
    assert report.written == 2000
    assert report.rejected == 0
    assert set(store.stored.values()) == {1}
    assert len(store.stored) == 2000
    assert report.retries == store.calls - 2000 > 300  # every throttle was retried and counted


def test_a_stop_names_how_much_was_written() -> None:
    class Forbidden:
        def put_record(self, **_: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "AccessForbidden", "Message": "no"}}, "PutRecord")

    with pytest.raises(IngestionStoppedError, match=r"Written before stopping: 0 of \d+ records read"):
        ingest([source(i) for i in range(50)], SCHEMA, FeatureStoreWriter(Forbidden(), GROUP), lambda *_: None)


# --- the job -------------------------------------------------------------------------------------------


def job_args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    return parse_args(
        [
            "--feature-group",
            GROUP,
            "--input-dir",
            str(tmp_path / "raw"),
            "--output-dir",
            str(tmp_path / "report"),
            *extra,
        ]
    )


def write_raw(tmp_path: Path, rows: int, bad: int = 0) -> pd.DataFrame:
    frame = generate_customers(rows, seed=8)
    frame.loc[: bad - 1, "tenure"] = -5 if bad else frame.loc[: bad - 1, "tenure"]
    (tmp_path / "raw").mkdir()
    frame.to_csv(tmp_path / "raw" / "customers.csv", index=False)
    return frame


def test_the_job_writes_its_report_and_every_reject(tmp_path: Path) -> None:
    write_raw(tmp_path, 40, bad=2)
    store = FlakyFeatureStore(throttle_rate=0.2)
    report = run(job_args(tmp_path, "--max-reject-fraction", "0.1", "--max-workers", "4"), store, sleep=lambda _s: None)
    assert (report.read, report.written, report.rejected) == (40, 38, 2)
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["records_written"] == 38
    assert summary["rejects_by_reason"] == {"tenure: is below 0": 2}
    rejects = pd.read_csv(tmp_path / "report" / "rejects.csv")
    assert list(rejects["line"]) == [2, 3]
    assert set(rejects["reason"]) == {"tenure = -5 is below 0"}
    assert list(rejects.columns[:3]) == ["file", "line", "reason"]
    assert "customer_id" in rejects.columns


def test_the_job_fails_above_the_reject_threshold_after_reporting(tmp_path: Path) -> None:
    write_raw(tmp_path, 20, bad=3)
    with pytest.raises(DataError, match=r"3 of 20 records rejected \(15\.00%\), above --max-reject-fraction 10\.00%"):
        run(job_args(tmp_path, "--max-reject-fraction", "0.1"), FlakyFeatureStore(0.0), sleep=lambda _s: None)
    assert json.loads((tmp_path / "report" / "report.json").read_text())["records_rejected"] == 3


def test_bad_arguments_exit_2_with_the_reason(sagemaker_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_job(main, ["--feature-group", GROUP, "--max-workers", "0"]) == 2
    assert "--max-workers 0 must be between 1 and 256" in capsys.readouterr().err
    assert "Bad configuration" in (sagemaker_root / "output" / "failure").read_text()
    with pytest.raises(ConfigurationError, match=r"--max-reject-fraction 2\.0"):
        parse_args(["--feature-group", GROUP, "--max-reject-fraction", "2"])
