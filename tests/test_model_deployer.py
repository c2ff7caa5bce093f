"""The model deployer: approvals update the variant's parameter and start the deploy; nothing else does.

SSM, SNS and the model registry run on moto; CloudFormation (moto resolves no SSM-typed parameters and
has no ResolvedValue) runs on botocore's Stubber, so every stack call is asserted exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Self

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from moto.sns.models import sns_backends

import model_deployer

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
GROUP = "churn-prod"
STACK = "churn-prod-serving"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0f3b7c10-0000-0000-0000-000000000000"
ROLLOUT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/churn-prod-serving-rollout"
PARAMETERS = {v: f"churn-prod-{v}-model-package" for v in ("Champion", "Challenger", "Shadow")}


def package_arn(version: int) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/{version}"


class World:
    """moto's SSM, SNS and SageMaker, a stubbed CloudFormation, and the deployer's settings."""

    def __init__(self) -> None:
        self.ssm = boto3.client("ssm", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.cloudformation = boto3.client("cloudformation", region_name=REGION)
        self.stack = Stubber(self.cloudformation)
        self.topic = self.sns.create_topic(Name="alerts")["TopicArn"]
        self.sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        for name in PARAMETERS.values():
            self.ssm.put_parameter(Name=name, Value="none", Type="String")

    def client(self, service: str) -> Any:
        return {
            "ssm": self.ssm,
            "sns": self.sns,
            "sagemaker": self.sagemaker,
            "cloudformation": self.cloudformation,
        }[service]

    def register(self, *, status: str = "Approved", variant: str | None = None) -> str:
        arn = self.sagemaker.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus=status,
            InferenceSpecification={
                "Containers": [{"Image": "image:1", "ModelDataUrl": "s3://churn-prod-models/pipelines/model.tar.gz"}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            **({"CustomerMetadataProperties": {"Variant": variant}} if variant else {}),
        )["ModelPackageArn"]
        return str(arn)

    def parameters(self) -> dict[str, str]:
        return {v: self.ssm.get_parameter(Name=n)["Parameter"]["Value"] for v, n in PARAMETERS.items()}

    def alerts(self) -> list[str]:
        topic = sns_backends[ACCOUNT][REGION].topics[self.topic]
        return [message for _, message, *_ in topic.sent_notifications]

    def stack_is(self, status: str, resolved: dict[str, str]) -> None:
        """The next DescribeStacks answer: ``status``, and the packages the parameters resolved to."""
        parameters = [
            {"ParameterKey": f"{v}ModelPackageArn", "ParameterValue": PARAMETERS[v], "ResolvedValue": resolved[v]}
            for v in PARAMETERS
        ] + [{"ParameterKey": "BootstrapVersion", "ParameterValue": "/cdk-bootstrap/hnb659fds/version"}]
        self.stack.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": STACK,
                        "StackId": STACK_ID,
                        "CreationTime": "2026-01-01T00:00:00Z",
                        "StackStatus": status,
                        "Parameters": parameters,
                    }
                ]
            },
            {"StackName": STACK},
        )

    def expect_update(self) -> None:
        keys = [f"{v}ModelPackageArn" for v in PARAMETERS] + ["BootstrapVersion"]
        self.stack.add_response(
            "update_stack",
            {"StackId": STACK_ID},
            {
                "StackName": STACK,
                "UsePreviousTemplate": True,
                "Parameters": [{"ParameterKey": k, "UsePreviousValue": True} for k in keys],
                "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
                "RoleARN": ROLLOUT_ROLE,
                "ClientRequestToken": ANY,
            },
        )

    def stack_declares_endpoint_config(self, name: str) -> None:
        self.stack.add_response(
            "list_stack_resources",
            {
                "StackResourceSummaries": [
                    {
                        "LogicalResourceId": "EndpointEndpointConfig9B6F0A4C",
                        "PhysicalResourceId": name,
                        "ResourceType": "AWS::SageMaker::EndpointConfig",
                        "LastUpdatedTimestamp": "2026-01-01T00:00:00Z",
                        "ResourceStatus": "UPDATE_COMPLETE",
                    }
                ]
            },
            {"StackName": STACK},
        )

    def endpoint_serving(self, config_name: str, packages: dict[str, str]) -> None:
        """An endpoint (moto) whose endpoint config serves ``packages`` by variant."""
        variants = []
        for variant, arn in packages.items():
            model = f"{config_name}-{variant}".lower()
            self.sagemaker.create_model(
                ModelName=model,
                ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/model",
                Containers=[{"ModelPackageName": arn}],
            )
            variants.append(
                {"VariantName": variant, "ModelName": model, "InstanceType": "ml.m5.large", "InitialInstanceCount": 2}
            )
        self.sagemaker.create_endpoint_config(EndpointConfigName=config_name, ProductionVariants=variants)
        self.sagemaker.create_endpoint(EndpointName="churn-prod", EndpointConfigName=config_name)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        state = World()
        monkeypatch.setattr(model_deployer, "client", state.client)
        monkeypatch.setattr(
            model_deployer,
            "settings",
            lambda: model_deployer.Settings(
                {
                    "ENVIRONMENT": "prod",
                    "PARAMETERS": json.dumps(PARAMETERS),
                    "MODEL_PACKAGE_GROUP": GROUP,
                    "MODEL_PACKAGE_ARN_PREFIX": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/",
                    "SERVING_STACK": STACK,
                    "ENDPOINT_NAME": "churn-prod",
                    "ROLLOUT_ROLE_ARN": ROLLOUT_ROLE,
                    "ALERT_TOPIC_ARN": state.topic,
                }
            ),
        )
        with state.stack:
            yield state
            state.stack.assert_no_pending_responses()


def approval(arn: str, status: str = "Approved", group: str = GROUP) -> dict[str, Any]:
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change",
        "account": ACCOUNT,
        "region": REGION,
        "detail": {"ModelPackageGroupName": group, "ModelPackageArn": arn, "ModelApprovalStatus": status},
    }


def stack_event(status: str, reason: str = "") -> dict[str, Any]:
    return {
        "source": "aws.cloudformation",
        "detail-type": "CloudFormation Stack Status Change",
        "detail": {"stack-id": STACK_ID, "status-details": {"status": status, "status-reason": reason}},
    }


def test_an_approval_records_the_package_and_starts_the_deploy(world: World) -> None:
    arn = world.register()
    world.stack_is("UPDATE_COMPLETE", {"Champion": "none", "Challenger": "none", "Shadow": "none"})
    world.expect_update()
    result = model_deployer.handler(approval(arn), None)
    assert result == {"status": "deploying", "packages": {"Champion": arn}}
    assert world.parameters() == {"Champion": arn, "Challenger": "none", "Shadow": "none"}
    assert world.alerts() == []


@pytest.mark.parametrize("variant", ["Challenger", "Shadow"])
def test_challenger_and_shadow_come_through_the_same_route(world: World, variant: str) -> None:
    champion = package_arn(0)
    world.ssm.put_parameter(Name=PARAMETERS["Champion"], Value=champion, Type="String", Overwrite=True)
    arn = world.register(variant=variant)
    world.stack_is("UPDATE_COMPLETE", {"Champion": champion, "Challenger": "none", "Shadow": "none"})
    world.expect_update()
    assert model_deployer.handler(approval(arn), None)["packages"] == {variant: arn}
    expected = {"Champion": champion, "Challenger": "none", "Shadow": "none"}
    expected[variant] = arn
    assert world.parameters() == expected


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_pending_and_rejected_packages_do_nothing(world: World, status: str) -> None:
    arn = world.register(status=status)
    # No CloudFormation response is stubbed: any stack call would fail the test.
    assert model_deployer.handler(approval(arn, status=status), None) == {"status": "ignored"}
    assert world.parameters() == dict.fromkeys(PARAMETERS, "none")


def test_an_event_older_than_the_package_state_does_nothing(world: World) -> None:
    arn = world.register(status="Rejected")  # approved, then rejected before the event arrived
    assert model_deployer.handler(approval(arn), None) == {"status": "ignored"}
    assert world.parameters() == dict.fromkeys(PARAMETERS, "none")


def test_a_package_of_another_group_does_nothing(world: World) -> None:
    other = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/churn-staging/4"
    assert model_deployer.handler(approval(other, group="churn-staging"), None) == {"status": "ignored"}
    assert world.parameters() == dict.fromkeys(PARAMETERS, "none")


def test_an_unknown_variant_is_reported_and_changes_nothing(world: World) -> None:
    arn = world.register(variant="Canary")
    assert model_deployer.handler(approval(arn), None) == {"status": "refused", "variant": "Canary"}
    assert world.parameters() == dict.fromkeys(PARAMETERS, "none")
    (message,) = world.alerts()
    assert arn in message
    assert "'Canary'" in message
    assert "Champion, Challenger, Shadow" in message


def test_an_approval_while_the_stack_is_busy_is_deployed_when_it_settles(world: World) -> None:
    arn = world.register()
    world.stack_is("UPDATE_IN_PROGRESS", {"Champion": "none", "Challenger": "none", "Shadow": "none"})
    assert model_deployer.handler(approval(arn), None) == {"status": "busy"}
    assert world.parameters()["Champion"] == arn  # recorded: the next deployment of any kind serves it

    world.stack_declares_endpoint_config("config-a")  # no endpoint yet: nothing to compare
    world.stack_is("UPDATE_COMPLETE", {"Champion": "none", "Challenger": "none", "Shadow": "none"})
    world.expect_update()
    assert model_deployer.handler(stack_event("UPDATE_COMPLETE"), None)["status"] == "deploying"


def test_a_settled_stack_that_serves_the_recorded_packages_needs_nothing(world: World) -> None:
    champion = package_arn(3)
    world.ssm.put_parameter(Name=PARAMETERS["Champion"], Value=champion, Type="String", Overwrite=True)
    world.endpoint_serving("config-a", {"Champion": champion, "Challenger": champion})
    world.stack_declares_endpoint_config("config-a")
    world.stack_is("UPDATE_COMPLETE", {"Champion": champion, "Challenger": "none", "Shadow": "none"})
    assert model_deployer.handler(stack_event("UPDATE_COMPLETE"), None) == {"status": "in-sync"}
    assert world.alerts() == []


def test_a_rollback_restores_the_served_package_and_says_which_was_rolled_back(world: World) -> None:
    served, failed = package_arn(3), package_arn(4)
    world.ssm.put_parameter(Name=PARAMETERS["Champion"], Value=failed, Type="String", Overwrite=True)
    world.endpoint_serving("config-a", {"Champion": served, "Challenger": served})
    world.stack_is("UPDATE_ROLLBACK_COMPLETE", {"Champion": served, "Challenger": "none", "Shadow": "none"})
    result = model_deployer.handler(
        stack_event("UPDATE_ROLLBACK_COMPLETE", "Resource EndpointEndpoint failed: alarm churn-prod-Champion-5xx"), None
    )
    assert result == {"status": "rolled-back", "packages": {"Champion": failed}}
    # A plain deployment now keeps serving what the endpoint serves, instead of retrying the failed package.
    assert world.parameters() == {"Champion": served, "Challenger": "none", "Shadow": "none"}
    (message,) = world.alerts()
    assert f"model package {failed} was rolled back" in message
    assert "churn-prod-Champion-5xx" in message
    assert served in message


def test_a_rollback_sagemaker_did_alone_is_found_and_the_stack_realigned(world: World) -> None:
    """SageMaker may roll a deployment back and still report InService: the endpoint then runs an
    endpoint config the stack no longer declares."""
    served, failed = package_arn(3), package_arn(4)
    world.ssm.put_parameter(Name=PARAMETERS["Champion"], Value=failed, Type="String", Overwrite=True)
    world.endpoint_serving("config-a", {"Champion": served, "Challenger": served})
    world.stack_declares_endpoint_config("config-b")
    world.stack_is("UPDATE_COMPLETE", {"Champion": failed, "Challenger": "none", "Shadow": "none"})  # rollback
    world.stack_is("UPDATE_COMPLETE", {"Champion": failed, "Challenger": "none", "Shadow": "none"})  # realign
    world.expect_update()
    result = model_deployer.handler(stack_event("UPDATE_COMPLETE"), None)
    assert result == {"status": "rolled-back", "packages": {"Champion": failed}}
    assert world.parameters()["Champion"] == served
    (message,) = world.alerts()
    assert "runs endpoint config config-a, not config-b" in message
    assert failed in message


def test_a_first_model_that_rolls_back_leaves_no_model_recorded(world: World) -> None:
    failed = package_arn(1)
    world.ssm.put_parameter(Name=PARAMETERS["Champion"], Value=failed, Type="String", Overwrite=True)
    world.stack_is("UPDATE_ROLLBACK_COMPLETE", {"Champion": "none", "Challenger": "none", "Shadow": "none"})
    assert model_deployer.handler(stack_event("UPDATE_ROLLBACK_COMPLETE"), None)["packages"] == {"Champion": failed}
    assert world.parameters()["Champion"] == "none"


class Response:
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def read(self) -> bytes:
        return b""


@pytest.fixture
def cloudformation_answers(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = []

    def urlopen(request: Any, timeout: float) -> Response:
        assert request.full_url.startswith("https://cloudformation-custom-resource-response-")
        assert request.get_method() == "PUT"
        answers.append(json.loads(request.data))
        return Response()

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    return answers


def custom_resource(request_type: str, parameters: dict[str, str]) -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "ResponseURL": "https://cloudformation-custom-resource-response-euwest1.s3.eu-west-1.amazonaws.com/x",
        "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/churn-prod-deployment/1",
        "RequestId": "request-1",
        "LogicalResourceId": "ModelDeployerParameters",
        "ResourceProperties": {"ServiceToken": "arn", "Parameters": parameters},
    }


def test_the_parameters_are_created_once_and_never_overwritten(
    world: World, cloudformation_answers: list[dict[str, Any]]
) -> None:
    approved = package_arn(3)
    world.ssm.put_parameter(Name=PARAMETERS["Champion"], Value=approved, Type="String", Overwrite=True)
    world.ssm.delete_parameter(Name=PARAMETERS["Shadow"])  # a variant added to config later
    for request_type in ("Update", "Create"):
        assert model_deployer.handler(custom_resource(request_type, PARAMETERS), None) == {"status": "SUCCESS"}
    assert world.parameters() == {"Champion": approved, "Challenger": "none", "Shadow": "none"}
    model_deployer.handler(custom_resource("Delete", PARAMETERS), None)
    assert world.parameters()["Champion"] == approved  # deleting the stack keeps the record
    assert [a["Status"] for a in cloudformation_answers] == ["SUCCESS"] * 3
    assert {a["PhysicalResourceId"] for a in cloudformation_answers} == {f"{STACK}-model-package-parameters"}


def test_a_parameter_failure_is_reported_to_cloudformation(
    world: World, cloudformation_answers: list[dict[str, Any]]
) -> None:
    with Stubber(world.ssm) as ssm:
        ssm.add_client_error("put_parameter", "AccessDeniedException", "not authorized to perform ssm:PutParameter")
        result = model_deployer.handler(custom_resource("Create", {"Champion": PARAMETERS["Champion"]}), None)
    assert result == {"status": "FAILED"}
    (answer,) = cloudformation_answers
    assert answer["Status"] == "FAILED"  # CloudFormation hears of it at once instead of waiting an hour
    assert "AccessDeniedException" in answer["Reason"]


def test_the_deployer_refuses_to_answer_over_plain_http(world: World) -> None:
    event = custom_resource("Create", PARAMETERS)
    event["ResponseURL"] = "http://example.com/x"
    with pytest.raises(ValueError, match="non-HTTPS"):
        model_deployer.handler(event, None)


def test_an_unexpected_event_fails_loudly(world: World) -> None:
    with pytest.raises(ValueError, match="unexpected event"):
        model_deployer.handler({"detail-type": "Scheduled Event"}, None)
