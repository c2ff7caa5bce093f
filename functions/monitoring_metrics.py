"""PublishMetrics: the monitoring pipeline's last step (the platform backend).

- mode ``report``: reads the job's ``metrics.json`` (monitoring_code/CONTRACT.md, "metrics.json") and
  sends every metric to CloudWatch with ``PutMetricData``, in the configured namespace only (the
  function's role may write no other: ``cloudwatch:namespace`` condition), at the window's end;
- mode ``skipped``: the run found no captured request (``no_traffic``): ``records_analyzed`` 0 for
  every variant, so the dashboard shows a quiet hour rather than a gap; no endpoint: nothing.

Settings: ``METRIC_NAMESPACE`` and ``ENDPOINT_NAME`` (environment variables). The function reaches
CloudWatch through the "monitoring" VPC endpoint and S3 through the gateway endpoint.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

# PutMetricData: at most 1,000 metrics and 1 MB per request; 150 keeps a request far below both.
BATCH = 150
UNITS = {"None", "Count", "Percent", "Seconds", "Milliseconds"}


class MetricsError(Exception):
    """metrics.json cannot be published as it is; the message names the metric and the problem."""


@functools.cache
def _client(service: str) -> Any:
    return boto3.client(service)


def parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MetricsError(f"timestamp {value!r} is not ISO 8601") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def read_json(uri: str) -> Any:
    if not uri.startswith("s3://"):
        raise MetricsError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return json.loads(_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def metric_data(document: dict[str, Any], *, namespace: str, endpoint: str) -> list[dict[str, Any]]:
    """The PutMetricData entries of a metrics.json document, checked against the contract."""
    if document.get("namespace") != namespace:
        raise MetricsError(
            f"metrics.json is for namespace {document.get('namespace')!r}; this environment publishes to "
            f"{namespace!r} (monitoring.metric_namespace), pass it to monitor.py as --metric-namespace"
        )
    timestamp = parse_time(str(document.get("timestamp", "")))
    entries = []
    for index, metric in enumerate(document.get("metrics", [])):
        name, value = metric.get("name"), metric.get("value")
        dimensions = metric.get("dimensions") or {}
        if not isinstance(name, str) or not name or len(name) > 255:
            raise MetricsError(f"metrics[{index}]: name {name!r} must be a string of 1-255 characters")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise MetricsError(f"metrics[{index}] ({name}): value {value!r} is not a finite number")
        if dimensions.get("Endpoint") != endpoint:
            raise MetricsError(
                f"metrics[{index}] ({name}): dimension Endpoint {dimensions.get('Endpoint')!r} is not {endpoint!r}"
            )
        unit = metric.get("unit", "None")
        if unit not in UNITS:
            raise MetricsError(f"metrics[{index}] ({name}): unit {unit!r}; use one of {', '.join(sorted(UNITS))}")
        entries.append(
            {
                "MetricName": name,
                "Dimensions": [{"Name": str(k), "Value": str(v)} for k, v in sorted(dimensions.items())],
                "Timestamp": timestamp,
                "Value": float(value),
                "Unit": unit,
            }
        )
    return entries


def batches(entries: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(entries), BATCH):
        yield entries[start : start + BATCH]


def publish(namespace: str, entries: list[dict[str, Any]]) -> int:
    cloudwatch = _client("cloudwatch")
    for batch in batches(entries):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=batch)
    return len(entries)


def quiet_window(*, endpoint: str, variants: list[str], window_end: str) -> list[dict[str, Any]]:
    """``records_analyzed`` 0 for each variant: a window without captured requests."""
    timestamp = parse_time(window_end)
    return [
        {
            "MetricName": "records_analyzed",
            "Dimensions": [
                {"Name": "Endpoint", "Value": endpoint},
                {"Name": "MonitoringType", "Value": "DataQuality"},
                {"Name": "Variant", "Value": variant},
            ],
            "Timestamp": timestamp,
            "Value": 0.0,
            "Unit": "Count",
        }
        for variant in variants
    ]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    namespace = os.environ["METRIC_NAMESPACE"]
    endpoint = os.environ["ENDPOINT_NAME"]
    mode = event.get("mode")
    if mode == "report":
        entries = metric_data(read_json(str(event["metrics_uri"])), namespace=namespace, endpoint=endpoint)
    elif mode == "skipped":
        status = str(event.get("status"))
        variants = [v for v in str(event.get("variants", "")).split(",") if v]
        entries = quiet_window(endpoint=endpoint, variants=variants, window_end=str(event["window_end"]))
        if status != "no_traffic":  # no endpoint yet: nothing was served, nothing to report
            entries = []
    else:
        raise MetricsError(f"mode {mode!r}: use 'report' (publish metrics.json) or 'skipped'")
    published = publish(namespace, entries)
    LOG.info(json.dumps({"event": "published", "mode": mode, "metrics": published, "namespace": namespace}))
    return {"published": published}
