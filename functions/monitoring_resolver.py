"""ResolveBaselines: the first step of the monitoring pipeline (the platform backend).

For one run over one window it finds what each variant of the endpoint serves and what was captured:

- endpoint -> endpoint config -> model of each variant -> model package -> the package's registered
  baselines (``DriftCheckBaselines``, written by the training pipeline's baseline.py) and model
  artifact, so a first deploy needs no baseline URI and a new version is compared with its own;
- the baseline files of the version each variant serves are copied (once per version) to
  ``s3://<monitoring bucket>/serving/<endpoint>/<Variant>/`` (the job's ``--baselines`` folder);
- the window's capture files, per variant, go into a manifest (``capture.manifest``); the capture of
  the window one label delay earlier and the ground truth collected since then go into a second one
  (``labelled.manifest``): their labels have had time to arrive;
- ``resolution.json`` records all of it under ``runs/<endpoint>/<execution>/``.

It returns the step's output parameters. No endpoint yet, or no captured request in the window, is a
clean outcome (``status`` ``no_endpoint`` / ``no_traffic``): the pipeline then skips the job. A variant
whose model does not come from a registered package with baselines is an error naming the package
and what to do.

Settings: environment variables ``MONITORING_BUCKET``, ``GROUND_TRUTH_URI``; the step's arguments
(see ``platform_constructs/monitoring_pipeline.py``) carry the endpoint, window and variants. Objects
are written without encryption headers: the buckets' default SSE-KMS key applies (a bare ``aws:kms``
header would pick the AWS managed key instead).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

# baseline.py's file that the package registers as DriftCheckBaselines.ModelDataQuality.Statistics:
# its folder is the version's baseline folder.
STATISTICS_SUFFIX = "data_quality/statistics.json"
PACKAGE_MARKER = "package.json"  # written last when a variant's baseline copy is complete
RUN = "run"
NO_ENDPOINT = "no_endpoint"
NO_TRAFFIC = "no_traffic"
SERVING_STATES = ("InService", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed")


class ResolveError(Exception):
    """The endpoint cannot be monitored as it is; the message says why and what to do."""


@functools.cache
def _client(service: str) -> Any:
    return boto3.client(service)


def log(event: str, **fields: Any) -> None:
    LOG.info(json.dumps({"event": event, **fields}, default=str, sort_keys=True))


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        if not uri.startswith("s3://") or "/" not in uri[5:]:
            raise ResolveError(f"{uri!r} is not an s3://bucket/key URI")
        bucket, _, key = uri[5:].partition("/")
        return cls(bucket, key)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def hours(self) -> list[datetime]:
        count = int((self.end - self.start).total_seconds() // 3600)
        return [self.start + timedelta(hours=i) for i in range(count)]

    def shifted(self, hours: int) -> Window:
        return Window(self.start - timedelta(hours=hours), self.end - timedelta(hours=hours))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_for(window_end: str, *, now: datetime, window_hours: int, schedule_hours: int) -> Window:
    """The run's window: ``window_end`` (ISO 8601, for a backfill) or the last complete schedule interval."""
    if window_end and window_end != "latest":
        try:
            end = datetime.fromisoformat(window_end)
        except ValueError:
            raise ResolveError(
                f"WindowEnd {window_end!r} is not an ISO 8601 time; give e.g. 2026-12-01T11:00:00Z or 'latest'"
            ) from None
        end = (end if end.tzinfo else end.replace(tzinfo=UTC)).astimezone(UTC)
        if end.minute or end.second or end.microsecond:
            raise ResolveError(f"WindowEnd {window_end!r} must be on the hour (capture is partitioned by hour)")
    else:
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        elapsed = int((now.astimezone(UTC) - midnight).total_seconds() // 3600)
        end = midnight + timedelta(hours=elapsed - elapsed % schedule_hours)
    return Window(end - timedelta(hours=window_hours), end)


# --- what each variant serves -------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    variant: str
    package_arn: str
    model_uri: str
    baseline: S3Location  # the version's baseline folder (ends with "/")


def describe_endpoint(endpoint: str) -> dict[str, Any] | None:
    try:
        response: dict[str, Any] = _client("sagemaker").describe_endpoint(EndpointName=endpoint)
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException":  # "Could not find endpoint ..."
            return None
        raise
    return response


def served_versions(endpoint_config: dict[str, Any]) -> list[Served]:
    sagemaker = _client("sagemaker")
    variants = [*endpoint_config.get("ProductionVariants", []), *endpoint_config.get("ShadowProductionVariants", [])]
    served = []
    for variant in variants:
        name, model_name = variant["VariantName"], variant["ModelName"]
        model = sagemaker.describe_model(ModelName=model_name)
        containers = [model["PrimaryContainer"]] if "PrimaryContainer" in model else model.get("Containers", [])
        packages = [c["ModelPackageName"] for c in containers if c.get("ModelPackageName")]
        if not packages:
            raise ResolveError(
                f"variant {name} serves model {model_name}, which is not created from a model package; monitoring "
                "compares each variant with the baselines registered with its package: serve an approved package"
            )
        package = sagemaker.describe_model_package(ModelPackageName=packages[0])
        statistics = (
            package.get("DriftCheckBaselines", {}).get("ModelDataQuality", {}).get("Statistics", {}).get("S3Uri", "")
        )
        if not statistics.endswith(STATISTICS_SUFFIX):
            raise ResolveError(
                f"variant {name} serves {packages[0]}, registered without monitoring baselines "
                f"(DriftCheckBaselines.ModelDataQuality.Statistics = {statistics or 'none'}); retrain with the "
                "current training pipeline, which registers them, and approve the new version"
            )
        baseline = S3Location.parse(statistics[: -len(STATISTICS_SUFFIX)])
        model_uri = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        served.append(Served(name, package["ModelPackageArn"], model_uri, baseline))
    return served


def list_keys(bucket: str, prefix: str) -> list[str]:
    paginator = _client("s3").get_paginator("list_objects_v2")
    return [
        item["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for item in page.get("Contents", [])
    ]


def refresh_serving_copy(served: Served, bucket: str, prefix: str) -> bool:
    """Copy the version's baseline files to ``prefix`` unless the copy there is of this version; True if copied."""
    s3 = _client("s3")
    marker = f"{prefix}{PACKAGE_MARKER}"
    try:
        current = json.loads(s3.get_object(Bucket=bucket, Key=marker)["Body"].read())
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("NoSuchKey", "404"):
            raise
        current = {}
    if current.get("package_arn") == served.package_arn:
        return False
    sources = [k for k in list_keys(served.baseline.bucket, served.baseline.key) if not k.endswith("/")]
    if not sources:
        raise ResolveError(
            f"the baselines of {served.package_arn} are registered at {served.baseline.uri} but nothing is there; "
            "retrain (the files may have expired with the bucket's lifecycle)"
        )
    s3.delete_object(Bucket=bucket, Key=marker)  # the copy is incomplete until the marker is back
    wanted = {f"{prefix}{key[len(served.baseline.key) :]}" for key in sources}
    for key in sources:
        s3.copy_object(
            Bucket=bucket,
            Key=f"{prefix}{key[len(served.baseline.key) :]}",
            CopySource={"Bucket": served.baseline.bucket, "Key": key},
        )
    for stale in set(list_keys(bucket, prefix)) - wanted - {marker}:
        s3.delete_object(Bucket=bucket, Key=stale)
    document = {"package_arn": served.package_arn, "baseline_uri": served.baseline.uri, "model_uri": served.model_uri}
    put_json(bucket, marker, document)
    return True


def remove_other_variants(bucket: str, serving_prefix: str, variants: set[str]) -> None:
    for key in list_keys(bucket, serving_prefix):
        if key[len(serving_prefix) :].split("/", 1)[0] not in variants:
            _client("s3").delete_object(Bucket=bucket, Key=key)


# --- what was captured ----------------------------------------------------------------------------


def hour_prefix(root: str, hour: datetime) -> str:
    return f"{root}{hour:%Y/%m/%d/%H}/"


def capture_keys(bucket: str, capture_root: str, variants: list[str], window: Window) -> list[str]:
    """Capture files of ``variants`` in ``window`` (SageMaker's ``<root><Variant>/yyyy/mm/dd/hh/`` layout)."""
    keys = []
    for variant in variants:
        for hour in window.hours():
            keys += [
                k for k in list_keys(bucket, hour_prefix(f"{capture_root}{variant}/", hour)) if k.endswith(".jsonl")
            ]
    return sorted(keys)


def ground_truth_keys(location: S3Location, window: Window) -> list[str]:
    keys = []
    for hour in window.hours():
        keys += [k for k in list_keys(location.bucket, hour_prefix(location.key, hour)) if k.endswith(".jsonl")]
    return sorted(keys)


def put_json(bucket: str, key: str, document: Any) -> str:
    _client("s3").put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(document, indent=1, sort_keys=True).encode(),
        ContentType="application/json",
    )
    return f"s3://{bucket}/{key}"


def write_manifest(bucket: str, key: str, prefix: S3Location, keys: list[str]) -> str:
    """A ProcessingInput manifest: the prefix, then every file relative to it (CreateProcessingJob,
    S3Input.S3DataType ManifestFile)."""
    for item in keys:
        if not item.startswith(prefix.key):
            raise ResolveError(f"s3://{prefix.bucket}/{item} is not under the manifest's prefix {prefix.uri}")
    return put_json(bucket, key, [{"prefix": prefix.uri}, *(k[len(prefix.key) :] for k in keys)])


# --- the handler ----------------------------------------------------------------------------------


def _strings(outputs: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, int) else str(v)) for k, v in outputs.items()}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    endpoint = str(event["endpoint_name"])
    execution = str(event["execution_id"]).rsplit("/", 1)[-1]
    configured = [str(v) for v in event["variants"]]
    champion = configured[0]
    bucket = os.environ["MONITORING_BUCKET"]
    ground_truth = S3Location.parse(os.environ["GROUND_TRUTH_URI"].rstrip("/") + "/")
    run_prefix = f"runs/{endpoint}/{execution}/"
    serving_prefix = f"serving/{endpoint}/"
    window = window_for(
        str(event.get("window_end") or ""),
        now=datetime.now(UTC),
        window_hours=int(event["window_hours"]),
        schedule_hours=int(event["schedule_hours"]),
    )
    labelled_window = window.shifted(int(event["label_delay_hours"]))
    outputs: dict[str, Any] = {
        "status": NO_ENDPOINT,
        "window_start": iso(window.start),
        "window_end": iso(window.end),
        "capture_manifest": f"s3://{bucket}/{run_prefix}",
        "labelled_manifest": f"s3://{bucket}/{run_prefix}",
        "baselines": f"s3://{bucket}/{serving_prefix}",
        "variants": ",".join(configured),
        "capture_files": 0,
        **{f"model_{name}": f"s3://{bucket}/{run_prefix}" for name in configured},
    }

    description = describe_endpoint(endpoint)
    if description is None or description["EndpointStatus"] not in SERVING_STATES:
        status = "absent" if description is None else description["EndpointStatus"]
        log("skipped", reason="no serving endpoint", endpoint=endpoint, endpoint_status=status)
        return _strings(outputs)
    config = _client("sagemaker").describe_endpoint_config(EndpointConfigName=description["EndpointConfigName"])
    capture = config.get("DataCaptureConfig") or {}
    if not capture.get("EnableCapture", True) or "DestinationS3Uri" not in capture:
        raise ResolveError(
            f"endpoint {endpoint} (config {config['EndpointConfigName']}) captures no data; monitoring reads the "
            "captured requests: enable DataCaptureConfig"
        )
    served = served_versions(config)
    by_variant = {s.variant: s for s in served}
    if champion not in by_variant:
        raise ResolveError(
            f"endpoint {endpoint} has no variant {champion} (it has {', '.join(by_variant)}); challengers are "
            "compared with the first variant of serving.variants"
        )

    # SageMaker writes capture to <destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/; both manifests are
    # relative to the endpoint's folder of the capture bucket, which also holds the ground truth.
    destination = S3Location.parse(capture["DestinationS3Uri"].rstrip("/") + "/")
    capture_root = f"{destination.key}{endpoint}/"
    common = S3Location(ground_truth.bucket, f"{endpoint}/")
    if destination.bucket != ground_truth.bucket or not (
        capture_root.startswith(common.key) and ground_truth.key.startswith(common.key)
    ):
        raise ResolveError(
            f"capture ({destination.uri}) and ground truth ({ground_truth.uri}) must both be under "
            f"{common.uri}: the job reads them through one input"
        )
    variants = sorted(by_variant)
    current = capture_keys(destination.bucket, capture_root, variants, window)
    outputs["capture_files"] = len(current)
    if not current:
        outputs["status"] = NO_TRAFFIC
        log("skipped", reason="no captured request in the window", endpoint=endpoint, window=outputs["window_start"])
        return _strings(outputs)

    labelled = capture_keys(destination.bucket, capture_root, variants, labelled_window)
    labels = ground_truth_keys(ground_truth, Window(labelled_window.start, window.end))
    outputs["capture_manifest"] = write_manifest(bucket, f"{run_prefix}capture.manifest", common, current)
    if labelled or labels:
        outputs["labelled_manifest"] = write_manifest(
            bucket, f"{run_prefix}labelled.manifest", common, labelled + labels
        )
    else:  # an input must hold at least one file: a note, in the run's own folder
        note = f"{run_prefix}empty/NO_LABELLED_DATA.txt"
        _client("s3").put_object(
            Bucket=bucket,
            Key=note,
            Body=b"No capture or ground truth for the labelled window of this run.\n",
        )
        outputs["labelled_manifest"] = write_manifest(
            bucket, f"{run_prefix}labelled.manifest", S3Location(bucket, f"{run_prefix}empty/"), [note]
        )

    copied = [s.variant for s in served if refresh_serving_copy(s, bucket, f"{serving_prefix}{s.variant}/")]
    remove_other_variants(bucket, serving_prefix, set(by_variant))
    for name in configured:  # every configured variant has a model input; an absent one reads the champion's
        outputs[f"model_{name}"] = by_variant.get(name, by_variant[champion]).model_uri
    outputs["status"] = RUN
    put_json(
        bucket,
        f"{run_prefix}resolution.json",
        {
            "endpoint": endpoint,
            "endpoint_config": config["EndpointConfigName"],
            "window": {"start": outputs["window_start"], "end": outputs["window_end"]},
            "labelled_window": {"start": iso(labelled_window.start), "end": iso(labelled_window.end)},
            "variants": {
                s.variant: {"package": s.package_arn, "model": s.model_uri, "baselines": s.baseline.uri} for s in served
            },
            "files": {"capture": len(current), "labelled_capture": len(labelled), "ground_truth": len(labels)},
        },
    )
    log(
        "resolved",
        endpoint=endpoint,
        window=outputs["window_start"],
        capture_files=len(current),
        labelled_files=len(labelled),
        ground_truth_files=len(labels),
        baselines_copied=copied,
    )
    return _strings(outputs)
