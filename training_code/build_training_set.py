"""Processing step: build the point-in-time training set from the offline feature store and a labels dataset.

One code path, two engines:

- ``--engine athena`` (the pipeline's ``BuildTrainingSet`` job): the query runs in Athena, in the
  feature store's workgroup (which enforces its result location and SSE-KMS encryption), over the
  offline store's Iceberg table and the labels table; the job reads the result file from S3;
- ``--engine duckdb`` (``scripts/local_training.py``, tests): the same SQL runs in DuckDB over a
  local offline store (Parquet files with the offline store's columns) and local label files.

Labels are CSV files with the header ``<record identifier>,label_time,<label>`` (in this order: the
labels table reads columns by position), one row per customer and label time, in one folder per
dataset: ``s3://<raw bucket>/labels/<dataset>/``. Every file is validated before the query runs
(header, ISO 8601 label times with a zone, labels 0 or 1, no duplicate customer and label time);
files whose names start with ``_`` or ``.`` are ignored, as Athena ignores them.

The query (:func:`training_set.point_in_time_query` over :func:`training_set.labels_query`) returns
one row per label with the features of the customer's latest record at or before the label time;
labels without such a record are counted and left out. Outputs:

- ``<output-dir>/training_set.csv``: the raw-data columns preprocessing reads (identifier, event
  time, features, label) plus ``label_time``;
- ``<report-dir>/training_set.json``: the query text, engine, query execution ID, the labels' URI
  and files (size, SHA-256), and the row counts; the model version links to it.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from feature_schema import FeatureSchema, load_schema
from training_env import ConfigurationError, DataError, processing_dir, run_job
from training_set import (
    API_INVOCATION_TIME,
    CUTOFF_COLUMN,
    IS_DELETED,
    LABEL_TIME_COLUMN,
    LABELS_PARTITION,
    WRITE_TIME,
    Dialect,
    labels_query,
    literal,
    output_columns,
    point_in_time_query,
    quote,
)

LABEL_SUFFIXES = (".csv", ".csv.gz")
TRAINING_SET_FILE = "training_set.csv"
REPORT_FILE = "training_set.json"
ISO_TIME = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,6}))?(?P<zone>Z|[+-]\d{2}:\d{2})$"
)
ATHENA_RUNNING = ("QUEUED", "RUNNING")
# The columns Feature Store adds to every record of the offline store (a local store has them too).
OFFLINE_STORE_COLUMNS = (WRITE_TIME, API_INVOCATION_TIME, IS_DELETED)


def label_columns(schema: FeatureSchema) -> tuple[str, str, str]:
    """The header every label file has, in this order."""
    return (schema.record_identifier.name, LABEL_TIME_COLUMN, schema.label.name)


# --- labels ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelFile:
    name: str
    bytes: int
    sha256: str
    rows: int


@dataclass(frozen=True)
class Labels:
    """The validated rows of one labels dataset and the files they came from."""

    frame: pd.DataFrame  # the label columns, as text
    files: tuple[LabelFile, ...]

    @property
    def rows(self) -> int:
        return len(self.frame)


def dataset_of(labels_uri: str, labels_root: str | None = None) -> str:
    """The dataset name of a labels URI (its last folder), checked to sit directly under ``labels_root``."""
    trimmed = labels_uri.rstrip("/")
    dataset = trimmed.rsplit("/", 1)[-1]
    if labels_root is not None:
        root = labels_root.rstrip("/") + "/"
        if not (trimmed + "/").startswith(root) or trimmed[len(root) :] != dataset:
            raise ConfigurationError(
                f"labels URI {labels_uri!r} is not a dataset folder directly under {root}; "
                f"put the label files in {root}<dataset>/ and pass that URI"
            )
    try:
        literal(dataset)
    except ValueError as error:
        raise ConfigurationError(f"labels URI {labels_uri!r}: {error}") from None
    return dataset


def parse_instant(text: str) -> datetime | None:
    """An ISO 8601 time with a zone (``Z`` or ``+hh:mm``, up to 6 decimals) as an aware datetime, or None.

    Written out rather than left to ``datetime.fromisoformat``, which accepts neither ``Z`` nor other
    than 3 or 6 decimals before Python 3.11.
    """
    match = ISO_TIME.match(text)
    if match is None:
        return None
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    try:
        return datetime.fromisoformat(f"{match['base']}.{(match['fraction'] or '').ljust(6, '0')}{zone}")
    except ValueError:  # a month 13, a 25th hour
        return None


def label_files(directory: Path) -> list[Path]:
    """The label files of a dataset folder; anything Athena would read that is not a label file is refused."""
    if not directory.is_dir():
        raise DataError(f"labels: {directory} does not exist; give the job the labels dataset folder")
    files = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if path.name.startswith(("_", ".")):
            continue  # Athena skips these too (markers such as _SUCCESS)
        if "/" in relative:
            raise DataError(
                f"labels: {relative} is in a sub-folder; put label files directly in the dataset folder "
                "(the labels table reads that folder only)"
            )
        if not path.name.endswith(LABEL_SUFFIXES):
            raise DataError(
                f"labels: {relative} is not a .csv or .csv.gz file; the labels table would read it as CSV. "
                "Remove it or name it with a leading '_'"
            )
        files.append(path)
    if not files:
        raise DataError(f"labels: no .csv or .csv.gz files in {directory}")
    return files


def read_labels(directory: Path, schema: FeatureSchema) -> Labels:
    """Every label file of ``directory``, validated; see the module docstring for the rules."""
    expected = label_columns(schema)
    allowed = {f"{value:g}" for value in (schema.label.allowed or (0, 1))}
    frames = []
    described = []
    seen: dict[tuple[str, datetime], str] = {}
    for path in label_files(directory):
        data = path.read_bytes()
        text = (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or tuple(field.strip() for field in rows[0]) != expected:
            found = ",".join(rows[0]) if rows else "(empty file)"
            raise DataError(
                f"labels {path.name}: header is {found!r}; label files start with the header "
                f"{','.join(expected)} in this order (the labels table reads columns by position)"
            )
        body = [(number, row) for number, row in enumerate(rows[1:], start=2) if row]
        for number, row in body:
            where = f"labels {path.name}: line {number}"
            if len(row) != len(expected):
                raise DataError(f"{where} has {len(row)} fields; expected {len(expected)} ({','.join(expected)})")
            identifier, label_time, label = row
            if not identifier or identifier != identifier.strip():
                raise DataError(f"{where}: {expected[0]} = {identifier!r} is empty or has surrounding spaces")
            moment = parse_instant(label_time)
            if moment is None:
                raise DataError(
                    f"{where}: {LABEL_TIME_COLUMN} = {label_time!r} is not an ISO 8601 time with a zone "
                    "(e.g. 2026-03-31T00:00:00Z)"
                )
            if label not in allowed:
                raise DataError(f"{where}: {expected[2]} = {label!r}; it must be {' or '.join(sorted(allowed))}")
            key = (identifier, moment)
            if key in seen:
                raise DataError(
                    f"{where}: {expected[0]} {identifier!r} at {label_time} is labelled twice (first at "
                    f"{seen[key]}); keep one label per customer and time"
                )
            seen[key] = f"{path.name} line {number}"
        frames.append(pd.DataFrame([row for _, row in body], columns=list(expected), dtype=str))
        described.append(LabelFile(path.name, len(data), hashlib.sha256(data).hexdigest(), len(body)))
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise DataError(f"labels: the files in {directory} have a header but no rows")
    return Labels(frame, tuple(described))


# --- engines -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryRun:
    """Where a query's result landed: a local CSV file (header, Athena's format) and what ran it."""

    result_file: Path
    engine: Dialect
    query_id: str | None = None
    result_location: str | None = None
    scanned_bytes: int | None = None
    seconds: float = 0.0


class Engine(Protocol):
    dialect: Dialect

    def run(self, sql: str, workdir: Path) -> QueryRun: ...


class QueryFailedError(Exception):
    """The engine could not run the query; the message has its reason."""


@dataclass
class AthenaEngine:
    """Runs the query in an Athena workgroup and downloads its result file from S3."""

    athena: Any  # boto3 "athena" client
    s3: Any  # boto3 "s3" client
    workgroup: str
    database: str
    max_wait_seconds: float = 3000.0
    poll_seconds: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    dialect: Dialect = "athena"

    def run(self, sql: str, workdir: Path) -> QueryRun:
        started = self.clock()
        query_id = self.athena.start_query_execution(
            QueryString=sql,
            QueryExecutionContext={"Catalog": "AwsDataCatalog", "Database": self.database},
            WorkGroup=self.workgroup,
        )["QueryExecutionId"]
        while True:
            execution = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            state = execution["Status"]["State"]
            if state not in ATHENA_RUNNING:
                break
            if self.clock() - started > self.max_wait_seconds:
                self.athena.stop_query_execution(QueryExecutionId=query_id)
                raise QueryFailedError(
                    f"Athena query {query_id} still {state} after {self.max_wait_seconds:.0f} s; stopped it"
                )
            self.sleep(self.poll_seconds)
        if state != "SUCCEEDED":
            reason = execution["Status"].get("StateChangeReason", "no reason given")
            raise QueryFailedError(f"Athena query {query_id} {state}: {reason}")
        location = execution["ResultConfiguration"]["OutputLocation"]
        bucket, _, key = location.removeprefix("s3://").partition("/")
        target = workdir / "query-result.csv"
        self.s3.download_file(bucket, key, str(target))
        return QueryRun(
            result_file=target,
            engine="athena",
            query_id=query_id,
            result_location=location,
            scanned_bytes=execution.get("Statistics", {}).get("DataScannedInBytes"),
            seconds=self.clock() - started,
        )


@dataclass
class DuckDbEngine:
    """Runs the query in DuckDB over a local offline store (Parquet) and local label files.

    The offline store's table and the labels table get the names they have in the Glue catalog, so
    the SQL is the Athena job's text in DuckDB's dialect.
    """

    offline_store: Path
    labels_dir: Path
    dataset: str
    feature_table: str  # database.table
    labels_table: str  # database.table
    dialect: Dialect = "duckdb"

    def run(self, sql: str, workdir: Path) -> QueryRun:
        import duckdb  # local engine only; the managed image runs the Athena engine

        started = time.perf_counter()
        parquet = sorted(str(p) for p in self.offline_store.rglob("*.parquet"))
        if not parquet:
            raise DataError(f"offline store: no Parquet files under {self.offline_store}")
        files = [str(p) for p in label_files(self.labels_dir)]
        connection = duckdb.connect()
        connection.execute("SET TimeZone = 'UTC'")
        for table in (self.feature_table, self.labels_table):
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table.split('.')[0])}")
        connection.execute(
            f"CREATE VIEW {quote(self.feature_table)} AS SELECT * FROM read_parquet({_paths(parquet)})"  # noqa: S608
        )
        # All text, as the CSV table in the Glue catalog reads it; the dataset is the partition.
        connection.execute(
            f"CREATE VIEW {quote(self.labels_table)} AS SELECT *, {literal(self.dataset)} AS "  # noqa: S608
            f"{quote(LABELS_PARTITION)} FROM read_csv({_paths(files)}, header = true, all_varchar = true)"
        )
        target = workdir / "query-result.csv"
        # The result file in Athena's CSV format: a header, every value quoted, NULL as an empty field.
        connection.execute(f"COPY ({sql}) TO {_paths([str(target)])[1:-1]} (HEADER, FORCE_QUOTE *)")
        connection.close()
        return QueryRun(result_file=target, engine="duckdb", seconds=time.perf_counter() - started)


def _paths(paths: Sequence[str]) -> str:
    """A DuckDB list of file names as SQL string literals (views cannot take prepared parameters)."""
    return "[" + ", ".join("'" + path.replace("'", "''") + "'" for path in paths) + "]"


# --- the training set -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSetQuery:
    """The tables a training-set query reads and the labels dataset it selects."""

    feature_table: str  # database.table of the offline store
    labels_table: str  # database.table of the labels
    dataset: str

    def sql(self, schema: FeatureSchema, dialect: Dialect) -> str:
        return point_in_time_query(
            schema,
            feature_table=self.feature_table,
            entity_query=labels_query(schema, labels_table=self.labels_table, dataset=self.dataset),
            dialect=dialect,
        )


@dataclass
class TrainingSet:
    frame: pd.DataFrame  # raw columns + label_time, as text
    report: dict[str, Any] = field(default_factory=dict)


def read_query_result(path: Path, schema: FeatureSchema) -> pd.DataFrame:
    """The query's result file (CSV with a header, Athena's format) as text; NULL becomes empty."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    expected = output_columns(schema)
    if list(frame.columns) != expected:
        raise QueryFailedError(
            f"the query result has the columns {', '.join(map(str, frame.columns))}; expected {', '.join(expected)}"
        )
    return frame


def assemble(schema: FeatureSchema, result: pd.DataFrame, labels: Labels) -> tuple[pd.DataFrame, dict[str, int]]:
    """The training rows (labels with features as of their time) and the counts of what was left out."""
    if len(result) != labels.rows:
        raise DataError(
            f"the query returned {len(result)} rows for {labels.rows} validated labels; the labels changed "
            "while the training set was built, or the labels table reads other files. Run the step again"
        )
    with_features = result[schema.event_time.name] != ""
    rows = result[with_features].rename(columns={CUTOFF_COLUMN: LABEL_TIME_COLUMN})
    counts = {
        "labels": labels.rows,
        "returned": len(result),
        "with_features": int(with_features.sum()),
        "without_features": int((~with_features).sum()),
    }
    if rows.empty:
        raise DataError(
            f"none of the {labels.rows} labels has a feature record at or before its label time; ingest those "
            "customers into the feature group first, or check the label times"
        )
    columns = [*schema.raw_columns, LABEL_TIME_COLUMN]
    return rows[columns].reset_index(drop=True), counts


def build_training_set(
    schema: FeatureSchema,
    engine: Engine,
    query: TrainingSetQuery,
    labels_dir: Path,
    *,
    labels_uri: str,
    workdir: Path,
) -> TrainingSet:
    """Validate the labels, run the query, keep the labels that have features; see the module docstring."""
    labels = read_labels(labels_dir, schema)
    sql = query.sql(schema, engine.dialect)
    run = engine.run(sql, workdir)
    rows, counts = assemble(schema, read_query_result(run.result_file, schema), labels)
    label = rows[schema.label.name].astype(int)
    report: dict[str, Any] = {
        "source": "feature_store",
        "engine": run.engine,
        "query": sql,
        "query_sha256": hashlib.sha256(sql.encode()).hexdigest(),
        "query_execution_id": run.query_id,
        "query_result_location": run.result_location,
        "data_scanned_bytes": run.scanned_bytes,
        "query_seconds": round(run.seconds, 3),
        "feature_table": query.feature_table,
        "labels_table": query.labels_table,
        "labels_dataset": query.dataset,
        "labels_uri": labels_uri,
        "label_files": [vars(item) for item in labels.files],
        "rows": counts,
        "customers": int(rows[schema.record_identifier.name].nunique()),
        "churn_rate": round(float(label.mean()), 6),
        "latest_label_time": max(rows[LABEL_TIME_COLUMN], key=_instant),
        "built_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return TrainingSet(rows, report)


def _instant(text: str) -> datetime:
    moment = parse_instant(text)
    if moment is None:  # the labels were validated; the query returns their times unchanged
        raise DataError(f"the query returned a label time {text!r} that no validated label has")
    return moment


def write_outputs(training_set: TrainingSet, output_dir: Path, report_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    training_set.frame.to_csv(output_dir / TRAINING_SET_FILE, index=False)
    (report_dir / REPORT_FILE).write_text(json.dumps(training_set.report, indent=2) + "\n")


# --- the job -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("athena", "duckdb"), default="athena")
    parser.add_argument("--labels-uri", required=True, help="the labels dataset folder (s3://.../labels/<dataset>/)")
    parser.add_argument(
        "--labels-root", default=None, help="where datasets live; the labels URI must be directly under it"
    )
    parser.add_argument("--database", required=True, help="Glue database of the offline store and the labels table")
    parser.add_argument("--feature-table", required=True, help="the offline store's table in that database")
    parser.add_argument("--labels-table", default="labels", help="the labels table in that database")
    parser.add_argument("--labels-dir", type=Path, default=None, help="default: /opt/ml/processing/input/labels")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: /opt/ml/processing/output/training_set")
    parser.add_argument("--report-dir", type=Path, default=None, help="default: /opt/ml/processing/output/report")
    parser.add_argument("--workgroup", default=None, help="Athena workgroup (athena engine)")
    parser.add_argument("--region", default=None, help="AWS region (athena engine; default: the environment's)")
    parser.add_argument("--max-wait-seconds", type=float, default=3000.0, help="stop the query after this long")
    parser.add_argument("--offline-store-dir", type=Path, default=None, help="local offline store (duckdb engine)")
    args = parser.parse_args(list(argv))
    if args.engine == "athena" and not args.workgroup:
        raise ConfigurationError("--engine athena needs --workgroup (the feature store's Athena workgroup)")
    if args.engine == "duckdb" and args.offline_store_dir is None:
        raise ConfigurationError("--engine duckdb needs --offline-store-dir (a folder of offline-store Parquet files)")
    for name in ("database", "feature_table", "labels_table"):
        try:
            quote(getattr(args, name))
        except ValueError as error:
            raise ConfigurationError(f"--{name.replace('_', '-')}: {error}") from None
    if not 60 <= args.max_wait_seconds <= 86400:
        raise ConfigurationError(f"--max-wait-seconds {args.max_wait_seconds:g} must be between 60 and 86400")
    return args


def aws_clients(region: str | None) -> tuple[Any, Any]:
    import boto3  # the managed image ships it; imported here so the duckdb engine runs without it

    return boto3.client("athena", region_name=region), boto3.client("s3", region_name=region)


def make_engine(args: argparse.Namespace, query: TrainingSetQuery, labels_dir: Path) -> Engine:
    if args.engine == "duckdb":
        return DuckDbEngine(args.offline_store_dir, labels_dir, query.dataset, query.feature_table, query.labels_table)
    athena, s3 = aws_clients(args.region)
    return AthenaEngine(athena, s3, args.workgroup, args.database, max_wait_seconds=args.max_wait_seconds)


def run(args: argparse.Namespace, engine: Engine | None = None) -> TrainingSet:
    schema = load_schema()
    labels_dir = args.labels_dir or processing_dir("input", "labels")
    query = TrainingSetQuery(
        feature_table=f"{args.database}.{args.feature_table}",
        labels_table=f"{args.database}.{args.labels_table}",
        dataset=dataset_of(args.labels_uri, args.labels_root),
    )
    engine = engine or make_engine(args, query, labels_dir)
    with tempfile.TemporaryDirectory(prefix="training-set-") as workdir:
        try:
            training_set = build_training_set(
                schema, engine, query, labels_dir, labels_uri=args.labels_uri, workdir=Path(workdir)
            )
        except QueryFailedError as error:
            raise ConfigurationError(str(error)) from None
    write_outputs(
        training_set,
        args.output_dir or processing_dir("output", "training_set"),
        args.report_dir or processing_dir("output", "report"),
    )
    rows = training_set.report["rows"]
    print(
        f"training set: {rows['with_features']} rows from {rows['labels']} labels "
        f"({rows['without_features']} without a feature record at their time), "
        f"{training_set.report['customers']} customers, churn rate {training_set.report['churn_rate']:.3f}, "
        f"{training_set.report['engine']} query {training_set.report['query_seconds']:.1f} s",
        flush=True,
    )
    return training_set


def main(argv: Sequence[str]) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(run_job(main))
