"""ground_truth.py: labels CSV -> Model Monitor ground truth, checks against the capture, upload (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from capture_format import capture_record, read_ground_truth, write_capture
from ground_truth import convert
from ground_truth import main as ground_truth_main
from monitoring_env import DataError, run_job

REGION = "eu-west-1"
BUCKET = "churn-prod-capture-444444444444-eu-west-1"


def labels_csv(path: Path, rows: list[str], header: str = "inference_id,label,time") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def capture(root: Path, ids: list[str]) -> Path:
    moment = datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    records = [
        capture_record(input_data="1,2", output_data="0.5", event_id=f"e-{i}", inference_id=i, inference_time=moment)
        for i in ids
    ]
    write_capture(root, "churn-prod", "Champion", records, "part")
    return root


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield client


def test_labels_become_ground_truth_partitioned_by_hour(tmp_path) -> None:
    source = labels_csv(
        tmp_path / "labels.csv",
        ["order-1,1,2026-12-01T10:59:59Z", "order-2,0,2026-12-01T11:00:00+00:00", "order-3,1.0,2026-12-01 12:30:00"],
    )
    outcome = convert(source, tmp_path / "out", name="batch-7")
    relative = sorted(p.relative_to(tmp_path / "out").as_posix() for p in outcome.files)
    assert relative == ["2026/12/01/10/batch-7.jsonl", "2026/12/01/11/batch-7.jsonl", "2026/12/01/12/batch-7.jsonl"]
    first = json.loads((tmp_path / "out" / relative[0]).read_text())
    assert first == {
        "groundTruthData": {"data": "1", "encoding": "CSV"},
        "eventMetadata": {"eventId": "order-1"},
        "eventVersion": "0",
    }
    assert read_ground_truth(tmp_path / "out").labels == {"order-1": "1", "order-2": "0", "order-3": "1"}
    assert outcome.report().startswith("ground truth: 3 labels from 3 rows in 3 file(s)")


def test_duplicates_are_reported_and_the_last_row_wins(tmp_path) -> None:
    source = labels_csv(
        tmp_path / "labels.csv",
        [
            "a,1,2026-12-01T10:00:00Z",
            "b,0,2026-12-01T10:00:00Z",
            "a,0,2026-12-01T10:30:00Z",
            "b,0,2026-12-01T10:31:00Z",
        ],
    )
    outcome = convert(source, tmp_path / "out")
    assert read_ground_truth(tmp_path / "out").labels == {"a": "0", "b": "0"}
    assert outcome.labels.duplicates == 2
    assert outcome.labels.conflicting == ["a"]
    assert "duplicate ids: 2 repeated row(s) (the last row wins)" in outcome.report()
    assert "1 id(s) with conflicting labels, e.g. a" in outcome.report()


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        ("inference_id,label,time,customer", ["a,1,2026-12-01T10:00:00Z,c1"], "unknown column(s) customer"),
        ("inference_id,label", ["a,1"], "missing column(s) time"),
        ("id,label,when", ["a,1,x"], "unknown column(s) id, when and missing column(s) inference_id, time"),
        (
            "inference_id,label,time",
            ["a,1,2026-12-01T10:00:00Z", "b,yes,2026-12-01T10:00:00Z"],
            "line 3: label = 'yes'; churned must be 0 or 1",
        ),
        ("inference_id,label,time", ["a,1,yesterday"], "line 2: time = 'yesterday' is not an ISO 8601 time"),
        ("inference_id,label,time", [",1,2026-12-01T10:00:00Z"], "line 2 has no inference_id"),
        ("inference_id,label,time", [], "has a header but no rows"),
    ],
)
def test_a_bad_labels_file_is_refused_naming_what_is_wrong(tmp_path, header, rows, message) -> None:
    source = labels_csv(tmp_path / "labels.csv", rows, header=header)
    with pytest.raises(DataError) as error:
        convert(source, tmp_path / "out")
    assert message in str(error.value)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_unmatched_ids_are_reported_against_a_local_capture(tmp_path) -> None:
    captured = capture(tmp_path / "capture", ["a", "b"])
    source = labels_csv(tmp_path / "labels.csv", [f"{i},1,2026-12-01T10:00:00Z" for i in ("a", "b", "c", "d")])
    outcome = convert(source, tmp_path / "out", capture=str(captured))
    assert outcome.unmatched == ["c", "d"]
    assert "unmatched ids: 2 label(s) with no captured request carrying that InferenceId, e.g. c, d" in outcome.report()
    with pytest.raises(DataError, match="--strict: ground truth: 4 labels"):
        convert(source, tmp_path / "out2", capture=str(captured), strict=True)


def test_upload_puts_every_file_with_sse_kms_under_the_prefix(tmp_path, s3) -> None:
    source = labels_csv(tmp_path / "labels.csv", ["a,1,2026-12-01T10:00:00Z", "b,0,2026-12-01T11:00:00Z"])
    outcome = convert(source, tmp_path / "out", upload_to=f"s3://{BUCKET}/churn-prod/ground-truth/", client=s3)
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == [
        "churn-prod/ground-truth/2026/12/01/10/labels.jsonl",
        "churn-prod/ground-truth/2026/12/01/11/labels.jsonl",
    ]
    for key in keys:
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
    body = s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read().decode()
    assert json.loads(body)["eventMetadata"]["eventId"] == "a"
    assert outcome.uploaded == [f"s3://{BUCKET}/{key}" for key in keys]


def test_the_command_checks_an_s3_capture_and_strict_stops_before_uploading(tmp_path, s3, capsys) -> None:
    captured = capture(tmp_path / "capture", ["a"])
    for path in captured.rglob("*.jsonl"):
        s3.put_object(
            Bucket=BUCKET,
            Key=f"churn-prod/{path.relative_to(captured / 'churn-prod').as_posix()}",
            Body=path.read_bytes(),
        )
    source = labels_csv(tmp_path / "labels.csv", ["a,1,2026-12-01T10:00:00Z", "zz,0,2026-12-01T10:00:00Z"])
    arguments = [
        "--input", str(source),
        "--output", str(tmp_path / "out"),
        "--capture", f"s3://{BUCKET}/churn-prod/",
        "--upload", f"s3://{BUCKET}/churn-prod/ground-truth",
        "--region", REGION,
        "--failure-file", str(tmp_path / "failure"),
    ]  # fmt: skip
    assert run_job(ground_truth_main, [*arguments, "--strict"]) == 2
    assert "unmatched ids: 1 label(s)" in (tmp_path / "failure").read_text()
    assert "nothing was uploaded" in (tmp_path / "failure").read_text()
    assert not any(
        o["Key"].startswith("churn-prod/ground-truth/") for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    )

    assert run_job(ground_truth_main, arguments) == 0
    printed = capsys.readouterr().out
    assert "unmatched ids: 1 label(s) with no captured request carrying that InferenceId, e.g. zz" in printed
    assert f"uploaded: s3://{BUCKET}/churn-prod/ground-truth/2026/12/01/10/labels.jsonl" in printed


def test_a_bad_upload_uri_is_refused_before_anything_is_written(tmp_path) -> None:
    source = labels_csv(tmp_path / "labels.csv", ["a,1,2026-12-01T10:00:00Z"])
    failure = tmp_path / "failure"
    code = run_job(
        ground_truth_main,
        [
            "--input",
            str(source),
            "--output",
            str(tmp_path / "out"),
            "--upload",
            "bucket/prefix",
            "--failure-file",
            str(failure),
        ],
    )
    assert code == 2
    assert "--upload 'bucket/prefix' is not an s3://bucket/prefix URI" in failure.read_text()
    assert not (tmp_path / "out").exists()
