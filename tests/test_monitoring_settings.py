"""[environments.monitoring]: defaults, the job's config document, and every refusal naming its field."""

from __future__ import annotations

import copy
import io
import json
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, MonitoringSettings, MonitoringThresholds, PlatformConfig, parse_config
from config.settings import DEFAULT_CONFIG_PATH
from platform_constructs.code_bundle import BundleError, build_flat_bundle, monitoring_bundle_files
from platform_constructs.model_monitor_schedules import model_monitor_schedule_expression
from platform_constructs.monitoring_assets import job_config_json
from platform_constructs.monitoring_pipeline import schedule_expression


def _raw() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_CONFIG_PATH.read_text())


def _with(env: str, section: dict[str, Any], thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = copy.deepcopy(_raw())
    target = next(e for e in raw["environments"] if e["name"] == env)
    monitoring = {**target.get("monitoring", {}), **section}
    if thresholds is not None:
        monitoring["thresholds"] = {**monitoring.get("thresholds", {}), **thresholds}
    target["monitoring"] = monitoring
    return raw


def test_staging_and_prod_are_monitored_and_dev_is_not(platform_config: PlatformConfig) -> None:
    assert not platform_config.environment("dev").monitoring.enabled  # serverless: no capture
    for env in ("staging", "prod"):
        settings = platform_config.environment(env).monitoring
        assert settings.enabled
        assert settings.backend == "platform"
        assert settings.schedule_hours == 1
        assert settings.metric_namespace == "MLPlatform/ModelMonitoring"


def test_the_job_config_carries_the_thresholds_under_monitor_py_keys() -> None:
    thresholds = MonitoringThresholds(
        drift_threshold=0.2, max_auc_drop=0.03, min_auc=0.7, retrain_on=("model_quality",)
    )
    document = thresholds.job_config()
    assert document["drift_threshold"] == 0.2
    assert document["model_quality"] == {"min_labelled": 1000, "max_drop": {"auc": 0.03}, "minimum": {"auc": 0.7}}
    assert document["retrain_on"] == ["model_quality"]
    assert MonitoringThresholds().job_config()["model_quality"]["minimum"] == {"auc": None}  # 0: no floor
    settings = MonitoringSettings(thresholds=thresholds)
    assert job_config_json(settings) == job_config_json(settings)  # same bytes, same asset hash
    assert json.loads(job_config_json(settings)) == document


def test_schedules_of_both_backends() -> None:
    hourly = MonitoringSettings()
    assert schedule_expression(hourly) == "cron(15 * * * ? *)"
    assert model_monitor_schedule_expression(hourly) == "cron(0 * ? * * *)"
    six = MonitoringSettings(schedule_hours=6, window_hours=6, start_minute=5, max_runtime_seconds=3600)
    assert schedule_expression(six) == "cron(5 0/6 * * ? *)"
    assert model_monitor_schedule_expression(six) == "cron(0 0/6 ? * * *)"
    daily = MonitoringSettings(schedule_hours=24, window_hours=24)
    assert model_monitor_schedule_expression(daily) == "cron(0 0 ? * * *)"


@pytest.mark.parametrize(
    ("env", "section", "thresholds", "field", "message"),
    [
        ("dev", {"enabled": True}, None, "enabled", "serverless endpoint captures no requests"),
        ("prod", {"enabled": False}, None, "enabled", "every endpoint with data capture is monitored"),
        ("prod", {"backend": "clarify"}, None, "backend", "must be one of"),
        ("prod", {"schedule_hours": 5}, None, "schedule_hours", "divisor of 24"),
        ("prod", {"start_minute": 60}, None, "start_minute", "0-59"),
        ("prod", {"schedule_hours": 2, "max_runtime_seconds": 3600}, None, "window_hours", "at least schedule_hours"),
        ("prod", {"backend": "model_monitor", "window_hours": 3}, None, "window_hours", "Model Monitor reads"),
        ("prod", {"label_delay_hours": 400}, None, "label_delay_hours", "between 0 and 336"),
        ("prod", {"retrain_cooldown_hours": 0}, None, "retrain_cooldown_hours", "between 1 and 2160"),
        ("prod", {"alarm_after_runs": 200}, None, "alarm_after_runs", "at most 7 days"),
        ("prod", {"instance_type": "ml.g5.xlarge"}, None, "instance_type", "CPU family without local NVMe"),
        ("prod", {"instance_type": "ml.m5d.xlarge"}, None, "instance_type", "refuses a volume KMS key"),
        ("prod", {"instance_type": "m5.xlarge"}, None, "instance_type", "ml.<family>.<size>"),
        ("prod", {"max_runtime_seconds": 7200}, None, "max_runtime_seconds", "before the next one starts"),
        ("prod", {"metric_namespace": "AWS/SageMaker"}, None, "metric_namespace", "reserved by AWS"),
        ("prod", {}, {"retrain_on": ["data_integrity"]}, "thresholds.retrain_on", "never retrained on"),
        ("prod", {}, {"retrain_on": ["drift"]}, "thresholds.retrain_on[0]", "unknown category"),
        ("prod", {}, {"retrain_on": ["data_drift", "data_drift"]}, "thresholds.retrain_on", "twice"),
        ("prod", {}, {"drift_threshold": 0}, "thresholds.drift_threshold", "above 0"),
        ("prod", {}, {"max_auc_drop": 1.5}, "thresholds.max_auc_drop", "between 0 and 1"),
        ("prod", {}, {"drift_alpha": 0.9}, "thresholds.drift_alpha", "significance level"),
        ("prod", {}, {"prediction_threshold": 1}, "thresholds.prediction_threshold", "between 0 and 1"),
        ("prod", {}, {"bias_max_di_ratio": 0.8}, "thresholds.bias_max_di_ratio", "must be above 1"),
        ("prod", {}, {"min_labelled": 5}, "thresholds.min_labelled", "between 10"),
        ("prod", {}, {"unknown_key": 1}, "thresholds.unknown_key", "unknown setting"),
    ],
)
def test_bad_monitoring_settings_are_refused_naming_the_field(
    env: str, section: dict[str, Any], thresholds: dict[str, Any] | None, field: str, message: str
) -> None:
    index = {"dev": 0, "staging": 1, "prod": 2}[env]
    with pytest.raises(ConfigError) as caught:
        parse_config(_with(env, section, thresholds))
    assert caught.value.field_path == f"environments[{index}].monitoring.{field}"
    assert message in str(caught.value)


def test_the_platform_job_has_inputs_for_at_most_five_variants() -> None:
    raw = _with("prod", {})
    prod = raw["environments"][2]
    prod["serving"]["variants"] = [{"name": f"V{i}", "weight": 1.0} for i in range(6)]
    prod["serving"]["shadow_variant"] = False  # a shadow takes exactly one production variant
    with pytest.raises(ConfigError, match="at most 5 variants") as caught:
        parse_config(raw)
    assert caught.value.field_path == "environments[2].monitoring.backend"
    prod["monitoring"]["backend"] = "model_monitor"  # one schedule per endpoint, whatever the variants
    parse_config(raw)


# --- the monitoring code bundle (built from a fixture folder: the real one is monitoring_code/) -------


def _fixture(tmp_path: Path) -> tuple[Path, Path]:
    code, training = tmp_path / "monitoring_code", tmp_path / "training_code"
    code.mkdir()
    training.mkdir()
    for name in ("monitor.py", "baseline.py", "helpers.py"):
        (code / name).write_text(f"# {name}\n")
    (code / "CONTRACT.md").write_text("not code")
    (code / "notes.txt").write_text("not code")
    for name in ("feature_schema.py", "feature_schema.json", "train.py"):
        (training / name).write_text(f"# {name}\n")
    return code, training


def test_the_monitoring_bundle_is_flat_deterministic_and_carries_the_schema(tmp_path: Path) -> None:
    code, training = _fixture(tmp_path)
    files = monitoring_bundle_files(code, training)
    first, second = build_flat_bundle(files), build_flat_bundle(list(reversed(files)))
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        members = archive.getmembers()
        names = [m.name for m in members]
        assert archive.extractfile("feature_schema.json").read() == b"# feature_schema.json\n"  # type: ignore[union-attr]
    assert names == sorted(["baseline.py", "feature_schema.json", "feature_schema.py", "helpers.py", "monitor.py"])
    assert {m.mtime for m in members} == {0}
    assert {(m.uid, m.gid, m.mode) for m in members} == {(0, 0, 0o644)}


def test_the_monitoring_bundle_refuses_what_it_cannot_build(tmp_path: Path) -> None:
    code, training = _fixture(tmp_path)
    with pytest.raises(BundleError, match="does not exist"):
        monitoring_bundle_files(tmp_path / "missing", training)
    (training / "feature_schema.json").unlink()
    with pytest.raises(BundleError, match=r"feature_schema\.json is missing"):
        monitoring_bundle_files(code, training)
    (code / "feature_schema.py").write_text("# a second schema module\n")
    with pytest.raises(BundleError, match="would both land"):
        build_flat_bundle([code / "feature_schema.py", training / "feature_schema.py"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match=r"holds no \.py file"):
        monitoring_bundle_files(empty, training)
