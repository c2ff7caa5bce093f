"""Approved model packages reach their endpoint without anyone typing an ARN.

One SSM parameter per variant (``<project>-<env>-<Variant>-model-package``) holds the
package the variant serves; the serving stack reads its defaults from them. :class:`ModelDeployer`
is the only writer: an EventBridge rule on the environment's model-package approvals starts it, it
records the package and updates the serving stack in place, and a second rule on the serving stack's
final states lets it restore the parameters and alert when a rollout rolled back
(``functions/model_deployer.py``; docs/decisions/0015-promotion.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import CustomResource, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from config import ServingSettings
from platform_constructs.execution_role import ServiceRole
from platform_constructs.isolated_network import IsolatedNetwork
from platform_constructs.model_registry import registry_arns
from platform_constructs.platform_function import PlatformFunction

NO_MODEL = "none"
SHADOW = "Shadow"
BOOTSTRAP_VERSION_PARAMETER = "cdk-bootstrap/hnb659fds/version"
# Final states of the serving stack after which the deployer checks what the endpoint runs.
STACK_SETTLED = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED")


def serving_variants(settings: ServingSettings) -> list[str]:
    """Every variant a model package can be approved for: the production variants, then the shadow."""
    return [v.name for v in settings.variants] + ([SHADOW] if settings.shadow_variant else [])


def model_package_parameter_name(project: str, env_name: str, variant: str) -> str:
    """``<project>-<env>-<Variant>-model-package``. Flat, not a path: CDK's template validation checks
    the serving stack's models with the parameter's default (this name) in place of the ARN it resolves
    to, and a flat name of at most 63 characters is also a valid model package name."""
    name = f"{project}-{env_name}-{variant}-model-package"
    if len(name) > 63:
        raise ValueError(f"SSM parameter name {name!r} is longer than 63 characters; shorten the variant name")
    return name


def rollout_role_name(project: str, env_name: str) -> str:
    """The role CloudFormation uses when the deployer updates the serving stack (named: the deployer's
    policy, in another stack, names it)."""
    return f"{project}-{env_name}-serving-rollout"


def serving_stack_name(project: str, env_name: str) -> str:
    return f"{project}-{env_name}-serving"


def smoke_test_role_name(project: str, env_name: str) -> str:
    """The environment's read-only role for the delivery pipeline's smoke test."""
    return f"{project}-{env_name}-smoke-test"


def smoke_runner_role_name(project: str, env_name: str) -> str:
    """The tooling account's role of the smoke-test step for ``env_name`` (one per environment)."""
    return f"{project}-delivery-smoke-{env_name}"


def smoke_runner_role_arn(project: str, env_name: str, tooling_account: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{tooling_account}:role/{smoke_runner_role_name(project, env_name)}"


def parameter_arn(stack: Stack, name: str) -> str:
    return stack.format_arn(service="ssm", resource="parameter", resource_name=name.lstrip("/"))


class ModelDeployer(Construct):
    """The deployer function, the variants' parameters (created once, never overwritten by CloudFormation)
    and the two rules that start it."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        project: str,
        env_name: str,
        serving: ServingSettings,
        model_package_group: str,
        network: IsolatedNetwork,
        key: kms.IKey,
        alarm_topic: sns.ITopic,
        log_retention_days: int,
        retain: bool,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.endpoint_name = f"{project}-{env_name}"
        self.stack_name = serving_stack_name(project, env_name)
        self.variants = serving_variants(serving)
        self.parameter_names = {v: model_package_parameter_name(project, env_name, v) for v in self.variants}
        _, versions_arn = registry_arns(self, model_package_group)
        self.rollout_role_arn = stack.format_arn(
            service="iam", region="", resource="role", resource_name=rollout_role_name(project, env_name)
        )
        serving_stack_arn = stack.format_arn(
            service="cloudformation", resource="stack", resource_name=f"{self.stack_name}/*"
        )

        self.function = PlatformFunction(
            self,
            "Function",
            handler="model_deployer.handler",
            description=f"Deploys approved versions of {model_package_group} to the endpoint {self.endpoint_name}",
            vpc=network.vpc,
            subnets=network.selected_subnets,
            security_group=network.function_security_group,
            key=key,
            alarm_topic=alarm_topic,
            log_retention_days=log_retention_days,
            retain=retain,
            timeout_seconds=120,
            environment={
                "ENVIRONMENT": env_name,
                "PARAMETERS": json.dumps(self.parameter_names),
                "MODEL_PACKAGE_GROUP": model_package_group,
                "MODEL_PACKAGE_ARN_PREFIX": versions_arn.removesuffix("*"),
                "SERVING_STACK": self.stack_name,
                "ENDPOINT_NAME": self.endpoint_name,
                "ROLLOUT_ROLE_ARN": self.rollout_role_arn,
                "ALERT_TOPIC_ARN": alarm_topic.topic_arn,
            },
        )
        for service in ("sagemaker.api", "ssm", "cloudformation", "sns"):
            network.require_endpoint(service, used_by="the model deployer function")
        function = self.function
        parameters = [parameter_arn(stack, name) for name in self.parameter_names.values()]
        function.allow(["ssm:GetParameters", "ssm:PutParameter"], parameters)
        # CloudFormation resolves the stack's SSM-typed parameters (CDK's bootstrap version among them).
        function.allow(["ssm:GetParameters"], [parameter_arn(stack, BOOTSTRAP_VERSION_PARAMETER)])
        function.allow(
            ["cloudformation:DescribeStacks", "cloudformation:ListStackResources"],
            [serving_stack_arn],
            wildcard_reason="A stack ARN ends in an ID CloudFormation generates; the statement names the "
            "serving stack of this environment only.",
        )
        function.allow(
            ["cloudformation:UpdateStack"],
            [serving_stack_arn],
            {
                # Only with the rollout role, and only with the template already deployed.
                "StringEquals": {"cloudformation:RoleArn": self.rollout_role_arn},
                "Null": {"cloudformation:TemplateUrl": "true"},
            },
            wildcard_reason="A stack ARN ends in an ID CloudFormation generates; the statement names the "
            "serving stack of this environment only.",
        )
        function.allow(
            ["iam:PassRole"],
            [self.rollout_role_arn],
            {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}},
        )
        function.allow(
            ["sagemaker:DescribeModelPackage"],
            [versions_arn],
            wildcard_reason="Approvals name any version of this environment's model group; the deployer "
            "reads those versions and nothing else.",
        )
        function.allow(
            ["sagemaker:DescribeEndpoint"],
            [stack.format_arn(service="sagemaker", resource="endpoint", resource_name=self.endpoint_name)],
        )
        function.allow(
            ["sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
            [
                stack.format_arn(service="sagemaker", resource="endpoint-config", resource_name="*"),
                stack.format_arn(service="sagemaker", resource="model", resource_name="*"),
            ],
            wildcard_reason="CloudFormation names the endpoint's models and endpoint configs; the deployer only "
            "reads them to learn which package each variant serves after a rollback.",
        )
        function.allow(["sns:Publish"], [alarm_topic.topic_arn])

        # The variants' parameters: created with "none" when missing, never overwritten by CloudFormation
        # (an AWS::SSM::Parameter resource would write its template value back on any update or tag change).
        self.parameters = CustomResource(
            self,
            "Parameters",
            service_token=function.function_arn,
            resource_type="Custom::ModelPackageParameters",
            properties={"Parameters": self.parameter_names},
        )
        self.parameters.node.add_dependency(function.role.policy)

        target = targets.LambdaFunction(function.function, retry_attempts=8, max_event_age=Duration.hours(6))
        self.approval_rule = events.Rule(
            self,
            "ApprovalRule",
            description=f"An approved version of {model_package_group} starts the model deployer",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                account=[stack.account],
                detail={"ModelPackageGroupName": [model_package_group], "ModelApprovalStatus": ["Approved"]},
            ),
            targets=[target],
        )
        self.stack_rule = events.Rule(
            self,
            "ServingStackRule",
            description=f"When {self.stack_name} settles, the deployer checks the rollout and deploys what waits",
            event_pattern=events.EventPattern(
                source=["aws.cloudformation"],
                detail_type=["CloudFormation Stack Status Change"],
                detail={
                    "stack-id": [{"prefix": serving_stack_arn.removesuffix("*")}],
                    "status-details": {"status": list(STACK_SETTLED)},
                },
            ),
            targets=[target],
        )

    @property
    def parameter_arns(self) -> Sequence[str]:
        stack = Stack.of(self)
        return [parameter_arn(stack, name) for name in self.parameter_names.values()]


class SmokeTestAccess(Construct):
    """A read-only role the delivery pipeline's smoke-test step (in the tooling account) assumes to
    check this environment: describe its pipelines, feature group and endpoint, read the champion's
    parameter, invoke the endpoint."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        role_name: str,
        runner_role_arn: str,
        tooling_account: str,
        pipelines: Sequence[str],
        feature_group: str,
        endpoint_name: str,
        parameter_arns: Sequence[str],
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        # The account as principal, pinned to the runner role by condition: the trust policy stays valid
        # before the tooling account's role exists.
        principal = iam.AccountPrincipal(tooling_account).with_conditions(
            {"ArnEquals": {"aws:PrincipalArn": runner_role_arn}}
        )
        self.role = ServiceRole(
            self,
            "Role",
            assumed_by=principal,
            description=f"Smoke test of {endpoint_name}, assumed by the delivery pipeline: read-only checks",
            role_name=role_name,
        )

        def sagemaker_arn(resource: str, name: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name=name)

        self.role.allow(["sagemaker:DescribePipeline"], [sagemaker_arn("pipeline", name) for name in pipelines])
        self.role.allow(["sagemaker:DescribeFeatureGroup"], [sagemaker_arn("feature-group", feature_group)])
        self.role.allow(
            ["sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"], [sagemaker_arn("endpoint", endpoint_name)]
        )
        self.role.allow(["ssm:GetParameter"], list(parameter_arns))
