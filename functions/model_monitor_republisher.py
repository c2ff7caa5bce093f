"""Maps a native Model Monitor run onto the platform's monitoring metrics (the "model_monitor" backend).

Model Monitor's own metrics live in AWS's namespaces under other names; the platform's alarms,
dashboard and actions read the counts of monitoring_code/CONTRACT.md ("metrics.json"). This function
runs on "SageMaker Processing Job State Change" (Completed) for the jobs of the environment's
monitoring schedules, reads the run's ``constraint_violations.json`` (and, for data quality,
``statistics.json``) from its output, and publishes:

=========================  ===================  ===============================================
schedule                   MonitoringType       metrics
=========================  ===================  ===============================================
data quality               DataQuality          records_analyzed, data_drift_violations
                                                (baseline_drift_check), data_integrity_violations
                                                (every other check)
model quality              ModelQuality         model_quality_violations
model bias                 ModelBias            bias_drift_violations
model explainability       ModelExplainability  attribution_drift_violations
=========================  ===================  ===============================================

with the same dimensions as the platform backend (``Endpoint``, ``Variant``, ``MonitoringType``).
Model Monitor watches the endpoint as a whole: ``Variant`` is the first configured variant, whose
baselines the schedules were deployed with.

Settings (environment variables): ``METRIC_NAMESPACE``, ``ENDPOINT_NAME``, ``VARIANT`` and
``SCHEDULES`` (JSON: schedule name -> MonitoringType).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

DRIFT_CHECK = "baseline_drift_check"
COUNT_METRIC = {
    "ModelQuality": "model_quality_violations",
    "ModelBias": "bias_drift_violations",
    "ModelExplainability": "attribution_drift_violations",
}


class RepublishError(Exception):
    """The run's output cannot be read as Model Monitor writes it; the message says which file."""


@functools.cache
def _client(service: str) -> Any:
    return boto3.client(service)


def read_json(bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = _client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    try:
        document = json.loads(body)
    except ValueError:
        raise RepublishError(f"s3://{bucket}/{key} is not JSON") from None
    if not isinstance(document, dict):
        raise RepublishError(f"s3://{bucket}/{key} holds {type(document).__name__}, not a JSON object")
    return document


def window_end(detail: dict[str, Any]) -> datetime:
    """The end of the analysed window: Model Monitor's ``end_time`` job variable, else the job's end on the hour."""
    value = (detail.get("Environment") or {}).get("end_time") or detail.get("ProcessingEndTime")
    if isinstance(value, int | float):  # EventBridge carries DescribeProcessingJob's times as epoch milliseconds
        moment = datetime.fromtimestamp(value / 1000, UTC)
    elif isinstance(value, str) and value:
        moment = datetime.fromisoformat(value)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    else:
        moment = datetime.now(UTC)
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def counts(
    monitoring_type: str, violations: list[dict[str, Any]], statistics: dict[str, Any] | None
) -> dict[str, float]:
    """The contract's count metrics of one run."""
    if monitoring_type == "DataQuality":
        drift = sum(1 for v in violations if v.get("constraint_check_type") == DRIFT_CHECK)
        result = {"data_drift_violations": float(drift), "data_integrity_violations": float(len(violations) - drift)}
        if statistics is not None:
            result["records_analyzed"] = float(statistics.get("dataset", {}).get("item_count", 0))
        return result
    if monitoring_type not in COUNT_METRIC:
        raise RepublishError(
            f"monitoring type {monitoring_type!r} is not one of DataQuality, {', '.join(COUNT_METRIC)}"
        )
    return {COUNT_METRIC[monitoring_type]: float(len(violations))}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    detail = event.get("detail", {})
    schedules: dict[str, str] = json.loads(os.environ["SCHEDULES"])
    schedule = str(detail.get("MonitoringScheduleArn", "")).rsplit("/", 1)[-1]
    if schedule not in schedules:
        LOG.info(json.dumps({"event": "ignored", "schedule": schedule, "job": detail.get("ProcessingJobName")}))
        return {"published": 0}
    if detail.get("ProcessingJobStatus") != "Completed":
        LOG.info(json.dumps({"event": "ignored", "status": detail.get("ProcessingJobStatus"), "schedule": schedule}))
        return {"published": 0}
    monitoring_type = schedules[schedule]
    outputs = detail.get("ProcessingOutputConfig", {}).get("Outputs", [])
    if not outputs:
        raise RepublishError(f"job {detail.get('ProcessingJobName')} of {schedule} has no output to read")
    uri = str(outputs[0]["S3Output"]["S3Uri"]).rstrip("/")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    report = read_json(bucket, f"{prefix}/constraint_violations.json")
    violations = list((report or {}).get("violations", []))
    statistics = read_json(bucket, f"{prefix}/statistics.json") if monitoring_type == "DataQuality" else None
    dimensions = [
        {"Name": "Endpoint", "Value": os.environ["ENDPOINT_NAME"]},
        {"Name": "MonitoringType", "Value": monitoring_type},
        {"Name": "Variant", "Value": os.environ["VARIANT"]},
    ]
    timestamp = window_end(detail)
    data = [
        {"MetricName": name, "Dimensions": dimensions, "Timestamp": timestamp, "Value": value, "Unit": "Count"}
        for name, value in sorted(counts(monitoring_type, violations, statistics).items())
    ]
    _client("cloudwatch").put_metric_data(Namespace=os.environ["METRIC_NAMESPACE"], MetricData=data)
    LOG.info(
        json.dumps(
            {
                "event": "published",
                "schedule": schedule,
                "type": monitoring_type,
                "metrics": {d["MetricName"]: d["Value"] for d in data},
            }
        )
    )
    return {"published": len(data)}
