"""Serving of one environment: the endpoint for approved model packages and batch scoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, CfnCondition, CfnOutput, CfnParameter, DefaultStackSynthesizer, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from config import EnvironmentConfig
from platform_constructs.alert_topic import AlertTopic
from platform_constructs.batch_scoring import BatchScoringPipeline
from platform_constructs.execution_role import ServiceRole
from platform_constructs.isolated_network import IsolatedNetwork
from platform_constructs.model_deployer import (
    BOOTSTRAP_VERSION_PARAMETER,
    model_package_parameter_name,
    parameter_arn,
    rollout_role_name,
    serving_variants,
)
from platform_constructs.model_endpoint import SHADOW, ModelEndpoint
from platform_constructs.model_registry import registry_arns
from platform_constructs.sagemaker_guardrails import SageMakerGuardrails
from platform_constructs.sagemaker_network_policy import SageMakerNetworkPolicy
from stacks.data_stack import DataStack

# The value of a model package parameter when there is no approved model yet (a valid model name,
# so that template validation passes, and never a real package's ARN).
NO_MODEL = "none"
PREFIX_REASON = (
    "The endpoint writes captured requests and async results under keys it generates per request; the "
    "endpoint's prefix is the unit of access."
)


class ServingStack(Stack):
    """The endpoint serves the model packages given as deploy-time parameters
    (``<Variant>ModelPackageArn``); with no champion package, only the roles, topics and the batch
    scoring pipeline deploy. A model package is never looked up at synth.

    Each parameter is of type ``AWS::SSM::Parameter::Value<String>`` and defaults to the variant's SSM
    parameter, which the model deployer writes when a package is approved: every deployment, by hand or
    by the delivery pipeline, serves the approved packages without anyone typing an ARN. The deployer
    updates this stack in place through :attr:`rollout_role`.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        env_config: EnvironmentConfig,
        project: str,
        data: DataStack,
        network: IsolatedNetwork,
        alerts: AlertTopic,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        settings = env_config.serving
        endpoint_name = f"{project}-{env_config.name}"
        group = data.model_registry.group_name
        _, versions_arn = registry_arns(self, group)

        packages = self._model_package_parameters(
            settings.variants, settings.shadow_variant, group, project=project, env_name=env_config.name
        )
        first_variant = packages[settings.variants[0].name]
        has_model = CfnCondition(
            self, "HasApprovedModel", expression=Fn.condition_not(Fn.condition_equals(first_variant, NO_MODEL))
        )

        models_bucket = data.import_bucket(self, "models", data.model_key)
        capture_bucket = data.import_bucket(self, "capture", data.data_key)
        guardrails = SageMakerGuardrails(
            self,
            "Guardrails",
            volume_keys=[data.data_key, data.model_key],
            output_keys=[data.data_key, data.model_key],
            instance_types=env_config.allowed_instance_types,
            serverless_endpoints=settings.inference_type == "serverless",
        )
        network_policy = SageMakerNetworkPolicy(
            self,
            "ModelNetworkPolicy",
            vpc=network.vpc,
            subnets=network.selected_subnets,
            security_group=network.inference_security_group,
            log_path="/aws/sagemaker/Endpoints/*",
        )
        self.model_role = ServiceRole(
            self,
            "ModelRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker models of {endpoint_name}: model data, serving image, capture",
            managed_policies=[network_policy],
        )
        guardrails.attach_to(self.model_role.role)
        role = self.model_role
        role.read_objects(
            models_bucket,
            "pipelines/",
            reason="Model versions live under keys the training "
            "pipeline generates per execution; the pipeline's prefix is the unit of access.",
        )
        role.write_objects(capture_bucket, f"{endpoint_name}/", reason=PREFIX_REASON)
        repository = (
            f"arn:{self.partition}:ecr:{self.region}:{self.account}:repository/"
            f"cdk-{DefaultStackSynthesizer.DEFAULT_QUALIFIER}-container-assets-{self.account}-{self.region}"
        )
        role.allow(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"], [repository])
        role.allow(
            ["ecr:GetAuthorizationToken"],
            ["*"],
            wildcard_reason="ECR's GetAuthorizationToken has no resource; image pulls are limited to the CDK "
            "image-asset repository by the statement above.",
        )

        alarm_topic = alerts.topic
        async_topics = None
        if settings.inference_type == "async":
            async_topics = (
                sns.Topic(self, "AsyncSuccessTopic", master_key=data.data_key, enforce_ssl=True),
                sns.Topic(self, "AsyncErrorTopic", master_key=data.data_key, enforce_ssl=True),
            )
            role.allow(["sns:Publish"], [t.topic_arn for t in async_topics])
            role.use_key(data.data_key, encrypt=True)

        self.endpoint = ModelEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            settings=settings,
            model_packages=packages,
            execution_role=role.role,
            subnet_ids=network.selected_subnets.subnet_ids,
            security_group_ids=[network.inference_security_group.security_group_id],
            model_key=data.model_key,
            data_key=data.data_key,
            capture_uri=f"s3://{capture_bucket.bucket_name}/{endpoint_name}/capture",
            async_output_uri=f"s3://{capture_bucket.bucket_name}/{endpoint_name}/async",
            alarm_topic=alarm_topic,
            async_topics=async_topics,
            condition=has_model,
            logs_key=data.logs_key,
            log_retention_days=env_config.operations.log_retention_days,
            retain=env_config.retain_data,
        )
        self.endpoint.node.add_dependency(role.policy)

        processed_bucket = data.import_bucket(self, "processed", data.data_key)
        self.batch = BatchScoringPipeline(
            self,
            "BatchScoring",
            pipeline_name=f"{endpoint_name}-batch-scoring",
            model_role=role,
            guardrails=guardrails,
            model_package_versions_arn=versions_arn,
            default_input_uri=f"s3://{processed_bucket.bucket_name}/batch-scoring/input/",
            output_uri=f"s3://{processed_bucket.bucket_name}/batch-scoring/output",
            instance_type=settings.transform_instance_type,
            allowed_instance_types=env_config.allowed_instance_types,
            data_key=data.data_key,
            subnet_ids=network.selected_subnets.subnet_ids,
            security_group_ids=[network.inference_security_group.security_group_id],
        )
        role.read_objects(processed_bucket, "batch-scoring/input/", reason=PREFIX_REASON)
        role.write_objects(processed_bucket, "batch-scoring/output/", reason=PREFIX_REASON)

        self.rollout_role = self._rollout_role(
            project=project, env_name=env_config.name, group=group, data=data, variants=serving_variants(settings)
        )

        self.add_stack_dependency(data)
        endpoint_output = CfnOutput(self, "EndpointName", value=endpoint_name)
        endpoint_output.condition = has_model
        CfnOutput(self, "BatchScoringPipelineName", value=f"{endpoint_name}-batch-scoring")

    def _model_package_parameters(
        self, variants: Any, shadow: bool, group: str, *, project: str, env_name: str
    ) -> dict[str, str]:
        """One deploy-time parameter per variant, read from the variant's SSM parameter (which only ever
        holds ``none`` or a version of ``group``: the deployer writes it, SSM checks its pattern); variants
        after the first default to the first's package."""
        names = [v.name for v in variants] + ([SHADOW] if shadow else [])
        packages: dict[str, str] = {}
        first: str | None = None
        for name in names:
            parameter = CfnParameter(
                self,
                f"{name}ModelPackageArn",
                type="AWS::SSM::Parameter::Value<String>",
                default=model_package_parameter_name(project, env_name, name),
                description=f"SSM parameter holding the version of {group} the {name} variant serves"
                + (f" ({NO_MODEL}: no endpoint yet)" if first is None else f" ({NO_MODEL}: the same as {names[0]})")
                + "; the model deployer writes it when a version is approved",
            )
            value = parameter.value_as_string
            if first is None:
                first = value
                packages[name] = value
            else:
                use_first = CfnCondition(
                    self, f"{name}UsesFirstPackage", expression=Fn.condition_equals(value, NO_MODEL)
                )
                packages[name] = Fn.condition_if(use_first.logical_id, first, value).to_string()
        return packages

    def _rollout_role(
        self, *, project: str, env_name: str, group: str, data: DataStack, variants: list[str]
    ) -> ServiceRole:
        """The role CloudFormation acts with when the model deployer updates this stack: only what a new
        model package changes (models, endpoint configs, the endpoint, and on a first model its alarms,
        scaling and dashboard), in this environment, nothing else."""
        endpoint_name = f"{project}-{env_name}"
        role = ServiceRole(
            self,
            "RolloutRole",
            assumed_by=iam.ServicePrincipal("cloudformation.amazonaws.com"),
            description=f"CloudFormation: rolls approved model packages out to {endpoint_name}",
            role_name=rollout_role_name(project, env_name),
        )

        def arn(service: str, resource: str, name: str, **kwargs: Any) -> str:
            return self.format_arn(service=service, resource=resource, resource_name=name, **kwargs)

        generated = (
            "CloudFormation names the models and endpoint configs it replaces when a package changes; the "
            "statement covers this account and region, and the serving guardrails deny unsafe ones."
        )
        role.allow(
            [
                "sagemaker:CreateModel",
                "sagemaker:DescribeModel",
                "sagemaker:DeleteModel",
                "sagemaker:CreateEndpointConfig",
                "sagemaker:DescribeEndpointConfig",
                "sagemaker:DeleteEndpointConfig",
                "sagemaker:AddTags",
                "sagemaker:ListTags",
            ],
            [arn("sagemaker", "model", "*"), arn("sagemaker", "endpoint-config", "*")],
            wildcard_reason=generated,
        )
        role.allow(
            [
                "sagemaker:CreateEndpoint",
                "sagemaker:UpdateEndpoint",
                "sagemaker:DescribeEndpoint",
                "sagemaker:DeleteEndpoint",
                "sagemaker:UpdateEndpointWeightsAndCapacities",
                "sagemaker:AddTags",
                "sagemaker:ListTags",
            ],
            [arn("sagemaker", "endpoint", endpoint_name)],
        )
        _, versions_arn = registry_arns(self, group)
        role.allow(
            ["sagemaker:DescribeModelPackage"],
            [versions_arn],
            wildcard_reason="A model is created from whichever version of this environment's group is approved.",
        )
        role.allow(
            ["iam:PassRole"],
            [self.model_role.role_arn],
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )
        role.use_key(data.model_key)
        role.use_key(data.data_key)
        alarms = [
            arn("cloudwatch", "alarm", f"{endpoint_name}-*", arn_format=ArnFormat.COLON_RESOURCE_NAME),
            arn(
                "cloudwatch",
                "alarm",
                f"TargetTracking-endpoint/{endpoint_name}/*",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            ),
        ]
        role.allow(
            ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:TagResource"],
            alarms,
            wildcard_reason="The endpoint's alarms are named after it (CloudFormation and Application Auto "
            "Scaling add suffixes); no other alarm.",
        )
        role.allow(
            [
                "cloudwatch:DescribeAlarms",
                "application-autoscaling:DescribeScalableTargets",
                "application-autoscaling:DescribeScalingPolicies",
                "application-autoscaling:DescribeScalingActivities",
            ],
            ["*"],
            wildcard_reason="CloudWatch's DescribeAlarms and Application Auto Scaling's Describe calls support no "
            "resource-level permissions.",
        )
        role.allow(
            ["cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards", "cloudwatch:GetDashboard"],
            [arn("cloudwatch", "dashboard", endpoint_name, region="")],
        )
        role.allow(
            [
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:DeregisterScalableTarget",
                "application-autoscaling:PutScalingPolicy",
                "application-autoscaling:DeleteScalingPolicy",
                "application-autoscaling:TagResource",
            ],
            [arn("application-autoscaling", "scalable-target", "*")],
            wildcard_reason="Application Auto Scaling names scalable targets with generated IDs; the endpoint's "
            "variants are the only ones this stack declares.",
        )
        scaling_role = self.format_arn(
            service="iam",
            region="",
            resource="role",
            resource_name="aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
            "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
        )
        role.allow(
            ["iam:CreateServiceLinkedRole"],
            [scaling_role],
            {"StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
        )
        role.allow(["iam:PassRole"], [scaling_role])
        # CloudFormation resolves the SSM-typed parameters with the role it acts with.
        role.allow(
            ["ssm:GetParameters"],
            [parameter_arn(self, model_package_parameter_name(project, env_name, name)) for name in variants]
            + [parameter_arn(self, BOOTSTRAP_VERSION_PARAMETER)],
        )
        return role
