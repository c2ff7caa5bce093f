"""The same model in two environments: staging's approval offers staging's exact model to prod.

The receiving environment pulls (docs/decisions/0015-promotion.md). In the source environment
:class:`ModelForwarding` forwards the approvals of its model group to the receiving account's default
event bus; the source's Data stack lets one role of the receiving account read those versions and the
objects they name (:meth:`stacks.data_stack.DataStack.share_models_with`). In the receiving environment
:class:`ModelIntake` accepts those events and runs ``functions/model_intake.py``, which copies the
artifact, evaluation and baselines with their SHA-256 checked and registers the copy as
``PendingManualApproval``. Nothing in the source account can write into the receiving one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import DefaultStackSynthesizer, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from config import EnvironmentConfig
from platform_constructs.execution_role import ServiceRole
from platform_constructs.isolated_network import IsolatedNetwork
from platform_constructs.model_registry import REGISTER_ACTIONS, registry_arns
from platform_constructs.platform_function import PlatformFunction
from platform_constructs.secure_bucket import make_bucket_name
from platform_constructs.training_pipeline import BASELINE_PREFIX, PIPELINE_PREFIX

APPROVAL_EVENT = "SageMaker Model Package State Change"


def intake_role_name(project: str, env_name: str) -> str:
    """Named: the source environment's resource policies name it before it exists."""
    return f"{project}-{env_name}-model-intake"


def group_name(project: str, env_name: str) -> str:
    return f"{project}-{env_name}"


@dataclass(frozen=True)
class PromotedObjects:
    """What the intake may read in the source environment (by bucket purpose: key pattern), and where
    the copies go in the receiving one (by bucket purpose: key prefix)."""

    project: str
    source: str

    @property
    def source_patterns(self) -> dict[str, str]:
        pipeline = f"{self.project}-{self.source}-training"
        return {
            "models": f"{PIPELINE_PREFIX}{pipeline}/*/output/model.tar.gz",  # <job>/output/model.tar.gz
            "processed": f"{PIPELINE_PREFIX}{pipeline}/*/evaluation/*",  # the evaluation report only
            "monitoring": f"{BASELINE_PREFIX}{pipeline}/*",  # statistics.json, constraints.json
        }

    @property
    def target_prefixes(self) -> dict[str, str]:
        # Under the prefixes the training pipeline writes, so the serving, batch-scoring and monitoring
        # roles read the copies as they read the environment's own models.
        source_group = group_name(self.project, self.source)
        return {
            "models": f"{PIPELINE_PREFIX}promoted/{source_group}/",
            "processed": f"{PIPELINE_PREFIX}promoted/{source_group}/",
            "monitoring": f"{BASELINE_PREFIX}promoted/{source_group}/",
        }


def container_assets_repository(account: str, region: str) -> str:
    return f"cdk-{DefaultStackSynthesizer.DEFAULT_QUALIFIER}-container-assets-{account}-{region}"


class ModelForwarding(Construct):
    """In the source environment: approvals of its model group go to the receiving account's event bus."""

    def __init__(self, scope: Construct, id_: str, *, model_package_group: str, target: EnvironmentConfig) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        bus_arn = f"arn:{stack.partition}:events:{target.region}:{target.account}:event-bus/default"
        self.role = ServiceRole(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "events.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description=f"EventBridge: forwards approvals of {model_package_group} to {target.name}'s event bus",
        )
        self.role.allow(["events:PutEvents"], [bus_arn])
        self.rule = events.Rule(
            self,
            "Rule",
            description=f"Approved versions of {model_package_group} are offered to {target.name}",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[APPROVAL_EVENT],
                account=[stack.account],
                detail={"ModelPackageGroupName": [model_package_group], "ModelApprovalStatus": ["Approved"]},
            ),
            targets=[
                targets.EventBus(
                    events.EventBus.from_event_bus_arn(self, "TargetBus", bus_arn),
                    # The role's permissions live in its managed policy; CDK's addition would be inline.
                    role=self.role.role.without_policy_updates(),
                )
            ],
        )


class ModelIntake(Construct):
    """In the receiving environment: the event-bus permission for the source account, the rule on its
    approvals and the function that copies and registers them."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        project: str,
        env_config: EnvironmentConfig,
        source: EnvironmentConfig,
        model_package_group: str,
        bucket_names: dict[str, str],
        model_key: kms.IKey,
        data_key: kms.IKey,
        network: IsolatedNetwork,
        key: kms.IKey,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        partition = stack.partition
        source_group = group_name(project, source.name)
        objects = PromotedObjects(project, source.name)
        source_buckets = {
            purpose: make_bucket_name(project, source.name, purpose, source.account, source.region)
            for purpose in objects.source_patterns
        }
        source_object_arns = [
            f"arn:{partition}:s3:::{source_buckets[purpose]}/{pattern}"
            for purpose, pattern in objects.source_patterns.items()
        ]
        source_versions = f"arn:{partition}:sagemaker:{source.region}:{source.account}:model-package/{source_group}/"
        self.role_name = intake_role_name(project, env_config.name)

        self.bus_policy = events.CfnEventBusPolicy(
            self,
            "AcceptApprovals",
            statement_id=f"{source_group}-model-approvals",
            event_bus_name="default",
            statement={
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{source.account}:root"},
                "Action": "events:PutEvents",
                "Resource": f"arn:{partition}:events:{stack.region}:{stack.account}:event-bus/default",
                "Condition": {"StringEquals": {"events:source": "aws.sagemaker", "events:detail-type": APPROVAL_EVENT}},
            },
        )

        image_repository = container_assets_repository(stack.account, stack.region)
        self.function = PlatformFunction(
            self,
            "Function",
            handler="model_intake.handler",
            description=f"Copies models approved in {source.name} into {model_package_group}, pending approval",
            vpc=network.vpc,
            subnets=network.selected_subnets,
            security_group=network.function_security_group,
            key=key,
            alarm_topic=alarm_topic,
            log_retention_days=env_config.operations.log_retention_days,
            retain=env_config.retain_data,
            timeout_seconds=600,
            memory_mb=1024,
            role_name=self.role_name,
            environment={
                "ENVIRONMENT": env_config.name,
                "SOURCE_ENVIRONMENT": source.name,
                "SOURCE_ACCOUNT": source.account,
                "SOURCE_GROUP": source_group,
                "SOURCE_PACKAGE_ARN_PREFIX": source_versions,
                "MODEL_PACKAGE_GROUP": model_package_group,
                "BUCKETS": json.dumps(
                    {
                        source_buckets[purpose]: {"bucket": bucket_names[purpose], "prefix": prefix}
                        for purpose, prefix in objects.target_prefixes.items()
                    },
                    sort_keys=True,
                ),
                "SOURCE_IMAGE_REPOSITORY": f"{source.account}.dkr.ecr.{source.region}.amazonaws.com/"
                + container_assets_repository(source.account, source.region),
                "IMAGE_REPOSITORY": f"{stack.account}.dkr.ecr.{stack.region}.amazonaws.com/{image_repository}",
                "ALERT_TOPIC_ARN": alarm_topic.topic_arn,
            },
        )
        for service in ("sagemaker.api", "ecr.api", "sns"):
            network.require_endpoint(service, used_by="the model intake function")
        function = self.function
        function.allow(
            ["sagemaker:DescribeModelPackage"],
            [f"{source_versions}*"],
            wildcard_reason=f"Any approved version of {source_group} may be promoted; the source group's "
            "resource policy admits this role and nothing else of this account.",
        )
        function.allow(
            ["s3:GetObject"],
            source_object_arns,
            wildcard_reason="Model versions live under keys the source environment's training pipeline "
            "generates per execution: its artifact, evaluation report and baselines only.",
        )
        function.allow(
            ["kms:Decrypt"],
            [f"arn:{partition}:kms:{source.region}:{source.account}:key/*"],
            {
                "ForAnyValue:StringEquals": {
                    "kms:ResourceAliases": [
                        f"alias/{project}/{source.name}/model",
                        f"alias/{project}/{source.name}/data",
                    ]
                },
                "StringEquals": {"kms:ViaService": f"s3.{source.region}.amazonaws.com"},
            },
            wildcard_reason="Key IDs of another account are unknown at synth; the keys are named by their "
            "aliases and used only through S3.",
        )
        for purpose, prefix in objects.target_prefixes.items():
            function.allow(
                ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
                [f"arn:{partition}:s3:::{bucket_names[purpose]}/{prefix}*"],
                wildcard_reason="Each promoted version is copied under its own key in the promotion prefix; "
                "deletion removes the copies of a refused package.",
            )
        function.role.use_key(model_key, encrypt=True, decrypt=True)
        function.role.use_key(data_key, encrypt=True, decrypt=True)
        group_arn, versions_arn = registry_arns(self, model_package_group)
        function.allow(
            [*REGISTER_ACTIONS, "sagemaker:DescribeModelPackage"],
            [group_arn, versions_arn],
            wildcard_reason="Every registration creates a new version ARN (<group>/<version>); the statement "
            "covers versions of this environment's group only.",
        )
        function.allow(
            ["ecr:DescribeImages"],
            [stack.format_arn(service="ecr", resource="repository", resource_name=image_repository)],
        )
        function.allow(["sns:Publish"], [alarm_topic.topic_arn])
        # The gateway endpoint admits this account's buckets only; the copies' sources are named here.
        network.allow_reading_other_account(
            account=source.account, object_arns=source_object_arns, sid="PromotedModelsOfTheSource"
        )

        self.rule = events.Rule(
            self,
            "Rule",
            description=f"Versions of {source_group} approved in {source.name} are copied into {model_package_group}",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[APPROVAL_EVENT],
                account=[source.account],
                detail={"ModelPackageGroupName": [source_group], "ModelApprovalStatus": ["Approved"]},
            ),
            targets=[targets.LambdaFunction(function.function, retry_attempts=8, max_event_age=Duration.hours(6))],
        )
