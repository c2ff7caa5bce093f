"""Turn a CSV of labels into Model Monitor's ground truth, check it against the capture, upload it.

Input: a CSV with exactly the columns ``inference_id,label,time`` (any order): the ``InferenceId``
the caller passed to InvokeEndpoint, the label that became known later (one of the feature
schema's label values) and when it became known (ISO 8601; a time without a zone is UTC).

Output: ``<output>/yyyy/mm/dd/hh/<name>.jsonl`` by ``time``, one line per inference id::

    {"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {"eventId": "<inference id>"}, "eventVersion": "0"}

which the monitoring job joins with the captured requests on their ``inferenceId``. Duplicate ids
are reported (the last row wins); with ``--capture`` (a local folder or an ``s3://`` prefix of
capture files), ids no captured request carries are reported too. ``--upload s3://bucket/prefix``
puts the files there, encrypted with the bucket's KMS key (``ServerSideEncryption=aws:kms``); the
documented prefix is ``s3://<capture bucket>/<endpoint>/ground-truth/``.

    python3 monitoring_code/ground_truth.py --input labels.csv --output ground-truth/ \\
        --capture s3://churn-prod-capture-.../churn-prod/ \\
        --upload s3://churn-prod-capture-.../churn-prod/ground-truth
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from capture_format import CAPTURE_SUFFIXES, ground_truth_record, read_lines, write_jsonl_by_hour
from feature_schema import FeatureSchema, load_schema
from monitoring_env import ConfigurationError, DataError, JobArgumentParser, run_job

COLUMNS = ("inference_id", "label", "time")
EXAMPLES = 5


@dataclass
class Labels:
    frame: pd.DataFrame  # inference_id, label (text), time (UTC timestamps); one row per id
    rows: int
    duplicates: int = 0
    conflicting: list[str] = field(default_factory=list)  # ids given different labels
    duplicate_examples: list[str] = field(default_factory=list)


def read_labels(path: Path, schema: FeatureSchema) -> Labels:
    """The labels CSV, validated; a problem names the line, the column and the value."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise DataError(f"labels file {path} does not exist") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"labels file {path} is empty; it needs the header {','.join(COLUMNS)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"labels file {path} is not a readable CSV ({str(error).splitlines()[0][:160]})") from None
    columns = [str(c).strip() for c in frame.columns]
    frame.columns = columns
    unknown = [c for c in columns if c not in COLUMNS]
    missing = [c for c in COLUMNS if c not in columns]
    if unknown or missing:
        problems = []
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)}")
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        raise DataError(
            f"labels file {path.name}: {' and '.join(problems)}; the header must be exactly {','.join(COLUMNS)} "
            "(any order) so no column is silently dropped"
        )
    if frame.empty:
        raise DataError(f"labels file {path.name} has a header but no rows")
    ids = frame["inference_id"].str.strip()
    empty = ids == ""
    if empty.any():
        raise DataError(f"labels file {path.name}: line {_line(empty)} has no inference_id")
    allowed = tuple(schema.label.allowed or (0, 1))
    numbers = pd.to_numeric(frame["label"].str.strip(), errors="coerce")
    bad = ~numbers.isin(allowed)
    if bad.any():
        raise DataError(
            f"labels file {path.name}: line {_line(bad)}: label = {frame['label'][bad].iloc[0]!r}; "
            f"{schema.label.name} must be " + " or ".join(f"{a:g}" for a in allowed)
        )
    times = pd.to_datetime(frame["time"].str.strip(), utc=True, errors="coerce", format="ISO8601")
    bad_time = times.isna()
    if bad_time.any():
        raise DataError(
            f"labels file {path.name}: line {_line(bad_time)}: time = {frame['time'][bad_time].iloc[0]!r} is not an "
            "ISO 8601 time (e.g. 2026-12-01T10:15:00Z)"
        )
    clean = pd.DataFrame({"inference_id": ids, "label": numbers.map(lambda v: f"{v:g}"), "time": times})
    repeated = clean["inference_id"].duplicated(keep=False)
    labels = Labels(frame=clean.drop_duplicates("inference_id", keep="last").reset_index(drop=True), rows=len(clean))
    if repeated.any():
        groups = clean[repeated].groupby("inference_id")["label"]
        labels.duplicates = int(repeated.sum() - groups.ngroups)
        labels.duplicate_examples = list(groups.size().sort_values(ascending=False).index[:EXAMPLES])
        conflicting = groups.nunique()
        labels.conflicting = sorted(conflicting[conflicting > 1].index)
    return labels


def _line(mask: pd.Series[Any]) -> int:
    return int(mask.to_numpy().nonzero()[0][0]) + 2  # line 1 is the header


def write_ground_truth(labels: Labels, output: Path, name: str) -> list[Path]:
    """Model Monitor's ground-truth layout: ``output/yyyy/mm/dd/hh/<name>.jsonl`` by label time."""
    records = [
        (time.to_pydatetime(), ground_truth_record(inference_id, label))
        for inference_id, label, time in labels.frame.itertuples(index=False)
    ]
    times = {id(record): moment for moment, record in records}
    return write_jsonl_by_hour(output, [r for _, r in records], lambda r: times[id(r)], name)


# --- capture ids: local or S3 ---------------------------------------------------------------------


def _ids_from_lines(lines: Iterable[str]) -> set[str]:
    seen = set()
    for line in lines:
        try:
            metadata = json.loads(line)["eventMetadata"]
            seen.add(str(metadata.get("inferenceId") or metadata["eventId"]))
        except (ValueError, KeyError, TypeError):
            continue
    return seen


def local_capture_ids(folder: Path) -> set[str]:
    if not folder.is_dir():
        raise DataError(f"--capture {folder} is not a folder (or an s3:// prefix)")
    seen: set[str] = set()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES)):
        seen |= _ids_from_lines(read_lines(path))
    return seen


def split_s3_uri(uri: str, flag: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise ConfigurationError(f"{flag} {uri!r} is not an s3://bucket/prefix URI")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise ConfigurationError(f"{flag} {uri!r} names no bucket")
    return bucket, prefix


def s3_capture_ids(client: Any, uri: str) -> set[str]:
    """Join ids of every capture file under an S3 prefix (ListObjectsV2 + GetObject)."""
    bucket, prefix = split_s3_uri(uri, "--capture")
    seen: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if "/ground-truth/" in f"/{key}" or not key.endswith(CAPTURE_SUFFIXES):
                continue
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            if key.endswith(".gz"):
                body = gzip.decompress(body)
            seen |= _ids_from_lines(body.decode("utf-8", errors="replace").splitlines())
    return seen


def upload(client: Any, files: Sequence[Path], root: Path, uri: str) -> list[str]:
    """PutObject every file under the prefix, SSE-KMS with the bucket's default key; the S3 URIs."""
    bucket, prefix = split_s3_uri(uri, "--upload")
    prefix = prefix.strip("/")
    uris = []
    for path in files:
        key = "/".join(part for part in (prefix, path.relative_to(root).as_posix()) if part)
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=path.read_bytes(),
            ServerSideEncryption="aws:kms",
            ContentType="application/jsonl",
        )
        uris.append(f"s3://{bucket}/{key}")
    return uris


def _client(region: str | None) -> Any:
    import boto3  # only the operator's upload and S3 capture check need it
    from botocore.exceptions import NoRegionError

    try:
        return boto3.client("s3", region_name=region)
    except NoRegionError:
        raise ConfigurationError("no AWS region is configured: pass --region (the bucket's region)") from None


# --- command line ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    labels: Labels
    files: list[Path]
    unmatched: list[str] | None = None
    uploaded: list[str] = field(default_factory=list)

    @property
    def problems(self) -> bool:
        return bool(self.labels.duplicates or self.unmatched)

    def report(self) -> str:
        labels = self.labels
        lines = [f"ground truth: {len(labels.frame)} labels from {labels.rows} rows in {len(self.files)} file(s)"]
        if labels.duplicates:
            lines.append(
                f"duplicate ids: {labels.duplicates} repeated row(s) (the last row wins), e.g. "
                + ", ".join(labels.duplicate_examples)
                + (
                    f"; {len(labels.conflicting)} id(s) with conflicting labels, e.g. {', '.join(labels.conflicting[:EXAMPLES])}"
                    if labels.conflicting
                    else ""
                )
            )
        if self.unmatched is not None:
            if self.unmatched:
                lines.append(
                    f"unmatched ids: {len(self.unmatched)} label(s) with no captured request carrying that InferenceId, "
                    f"e.g. {', '.join(self.unmatched[:EXAMPLES])} (check the InferenceId clients send, or the capture window)"
                )
            else:
                lines.append("unmatched ids: none (every label has a captured request)")
        for uri in self.uploaded[:3]:
            lines.append(f"uploaded: {uri}")
        if len(self.uploaded) > 3:
            lines.append(f"uploaded: ... {len(self.uploaded)} files in all")
        return "\n".join(lines)


def convert(
    source: Path,
    output: Path,
    *,
    name: str = "labels",
    capture: str | None = None,
    upload_to: str | None = None,
    client: Any = None,
    schema: FeatureSchema | None = None,
    strict: bool = False,
) -> Outcome:
    """Convert, check and (optionally) upload; with ``strict``, duplicates or unmatched ids stop it before the upload."""
    labels = read_labels(source, schema or load_schema())
    if upload_to is not None:
        split_s3_uri(upload_to, "--upload")  # refuse a bad URI before writing anything
    files = write_ground_truth(labels, output, name)
    outcome = Outcome(labels, files)
    if capture is not None:
        seen = (
            s3_capture_ids(client or _client(None), capture)
            if capture.startswith("s3://")
            else local_capture_ids(Path(capture))
        )
        outcome.unmatched = sorted(set(labels.frame["inference_id"]) - seen)
    if strict and outcome.problems:
        raise DataError(f"--strict: {outcome.report()}; nothing was uploaded. Fix the labels or the capture window")
    if upload_to is not None:
        outcome.uploaded = upload(client or _client(None), files, output, upload_to)
    return outcome


def main(argv: Sequence[str]) -> None:
    parser = JobArgumentParser(
        prog="ground_truth.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", type=Path, required=True, help="CSV with inference_id,label,time")
    parser.add_argument("--output", type=Path, required=True, help="folder for yyyy/mm/dd/hh/<name>.jsonl")
    parser.add_argument("--name", default="labels", help="file name of the JSON lines files (default: labels)")
    parser.add_argument("--capture", help="capture files to match ids against: a folder or an s3:// prefix")
    parser.add_argument("--upload", help="s3://bucket/prefix to put the files under (SSE-KMS)")
    parser.add_argument("--region", help="AWS region of the bucket (default: the AWS configuration's)")
    parser.add_argument("--strict", action="store_true", help="exit 2 when ids are duplicated or unmatched")
    parser.add_argument("--failure-file", type=Path, default=None, help="default: /opt/ml/output/message")
    args = parser.parse_args(list(argv))
    if not args.name or "/" in args.name:
        raise ConfigurationError(f"--name {args.name!r} must be a plain file name")
    if args.upload is not None:
        split_s3_uri(args.upload, "--upload")  # a bad URI is refused before anything is written
    needs_s3 = args.upload is not None or (args.capture or "").startswith("s3://")
    outcome = convert(
        args.input,
        args.output,
        name=args.name,
        capture=args.capture,
        upload_to=args.upload,
        client=_client(args.region) if needs_s3 else None,
        strict=args.strict,
    )
    print(outcome.report(), flush=True)


if __name__ == "__main__":
    raise SystemExit(run_job(main))
