"""Bad config is a clear error that names the field, the bad value and what is allowed."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, load_config, parse_config
from config.settings import DEFAULT_CONFIG_PATH, INTERFACE_ENDPOINT_SERVICES, is_gpu_instance

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def raw() -> dict[str, Any]:
    """The shipped config as parsed TOML, for each test to break in one place."""
    return tomllib.loads(DEFAULT_CONFIG_PATH.read_text())


def env(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in raw["environments"] if e["name"] == name)


def error_of(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value


def test_shipped_config_is_valid_and_frozen() -> None:
    config = load_config()
    assert config.environment_names == ("dev", "staging", "prod")
    prod = config.environment("prod")
    assert prod.retain_data
    assert not config.environment("dev").retain_data
    assert len(prod.availability_zones) >= 2
    assert prod.network.interface_endpoints == INTERFACE_ENDPOINT_SERVICES
    with pytest.raises(AttributeError):
        prod.account = "000000000000"  # type: ignore[misc]


def test_unknown_environment_is_an_error_never_a_fallback() -> None:
    config = load_config()
    with pytest.raises(ConfigError) as caught:
        config.environment("qa")
    message = str(caught.value)
    assert "'qa'" in message
    assert "unknown environment" in message
    assert "dev, staging, prod" in message


@pytest.mark.parametrize(
    ("account", "hint"),
    [("12345678901", "12-digit"), ("12345678901a", "12-digit"), (123456789012, "quote it")],
)
def test_malformed_account_id(raw: dict[str, Any], account: object, hint: str) -> None:
    env(raw, "staging")["account"] = account
    error = error_of(raw)
    assert error.field_path == "environments[1].account"
    assert repr(account) in str(error)
    assert hint in str(error)


def test_availability_zone_of_another_region(raw: dict[str, Any]) -> None:
    env(raw, "prod")["availability_zones"] = ["eu-west-1a", "eu-central-1b"]
    error = error_of(raw)
    assert error.field_path == "environments[2].availability_zones[1]"
    assert "'eu-central-1b'" in str(error)
    assert "not an availability zone of region 'eu-west-1'" in str(error)
    assert "eu-west-1a, eu-west-1b" in str(error)


def test_unknown_region(raw: dict[str, Any]) -> None:
    env(raw, "dev")["region"] = "eu-wset-1"
    error = error_of(raw)
    assert error.field_path == "environments[0].region"
    assert "'eu-wset-1'" in str(error)
    assert "eu-west-1" in str(error)


def test_one_availability_zone_is_not_enough(raw: dict[str, Any]) -> None:
    env(raw, "dev")["availability_zones"] = ["eu-west-1a"]
    error = error_of(raw)
    assert error.field_path == "environments[0].availability_zones"
    assert "at least 2" in str(error)


def test_overlapping_cidrs(raw: dict[str, Any]) -> None:
    env(raw, "prod")["network"]["vpc_cidr"] = "10.10.128.0/17"  # inside dev's 10.10.0.0/16
    error = error_of(raw)
    assert error.field_path == "environments[2].network.vpc_cidr"
    assert "'10.10.128.0/17'" in str(error)
    assert "overlaps dev's 10.10.0.0/16" in str(error)


@pytest.mark.parametrize(
    ("cidr", "problem"),
    [
        ("10.20.0.0/33", "not a valid IPv4 network"),
        ("10.20.0.1/16", "not a valid IPv4 network"),  # host bits set
        ("banana", "not a valid IPv4 network"),
        ("8.8.0.0/16", "private range"),
        ("10.16.0.0/12", "between /16 and /24"),
    ],
)
def test_invalid_cidr(raw: dict[str, Any], cidr: str, problem: str) -> None:
    env(raw, "staging")["network"]["vpc_cidr"] = cidr
    error = error_of(raw)
    assert error.field_path == "environments[1].network.vpc_cidr"
    assert repr(cidr) in str(error)
    assert problem in str(error)


def test_subnets_must_fit_one_per_zone(raw: dict[str, Any]) -> None:
    staging = env(raw, "staging")
    staging["network"]["vpc_cidr"] = "10.20.0.0/24"
    staging["network"]["subnet_prefix_length"] = 25  # two /25 in a /24, three zones
    error = error_of(raw)
    assert error.field_path == "environments[1].network.subnet_prefix_length"
    assert "holds only 2 subnets" in str(error)


@pytest.mark.parametrize(
    ("instance_type", "problem"),
    [
        ("ml.x9.large", "unknown instance family 'x9'"),
        ("ml.inf2.xlarge", "unknown instance family 'inf2'"),
        ("m5.large", "must look like ml.<family>.<size>"),
        ("ml.m5.huge", "unknown instance size 'huge'"),
    ],
)
def test_unknown_instance_type(raw: dict[str, Any], instance_type: str, problem: str) -> None:
    env(raw, "prod")["serving"]["instance_type"] = instance_type
    error = error_of(raw)
    assert error.field_path == "environments[2].serving.instance_type"
    assert repr(instance_type) in str(error)
    assert problem in str(error)
    if problem.startswith("unknown instance family"):
        assert "m5" in str(error)
        assert "g5" in str(error)  # the allowed families are listed


def test_duplicate_environment_names(raw: dict[str, Any]) -> None:
    duplicate = copy.deepcopy(env(raw, "staging"))
    duplicate["network"]["vpc_cidr"] = "10.40.0.0/16"
    raw["environments"].append(duplicate)
    error = error_of(raw)
    assert error.field_path == "environments[3].name"
    assert "'staging'" in str(error)
    assert "duplicate environment name (already used by environments[1])" in str(error)


def test_destroy_is_refused_for_prod(raw: dict[str, Any]) -> None:
    env(raw, "prod")["removal_policy"] = "destroy"
    error = error_of(raw)
    assert error.field_path == "environments[2].removal_policy"
    assert "use 'retain'" in str(error)


def test_removal_policy_must_be_known(raw: dict[str, Any]) -> None:
    env(raw, "dev")["removal_policy"] = "snapshot"
    error = error_of(raw)
    assert "one of 'retain', 'destroy'" in str(error)


def test_misspelt_setting_is_rejected(raw: dict[str, Any]) -> None:
    env(raw, "dev")["network"]["vpc_cdir"] = "10.10.0.0/16"
    error = error_of(raw)
    assert error.field_path == "environments[0].network.vpc_cdir"
    assert "unknown setting" in str(error)
    assert "vpc_cidr" in str(error)  # the allowed names are listed


def test_missing_required_setting(raw: dict[str, Any]) -> None:
    del env(raw, "dev")["account"]
    error = error_of(raw)
    assert error.field_path == "environments[0].account"
    assert "missing required setting" in str(error)


def test_wrong_type(raw: dict[str, Any]) -> None:
    env(raw, "dev")["data"]["capture_expiry_days"] = "thirty"
    error = error_of(raw)
    assert error.field_path == "environments[0].data.capture_expiry_days"
    assert "must be an integer" in str(error)


def test_log_retention_must_be_a_cloudwatch_value(raw: dict[str, Any]) -> None:
    env(raw, "dev")["network"]["flow_log_retention_days"] = 100
    error = error_of(raw)
    assert "CloudWatch Logs accepts only" in str(error)
    assert "365" in str(error)


def test_unknown_interface_endpoint(raw: dict[str, Any]) -> None:
    env(raw, "dev")["network"]["interface_endpoints"] = ["sts", "sagemaker.apii"]
    error = error_of(raw)
    assert error.field_path == "environments[0].network.interface_endpoints[1]"
    assert "sagemaker.api" in str(error)


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "environments.toml"
    path.write_text(DEFAULT_CONFIG_PATH.read_text().replace('account = "444444444444"', 'account = "4444"'))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: environments[2].account = '4444'")


def test_load_config_reports_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "environments.toml"
    path.write_text("project = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(path)


def test_gpu_families_are_recognised() -> None:
    assert is_gpu_instance("ml.g5.2xlarge")
    assert not is_gpu_instance("ml.m5.2xlarge")


def test_app_refuses_an_unknown_environment_before_synth(tmp_path: Path) -> None:
    """`cdk synth -c env=qa` ends with a one-line error, not a traceback or a fallback."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    environment["CDK_CONTEXT_JSON"] = json.dumps({"env": "qa"})
    environment["CDK_OUTDIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "app.py"], check=False, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "Configuration error: env = 'qa': unknown environment; choose one of dev, staging, prod" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.template.json"))


@pytest.mark.parametrize(
    ("training", "field", "message"),
    [
        ({"instance_type": "ml.m5.xlarge", "device": "cuda"}, "device", "ml.m5.xlarge has no GPU"),
        ({"instance_type": "ml.g5.2xlarge", "device": "cpu"}, "device", "is a GPU instance"),
        (
            {"max_runtime_seconds": 7200, "max_wait_seconds": 3600},
            "max_wait_seconds",
            "must be at least max_runtime_seconds",
        ),
        ({"schedule": "every monday"}, "schedule", "cron(...) or rate(...)"),
        ({"auc_threshold": 0.4}, "auc_threshold", "at least 0.5"),
        (
            {"tuning": {"enabled": True, "max_jobs": 4, "max_parallel_jobs": 8}},
            "tuning.max_parallel_jobs",
            "max_jobs (4)",
        ),
        ({"source": "offline_store"}, "source", "must be one of 'feature_store', 'raw'"),
        ({"labels_dataset": "labels/2026"}, "labels_dataset", "s3://<raw bucket>/labels/<labels_dataset>/"),
        ({"labels_dataset": ""}, "labels_dataset", "must be 1-100 letters"),
    ],
)
def test_bad_training_settings(raw: dict[str, Any], training: dict[str, Any], field: str, message: str) -> None:
    env(raw, "dev")["training"].update(training)
    error = error_of(raw)
    assert error.field_path == f"environments[0].training.{field}"
    assert message in str(error)


@pytest.mark.parametrize(
    ("source", "missing", "problem"),
    [
        ("feature_store", "athena", "lacks 'athena': training.source = 'feature_store' queries the offline store"),
        ("raw", "sagemaker.api", "lacks 'sagemaker.api': the batch starter starts the ingestion and training"),
    ],
)
def test_training_data_needs_its_endpoints(raw: dict[str, Any], source: str, missing: str, problem: str) -> None:
    dev = env(raw, "dev")
    dev["training"]["source"] = source
    dev["network"]["interface_endpoints"] = [s for s in INTERFACE_ENDPOINT_SERVICES if s != missing]
    error = error_of(raw)
    assert error.field_path == "environments[0].network.interface_endpoints"
    assert problem in str(error)


def test_a_raw_environment_may_drop_the_athena_endpoints(raw: dict[str, Any]) -> None:
    dev = env(raw, "dev")
    dev["training"]["source"] = "raw"
    dev["network"]["interface_endpoints"] = [s for s in INTERFACE_ENDPOINT_SERVICES if s not in ("athena", "glue")]
    assert parse_config(raw).environment("dev").network.interface_endpoints


def test_staging_and_prod_train_from_the_feature_store_and_a_new_environment_from_raw(raw: dict[str, Any]) -> None:
    config = load_config()
    for name in ("staging", "prod"):
        assert config.environment(name).training.source == "feature_store"
    # An environment that does not choose starts from the raw files (empty feature store, no labels yet).
    del env(raw, "dev")["training"]["source"]
    assert parse_config(raw).environment("dev").training.source == "raw"


def test_every_known_region_has_the_images_the_platform_pulls() -> None:
    from config.settings import KNOWN_REGIONS
    from platform_constructs.images import model_monitor_image, xgboost_image

    for region in KNOWN_REGIONS:
        assert xgboost_image(region, "training").endswith("/sagemaker-xgboost:3.2-0")
        assert xgboost_image(region, "inference").startswith(xgboost_image(region).split(".")[0])
        assert model_monitor_image(region).endswith("/sagemaker-model-monitor-analyzer:latest")


@pytest.mark.parametrize(
    ("feature_store", "field", "message"),
    [
        ({"storage_type": "InMemory"}, "storage_type", "does not replicate to the offline store"),
        ({"storage_type": "Fast"}, "storage_type", "must be one of 'Standard', 'InMemory'"),
        ({"ttl_days": 5000}, "ttl_days", "0 (no expiry) to 3650 days"),
        ({"online_store": False}, "ttl_days", "applies to the online store"),
        ({"throughput_mode": "Provisioned"}, "read_capacity_units", "needs 1 to 10,000,000 units"),
        ({"write_capacity_units": 5}, "write_capacity_units", "only applies when throughput_mode = 'Provisioned'"),
        ({"group_version": 0}, "group_version", "must be 1 to 999"),
        ({"ingest_max_reject_fraction": 1.5}, "ingest_max_reject_fraction", "between 0 and 1"),
        ({"allow_replacment": True}, "allow_replacment", "unknown setting"),
    ],
)
def test_bad_feature_store_settings(
    raw: dict[str, Any], feature_store: dict[str, Any], field: str, message: str
) -> None:
    env(raw, "dev")["feature_store"].update(feature_store)
    error = error_of(raw)
    assert error.field_path == f"environments[0].feature_store.{field}"
    assert message in str(error)


def test_provisioned_throughput_with_units_is_accepted(raw: dict[str, Any]) -> None:
    env(raw, "prod")["feature_store"].update(
        {"throughput_mode": "Provisioned", "read_capacity_units": 100, "write_capacity_units": 50}
    )
    settings = parse_config(raw).environment("prod").feature_store
    assert (settings.read_capacity_units, settings.write_capacity_units) == (100, 50)


def test_shipped_promotion_deploys_in_order_and_offers_stagings_models_to_prod() -> None:
    config = load_config()
    promotion = config.promotion
    assert promotion is not None
    assert promotion.environments == ("dev", "staging", "prod")
    assert promotion.manual_approval_before == ("prod",)
    assert (promotion.promote_models_from, promotion.promote_models_to) == ("staging", "prod")
    # prod serves the models staging validated; it does not train its own.
    assert [e.training.enabled for e in config.environments] == [True, True, False]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            {"connection_arn": "arn:aws:codeconnections:eu-west-1:111111111111:connection/abc"},
            "connection_arn",
            "must be the ARN of a CodeConnections connection",
        ),
        (
            {
                "connection_arn": "arn:aws:codeconnections:eu-west-1:222222222222:connection/"
                + "0" * 8
                + "-0000-0000-0000-"
                + "0" * 12
            },
            "connection_arn",
            "belongs to account 222222222222; the pipeline runs in the tooling account 111111111111",
        ),
        ({"repository": "ml-platform"}, "repository", "must be owner/name"),
        ({"branch": "main branch"}, "branch", "must be a branch name"),
        ({"environments": []}, "environments", "name the environments the pipeline deploys"),
        ({"environments": ["dev", "qa"]}, "environments[1]", "unknown environment; choose from dev, staging, prod"),
        ({"environments": ["dev", "dev"]}, "environments", "lists an environment twice"),
        ({"manual_approval_before": ["qa"]}, "manual_approval_before[0]", "not deployed by the pipeline"),
        ({"smoke_test_latency_ms": 0}, "smoke_test_latency_ms", "between 1 and 60000"),
        ({"smoke_test_rows": 500}, "smoke_test_rows", "between 1 and 100"),
        ({"promote_models_to": ""}, "promote_models_to", "set both promote_models_from and promote_models_to"),
        ({"promote_models_to": "staging"}, "promote_models_to", "must differ from promote_models_from"),
        ({"promote_models_from": "qa"}, "promote_models_from", "unknown environment"),
        ({"promote_models_from": "prod", "promote_models_to": "staging"}, "promote_models_from", "trains no models"),
        ({"smoke_tests": True}, "smoke_tests", "unknown setting"),
    ],
)
def test_bad_promotion_settings(raw: dict[str, Any], change: dict[str, Any], field: str, message: str) -> None:
    raw["promotion"].update(change)
    error = error_of(raw)
    assert error.field_path == f"promotion.{field}"
    assert message in str(error)


def test_models_are_promoted_within_one_region(raw: dict[str, Any]) -> None:
    prod = env(raw, "prod")
    prod["region"] = "eu-central-1"
    prod["availability_zones"] = ["eu-central-1a", "eu-central-1b"]
    error = error_of(raw)
    assert error.field_path == "promotion.promote_models_to"
    assert "reach S3 and SageMaker of their own region only" in str(error)


def test_an_environment_that_neither_trains_nor_receives_models_is_refused(raw: dict[str, Any]) -> None:
    env(raw, "staging")["training"]["enabled"] = False
    raw["promotion"]["promote_models_from"] = "dev"
    error = error_of(raw)
    assert error.field_path == "environments[1].training.enabled"
    assert "staging would neither train models nor receive promoted ones" in str(error)


def test_without_promotion_every_environment_trains(raw: dict[str, Any]) -> None:
    del raw["promotion"]
    error = error_of(raw)
    assert error.field_path == "environments[2].training.enabled"
    env(raw, "prod")["training"]["enabled"] = True
    assert parse_config(raw).promotion is None


def test_promotion_without_model_promotion_is_allowed(raw: dict[str, Any]) -> None:
    raw["promotion"].update({"promote_models_from": "", "promote_models_to": ""})
    env(raw, "prod")["training"]["enabled"] = True
    promotion = parse_config(raw).promotion
    assert promotion is not None
    assert not promotion.promotes_models
