"""Starts the training pipeline when a monitoring alarm that means "the model is out of date" fires.

Triggered by an EventBridge rule on "CloudWatch Alarm State Change" to ALARM, for the alarms routed
to retraining (drift and model quality of the champion variant: README, "What each monitoring alarm
means and does"). It starts the pipeline only when all of these hold:

1. no data-integrity violation of any variant of the endpoint in the alarm's evaluation range:
   broken input data is fixed upstream, never retrained on. It reads the metric values, not the
   integrity alarms' states, which may not have caught up yet (both metrics are published together);
2. no execution of the training pipeline is running, and none that monitoring started is younger
   than the cool-down (the pipeline's own execution list is the state: nothing else to keep);
3. the same alarm transition has not started one already (the request token is derived from it, so
   an EventBridge retry is a no-op).

Settings (environment variables): ``TRAINING_PIPELINE_NAME``, ``METRIC_NAMESPACE``, ``ENDPOINT_NAME``,
``VARIANTS`` (comma-separated), ``COOLDOWN_HOURS``, ``PERIOD_SECONDS`` (one monitoring interval),
``LOOKBACK_PERIODS``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

DISPLAY_PREFIX = "retrain-on-"
INTEGRITY_METRIC = "data_integrity_violations"


@functools.cache
def _client(service: str) -> Any:
    return boto3.client(service)


def log(event: str, **fields: Any) -> dict[str, Any]:
    record = {"event": event, **fields}
    LOG.info(json.dumps(record, default=str, sort_keys=True))
    return record


def alarm_metric(detail: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The metric name and dimensions the alarm watches."""
    for query in detail.get("configuration", {}).get("metrics", []):
        metric = query.get("metricStat", {}).get("metric")
        if metric:
            return str(metric["name"]), {str(k): str(v) for k, v in metric.get("dimensions", {}).items()}
    raise ValueError(f"alarm {detail.get('alarmName')!r}: the event names no metric; only metric alarms retrain")


def integrity_violations(
    *, namespace: str, endpoint: str, variants: list[str], start: datetime, end: datetime, period: int
) -> dict[str, float]:
    """The largest data-integrity violation count of each variant between ``start`` and ``end``."""
    queries = [
        {
            "Id": f"v{index}",
            "Label": variant,
            "MetricStat": {
                "Metric": {
                    "Namespace": namespace,
                    "MetricName": INTEGRITY_METRIC,
                    "Dimensions": [
                        {"Name": "Endpoint", "Value": endpoint},
                        {"Name": "Variant", "Value": variant},
                        {"Name": "MonitoringType", "Value": "DataQuality"},
                    ],
                },
                "Period": period,
                "Stat": "Maximum",
            },
            "ReturnData": True,
        }
        for index, variant in enumerate(variants)
    ]
    response = _client("cloudwatch").get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
    found: dict[str, float] = {}
    for result in response.get("MetricDataResults", []):
        values = result.get("Values") or []
        if values:
            found[str(result["Label"])] = max(float(v) for v in values)
    return found


def blocking_executions(pipeline: str, *, now: datetime, cooldown: timedelta) -> list[dict[str, Any]]:
    """Executions that rule a new one out: any still running, or one monitoring started within the cool-down."""
    response = _client("sagemaker").list_pipeline_executions(
        PipelineName=pipeline, SortBy="CreationTime", SortOrder="Descending", MaxResults=50
    )
    blocking = []
    for summary in response.get("PipelineExecutionSummaries", []):
        started = summary["StartTime"]
        running = summary.get("PipelineExecutionStatus") in ("Executing", "Stopping")
        recent = summary.get("PipelineExecutionDisplayName", "").startswith(DISPLAY_PREFIX) and now - started < cooldown
        if running or recent:
            blocking.append(summary)
    return blocking


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    detail = event.get("detail", {})
    alarm = str(detail.get("alarmName", ""))
    state = detail.get("state", {})
    if state.get("value") != "ALARM":
        return log("ignored", alarm=alarm, state=state.get("value"))
    metric, dimensions = alarm_metric(detail)
    endpoint = os.environ["ENDPOINT_NAME"]
    if dimensions.get("Endpoint") != endpoint:
        return log("ignored", alarm=alarm, reason=f"not an alarm of endpoint {endpoint}")

    now = datetime.now(UTC)
    period = int(os.environ["PERIOD_SECONDS"])
    lookback = timedelta(seconds=period * (int(os.environ["LOOKBACK_PERIODS"]) + 1))
    variants = [v for v in os.environ["VARIANTS"].split(",") if v]
    broken = {
        variant: count
        for variant, count in integrity_violations(
            namespace=os.environ["METRIC_NAMESPACE"],
            endpoint=endpoint,
            variants=variants,
            start=now - lookback,
            end=now + timedelta(minutes=5),
            period=period,
        ).items()
        if count > 0
    }
    if broken:
        return log(
            "vetoed",
            alarm=alarm,
            reason="data integrity violations in the same runs: fix the data upstream, never retrain on it",
            integrity_violations=broken,
        )

    pipeline = os.environ["TRAINING_PIPELINE_NAME"]
    cooldown = timedelta(hours=int(os.environ["COOLDOWN_HOURS"]))
    blocking = blocking_executions(pipeline, now=now, cooldown=cooldown)
    if blocking:
        return log(
            "cooling_down",
            alarm=alarm,
            reason=f"a training run is under way or monitoring started one within {cooldown}",
            executions=[b["PipelineExecutionArn"] for b in blocking],
        )

    kind = re.sub(r"[^a-z0-9]+", "-", metric.removesuffix("_violations").lower()).strip("-")
    token = hashlib.sha256(f"{alarm}|{state.get('timestamp', '')}".encode()).hexdigest()
    response = _client("sagemaker").start_pipeline_execution(
        PipelineName=pipeline,
        PipelineExecutionDisplayName=f"{DISPLAY_PREFIX}{kind}-{now:%Y%m%d%H%M}",
        PipelineExecutionDescription=f"Started by monitoring alarm {alarm}: {state.get('reason', '')}"[:3072],
        ClientRequestToken=token,
    )
    return log(
        "started",
        alarm=alarm,
        metric=metric,
        variant=dimensions.get("Variant"),
        execution=response["PipelineExecutionArn"],
    )
