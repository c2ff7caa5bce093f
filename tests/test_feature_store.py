"""The feature group and what surrounds it: stores, catalog, roles, ingestion pipeline, replacement guard."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from aws_cdk import Validations
from botocore.validate import ParamValidator

from app import add_environments, create_app
from config import PlatformConfig
from policy.feature_group_guard import (
    CREATE_ONLY_PROPERTIES,
    FeatureGroupGuard,
    feature_groups,
    identity,
    load_lock,
    replacement_problems,
)
from tests.conftest import Synthesized, resources_of_type
from tests.test_training_pipeline import _condition_keys, _denies, _fill, definition

ENVS = ["dev", "staging", "prod"]
SAGEMAKER_API = botocore.session.get_session().get_service_model("sagemaker")


def the_feature_group(synthesized: Synthesized, env: str) -> dict[str, Any]:
    (group,) = resources_of_type(synthesized.template(env, "Data"), "AWS::SageMaker::FeatureGroup").values()
    return group


def data_key_ref(synthesized: Synthesized, env: str) -> dict[str, Any]:
    (key_id,) = [k for k in resources_of_type(synthesized.template(env, "Data"), "AWS::KMS::Key") if "DataKey" in k]
    return {"Fn::GetAtt": [key_id, "Arn"]}


@pytest.mark.parametrize("env", ENVS)
def test_feature_group_has_both_stores_encrypted_iceberg_and_ttl(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env).feature_store
    account = platform_config.environment(env).account
    group = the_feature_group(synthesized, env)
    props = group["Properties"]
    key = data_key_ref(synthesized, env)
    assert props["FeatureGroupName"] == f"churn-{env}-customers-v{settings.group_version}"
    online = props["OnlineStoreConfig"]
    assert online["EnableOnlineStore"] is True
    assert online["StorageType"] == "Standard"
    assert online["SecurityConfig"] == {"KmsKeyId": key}
    assert online["TtlDuration"] == {"Unit": "Days", "Value": settings.ttl_days}
    offline = props["OfflineStoreConfig"]
    assert offline["TableFormat"] == "Iceberg"
    assert offline["S3StorageConfig"] == {
        "S3Uri": f"s3://churn-{env}-features-{account}-eu-west-1/offline-store",
        "KmsKeyId": key,
    }
    assert offline["DataCatalogConfig"] == {
        "Catalog": "AwsDataCatalog",
        "Database": f"churn_{env}_features",
        "TableName": f"customers_v{settings.group_version}",
    }
    assert props["ThroughputConfig"] == {"ThroughputMode": settings.throughput_mode}
    kept = "Retain" if env != "dev" else "Delete"
    assert group["DeletionPolicy"] == group["UpdateReplacePolicy"] == kept
    (database,) = resources_of_type(synthesized.template(env, "Data"), "AWS::Glue::Database").values()
    assert database["Properties"]["DatabaseInput"]["Name"] == f"churn_{env}_features"
    assert database["DeletionPolicy"] == kept


@pytest.mark.parametrize("env", ENVS)
def test_offline_store_role_touches_its_prefix_database_and_table_only(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    template = synthesized.template(env, "Data")
    account = platform_config.environment(env).account
    role_id = the_feature_group(synthesized, env)["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    role = template["Resources"][role_id]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    (policy,) = [
        p
        for p in resources_of_type(template, "AWS::IAM::ManagedPolicy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    bucket = f"arn:aws:s3:::churn-{env}-features-{account}-eu-west-1"
    glue = f"arn:aws:glue:eu-west-1:{account}"
    allowed = {
        bucket,
        f"{bucket}/offline-store/*",
        f"{glue}:catalog",
        f"{glue}:database/churn_{env}_features",
        f"{glue}:table/churn_{env}_features/customers_v1",
        json.dumps(data_key_ref(synthesized, env)),
    }
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert {r if isinstance(r, str) else json.dumps(r) for r in resources} <= allowed, statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions)


@pytest.mark.parametrize("env", ENVS)
def test_athena_workgroup_encrypts_and_enforces_its_results(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    (workgroup,) = resources_of_type(synthesized.template(env, "Data"), "AWS::Athena::WorkGroup").values()
    config = workgroup["Properties"]["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    results = config["ResultConfiguration"]
    assert results["EncryptionConfiguration"] == {
        "EncryptionOption": "SSE_KMS",
        "KmsKey": data_key_ref(synthesized, env),
    }
    account = platform_config.environment(env).account
    assert results["OutputLocation"] == f"s3://churn-{env}-processed-{account}-eu-west-1/athena-results/"
    assert config["BytesScannedCutoffPerQuery"] > 0


@pytest.mark.parametrize("env", ENVS)
def test_the_feature_store_runtime_is_reachable_from_the_isolated_subnets(synthesized: Synthesized, env: str) -> None:
    endpoints = resources_of_type(synthesized.template(env, "Network"), "AWS::EC2::VPCEndpoint").values()
    services = {json.dumps(e["Properties"]["ServiceName"]) for e in endpoints}
    assert any("sagemaker.featurestore-runtime" in s for s in services), services


# --- the ingestion pipeline ----------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_ingestion_step_is_a_valid_processing_job_writing_to_this_environments_group(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    ingestion = definition(synthesized, env, "ingest-features")
    (step,) = ingestion["Steps"]
    assert step["Name"] == "IngestFeatures"
    args = step["Arguments"]
    shape = SAGEMAKER_API.operation_model("CreateProcessingJob").input_shape
    request = {**_fill(args, shape), "ProcessingJobName": "pipeline-named"}
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    arguments = args["AppSpecification"]["ContainerArguments"]
    group_name = the_feature_group(synthesized, env)["Properties"]["FeatureGroupName"]
    assert arguments[arguments.index("--feature-group") + 1] == group_name
    fraction = platform_config.environment(env).feature_store.ingest_max_reject_fraction
    assert float(arguments[arguments.index("--max-reject-fraction") + 1]) == fraction
    assert "ingest.py" in " ".join(args["AppSpecification"]["ContainerEntrypoint"])
    network = args["NetworkConfig"]
    assert network["EnableNetworkIsolation"] is False  # it calls the Feature Store runtime
    assert network["EnableInterContainerTrafficEncryption"] is True
    assert len(network["VpcConfig"]["Subnets"]) >= 2
    assert {p["Name"]: p["DefaultValue"] for p in ingestion["Parameters"]}["InputDataUri"].endswith(
        f"-raw-{platform_config.environment(env).account}-eu-west-1/churn/"
    )


@pytest.mark.parametrize("env", ENVS)
def test_ingestion_guardrails_let_its_job_through_and_still_deny_unencrypted_jobs(
    synthesized: Synthesized, env: str
) -> None:
    template = synthesized.template(env, "Training")
    guardrails = [
        p
        for k, p in resources_of_type(template, "AWS::IAM::ManagedPolicy").items()
        if k.startswith("FeatureIngestionGuardrails")
    ]
    assert len(guardrails) == 2  # the guardrails and their storage and instance-type half
    statements = [
        s
        for policy in guardrails
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "sagemaker:CreateProcessingJob" in s["Action"]
    ]
    ingestion = definition(synthesized, env, "ingest-features")
    (step,) = ingestion["Steps"]
    keys = _condition_keys(step, {p["Name"]: p for p in ingestion["Parameters"]})
    action = "sagemaker:CreateProcessingJob"
    assert not [s["Sid"] for s in statements if _denies(s, action, keys)]
    for unsafe in ({"sagemaker:InterContainerTrafficEncryption": False}, {"sagemaker:VpcSubnets": None}):
        assert any(_denies(s, action, {**keys, **unsafe}) for s in statements), unsafe


@pytest.mark.parametrize("env", ENVS)
def test_only_the_ingestion_role_writes_features_and_only_to_this_group(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    account = platform_config.environment(env).account
    group_arn = f"arn:aws:sagemaker:eu-west-1:{account}:feature-group/churn-{env}-customers-v1"
    writers = {}
    for stack in ("Data", "Network", "Training", "Serving"):
        for name, policy in resources_of_type(synthesized.template(env, stack), "AWS::IAM::ManagedPolicy").items():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if statement["Effect"] == "Allow" and any(
                    a.startswith("sagemaker:") and "Record" in a for a in actions
                ):
                    writers[name] = statement
    assert list(writers) == [next(n for n in writers if n.startswith("FeatureIngestionIngestionRole"))]
    (statement,) = writers.values()
    assert sorted(statement["Action"]) == ["sagemaker:DescribeFeatureGroup", "sagemaker:PutRecord"]
    assert statement["Resource"] == group_arn


# --- the replacement guard -----------------------------------------------------------------------------


def _cloudformation_create_only() -> set[str]:
    """``createOnlyProperties`` of AWS::SageMaker::FeatureGroup in the resource schema cfn-lint ships."""
    import cfnlint

    schemas = Path(cfnlint.__file__).parent / "data" / "schemas"
    index = json.loads((schemas / "providers" / "us-east-1.json").read_text())
    schema = json.loads((schemas / "resources" / f"{index['AWS::SageMaker::FeatureGroup']}.json").read_text())
    return {path.removeprefix("/properties/").replace("/", ".") for path in schema["createOnlyProperties"]}


def test_guarded_properties_are_cloudformations_create_only_properties() -> None:
    assert set(CREATE_ONLY_PROPERTIES) == _cloudformation_create_only()


def test_the_lock_records_what_synthesizes(synthesized: Synthesized) -> None:
    current = {}
    for path in synthesized.template_paths.values():
        for _logical_id, key, _allow, found in feature_groups(json.loads(path.read_text())):
            current[key] = found
    assert set(current) == {f"{env}/customers" for env in ENVS}
    lock = load_lock()
    stale = sorted(key for key in current if lock.get(key) != current[key])
    assert not stale, f"config/feature_groups.lock.json is out of date for {stale}: run `make feature-group-lock`"


LOCKED = identity(
    {
        "FeatureGroupName": "churn-prod-customers-v1",
        "RecordIdentifierFeatureName": "customer_id",
        "EventTimeFeatureName": "event_time",
        "OnlineStoreConfig": {
            "EnableOnlineStore": True,
            "StorageType": "Standard",
            "SecurityConfig": {"KmsKeyId": "k"},
        },
        "OfflineStoreConfig": {"TableFormat": "Iceberg"},
        "RoleArn": "r",
        "Description": "d",
        "Tags": [{"Key": "Owner", "Value": "a"}],
        "FeatureDefinitions": [
            {"FeatureName": "customer_id", "FeatureType": "String"},
            {"FeatureName": "event_time", "FeatureType": "String"},
            {"FeatureName": "tenure", "FeatureType": "Integral"},
        ],
    }
)


def changed(**changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(LOCKED))
    result.update(changes)
    return result


def test_safe_changes_pass() -> None:
    added = changed(FeatureDefinitions={**LOCKED["FeatureDefinitions"], "age": "Integral"})
    assert replacement_problems("prod/customers", LOCKED, added, allow=False) == []
    assert replacement_problems("prod/customers", LOCKED, LOCKED, allow=False) == []
    assert replacement_problems("prod/customers", None, LOCKED, allow=False) == []  # a new group


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"OnlineStoreConfig.StorageType": "InMemory"}, 'OnlineStoreConfig.StorageType "Standard" -> "InMemory"'),
        ({"Tags": [{"Key": "Owner", "Value": "b"}]}, "Tags"),
        ({"Description": "new words"}, 'Description "d" -> "new words"'),
        ({"FeatureDefinitions": {"customer_id": "String", "event_time": "String"}}, "feature tenure removed"),
        (
            {"FeatureDefinitions": {"customer_id": "String", "event_time": "String", "tenure": "Fractional"}},
            "feature tenure Integral -> Fractional",
        ),
    ],
)
def test_a_change_in_place_is_refused_naming_the_property(change: dict[str, Any], named: str) -> None:
    for allow in (False, True):  # allowing a replacement does not help while the name stays
        (problem,) = replacement_problems("prod/customers", LOCKED, changed(**change), allow=allow)
        assert named in problem
        assert "cannot change in place" in problem
        assert "group_version" in problem


def test_a_new_group_version_is_a_replacement_that_must_be_allowed() -> None:
    bumped = changed(FeatureGroupName="churn-prod-customers-v2", Description="v2")
    (problem,) = replacement_problems("prod/customers", LOCKED, bumped, allow=False)
    assert "churn-prod-customers-v1 -> churn-prod-customers-v2" in problem
    assert "allow_replacement = true for prod" in problem
    assert replacement_problems("prod/customers", LOCKED, bumped, allow=True) == []


def _synth_prod(platform_config: PlatformConfig, tmp_path: Path, **feature_store: Any) -> tuple[bool, str]:
    """Synthesize prod with changed feature-store settings and the guard as the only plugin."""
    env = platform_config.environment("prod")
    settings = dataclasses.replace(env.feature_store, **feature_store)
    config = dataclasses.replace(
        platform_config,
        environments=tuple(
            dataclasses.replace(e, feature_store=settings) if e.name == "prod" else e
            for e in platform_config.environments
        ),
    )
    app = create_app(outdir=str(tmp_path), policy_packs=False)
    Validations.of(app).add_plugins(FeatureGroupGuard())
    add_environments(app, config, ["prod"])
    try:
        app.synth()
    except Exception:  # noqa: BLE001  (jsii raises a plain error; the report holds the message)
        report = json.loads((tmp_path / "validation-report.json").read_text())
        return False, json.dumps(report)
    return True, ""


@pytest.mark.slow
def test_synth_refuses_a_replacement_with_a_clear_message(platform_config: PlatformConfig, tmp_path: Path) -> None:
    ok, report = _synth_prod(platform_config, tmp_path / "a", online_store=False, ttl_days=0)
    assert not ok
    assert "OnlineStoreConfig.EnableOnlineStore true -> false" in report
    assert "churn-prod-customers-v1" in report
    ok, report = _synth_prod(platform_config, tmp_path / "b", group_version=2)
    assert not ok
    assert "churn-prod-customers-v1 -> churn-prod-customers-v2" in report
    assert "allow_replacement = true for prod" in report
    ok, _ = _synth_prod(platform_config, tmp_path / "c", group_version=2, allow_replacement=True)
    assert ok


def test_no_template_names_a_feature_outside_the_schema_driven_resources(synthesized: Synthesized) -> None:
    """Feature names reach templates through the schema only: the feature group and nowhere else."""
    from feature_schema import load_schema

    names = [column.name for column in load_schema().features]
    # A name as a JSON string, or quoted inside a JSON string (a pipeline definition body).
    quoted = re.compile(r'\\?"(' + "|".join(map(re.escape, names)) + r')\\?"')
    holders = {
        resource["Type"]
        for template in synthesized.templates.values()
        for resource in template["Resources"].values()
        if quoted.search(json.dumps(resource))
    }
    assert holders == {"AWS::SageMaker::FeatureGroup"}
