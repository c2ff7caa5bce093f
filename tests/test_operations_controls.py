"""Cost controls and alerts that reach people: budgets, failure alerts for every pipeline, job tags,
log groups with the logs key, lifecycle rules, interface endpoints trimmed per environment."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_kms as kms

from app import build_app
from config import PlatformConfig, parse_config
from config.settings import DEFAULT_CONFIG_PATH
from platform_constructs.isolated_network import IsolatedNetwork
from platform_constructs.pipeline_alerts import PIPELINE_STATUS, PROCESSING_JOB_STATE, STEP_STATUS
from platform_constructs.retention import log_retention
from policy.ml_platform_rules import parse_pipeline_definition
from tests.conftest import Synthesized, resources_of_type

pytestmark = pytest.mark.slow
ENVS = ["dev", "staging", "prod"]


def env_templates(synthesized: Synthesized, env: str) -> dict[str, dict[str, Any]]:
    return {k: t for k, t in synthesized.templates.items() if k.startswith(f"{env.capitalize()}/")}


@pytest.mark.parametrize("env", ENVS)
def test_a_monthly_budget_alerts_the_topic_at_80_and_100_percent(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env)
    operations = synthesized.template(env, "Operations")
    (budget,) = resources_of_type(operations, "AWS::Budgets::Budget").values()
    data = budget["Properties"]["Budget"]
    assert (data["BudgetType"], data["TimeUnit"]) == ("COST", "MONTHLY")
    assert data["BudgetLimit"] == {"Amount": settings.operations.monthly_budget_usd, "Unit": "USD"}
    topic_id = next(iter(resources_of_type(operations, "AWS::SNS::Topic")))
    notifications = sorted(
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"], n["Notification"]["ThresholdType"])
        for n in budget["Properties"]["NotificationsWithSubscribers"]
    )
    assert notifications == [
        ("ACTUAL", 80, "PERCENTAGE"),
        ("ACTUAL", 100, "PERCENTAGE"),
        ("FORECASTED", 80, "PERCENTAGE"),
        ("FORECASTED", 100, "PERCENTAGE"),
    ]
    for notification in budget["Properties"]["NotificationsWithSubscribers"]:
        assert notification["Subscribers"] == [{"SubscriptionType": "SNS", "Address": {"Ref": topic_id}}]
    # Budgets may publish to the topic and use its key, for this account's budgets only.
    budgets_arn = f"arn:aws:budgets::{settings.account}:*"
    (policy,) = resources_of_type(operations, "AWS::SNS::TopicPolicy").values()
    (statement,) = [
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Principal") == {"Service": "budgets.amazonaws.com"}
    ]
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": settings.account},
        "ArnLike": {"aws:SourceArn": budgets_arn},
    }
    key_statements = [
        s
        for key in resources_of_type(synthesized.template(env, "Data"), "AWS::KMS::Key").values()
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "budgets.amazonaws.com"}
    ]
    assert [sorted(s["Action"]) for s in key_statements] == [["kms:Decrypt", "kms:GenerateDataKey*"]]


@pytest.mark.parametrize("env", ENVS)
def test_every_pipeline_of_the_environment_alerts_on_failure(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    account = platform_config.environment(env).account
    prefix = f"arn:aws:sagemaker:eu-west-1:{account}:pipeline/churn-{env}-"
    operations = synthesized.template(env, "Operations")
    topic_id = next(iter(resources_of_type(operations, "AWS::SNS::Topic")))
    rules = {
        r["Properties"]["EventPattern"]["detail-type"][0]: r
        for r in resources_of_type(operations, "AWS::Events::Rule").values()
    }
    assert set(rules) == {PIPELINE_STATUS, STEP_STATUS, PROCESSING_JOB_STATE}
    execution = rules[PIPELINE_STATUS]["Properties"]
    assert execution["EventPattern"]["detail"] == {
        "currentPipelineExecutionStatus": ["Failed", "Stopped"],
        "pipelineExecutionArn": [{"prefix": prefix}],
    }
    step = rules[STEP_STATUS]["Properties"]
    assert step["EventPattern"]["detail"]["currentStepStatus"] == ["Failed"]
    assert step["Targets"][0]["InputTransformer"]["InputPathsMap"]["reason"] == "$.detail.failureReason"
    for rule in rules.values():
        (target,) = rule["Properties"]["Targets"]
        assert target["Arn"] == {"Ref": topic_id}
    # Every pipeline of the environment, in any stack, is matched by the prefix (ARNs name it in lower case).
    pipelines = [
        r["Properties"]["PipelineName"]
        for template in env_templates(synthesized, env).values()
        for r in resources_of_type(template, "AWS::SageMaker::Pipeline").values()
    ]
    assert len(pipelines) >= 2  # prod, which does not train: ingestion and batch scoring
    for name in pipelines:
        assert f"arn:aws:sagemaker:eu-west-1:{account}:pipeline/{name.lower()}/execution/abc123def456".startswith(
            prefix
        )


@pytest.mark.parametrize("env", ENVS)
def test_what_the_pipelines_launch_carries_the_cost_allocation_tags(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    tags = sorted(
        ({"Key": k, "Value": v} for k, v in platform_config.resource_tags(platform_config.environment(env)).items()),
        key=lambda t: t["Key"],
    )
    tagged = 0
    for template in env_templates(synthesized, env).values():
        for resource in resources_of_type(template, "AWS::SageMaker::Pipeline").values():
            definition = parse_pipeline_definition(resource)
            assert definition is not None
            steps = list(definition["Steps"])
            while steps:
                step = steps.pop()
                if step["Type"] == "Condition":
                    steps += step["Arguments"]["IfSteps"] + step["Arguments"]["ElseSteps"]
                elif step["Type"] in ("Training", "Tuning", "Processing", "Transform", "Model"):
                    assert step["Arguments"]["Tags"] == tags, step["Name"]
                    tagged += 1
        for kind in ("AWS::SageMaker::FeatureGroup", "AWS::SageMaker::Endpoint", "AWS::SageMaker::Model"):
            for resource in resources_of_type(template, kind).values():
                assert sorted(resource["Properties"]["Tags"], key=lambda t: t["Key"]) == tags, kind
    # ingestion, model and transform; where the environment trains: preprocess, train or tune, evaluate, baseline
    assert tagged >= (7 if platform_config.environment(env).training.enabled else 3)


@pytest.mark.parametrize("env", ENVS)
def test_sagemaker_and_endpoint_log_groups_use_the_logs_key_and_the_retention(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    retention = platform_config.environment(env).operations.log_retention_days
    groups = {
        g["Properties"].get("LogGroupName"): g
        for template in env_templates(synthesized, env).values()
        for g in resources_of_type(template, "AWS::Logs::LogGroup").values()
    }
    for name in (
        "/aws/sagemaker/TrainingJobs",
        "/aws/sagemaker/ProcessingJobs",
        "/aws/sagemaker/TransformJobs",
        f"/aws/sagemaker/Endpoints/churn-{env}",
    ):
        group = groups[name]["Properties"]
        assert group["RetentionInDays"] == retention, name
        assert "KmsKeyId" in group, name
    (endpoint,) = resources_of_type(synthesized.template(env, "Serving"), "AWS::Logs::LogGroup").items()
    assert "Condition" not in endpoint[1]  # exists before any endpoint, so SageMaker never creates it


def test_one_environment_per_account_owns_the_job_log_groups(tmp_path: Path) -> None:
    raw: dict[str, Any] = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
    changed = copy.deepcopy(raw)
    next(e for e in changed["environments"] if e["name"] == "dev")["operations"]["sagemaker_job_log_groups"] = False
    assembly = build_app(parse_config(changed), ["dev"], outdir=str(tmp_path), policy_packs=False).synth()
    (operations,) = [s.template for s in assembly.stacks_recursively if s.hierarchical_id == "Dev/Operations"]
    assert resources_of_type(operations, "AWS::Logs::LogGroup") == {}


@pytest.mark.parametrize("env", ENVS)
def test_checkpoints_and_working_data_expire(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    days = platform_config.environment(env).data
    buckets = {
        b["Properties"]["BucketName"].split("-")[2]: b
        for b in resources_of_type(synthesized.template(env, "Data"), "AWS::S3::Bucket").values()
    }

    def prefix_rules(purpose: str) -> dict[str, int]:
        rules = buckets[purpose]["Properties"]["LifecycleConfiguration"]["Rules"]
        return {r["Prefix"]: r["ExpirationInDays"] for r in rules if "Prefix" in r}

    assert prefix_rules("models") == {"checkpoints/": days.checkpoint_expiry_days}
    expected = {"athena-results/": days.query_result_expiry_days}
    if days.pipeline_working_expiry_days:
        expected["pipelines/"] = days.pipeline_working_expiry_days
    assert prefix_rules("processed") == expected


def test_dev_runs_only_the_interface_endpoints_it_uses(
    synthesized: Synthesized, platform_config: PlatformConfig
) -> None:
    endpoints = resources_of_type(synthesized.template("dev", "Network"), "AWS::EC2::VPCEndpoint")
    services = sorted(
        json.dumps(e["Properties"]["ServiceName"]).split(".")[-1].rstrip('"]')
        for e in endpoints.values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    )
    dev = platform_config.environment("dev").network.interface_endpoints
    assert len(services) == len(dev)
    assert len(dev) < len(platform_config.environment("prod").network.interface_endpoints)
    # Each is one that a construct of dev declares it calls (PlatformFunction handlers, jobs).
    assert set(dev) <= {
        "sagemaker.api",
        "sagemaker.runtime",
        "sagemaker.featurestore-runtime",
        "athena",
        "monitoring",
        "ssm",
        "cloudformation",
        "sns",
    }


def test_a_trimmed_endpoint_that_a_construct_needs_fails_synth_naming_the_field() -> None:
    app = App()
    stack = Stack(app, "Net", env={"account": "111111111111", "region": "eu-west-1"})
    network = IsolatedNetwork(
        stack,
        "Network",
        cidr="10.50.0.0/16",
        availability_zones=["eu-west-1a", "eu-west-1b"],
        subnet_prefix_length=20,
        interface_endpoints=["sagemaker.api"],
        flow_log_key=kms.Key(stack, "Key"),
        flow_log_retention=log_retention(30),
        retain=False,
    )
    network.require_endpoint("sagemaker.featurestore-runtime", used_by="feature ingestion (PutRecord)")
    with pytest.raises(Exception) as caught:  # noqa: PT011  (jsii raises a plain Exception)
        app.synth()
    message = str(caught.value)
    assert "network.interface_endpoints lacks 'sagemaker.featurestore-runtime'" in message
    assert "feature ingestion (PutRecord)" in message
