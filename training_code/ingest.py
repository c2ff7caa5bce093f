"""Processing step: ingest raw customer records into the feature group with ``PutRecord``.

Reads the raw files preprocessing reads (CSV or Parquet with a header, under
``/opt/ml/processing/input/raw``), validates every record against the feature schema and writes the
valid ones to the Feature Store runtime, several at a time. Under ``/opt/ml/processing/output/report``
it leaves ``report.json`` (counts) and ``rejects.csv`` (every rejected record: file, line, reason and
its values). Nothing is dropped silently:

- a record the schema refuses, or that Feature Store answers with a ``ValidationError``, is rejected
  with the reason; the job fails when the rejected share exceeds ``--max-reject-fraction``;
- throttling and transient service errors are retried with exponential backoff and full jitter, up
  to ``--max-attempts``; a record still refused after that is rejected as throttled;
- errors no retry can fix (access denied, unknown feature group) stop the job at once, with the
  count of records already written.

Columns the schema does not store (the label, anything else) are ignored; a missing feature value is
left out of the record (Feature Store stores it as absent). The managed XGBoost image ships boto3.

Locally (with AWS credentials):
    python training_code/ingest.py --input-dir data/ --output-dir report/ \\
        --feature-group churn-dev-customers-v1 --region eu-west-1
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from churn_data import CSV_SUFFIXES, PARQUET_SUFFIXES, data_files
from feature_schema import Column, FeatureSchema, load_schema
from training_env import ConfigurationError, DataError, processing_dir, run_job

# Error codes of the Feature Store runtime that a later attempt can succeed on.
RETRYABLE_ERRORS = frozenset(
    {"ThrottlingException", "ServiceUnavailable", "InternalFailure", "InternalServerError", "RequestTimeout"}
)
# Errors that fail every record alike: stop instead of rejecting them one by one.
FATAL_ERRORS = frozenset(
    {
        "AccessForbidden",
        "AccessDeniedException",
        "ResourceNotFound",
        "UnrecognizedClientException",
        "ExpiredTokenException",
    }
)
EVENT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # one of the two string formats Feature Store accepts
EVENT_TIME_FORMAT_MS = "%Y-%m-%dT%H:%M:%S.%fZ"


class RejectedRecordError(Exception):
    """One record the feature group must not receive; the message is the reason."""


class IngestionStoppedError(Exception):
    """An error that would fail every remaining record (permissions, a missing feature group)."""


@dataclass(frozen=True)
class SourceRecord:
    source: str  # file name
    line: int  # line in the file (1 is the header) or row number + 1 for Parquet
    values: Mapping[str, str | None]  # raw text of every schema column, None when empty


@dataclass
class IngestionReport:
    feature_group: str
    read: int = 0
    written: int = 0
    rejected: int = 0
    retries: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rejected_fraction(self) -> float:
        return self.rejected / self.read if self.read else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature_group": self.feature_group,
            "records_read": self.read,
            "records_written": self.written,
            "records_rejected": self.rejected,
            "rejected_fraction": round(self.rejected_fraction, 6),
            "retries": self.retries,
            "rejects_by_reason": dict(self.reasons.most_common()),
            "seconds": round(self.seconds, 3),
        }


# --- reading and validating ------------------------------------------------------------------------


def read_records(directory: Path, schema: FeatureSchema) -> Iterator[SourceRecord]:
    """Every record of every raw file, as text, in file order.

    Every file's header is checked before the first record is yielded: a file that lacks a stored
    column fails the job before anything is written.
    """
    names = [schema.record_identifier.name, schema.event_time.name, *(c.name for c in schema.features)]
    paths = data_files(directory, what="raw data")
    for path in paths:
        found = _columns(path)
        missing = [name for name in names if name not in found]
        if missing:
            raise DataError(
                f"{path.name}: missing column(s) {', '.join(missing)}; the feature group stores "
                f"{', '.join(names)}. Found: {', '.join(found)}"
            )
    for path in paths:
        if path.name.endswith(PARQUET_SUFFIXES):
            frame = pd.read_parquet(path, columns=names)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=names)
        for row, values in enumerate(frame[names].itertuples(index=False, name=None), start=2):
            yield SourceRecord(path.name, row, dict(zip(names, map(_text, values), strict=True)))


def _columns(path: Path) -> list[str]:
    if path.name.endswith(PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if path.name.endswith(CSV_SUFFIXES):
        return [str(name) for name in pd.read_csv(path, nrows=0).columns]
    return []


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def feature_record(values: Mapping[str, str | None], schema: FeatureSchema) -> list[dict[str, str]]:
    """The PutRecord ``Record`` for one customer, or :class:`RejectedRecordError` with the reason."""
    identifier = values.get(schema.record_identifier.name)
    if identifier is None:
        raise RejectedRecordError(f"{schema.record_identifier.name} is empty")
    event_time = values.get(schema.event_time.name)
    if event_time is None:
        raise RejectedRecordError(f"{schema.event_time.name} is empty")
    record = [
        {"FeatureName": schema.record_identifier.name, "ValueAsString": identifier},
        {"FeatureName": schema.event_time.name, "ValueAsString": normalize_event_time(event_time, schema)},
    ]
    for column in schema.features:
        text = values.get(column.name)
        if text is not None:
            record.append({"FeatureName": column.name, "ValueAsString": _feature_value(text, column)})
    return record


def normalize_event_time(text: str, schema: FeatureSchema) -> str:
    """ISO 8601 (UTC when it has no zone) in the format Feature Store accepts: seconds or milliseconds, Z."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise RejectedRecordError(
            f"{schema.event_time.name} = {text!r} is not an ISO 8601 time (e.g. 2026-03-31T00:00:00Z)"
        ) from None
    # Without a time zone the time is UTC, as the schema says and as preprocessing reads it.
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment.year < 1970:
        raise RejectedRecordError(f"{schema.event_time.name} = {text!r} is before 1970")
    if moment.microsecond:
        return moment.strftime(EVENT_TIME_FORMAT_MS)[:-4] + "Z"  # milliseconds
    return moment.strftime(EVENT_TIME_FORMAT)


def _feature_value(text: str, column: Column) -> str:
    try:
        number = float(text)
    except ValueError:
        raise RejectedRecordError(f"{column.name} = {text!r} is not a number") from None
    if not math.isfinite(number):
        raise RejectedRecordError(f"{column.name} = {text!r} is not a finite number")
    if column.allowed is not None and number not in column.allowed:
        allowed = " or ".join(f"{a:g}" for a in column.allowed)
        raise RejectedRecordError(f"{column.name} = {text} must be {allowed}")
    if column.minimum is not None and number < column.minimum:
        raise RejectedRecordError(f"{column.name} = {text} is below {column.minimum:g}")
    if column.maximum is not None and number > column.maximum:
        raise RejectedRecordError(f"{column.name} = {text} is above {column.maximum:g}")
    if column.type == "integral":
        if not number.is_integer():
            raise RejectedRecordError(f"{column.name} = {text} is not a whole number")
        return str(int(number))
    return repr(number)


# --- writing ---------------------------------------------------------------------------------------


def _error_code(error: Exception) -> str | None:
    response = getattr(error, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def _is_connection_error(error: Exception) -> bool:
    # botocore's EndpointConnectionError, ConnectTimeoutError and ReadTimeoutError; named, not
    # imported, so this module loads without botocore (tests of validation alone, local dry runs).
    return type(error).__name__ in {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"}


@dataclass
class FeatureStoreWriter:
    """PutRecord with retries: exponential backoff with full jitter on throttling and transient errors."""

    client: Any  # a boto3 "sagemaker-featurestore-runtime" client (or a stubbed one)
    feature_group: str
    max_attempts: int = 8
    base_delay: float = 0.05
    max_delay: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=lambda: random.Random(0))  # noqa: S311  (jitter, not secrets)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, record: list[dict[str, str]]) -> int:
        """Write one record; return the retries it took. Raises RejectedRecordError or IngestionStoppedError."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                self.client.put_record(FeatureGroupName=self.feature_group, Record=record)
                return attempt - 1
            except Exception as error:
                code = _error_code(error)
                if code in FATAL_ERRORS:
                    raise IngestionStoppedError(f"{code} from PutRecord on {self.feature_group}: {error}") from error
                if code in ("ValidationError", "ValidationException"):
                    raise RejectedRecordError(f"Feature Store refused the record: {_message(error)}") from error
                if code not in RETRYABLE_ERRORS and not _is_connection_error(error):
                    raise
                if attempt == self.max_attempts:
                    raise RejectedRecordError(f"{code or type(error).__name__} after {attempt} attempts") from error
                self.sleep(self._delay(attempt))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _delay(self, attempt: int) -> float:
        with self._lock:  # random.Random is not safe to share between threads
            return self.rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def _message(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Message") or error)
    return str(error)


def ingest(
    records: Iterable[SourceRecord],
    schema: FeatureSchema,
    writer: FeatureStoreWriter,
    rejects: Callable[[SourceRecord, str], None],
    *,
    max_workers: int = 8,
) -> IngestionReport:
    """Validate and write ``records`` with ``max_workers`` concurrent PutRecord calls.

    At most ``2 * max_workers`` records are in flight, so memory stays flat on any input size.
    """
    report = IngestionReport(writer.feature_group)
    started = time.perf_counter()

    def reject(item: SourceRecord, reason: str) -> None:
        report.rejected += 1
        report.reasons[_reason_kind(reason)] += 1
        rejects(item, reason)

    pending: dict[Future[int], SourceRecord] = {}

    def settle(done: Iterable[Future[int]]) -> None:
        for future in done:
            item = pending.pop(future)
            try:
                report.retries += future.result()
                report.written += 1
            except RejectedRecordError as error:
                reject(item, str(error))

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="put-record") as pool:
        try:
            for item in records:
                report.read += 1
                try:
                    record = feature_record(item.values, schema)
                except RejectedRecordError as error:
                    reject(item, str(error))
                    continue
                pending[pool.submit(writer.put, record)] = item
                if len(pending) >= 2 * max_workers:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    settle(done)
            settle(list(pending))
        except IngestionStoppedError as error:
            for future in pending:
                future.cancel()
            raise IngestionStoppedError(
                f"{error}. Written before stopping: {report.written} of {report.read} records read"
            ) from None
        finally:
            report.seconds = time.perf_counter() - started
    return report


def _reason_kind(reason: str) -> str:
    """Group reasons for the report: ``<feature> = 'x' is not a number`` -> ``<feature>: is not a number``."""
    head, _, tail = reason.partition(" = ")
    if not tail:
        return reason
    words = tail.split(" ", 1)
    return f"{head}: {words[1]}" if len(words) > 1 else head


# --- the job -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feature-group", required=True, help="name of the feature group to write to")
    parser.add_argument("--region", default=None, help="AWS region (default: the environment's)")
    parser.add_argument("--input-dir", type=Path, default=None, help="default: /opt/ml/processing/input/raw")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: /opt/ml/processing/output/report")
    parser.add_argument("--max-workers", type=int, default=8, help="concurrent PutRecord calls")
    parser.add_argument("--max-attempts", type=int, default=8, help="attempts per record on throttling")
    parser.add_argument(
        "--max-reject-fraction", type=float, default=0.0, help="fail the job above this share of rejected records"
    )
    args = parser.parse_args(list(argv))
    if not 1 <= args.max_workers <= 256:
        raise ConfigurationError(f"--max-workers {args.max_workers} must be between 1 and 256")
    if not 1 <= args.max_attempts <= 20:
        raise ConfigurationError(f"--max-attempts {args.max_attempts} must be between 1 and 20")
    if not 0.0 <= args.max_reject_fraction <= 1.0:
        raise ConfigurationError(f"--max-reject-fraction {args.max_reject_fraction} must be between 0 and 1")
    return args


def feature_store_client(region: str | None, max_workers: int) -> Any:
    import boto3  # the managed image ships it; imported here so validation runs without it
    from botocore.config import Config

    # Retries are this module's (counted and reported), not botocore's.
    config = Config(retries={"total_max_attempts": 1}, max_pool_connections=max_workers)
    return boto3.client("sagemaker-featurestore-runtime", region_name=region, config=config)


def run(args: argparse.Namespace, client: Any, *, sleep: Callable[[float], None] = time.sleep) -> IngestionReport:
    schema = load_schema()
    input_dir = args.input_dir or processing_dir("input", "raw")
    output_dir = args.output_dir or processing_dir("output", "report")
    output_dir.mkdir(parents=True, exist_ok=True)
    writer = FeatureStoreWriter(client, args.feature_group, max_attempts=args.max_attempts, sleep=sleep)
    columns = [schema.record_identifier.name, schema.event_time.name, *(c.name for c in schema.features)]
    with (output_dir / "rejects.csv").open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["file", "line", "reason", *columns])
        lock = threading.Lock()

        def rejects(item: SourceRecord, reason: str) -> None:
            with lock:
                out.writerow([item.source, item.line, reason, *(item.values.get(name) or "" for name in columns)])

        try:
            report = ingest(read_records(input_dir, schema), schema, writer, rejects, max_workers=args.max_workers)
        except IngestionStoppedError as error:
            raise ConfigurationError(str(error)) from None
    (output_dir / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    print(
        f"{args.feature_group}: {report.read} read, {report.written} written, {report.rejected} rejected "
        f"({report.rejected_fraction:.2%}), {report.retries} retries, {report.seconds:.1f} s",
        flush=True,
    )
    if report.read == 0:
        raise DataError(f"raw data: the files in {input_dir} hold no records")
    if report.rejected_fraction > args.max_reject_fraction:
        top = "; ".join(f"{reason} ({count})" for reason, count in report.reasons.most_common(3))
        raise DataError(
            f"{report.rejected} of {report.read} records rejected ({report.rejected_fraction:.2%}), above "
            f"--max-reject-fraction {args.max_reject_fraction:.2%}: {top}. Every reject is in rejects.csv"
        )
    return report


def main(argv: Sequence[str]) -> None:
    args = parse_args(argv)
    run(args, feature_store_client(args.region, args.max_workers))


if __name__ == "__main__":
    raise SystemExit(run_job(main))
