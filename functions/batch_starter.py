"""Ingest every completed raw batch exactly once, in order, and train on a batch only after its ingestion succeeded.

A batch is a folder of the raw bucket (``churn/<batch>/``), complete when its ``_SUCCESS`` marker
lands. EventBridge cannot pass the marker's key to a pipeline as a parameter, so this function
sits between the events and the pipelines:

- ``Object Created`` of ``<raw prefix><batch>/_SUCCESS`` admits the batch to the manifest (``queued``);
- the next queued batch, in the order of the markers' times, is ingested when no other ingestion
  runs: ``StartPipelineExecution`` of the ingestion pipeline with ``InputDataUri`` = the batch's folder;
- ``SageMaker Model Building Pipeline Execution Status Change`` of the ingestion pipeline moves the
  batch to ``ingested`` (then the training pipeline starts for it) or ``ingestion_failed`` (training
  does not start; the failed execution is alerted by the environment's failed-execution rule);
- the training pipeline's status moves it to ``trained`` or ``training_failed``;
- ``{"action": "resume"}`` (a schedule, or a person) only runs the start step, to finish a start an
  earlier invocation could not.

State lives in one JSON manifest in S3 (``MANIFEST_BUCKET``/``MANIFEST_KEY``), versioned by the
bucket, changed only by compare-and-swap: ``PutObject`` with ``If-Match`` on the ETag read (or
``If-None-Match: *`` for the first write). Exactly once holds because:

1. admission is a state change in the manifest: a duplicate or retried marker event finds the batch
   already there and changes nothing (a concurrent writer loses the swap and re-reads);
2. a start is claimed in the manifest (a token derived from the batch and its attempt) *before* the
   pipeline is started, and the execution is started with that token as its display name and
   ``ClientRequestToken``; an invocation that finds a claim without an execution (its predecessor
   died in between) first looks the token up among the pipeline's executions and adopts the one it
   finds instead of starting another;
3. the function runs one invocation at a time (reserved concurrency 1), so claims are never raced.

Retry a batch whose ingestion failed (after fixing its files) by uploading its ``_SUCCESS`` marker
again: it is queued as a new attempt. The same re-upload retries only the training of a batch whose
training failed; for any other state it is a duplicate and ignored. ``RetryPipelineExecution`` on a
failed execution works too: its status events move the batch on.

Settings (environment): RAW_BUCKET, RAW_PREFIX, MANIFEST_BUCKET, MANIFEST_KEY, INGESTION_PIPELINE,
TRAINING_PIPELINE (empty: never start training), TRAINING_INPUT_PARAMETER (``InputDataUri`` when the
training pipeline reads raw files: it gets the batch's folder; empty when it builds its training set
from the feature store).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

MARKER = "_SUCCESS"
STATUS_CHANGE = "SageMaker Model Building Pipeline Execution Status Change"
MANIFEST_VERSION = 1
HISTORY_LIMIT = 10
SWAP_ATTEMPTS = 8
BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]*$")

# Batch states (see the module docstring).
QUEUED = "queued"
INGESTING = "ingesting"
INGESTED = "ingested"
INGESTION_FAILED = "ingestion_failed"
TRAINING = "training"
TRAINED = "trained"
TRAINING_FAILED = "training_failed"

INGESTION = "ingestion"
TRAINING_STAGE = "training"
STAGE_STATES = {
    # stage: (running, succeeded, failed)
    INGESTION: (INGESTING, INGESTED, INGESTION_FAILED),
    TRAINING_STAGE: (TRAINING, TRAINED, TRAINING_FAILED),
}


@dataclass(frozen=True)
class Settings:
    raw_bucket: str
    raw_prefix: str
    manifest_bucket: str
    manifest_key: str
    ingestion_pipeline: str
    training_pipeline: str  # "" = training is not started by new data
    training_input_parameter: str  # "" = the training pipeline takes no data parameter

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(
            raw_bucket=os.environ["RAW_BUCKET"],
            raw_prefix=os.environ["RAW_PREFIX"],
            manifest_bucket=os.environ["MANIFEST_BUCKET"],
            manifest_key=os.environ["MANIFEST_KEY"],
            ingestion_pipeline=os.environ["INGESTION_PIPELINE"],
            training_pipeline=os.environ.get("TRAINING_PIPELINE", ""),
            training_input_parameter=os.environ.get("TRAINING_INPUT_PARAMETER", ""),
        )


class ManifestConflictError(Exception):
    """Another writer changed the manifest between our read and our write."""


def log(decision: str, **details: Any) -> None:
    print(json.dumps({"decision": decision, **details}, sort_keys=True, default=str), flush=True)


def now_text(clock: Callable[[], datetime]) -> str:
    return clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the manifest in S3 ------------------------------------------------------------------------------


@dataclass
class ManifestStore:
    """One JSON object, read with its ETag and written only if nobody changed it in between."""

    s3: Any
    bucket: str
    key: str

    def load(self) -> tuple[dict[str, Any], str | None]:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except Exception as error:
            if _code(error) in ("NoSuchKey", "404"):
                return {"version": MANIFEST_VERSION, "next_sequence": 1, "batches": {}}, None
            raise
        manifest = json.loads(response["Body"].read())
        if manifest.get("version") != MANIFEST_VERSION:
            raise ValueError(f"manifest s3://{self.bucket}/{self.key} has version {manifest.get('version')!r}")
        return manifest, response["ETag"]

    def save(self, manifest: dict[str, Any], etag: str | None) -> None:
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=json.dumps(manifest, indent=1, sort_keys=True).encode(),
                ContentType="application/json",
                **condition,
            )
        except Exception as error:
            # 412: the object changed (or appeared); 409: a concurrent conditional write is in progress.
            if _code(error) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise ManifestConflictError(str(error)) from error
            raise


def _code(error: Exception) -> str | None:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code")) or None
    return None


# --- state changes (pure) ----------------------------------------------------------------------------


def _history(batch: dict[str, Any], at: str, event: str) -> None:
    batch["history"] = [*batch.get("history", []), {"at": at, "event": event}][-HISTORY_LIMIT:]


def _token(stage: str, prefix: str, attempt: int) -> str:
    """The claim of one start: the execution's display name (and, hashed, its ClientRequestToken)."""
    digest = hashlib.sha256(f"{prefix}".encode()).hexdigest()[:16]
    return f"{'ingest' if stage == INGESTION else 'train'}-{digest}-a{attempt}"


def batch_of(key: str, raw_prefix: str) -> str | None:
    """``churn/2026-05-01/_SUCCESS`` -> ``churn/2026-05-01/``; None for a marker that names no batch.

    S3 event notifications URL-encode keys (``dt=1`` arrives as ``dt%3D1``); batch folder names have
    no ``%`` or ``+`` of their own, so decoding is safe whether or not the key came encoded.
    """
    key = urllib.parse.unquote_plus(key)
    if not key.startswith(raw_prefix) or not key.endswith("/" + MARKER):
        return None
    folder = key[len(raw_prefix) : -len(MARKER)].rstrip("/")
    if not folder or not all(BATCH_NAME.match(part) for part in folder.split("/")):
        return None
    return key[: -len(MARKER)]


def admit(manifest: dict[str, Any], prefix: str, marker_time: str, at: str) -> str:
    """A marker landed: queue a new batch, or a retry of the failed stage of a known one. Returns the decision."""
    batches = manifest["batches"]
    batch = batches.get(prefix)
    if batch is None:
        batches[prefix] = batch = {
            "sequence": manifest["next_sequence"],
            "marker_time": marker_time,
            "state": QUEUED,
            INGESTION: {"attempt": 1},
            TRAINING_STAGE: {"attempt": 0},
        }
        manifest["next_sequence"] += 1
        _history(batch, at, "marker: queued")
        return "queued"
    if batch["state"] == INGESTION_FAILED:
        batch["state"] = QUEUED
        batch["marker_time"] = marker_time
        batch[INGESTION] = {"attempt": batch[INGESTION]["attempt"] + 1}
        _history(batch, at, f"marker again: ingestion queued, attempt {batch[INGESTION]['attempt']}")
        return "ingestion retry queued"
    if batch["state"] == TRAINING_FAILED:
        batch["state"] = INGESTED
        batch[TRAINING_STAGE] = {"attempt": batch[TRAINING_STAGE]["attempt"]}
        _history(batch, at, "marker again: training retry")
        return "training retry"
    _history(batch, at, f"marker again while {batch['state']}: ignored")
    return f"duplicate: already {batch['state']}"


def record_status(manifest: dict[str, Any], stage: str, detail: dict[str, Any], at: str) -> str | None:
    """A pipeline execution changed status: move the batch it belongs to. None when it is no batch's."""
    arn = detail.get("pipelineExecutionArn")
    display_name = detail.get("pipelineExecutionDisplayName")
    status = detail.get("currentPipelineExecutionStatus")
    for prefix, batch in manifest["batches"].items():
        started = batch[stage]
        if not (arn and started.get("execution_arn") == arn) and not (
            display_name and started.get("token") == display_name
        ):
            continue
        running, succeeded, failed = STAGE_STATES[stage]
        started["execution_arn"] = arn
        started["status"] = status
        if status == "Succeeded":
            batch["state"] = succeeded
        elif status in ("Failed", "Stopped"):
            batch["state"] = failed
        elif status == "Executing":  # started, or retried with RetryPipelineExecution
            batch["state"] = running
        _history(batch, at, f"{stage} {status}")
        return str(prefix)
    return None


def claim_starts(manifest: dict[str, Any], settings: Settings, at: str) -> list[tuple[str, str]]:
    """The (stage, batch) starts to make now, each claimed in the manifest with its token first.

    Claims left by an invocation that died before recording the execution are returned again, with
    their token unchanged. One ingestion runs at a time, the oldest marker first; every ingested
    batch gets its training.
    """
    batches = manifest["batches"]
    starts = []
    for prefix, batch in batches.items():
        for stage in (INGESTION, TRAINING_STAGE):
            if batch[stage].get("token") and not batch[stage].get("execution_arn"):
                starts.append((stage, prefix))
    ingestion_busy = any(batch["state"] == INGESTING for batch in batches.values())
    queued = sorted((batch["marker_time"], prefix) for prefix, batch in batches.items() if batch["state"] == QUEUED)
    if queued and not ingestion_busy:
        prefix = queued[0][1]
        batch = batches[prefix]
        batch["state"] = INGESTING
        batch[INGESTION]["token"] = _token(INGESTION, prefix, batch[INGESTION]["attempt"])
        batch[INGESTION]["claimed_at"] = at
        _history(batch, at, "ingestion claimed")
        starts.append((INGESTION, prefix))
    if settings.training_pipeline:
        for prefix, batch in sorted(batches.items(), key=lambda item: item[1]["sequence"]):
            if batch["state"] == INGESTED:
                batch["state"] = TRAINING
                training = batch[TRAINING_STAGE]
                training["attempt"] += 1
                training["token"] = _token(TRAINING_STAGE, prefix, training["attempt"])
                training["claimed_at"] = at
                for stale in ("execution_arn", "status"):
                    training.pop(stale, None)
                _history(batch, at, "training claimed")
                starts.append((TRAINING_STAGE, prefix))
    return starts


def record_start(manifest: dict[str, Any], stage: str, prefix: str, *, token: str, arn: str, at: str) -> bool:
    """The claimed start happened: remember its execution (unless a status event already did)."""
    started = manifest["batches"][prefix][stage]
    if started.get("token") != token or started.get("execution_arn"):
        return False
    started["execution_arn"] = arn
    _history(manifest["batches"][prefix], at, f"{stage} started: {arn}")
    return True


# --- the function ------------------------------------------------------------------------------------


@dataclass
class BatchStarter:
    settings: Settings
    store: ManifestStore
    sagemaker: Any
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        known = event.get("action") == "resume" or event.get("source") == "aws.s3"
        if not known and event.get("detail-type") != STATUS_CHANGE:
            raise ValueError(f"unknown event: source {event.get('source')!r}, detail-type {event.get('detail-type')!r}")
        outcome: dict[str, Any] = {}

        def change(manifest: dict[str, Any], at: str) -> bool:
            outcome.clear()
            changed = self._apply(manifest, event, at, outcome)
            outcome["starts"] = claim_starts(manifest, self.settings, at)
            return changed or bool(outcome["starts"])

        manifest = self._update(change)
        for stage, prefix in outcome["starts"]:
            batch = manifest["batches"][prefix]
            token = batch[stage]["token"]
            arn = self._start(stage, prefix, token, batch[stage].get("claimed_at"))

            def started(
                manifest: dict[str, Any],
                at: str,
                stage: str = stage,
                prefix: str = prefix,
                token: str = token,
                arn: str = arn,
            ) -> bool:
                return record_start(manifest, stage, prefix, token=token, arn=arn, at=at)

            manifest = self._update(started)
        return outcome

    def _apply(self, manifest: dict[str, Any], event: dict[str, Any], at: str, outcome: dict[str, Any]) -> bool:
        if event.get("action") == "resume":
            outcome["decision"] = "resume"
            return False
        detail = event.get("detail") or {}
        if event.get("source") == "aws.s3":
            key = detail.get("object", {}).get("key", "")
            bucket = detail.get("bucket", {}).get("name")
            prefix = batch_of(key, self.settings.raw_prefix) if bucket == self.settings.raw_bucket else None
            if prefix is None:
                outcome["decision"] = f"ignored marker s3://{bucket}/{key}: not a batch folder under the raw prefix"
                log("ignored", bucket=bucket, key=key)
                return False
            outcome["decision"] = admit(manifest, prefix, event.get("time") or at, at)
            outcome["batch"] = prefix
            log(outcome["decision"], batch=prefix)
            return True
        # A pipeline execution's status change (handle() lets no other event in).
        stage = self._stage_of(detail.get("pipelineArn", ""))
        prefix = record_status(manifest, stage, detail, at) if stage else None
        status = detail.get("currentPipelineExecutionStatus")
        outcome["decision"] = f"{stage} {status}" if prefix else "ignored: not a batch's execution"
        outcome["batch"] = prefix
        log(outcome["decision"], batch=prefix, execution=detail.get("pipelineExecutionArn"))
        return prefix is not None

    def _stage_of(self, pipeline_arn: str) -> str | None:
        name = pipeline_arn.rsplit("pipeline/", 1)[-1].lower()
        if name == self.settings.ingestion_pipeline.lower():
            return INGESTION
        if self.settings.training_pipeline and name == self.settings.training_pipeline.lower():
            return TRAINING_STAGE
        return None

    def _update(self, change: Callable[[dict[str, Any], str], bool]) -> dict[str, Any]:
        """Read, change and write the manifest; on a lost swap read again and redo the change."""
        for _ in range(SWAP_ATTEMPTS):
            manifest, etag = self.store.load()
            if not change(manifest, now_text(self.clock)):
                return manifest
            try:
                self.store.save(manifest, etag)
                return manifest
            except ManifestConflictError as conflict:
                log("manifest changed meanwhile; reading it again", error=str(conflict))
        raise ManifestConflictError(f"the manifest kept changing during {SWAP_ATTEMPTS} attempts")

    def _start(self, stage: str, prefix: str, token: str, claimed_at: str | None) -> str:
        """Start the stage's pipeline for the batch once: adopt an execution that already carries the token."""
        pipeline = self.settings.ingestion_pipeline if stage == INGESTION else self.settings.training_pipeline
        existing = self._find_execution(pipeline, token, claimed_at)
        if existing:
            log("adopted execution started before", stage=stage, batch=prefix, execution=existing)
            return existing
        uri = f"s3://{self.settings.raw_bucket}/{prefix}"
        if stage == INGESTION:
            parameters = [{"Name": "InputDataUri", "Value": uri}]
        elif self.settings.training_input_parameter:
            parameters = [{"Name": self.settings.training_input_parameter, "Value": uri}]
        else:
            parameters = []
        response = self.sagemaker.start_pipeline_execution(
            PipelineName=pipeline,
            PipelineExecutionDisplayName=token,
            PipelineExecutionDescription=f"{stage} of raw batch {uri} (batch starter)",
            PipelineParameters=parameters,
            ClientRequestToken=hashlib.sha256(token.encode()).hexdigest(),
        )
        arn = str(response["PipelineExecutionArn"])
        log("started", stage=stage, batch=prefix, execution=arn, parameters=parameters)
        return arn

    def _find_execution(self, pipeline: str, token: str, claimed_at: str | None) -> str | None:
        arguments: dict[str, Any] = {"PipelineName": pipeline, "SortBy": "CreationTime", "SortOrder": "Descending"}
        if claimed_at:
            arguments["CreatedAfter"] = datetime.fromisoformat(claimed_at) - timedelta(minutes=5)
        while True:
            page = self.sagemaker.list_pipeline_executions(**arguments)
            for summary in page.get("PipelineExecutionSummaries", []):
                if summary.get("PipelineExecutionDisplayName") == token:
                    return str(summary["PipelineExecutionArn"])
            if not page.get("NextToken"):
                return None
            arguments["NextToken"] = page["NextToken"]


_CLIENTS: dict[str, Any] = {}


def _client(name: str) -> Any:
    if name not in _CLIENTS:
        import boto3  # the Lambda runtime ships it

        _CLIENTS[name] = boto3.client(name)
    return _CLIENTS[name]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = Settings.from_environment()
    store = ManifestStore(_client("s3"), settings.manifest_bucket, settings.manifest_key)
    return BatchStarter(settings, store, _client("sagemaker")).handle(event)
