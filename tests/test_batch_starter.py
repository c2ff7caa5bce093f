"""The batch starter (functions/batch_starter.py): every raw batch ingested exactly once, in order, and
trained on only after its ingestion succeeded.

moto plays S3 (the manifest, with its conditional writes) and SageMaker (pipelines, executions and
their parameters); the events are the ones EventBridge delivers. Pipeline status changes are sent
by the tests, since moto's executions never run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

import batch_starter
from batch_starter import (
    INGESTED,
    INGESTING,
    INGESTION_FAILED,
    QUEUED,
    TRAINED,
    TRAINING,
    TRAINING_FAILED,
    BatchStarter,
    ManifestConflictError,
    ManifestStore,
    Settings,
    batch_of,
)

REGION = "eu-west-1"
ACCOUNT = "123456789012"
RAW = "churn-dev-raw"
PROCESSED = "churn-dev-processed"
INGEST = "churn-dev-ingest-features"
TRAIN = "churn-dev-training"
SETTINGS = Settings(
    raw_bucket=RAW,
    raw_prefix="churn/",
    manifest_bucket=PROCESSED,
    manifest_key="batch-manifest/manifest.json",
    ingestion_pipeline=INGEST,
    training_pipeline=TRAIN,
    training_input_parameter="",
)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=PROCESSED, CreateBucketConfiguration={"LocationConstraint": REGION})
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        for name in (INGEST, TRAIN):
            sagemaker.create_pipeline(
                PipelineName=name,
                PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}),
                RoleArn=f"arn:aws:iam::{ACCOUNT}:role/pipeline",
            )
        yield


def starter(settings: Settings = SETTINGS, **overrides: Any) -> BatchStarter:
    store = ManifestStore(boto3.client("s3", region_name=REGION), settings.manifest_bucket, settings.manifest_key)
    clock = iter(datetime(2026, 5, 1, 12, 0, second, tzinfo=UTC) for second in range(60))
    values: dict[str, Any] = {
        "settings": settings,
        "store": store,
        "sagemaker": boto3.client("sagemaker", region_name=REGION),
        "clock": lambda: next(clock),
        **overrides,
    }
    return BatchStarter(**values)


def marker(batch: str, time: str = "2026-05-01T10:00:00Z", key: str | None = None) -> dict[str, Any]:
    return {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "time": time,
        "detail": {"bucket": {"name": RAW}, "object": {"key": key or f"churn/{batch}/_SUCCESS", "size": 0}},
    }


def status(pipeline: str, execution_arn: str, state: str, display_name: str | None = None) -> dict[str, Any]:
    detail = {
        "pipelineArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{pipeline}",
        "pipelineExecutionArn": execution_arn,
        "currentPipelineExecutionStatus": state,
    }
    if display_name:
        detail["pipelineExecutionDisplayName"] = display_name
    return {"source": "aws.sagemaker", "detail-type": batch_starter.STATUS_CHANGE, "detail": detail}


def executions(pipeline: str) -> list[dict[str, Any]]:
    """Every execution of ``pipeline``, oldest first, with its parameters."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    summaries = sagemaker.list_pipeline_executions(PipelineName=pipeline)["PipelineExecutionSummaries"]
    found = []
    for summary in summaries:
        parameters = sagemaker.list_pipeline_parameters_for_execution(
            PipelineExecutionArn=summary["PipelineExecutionArn"]
        )["PipelineParameters"]
        found.append(
            {
                "arn": summary["PipelineExecutionArn"],
                "name": summary["PipelineExecutionDisplayName"],
                "parameters": {p["Name"]: p["Value"] for p in parameters},
            }
        )
    return found


def ingested_uris() -> list[str]:
    return [e["parameters"]["InputDataUri"] for e in executions(INGEST)]


def manifest() -> dict[str, Any]:
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=PROCESSED, Key=SETTINGS.manifest_key)["Body"]
    return dict(json.loads(body.read()))


def state(batch: str) -> str:
    return str(manifest()["batches"][f"churn/{batch}/"]["state"])


def arn_of(pipeline: str, batch: str) -> str:
    (execution,) = [e for e in executions(pipeline) if e["name"] == token_of(pipeline, batch)]
    return str(execution["arn"])


def token_of(pipeline: str, batch: str) -> str:
    stage = "ingestion" if pipeline == INGEST else "training"
    return str(manifest()["batches"][f"churn/{batch}/"][stage]["token"])


def succeed(pipeline: str, batch: str, run: BatchStarter | None = None) -> dict[str, Any]:
    return (run or starter()).handle(status(pipeline, arn_of(pipeline, batch), "Succeeded"))


def uri(batch: str) -> str:
    return f"s3://{RAW}/churn/{batch}/"


# --- in order, each once ------------------------------------------------------------------------------


def test_two_batches_close_together_are_ingested_one_after_the_other_in_order(aws: None) -> None:
    run = starter()
    first = run.handle(marker("2026-05-01", "2026-05-01T10:00:00Z"))
    second = run.handle(marker("2026-05-02", "2026-05-01T10:00:01Z"))
    assert first["starts"] == [("ingestion", "churn/2026-05-01/")]
    assert second == {"decision": "queued", "batch": "churn/2026-05-02/", "starts": []}  # waits for the first
    assert ingested_uris() == [uri("2026-05-01")]
    assert (state("2026-05-01"), state("2026-05-02")) == (INGESTING, QUEUED)
    assert executions(TRAIN) == []  # nothing trains before its batch is ingested

    done = succeed(INGEST, "2026-05-01", run)
    assert done["starts"] == [("ingestion", "churn/2026-05-02/"), ("training", "churn/2026-05-01/")]
    assert ingested_uris() == [uri("2026-05-01"), uri("2026-05-02")]
    assert (state("2026-05-01"), state("2026-05-02")) == (TRAINING, INGESTING)

    succeed(INGEST, "2026-05-02", run)
    succeed(TRAIN, "2026-05-01", run)
    assert (state("2026-05-01"), state("2026-05-02")) == (TRAINED, TRAINING)
    assert len(executions(INGEST)) == 2
    assert len(executions(TRAIN)) == 2


def test_queued_batches_start_in_the_order_of_their_markers_not_of_delivery(aws: None) -> None:
    run = starter()
    run.handle(marker("a", "2026-05-01T10:00:00Z"))
    run.handle(marker("c", "2026-05-01T10:00:03Z"))  # delivered before b
    run.handle(marker("b", "2026-05-01T10:00:02Z"))
    succeed(INGEST, "a", run)
    succeed(INGEST, "b", run)
    assert ingested_uris() == [uri("a"), uri("b"), uri("c")]


# --- duplicates and retries ----------------------------------------------------------------------------


def test_a_duplicate_or_retried_marker_event_ingests_nothing_twice(aws: None) -> None:
    run = starter()
    event = marker("2026-05-01")
    run.handle(event)
    assert run.handle(event)["decision"] == "duplicate: already ingesting"  # EventBridge delivers twice
    succeed(INGEST, "2026-05-01", run)
    assert run.handle(marker("2026-05-01", "2026-05-02T09:00:00Z"))["decision"] == "duplicate: already training"
    succeed(TRAIN, "2026-05-01", run)
    assert run.handle(event)["decision"] == "duplicate: already trained"
    assert ingested_uris() == [uri("2026-05-01")]
    assert len(executions(TRAIN)) == 1


def test_a_start_that_failed_after_its_claim_happens_once_on_the_next_invocation(aws: None) -> None:
    class ThrottledError(Exception):
        response = {"Error": {"Code": "ThrottlingException"}}  # noqa: RUF012

    real = boto3.client("sagemaker", region_name=REGION)

    class Flaky:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def start_pipeline_execution(self, **_: Any) -> Any:
            raise ThrottledError("Rate exceeded")

    with pytest.raises(ThrottledError):
        starter(sagemaker=Flaky()).handle(marker("2026-05-01"))  # Lambda will retry the event
    assert state("2026-05-01") == INGESTING
    assert ingested_uris() == []
    outcome = starter().handle(marker("2026-05-01"))  # the retried event
    assert outcome["starts"] == [("ingestion", "churn/2026-05-01/")]
    assert ingested_uris() == [uri("2026-05-01")]
    starter().handle({"action": "resume"})
    assert ingested_uris() == [uri("2026-05-01")]


def test_an_invocation_that_died_after_starting_is_not_repeated(aws: None) -> None:
    """The pipeline started but the manifest never heard of it: the next invocation adopts that execution."""

    class LostWrite(ManifestStore):
        writes = 0

        def save(self, manifest: dict[str, Any], etag: str | None) -> None:
            LostWrite.writes += 1
            if LostWrite.writes == 2:  # the write that records the execution
                raise TimeoutError("the function timed out")
            super().save(manifest, etag)

    store = LostWrite(boto3.client("s3", region_name=REGION), PROCESSED, SETTINGS.manifest_key)
    with pytest.raises(TimeoutError):
        starter(store=store).handle(marker("2026-05-01"))
    assert len(executions(INGEST)) == 1
    assert "execution_arn" not in manifest()["batches"]["churn/2026-05-01/"]["ingestion"]
    outcome = starter().handle({"action": "resume"})
    assert outcome["starts"] == [("ingestion", "churn/2026-05-01/")]
    assert len(executions(INGEST)) == 1  # adopted, not started again
    assert manifest()["batches"]["churn/2026-05-01/"]["ingestion"]["execution_arn"] == executions(INGEST)[0]["arn"]


def test_a_status_event_before_the_start_was_recorded_is_matched_by_display_name(aws: None) -> None:
    run = starter()
    run.handle(marker("2026-05-01"))
    (execution,) = executions(INGEST)
    batch = manifest()["batches"]["churn/2026-05-01/"]["ingestion"]
    assert execution["name"] == batch["token"]
    assert batch["execution_arn"] == execution["arn"]
    # A status event that names the execution only by its display name still finds the batch.
    other = status(INGEST, "arn:unknown", "Succeeded", display_name=batch["token"])
    assert run.handle(other)["decision"] == "ingestion Succeeded"


def test_concurrent_manifest_writers_lose_nothing(aws: None) -> None:
    """Another writer changes the manifest between our read and write: the swap fails, we redo on the new one."""
    s3 = boto3.client("s3", region_name=REGION)

    class Interleaved(ManifestStore):
        interfered = False

        def save(self, manifest: dict[str, Any], etag: str | None) -> None:
            if not Interleaved.interfered:
                Interleaved.interfered = True
                starter().handle(marker("other", "2026-05-01T09:00:00Z"))  # lands in between
            super().save(manifest, etag)

    run = starter(store=Interleaved(s3, PROCESSED, SETTINGS.manifest_key))
    run.handle(marker("mine", "2026-05-01T10:00:00Z"))
    batches = manifest()["batches"]
    assert set(batches) == {"churn/other/", "churn/mine/"}
    assert ingested_uris() == [uri("other")]  # one ingestion at a time, the other writer's started first
    assert batches["churn/mine/"]["state"] == QUEUED


def test_the_manifest_is_written_only_if_unchanged(aws: None) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    store = ManifestStore(s3, PROCESSED, SETTINGS.manifest_key)
    empty, etag = store.load()
    assert etag is None
    store.save(empty, None)
    with pytest.raises(ManifestConflictError):
        store.save(empty, None)  # If-None-Match: * refuses to overwrite
    current, etag = store.load()
    current["next_sequence"] = 2
    store.save(current, etag)
    current["next_sequence"] = 3
    with pytest.raises(ManifestConflictError):
        store.save(current, etag)  # the ETag changed with the last write
    assert store.load()[0]["next_sequence"] == 2


# --- failures -------------------------------------------------------------------------------------------


def test_a_failed_ingestion_starts_no_training_and_lets_the_next_batch_go(aws: None) -> None:
    run = starter()
    run.handle(marker("bad", "2026-05-01T10:00:00Z"))
    run.handle(marker("good", "2026-05-01T10:00:05Z"))
    outcome = run.handle(status(INGEST, arn_of(INGEST, "bad"), "Failed"))
    assert outcome["decision"] == "ingestion Failed"
    assert outcome["starts"] == [("ingestion", "churn/good/")]
    assert state("bad") == INGESTION_FAILED
    assert executions(TRAIN) == []
    history = [entry["event"] for entry in manifest()["batches"]["churn/bad/"]["history"]]
    assert history[-1] == "ingestion Failed"

    # The retry: the batch's files are fixed and its marker uploaded again.
    succeed(INGEST, "good", run)
    retried = run.handle(marker("bad", "2026-05-02T08:00:00Z"))
    assert retried["decision"] == "ingestion retry queued"
    assert retried["starts"] == [("ingestion", "churn/bad/")]
    names = [e["name"] for e in executions(INGEST) if e["parameters"]["InputDataUri"] == uri("bad")]
    assert len(names) == 2
    assert names[0] != names[1]
    assert names[1].endswith("-a2")
    succeed(INGEST, "bad", run)
    assert state("bad") == TRAINING
    assert sorted(e["name"] for e in executions(TRAIN)) == sorted([token_of(TRAIN, "good"), token_of(TRAIN, "bad")])


def test_a_stopped_ingestion_counts_as_failed(aws: None) -> None:
    run = starter()
    run.handle(marker("b"))
    run.handle(status(INGEST, arn_of(INGEST, "b"), "Stopped"))
    assert state("b") == INGESTION_FAILED
    assert executions(TRAIN) == []


def test_retry_pipeline_execution_of_a_failed_ingestion_moves_the_batch_on(aws: None) -> None:
    run = starter()
    run.handle(marker("b"))
    arn = arn_of(INGEST, "b")
    run.handle(status(INGEST, arn, "Failed"))
    run.handle(status(INGEST, arn, "Executing"))  # aws sagemaker retry-pipeline-execution
    assert state("b") == INGESTING
    run.handle(status(INGEST, arn, "Succeeded"))
    assert state("b") == TRAINING
    assert len(executions(TRAIN)) == 1
    assert len(executions(INGEST)) == 1


def test_a_failed_training_is_retried_by_the_marker_without_ingesting_again(aws: None) -> None:
    run = starter()
    run.handle(marker("b"))
    succeed(INGEST, "b", run)
    run.handle(status(TRAIN, arn_of(TRAIN, "b"), "Failed"))
    assert state("b") == TRAINING_FAILED
    retried = run.handle(marker("b", "2026-05-03T00:00:00Z"))
    assert retried["decision"] == "training retry"
    assert retried["starts"] == [("training", "churn/b/")]
    assert len(executions(INGEST)) == 1
    assert len(executions(TRAIN)) == 2


# --- what training gets ---------------------------------------------------------------------------------


def test_training_from_the_feature_store_gets_no_data_parameter(aws: None) -> None:
    run = starter()
    run.handle(marker("b"))
    succeed(INGEST, "b", run)
    (training,) = executions(TRAIN)
    assert training["parameters"] == {}  # the training set comes from the offline store and the labels
    assert training["name"].startswith("train-")


def test_training_from_raw_files_gets_the_batch_folder(aws: None) -> None:
    settings = Settings(**{**vars(SETTINGS), "training_input_parameter": "InputDataUri"})
    run = starter(settings)
    run.handle(marker("b"))
    succeed(INGEST, "b", run)
    (training,) = executions(TRAIN)
    assert training["parameters"] == {"InputDataUri": uri("b")}


def test_without_a_training_pipeline_ingested_batches_stay_ingested(aws: None) -> None:
    run = starter(Settings(**{**vars(SETTINGS), "training_pipeline": ""}))
    run.handle(marker("b"))
    succeed(INGEST, "b", run)
    assert state("b") == INGESTED
    assert executions(TRAIN) == []


# --- what is not a batch --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["churn/_SUCCESS", "other/b/_SUCCESS", "churn/b/data.csv", "churn/b c/_SUCCESS", "churn/b/x_SUCCESS"],
)
def test_markers_that_name_no_batch_are_ignored(aws: None, key: str) -> None:
    outcome = starter().handle(marker("", key=key))
    assert outcome["decision"].startswith("ignored marker")
    assert ingested_uris() == []


def test_batch_folders() -> None:
    assert batch_of("churn/2026-05-01/_SUCCESS", "churn/") == "churn/2026-05-01/"
    assert batch_of("churn/region=eu/2026-05-01/_SUCCESS", "churn/") == "churn/region=eu/2026-05-01/"
    assert batch_of("churn/_SUCCESS", "churn/") is None
    assert batch_of("churn/region%3Deu/2026-05-01/_SUCCESS", "churn/") == "churn/region=eu/2026-05-01/"  # URL-encoded


def test_executions_of_other_pipelines_or_people_are_ignored(aws: None) -> None:
    run = starter()
    run.handle(marker("b"))
    outcome = run.handle(
        status(INGEST, f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{INGEST}/execution/x", "Failed")
    )
    assert outcome["decision"] == "ignored: not a batch's execution"
    assert state("b") == INGESTING
    other = run.handle(status("churn-dev-batch-scoring", "arn:x", "Failed"))
    assert other["decision"] == "ignored: not a batch's execution"


def test_an_unknown_event_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"unknown event: source 'aws\.ec2'"):
        starter().handle({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"})


def test_the_handler_reads_its_settings_from_the_environment(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "RAW_BUCKET": RAW,
        "RAW_PREFIX": "churn/",
        "MANIFEST_BUCKET": PROCESSED,
        "MANIFEST_KEY": SETTINGS.manifest_key,
        "INGESTION_PIPELINE": INGEST,
        "TRAINING_PIPELINE": TRAIN,
        "TRAINING_INPUT_PARAMETER": "",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(batch_starter, "_CLIENTS", {})
    outcome = batch_starter.handler(marker("b"), None)
    assert outcome["starts"] == [("ingestion", "churn/b/")]
    assert ingested_uris() == [uri("b")]
