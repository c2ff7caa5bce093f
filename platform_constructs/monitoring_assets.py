"""The monitoring code and configuration as CDK file assets, shared by the training pipeline (whose
baseline step runs ``baseline.py``) and the monitoring pipeline (``monitor.py``)."""

from __future__ import annotations

import json

from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from config import MonitoringSettings
from platform_constructs.code_bundle import content_addressed_file, monitoring_code_bundle

JOB_CONFIG_NAME = "monitoring.json"


def job_config_json(settings: MonitoringSettings) -> bytes:
    """The ``--config`` document of monitor.py and baseline.py: the environment's thresholds, as bytes
    that only change when a threshold does."""
    return (json.dumps(settings.thresholds.job_config(), indent=2, sort_keys=True) + "\n").encode()


def monitoring_code_asset(scope: Construct, id_: str) -> s3_assets.Asset:
    return s3_assets.Asset(scope, id_, path=str(monitoring_code_bundle()))


def job_config_asset(scope: Construct, id_: str, settings: MonitoringSettings) -> s3_assets.Asset:
    return s3_assets.Asset(scope, id_, path=str(content_addressed_file(job_config_json(settings), JOB_CONFIG_NAME)))
