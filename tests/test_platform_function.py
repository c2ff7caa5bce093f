"""A PlatformFunction passes every policy pack and both scanners as it is, hosted as the packs ask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Aspects, Environment, Stack
from aws_cdk.assertions import Template

from app import create_app
from platform_constructs.alert_topic import AlertTopic
from platform_constructs.encryption_key import EncryptionKey
from platform_constructs.isolated_network import IsolatedNetwork
from platform_constructs.platform_function import PlatformFunction
from platform_constructs.retention import log_retention
from policy.cdk_providers import AcceptCdkProviderFindings
from policy.scanners import cfn_lint, checkov
from tests.conftest import resources_of_type

pytestmark = pytest.mark.slow
REGION = "eu-west-1"


def _function_stack(app: App, code_dir: Path) -> Stack:
    stack = Stack(app, "FunctionTest", env=Environment(account="123456789012", region=REGION))
    Aspects.of(stack).add(AcceptCdkProviderFindings())  # as every platform stage does
    key = EncryptionKey(stack, "LogsKey", alias="alias/test/logs", description="test", retain=False)
    key.allow_cloudwatch_logs()
    network = IsolatedNetwork(
        stack,
        "Network",
        cidr="10.50.0.0/16",
        availability_zones=[f"{REGION}a", f"{REGION}b"],
        subnet_prefix_length=20,
        interface_endpoints=["sagemaker.api", "logs"],
        flow_log_key=key,
        flow_log_retention=log_retention(30),
        retain=False,
    )
    function = PlatformFunction(
        stack,
        "Deployer",
        handler="example.handler",
        description="test function",
        vpc=network.vpc,
        subnets=network.selected_subnets,
        security_group=network.function_security_group,
        key=key,
        alarm_topic=AlertTopic(stack, "Alerts", key=key, emails=["ops@example.com"]).topic,
        log_retention_days=30,
        retain=False,
        environment={"SETTING": "value"},
        code_dir=code_dir,
    )
    function.allow(
        ["sagemaker:DescribeEndpoint"], [stack.format_arn(service="sagemaker", resource="endpoint", resource_name="x")]
    )
    return stack


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    code = tmp_path_factory.mktemp("functions")
    (code / "example.py").write_text("def handler(event, context):\n    return event\n")
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = create_app(outdir=str(outdir))
    stack = _function_stack(app, code)
    try:
        app.synth()  # every policy pack is registered: an unacknowledged finding fails here
    except Exception as error:  # noqa: BLE001  (jsii raises a plain Exception carrying the report)
        pytest.fail(f"a PlatformFunction fails the policy gates:\n{error}", pytrace=False)
    return outdir, dict(Template.from_stack(stack).to_json())


def test_function_is_hosted_as_the_packs_ask(synthesized: tuple[Path, dict[str, Any]]) -> None:
    _, template = synthesized
    functions = resources_of_type(template, "AWS::Lambda::Function").values()
    (props,) = [f["Properties"] for f in functions if f["Properties"]["Handler"] == "example.handler"]
    assert props["Runtime"] == "python3.14"
    assert props["ReservedConcurrentExecutions"] == 1
    assert len(props["VpcConfig"]["SubnetIds"]) == 2
    assert "TargetArn" in props["DeadLetterConfig"]
    assert "KmsKeyArn" in props  # environment variables are encrypted with the key
    assert "LogGroup" in props["LoggingConfig"]
    log_group = template["Resources"][props["LoggingConfig"]["LogGroup"]["Ref"]]
    assert log_group["Properties"]["RetentionInDays"] == 30
    assert "KmsKeyId" in log_group["Properties"]
    (queue,) = resources_of_type(template, "AWS::SQS::Queue").values()
    assert "KmsMasterKeyId" in queue["Properties"]
    # Every permission is in the role's one managed policy: nothing inline.
    assert resources_of_type(template, "AWS::IAM::Policy") == {}
    role_id = props["Role"]["Fn::GetAtt"][0]
    assert "Policies" not in template["Resources"][role_id]["Properties"]
    (policy,) = [
        p["Properties"]["PolicyDocument"]
        for p in resources_of_type(template, "AWS::IAM::ManagedPolicy").values()
        if {"Ref": role_id} in p["Properties"].get("Roles", [])
    ]
    actions = set()
    for statement in policy["Statement"]:
        action = statement["Action"]
        actions |= {action} if isinstance(action, str) else set(action)
    assert {
        "sqs:SendMessage",
        "logs:PutLogEvents",
        "ec2:CreateNetworkInterface",
        "sagemaker:DescribeEndpoint",
    } <= actions


def test_function_passes_both_scanners(synthesized: tuple[Path, dict[str, Any]]) -> None:
    outdir, _ = synthesized
    templates = list(outdir.glob("*.template.json"))
    assert templates
    assert cfn_lint([(path, REGION) for path in templates]) == []
    result = checkov(outdir)
    assert result.failed == []
    assert result.passed > 10
